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
PROBES="hold_without_token slow_subscriber" . ci/bench/probe-proxy.sh
limits="max_connections: 200, idle_timeout_ms: 2000"
start_proxy "$limits"
"$EXAMPLES/hold_without_token" "127.0.0.1:$PORT" "$PROXY_PID" "${2:-200}" "${3:-100}" 5
stop_proxy
start_proxy "$limits"
"$EXAMPLES/slow_subscriber" "127.0.0.1:$PORT" "$PROXY_PID" 1 1024 1048576
stop_proxy
start_proxy "$limits"
"$EXAMPLES/slow_subscriber" "127.0.0.1:$PORT" "$PROXY_PID" 4 1024 1048576
stop_proxy
