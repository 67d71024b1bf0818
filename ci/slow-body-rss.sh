#!/usr/bin/env bash
# Memory under the slow-body attack: CONNECTIONS x STREAMS streams each declare a DECLARED-byte gRPC
# message and send all but its last 100 bytes; prints the proxy's RSS (baseline, peak while the
# streams stall, 3 s and 15 s after the connections close) and how the proxy answered the streams.
#
#   ci/slow-body-rss.sh [PROXY_BIN] [CONNECTIONS] [STREAMS] [DECLARED] [HOLD_SECS]
#
# PROXY_BIN defaults to a fresh release build of prism-proxy; give another binary to compare builds.
# The proxy serves memstore namespaces with auth off on a free loopback port, default limits.
set -euo pipefail
cd "$(dirname "$0")/.."
PROBES=slow_body . ci/bench/probe-proxy.sh
start_proxy
"$EXAMPLES/slow_body" "127.0.0.1:$PORT" "$PROXY_PID" "${2:-3}" "${3:-256}" "${4:-5242880}" "${5:-10}"
