#!/usr/bin/env bash
# Instructions the proxy executes per call, counted by valgrind's callgrind: a figure that does not
# depend on how busy the machine is, for comparing two builds of the proxy path.
#
#   ci/proxy-instructions.sh [PROFILE] [BACKEND]      (defaults: kv-read-heavy memstore)
#
# Runs `prism-conform load` twice (8 s and 16 s, 1 user) with the proxy under callgrind and divides
# the difference in instructions by the difference in calls, so start-up and preloading cancel out.
# Needs valgrind and release binaries (`cargo build --release --bins`). Counts user-space
# instructions only (not the kernel); callgrind hides SHA extensions, so crypto counts high.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-kv-read-heavy}
backend=${2:-memstore}
bin=target/release
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
[ -x "$bin/prism-proxy" ] && [ -x "$bin/prism-conform" ] || { echo "build first: cargo build --release --bins" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The profile with a small key space, so preloading under valgrind stays short.
src=scenarios/load/$profile.yaml
[ -f "$profile" ] && src=$profile
sed -E 's/count: *[0-9]+/count: 200/' "$src" > "$work/profile.yaml"
cat > "$work/proxy.sh" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$work/cg.%p $PWD/$bin/prism-proxy "\$@"
EOF
chmod +x "$work/proxy.sh"

declare -a calls irs
for d in 8 16; do
  rm -f "$work"/cg.*
  PRISM_PROXY_BIN="$work/proxy.sh" "$bin/prism-conform" load --profile "$work/profile.yaml" \
    --backend "$backend" --users 1 --duration "${d}s" --report-dir "$work/r$d" >"$work/log$d" 2>&1 \
    || { cat "$work/log$d" >&2; exit 1; }
  sleep 1 # callgrind writes its file as the proxy exits
  calls+=("$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['proxy']['calls'])" "$work/r$d/load-summary.json")")
  irs+=("$(grep -h '^summary:' "$work"/cg.* | awk '{s+=$2} END {print s}')")
  echo "${d} s: ${calls[-1]} calls, ${irs[-1]} instructions in the proxy"
done
python3 -c "import sys; c1,c2,i1,i2=map(int,sys.argv[1:]); print(f'{(i2-i1)/(c2-c1):.0f} instructions per call ($profile on $backend, difference of the two runs)')" \
  "${calls[0]}" "${calls[1]}" "${irs[0]}" "${irs[1]}"
