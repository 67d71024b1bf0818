#!/usr/bin/env bash
# Memory and connection slots under clients that hold what they can without a token, or never read:
#   1. CONNECTIONS connections x STREAMS health Watch streams, no token: how many streams open, the
#      proxy's RSS, whether a newcomer's authenticated call still gets in, and how many of the held
#      connections are still open after the idle timeout (2 s here) and its grace
#   2. one subscriber that never reads, 1,024 messages of 1 MiB published to it: peak RSS
#   3. four such subscribers on four topics: peak RSS
# Each probe gets a fresh proxy (auth off, so any pattern call counts as authenticated;
# max_connections 200, idle_timeout_ms 2000, otherwise default limits). A benchmark, not a test: it
# prints what it measured.
#
#   ci/hostile-probes.sh [PROXY_BIN] [CONNECTIONS] [STREAMS]
#
# PROXY_BIN defaults to a fresh release build of prism-proxy; give another binary to compare builds.
set -euo pipefail
cd "$(dirname "$0")/.."
proxy="${1:-}"
if [ -z "$proxy" ]; then
    cargo build --quiet --release --bin prism-proxy
    proxy="${CARGO_TARGET_DIR:-target}/release/prism-proxy"
fi
cargo build --quiet --release -p prism-runtime --example hold_without_token --example slow_subscriber
examples="${CARGO_TARGET_DIR:-target}/release/examples"
work=$(mktemp -d)
pid=""
stop() {
    if [ -n "$pid" ]; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
trap 'stop; rm -rf "$work"' EXIT
start() {
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$work/prism.yaml" <<YAML
listen: 127.0.0.1:$port
auth: { mode: none }
server: { max_connections: 200, idle_timeout_ms: 2000 }
backends: { m: { type: memstore } }
namespaces:
  m: { pattern: keyvalue, backend: m }
  events: { pattern: pubsub, backend: m }
YAML
    "$proxy" --config "$work/prism.yaml" 2>"$work/proxy.log" &
    pid=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
}
start
"$examples/hold_without_token" "127.0.0.1:$port" "$pid" "${2:-200}" "${3:-100}" 5
stop
start
"$examples/slow_subscriber" "127.0.0.1:$port" "$pid" 1 1024 1048576
stop
start
"$examples/slow_subscriber" "127.0.0.1:$port" "$pid" 4 1024 1048576
stop
