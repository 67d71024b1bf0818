#!/usr/bin/env bash
# The messaging load figures of the README: `prism-conform load` with the pubsub-fanout and queue-work
# profiles on every messaging backend, each through a prism-proxy process and straight on the adapter
# (--baseline direct) in the same run, ROUNDS rounds, and a table of medians: deliveries/s (pubsub:
# arrivals at all subscribers; queue: acks), the p50/p99 of publish→deliver or enqueue→ack in µs
# through the proxy, the same p50 direct, the proxy/direct throughput ratio, and the ledger (lost must
# be 0; the command exits 1 otherwise). A benchmark, not a test: run it on a quiet machine, after
# `cargo build --release -p prism-conform -p prism-runtime --bins`.
#
#   ci/messaging-load.sh                     # 1 round of 10 s per cell
#   ROUNDS=3 SECONDS_PER_RUN=10 BACKENDS="redis nats" ci/messaging-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-1}
SECS=${SECONDS_PER_RUN:-10}
BACKENDS=${BACKENDS:-"memstore redis postgres nats sqlite"}
BIN=${PRISM_CONFORM_BIN:-target/release/prism-conform}
OUT=${OUT:-target/messaging-load}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p prism-conform -p prism-runtime --bins" >&2; exit 2; }

status=0
for round in $(seq "$ROUNDS"); do
    for backend in $BACKENDS; do
        for profile in pubsub-fanout queue-work; do
            # SQLite offers no PubSub.
            [ "$backend" = sqlite ] && [ "$profile" = pubsub-fanout ] && continue
            dir="$OUT/$round/$backend-$profile"
            mkdir -p "$dir"
            if ! "$BIN" load --profile "$profile" --backend "$backend" --duration "${SECS}s" \
                --baseline direct --report-dir "$dir" >"$dir/stdout" 2>"$dir/stderr"; then
                echo "$backend $profile (round $round) failed: see $dir" >&2
                status=1
            fi
        done
    done
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
cells = {}
for r in range(1, rounds + 1):
    base = os.path.join(out, str(r))
    for cell in sorted(os.listdir(base)):
        path = os.path.join(base, cell, "load-summary.json")
        if not os.path.exists(path):
            continue
        s = json.load(open(path))
        key = "work" if s["profile"] == "queue-work" else "deliver"
        def op(run):
            return next(o for o in run["operations"] if o["op"] == key)
        p, d = op(s["proxy"]), op(s["direct"])
        lost = sum(l["lost"] for l in s["ledgers"].values())
        cells.setdefault(cell, []).append(
            (p["ok"] / s["proxy"]["seconds"], p["latency"]["p50_us"], p["latency"]["p99_us"],
             d["ok"] / s["direct"]["seconds"], d["latency"]["p50_us"], lost,
             s["ledgers"]["proxy"]["sent"], s["proxy_cpu_seconds_per_1000"] or 0.0))
print("| backend-profile | proxy deliveries/s | direct deliveries/s | ratio | proxy p50 µs | proxy p99 µs | direct p50 µs | sent (proxy) | lost | proxy CPU-s/1k calls |")
print("|---|---|---|---|---|---|---|---|---|---|")
for cell, runs in cells.items():
    m = [statistics.median(x) for x in zip(*runs)]
    print(f"| {cell} | {m[0]:,.0f} | {m[3]:,.0f} | {m[0]/max(m[3],1e-9):.2f} | {m[1]:,.0f} | {m[2]:,.0f} | {m[4]:,.0f} | {m[6]:,.0f} | {int(m[5])} | {m[7]:.3f} |")
EOF
exit $status
