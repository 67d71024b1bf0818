#!/usr/bin/env bash
# Memory under the slow-body attack: CONNECTIONS x STREAMS streams each declare a DECLARED-byte gRPC
# message and send all but its last 100 bytes; prints the proxy's RSS (baseline, peak while the
# streams stall, 3 s and 15 s after the connections close) and how the proxy answered the streams.
#
#   ci/slow-body-rss.sh [PROXY_BIN] [CONNECTIONS] [STREAMS] [DECLARED] [HOLD_SECS]
#
# PROXY_BIN defaults to a fresh release build of prism-proxy; give another binary to compare builds.
# The proxy serves one memstore namespace with auth off on a free loopback port, default limits.
set -euo pipefail
cd "$(dirname "$0")/.."
proxy="${1:-}"
if [ -z "$proxy" ]; then
    cargo build --quiet --release --bin prism-proxy
    proxy="${CARGO_TARGET_DIR:-target}/release/prism-proxy"
fi
cargo build --quiet --release --example slow_body -p prism-runtime
probe="${CARGO_TARGET_DIR:-target}/release/examples/slow_body"
work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/prism.yaml" <<YAML
listen: 127.0.0.1:$port
auth: { mode: none }
backends: { m: { type: memstore } }
namespaces: { m: { pattern: keyvalue, backend: m } }
YAML
"$proxy" --config "$work/prism.yaml" 2>"$work/proxy.log" &
pid=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
"$probe" "127.0.0.1:$port" "$pid" "${2:-3}" "${3:-256}" "${4:-5242880}" "${5:-10}"
