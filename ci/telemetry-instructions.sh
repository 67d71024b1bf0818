#!/usr/bin/env bash
# What observability costs per call, in instructions: valgrind's callgrind counts the instructions
# prism-proxy executes for CALLS memstore Gets (after a warm-up, counters zeroed), once per setting:
#   off      — no admin_listen, no tracing
#   metrics  — admin_listen set (every call and backend call recorded)
#   trace0   — metrics, and tracing to an OTLP collector (runtime/examples/otlp_sink.rs) at 0%
#   trace1   — the same at 1%
# A second opinion beside ci/telemetry-cost.sh: CPU time on a shared two-core VM varies ±15% from
# one 10 s run to the next, while these counts repeat to within a fraction of a percent. They miss
# what the kernel does (syscalls, wake-ups), which is the same in every setting. Authentication is
# off here, so the ratios are conservative (a token check would add the same to every setting).
#
#   ci/telemetry-instructions.sh            # 2,000 calls per setting
#   CALLS=5000 NO_BUILD=1 ci/telemetry-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-2000}
[ -n "${NO_BUILD:-}" ] || cargo build --release -p prism-runtime --bin prism-proxy --example otlp_sink -q
for tool in valgrind:valgrind h2load:nghttp2-client; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
        echo "installing ${tool#*:}" >&2
        sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${tool#*:}" >/dev/null ||
            { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${tool#*:}" >/dev/null; }
    fi
done

. ci/bench/procs.sh

SINK=$(free_port)
target/release/examples/otlp_sink "127.0.0.1:$SINK" >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
wait_port "$SINK"
# A gRPC frame holding GetRequest { key: "k" }.
printf '\x00\x00\x00\x00\x03\x0a\x01k' >"$WORK/get.bin"
get() { # get PORT N: N Gets, one at a time; all must succeed
    h2load -t1 -c1 -m1 -n "$2" -H 'content-type: application/grpc' -H 'te: trailers' \
        -H 'x-prism-namespace: cache' -d "$WORK/get.bin" \
        "http://127.0.0.1:$1/prism.keyvalue.v1.KeyValue/Get" >"$WORK/h2.out" 2>&1
    grep -q "^requests: $2 total, $2 started, $2 done, $2 succeeded" "$WORK/h2.out" ||
        { cat "$WORK/h2.out" >&2; exit 1; }
}

declare -A EXTRA=(
    [off]=""
    [metrics]="admin_listen: 127.0.0.1:0"
    [trace0]="admin_listen: 127.0.0.1:0
tracing: { otlp_endpoint: 'http://127.0.0.1:$SINK', sample_ratio: 0.0 }"
    [trace1]="admin_listen: 127.0.0.1:0
tracing: { otlp_endpoint: 'http://127.0.0.1:$SINK', sample_ratio: 0.01 }"
)
echo "| setting | instructions per Get | vs off |"
echo "|---|---|---|"
for label in off metrics trace0 trace1; do
    port=$(free_port)
    cat >"$WORK/$label.yaml" <<YAML
listen: 127.0.0.1:$port
auth: { mode: none }
backends: { mem: { type: memstore } }
namespaces: { cache: { pattern: keyvalue, backend: mem } }
${EXTRA[$label]}
YAML
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$label" \
        target/release/prism-proxy --config "$WORK/$label.yaml" >"$WORK/$label.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    get "$port" 200
    callgrind_control -z "$pid" >/dev/null 2>&1
    get "$port" "$CALLS"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.$label.1")
    per=$((total / CALLS))
    [ "$label" = off ] && off=$per
    awk -v l="$label" -v p="$per" -v o="$off" 'BEGIN {printf "| %s | %d | %.3f× |\n", l, p, p / o}'
done
