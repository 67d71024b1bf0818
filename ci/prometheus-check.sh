#!/usr/bin/env bash
# prism-proxy as Prometheus sees it: Debian's Prometheus server and promtool against the proxy
# started from the README's example config (runtime/examples/prism.yaml), under load.
#   1. `promtool check metrics` lints the proxy's exposition (names, types, units, help);
#   2. `promtool check rules` validates runtime/examples/prometheus-alerts.yaml;
#   3. a Prometheus server scrapes the proxy every second (the alert rules loaded) while
#      `prism-conform load --target` runs KeyValue on `cache` and the `exercise` example moves the
#      PubSub, Queue and auth families; then every family must have a series, every counter listed
#      below must have grown, every dashboard and alert query must evaluate, and every rule must be
#      healthy;
#   4. under `prism-conform load` on `cache`, SIGHUPs reload the config file with a namespace added,
#      then another removed, then the original back: every reload must apply and no call on
#      `cache` may fail (counted by the proxy per status code).
# Exits non-zero on any failure. BIN (default target/debug) holds prism-proxy and prism-conform; the
# exercise example is built here.
#
#   ci/prometheus-check.sh
#   BIN=target/release ci/prometheus-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug}
ROOT=$PWD

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    echo "installing prometheus (Debian: the server and promtool)" >&2
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null ||
        { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null; }
fi
cargo build -q -p prism-runtime --example exercise
EXERCISE=target/debug/examples/exercise

. ci/bench/procs.sh

PORT=$(free_port); ADMIN=$(free_port); PROM=$(free_port)
PRISM_JWT_SECRET=$(head -c 32 /dev/urandom | base64)
export PRISM_JWT_SECRET
cp runtime/examples/prism.yaml "$WORK/prism.yaml"
(cd "$WORK" && exec "$ROOT/$BIN/prism-proxy" --config "$WORK/prism.yaml" \
    --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN") >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
PROXY_PID=$!
wait_port "$PORT"; wait_port "$ADMIN"
"$BIN/prism-conform" mint-token --secret-env PRISM_JWT_SECRET --issuer https://auth.example.com \
    --audience prism --grant 'cache=read,write' --grant 'events=read,write' --grant 'jobs=read,write' \
    >"$WORK/token"

echo "1. promtool check metrics" >&2
"$EXERCISE" "http://127.0.0.1:$PORT" "$(cat "$WORK/token")" 5 >/dev/null
curl -sf "http://127.0.0.1:$ADMIN/metrics" >"$WORK/metrics.txt"
promtool check metrics <"$WORK/metrics.txt"

echo "2. promtool check rules" >&2
promtool check rules runtime/examples/prometheus-alerts.yaml

echo "3. Prometheus scraping the proxy under load" >&2
cat >"$WORK/prometheus.yml" <<YAML
global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: ['$ROOT/runtime/examples/prometheus-alerts.yaml']
scrape_configs:
  - job_name: prism
    static_configs: [ { targets: ['127.0.0.1:$ADMIN'] } ]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_port "$PROM"
sleep 3
"$BIN/prism-conform" load --profile kv-read-heavy --target "http://127.0.0.1:$PORT" --namespace cache \
    --token-file "$WORK/token" --duration 8s --rate 500 >"$WORK/load.log" 2>&1 ||
    { cat "$WORK/load.log" >&2; exit 1; }
"$EXERCISE" "http://127.0.0.1:$PORT" "$(cat "$WORK/token")" 50
sleep 4

python3 - "$PROM" runtime/examples/grafana-dashboard.json runtime/examples/prometheus-alerts.yaml <<'PY'
import json, sys, urllib.parse, urllib.request
prom, dashboard, rules_file = sys.argv[1:4]
def query(expr):
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url) as r:
        answer = json.load(r)
    if answer.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {answer}")
    return answer["data"]["result"]
families = [
    "rpc_server_call_duration_seconds_bucket", "rpc_server_active_calls", "prism_rpc_request_bytes_total",
    "prism_rpc_response_bytes_total", "db_client_operation_duration_seconds_bucket",
    "messaging_client_operation_duration_seconds_bucket", "prism_backend_up", "prism_backend_reconnects_total",
    "prism_backend_pool_connections", "prism_messages_sent_total", "prism_messages_delivered_total",
    "prism_subscriber_dropped_messages_total", "prism_queue_redeliveries_total", "prism_messages_dead_lettered_total",
    "prism_queue_deliveries_in_flight", "prism_streams_open", "prism_connections_open", "prism_connections_closed_total",
    "prism_calls_refused_total", "prism_auth_failures_total", "prism_authz_denials_total", "prism_draining",
    "prism_config_generation", "prism_config_reloads_total", "process_cpu_seconds_total",
    "process_resident_memory_bytes", "process_open_fds",
]
missing = [f for f in families if not query(f"count({f})")]
grew = {
    "rpc_server_call_duration_seconds_count": 'namespace="cache"',
    "db_client_operation_duration_seconds_count": 'backend="mem"',
    "messaging_client_operation_duration_seconds_count": 'backend="lite"',
    "prism_rpc_request_bytes_total": 'namespace="cache"',
    "prism_rpc_response_bytes_total": 'namespace="cache"',
    "prism_messages_sent_total": 'namespace="events"',
    "prism_messages_delivered_total": 'namespace="jobs"',
    "prism_queue_redeliveries_total": 'cause="nack"',
    "prism_auth_failures_total": 'check="malformed"',
    "process_cpu_seconds_total": "",
}
still = [f"{m}{{{l}}}" for m, l in grew.items() if not any(float(s["value"][1]) > 0 for s in query(f"increase({m}{{{l}}}[1m])"))]
exprs = [t["expr"] for p in json.load(open(dashboard))["panels"] for t in p["targets"]]
for e in exprs:
    query(e.replace("$__rate_interval", "1m"))
with urllib.request.urlopen(f"http://127.0.0.1:{prom}/api/v1/rules") as r:
    groups = json.load(r)["data"]["groups"]
rules = [rule for g in groups for rule in g["rules"]]
unhealthy = [r["name"] for r in rules if r.get("health") != "ok"]
print(f"{len(families) - len(missing)}/{len(families)} families scraped; {len(grew) - len(still)}/{len(grew)} counters grew; "
      f"{len(exprs)} dashboard queries evaluated; {len(rules)} alert rules loaded, {len(rules) - len(unhealthy)} healthy")
if missing or still or unhealthy or not rules:
    raise SystemExit(f"missing families: {missing}; counters that did not grow: {still}; unhealthy rules: {unhealthy}")
PY

echo "4. reloads (SIGHUP) under load: a namespace added, one removed, the original back" >&2
scrape() { curl -sf "http://127.0.0.1:$ADMIN/metrics"; }
# cache_calls CODE-MATCH: the calls on `cache` whose status matches (awk regex on the code).
cache_calls() { scrape | awk -v m="$1" '/^rpc_server_call_duration_seconds_count\{/ && /namespace="cache"/ {
    match($0, /rpc_status_code="[A-Z_]+"/); code = substr($0, RSTART + 17, RLENGTH - 18)
    if (code ~ m) n += $2 } END {print n + 0}'; }
reloads() { scrape | awk -F'} ' '/^prism_config_reloads_total\{outcome="'"$1"'"/ {print $2}'; }
ok0=$(cache_calls '^OK$'); bad0=$(cache_calls '^[^O]|^O[^K]'); applied0=$(reloads applied)
"$BIN/prism-conform" load --profile kv-read-heavy --target "http://127.0.0.1:$PORT" --namespace cache \
    --token-file "$WORK/token" --duration 8s --rate 1000 >"$WORK/load2.log" 2>&1 &
LOAD=$!
sleep 2
python3 - "$WORK/prism.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
open(path + ".orig", "w").write(text)
added = text.replace("namespaces:\n", "namespaces:\n  extra: { pattern: keyvalue, backend: mem }\n", 1)
open(path + ".added", "w").write(added)
open(path + ".removed", "w").write(added.replace("  events: { pattern: pubsub, backend: mem }\n", ""))
PY
for variant in added removed orig; do
    cp "$WORK/prism.yaml.$variant" "$WORK/prism.yaml"
    kill -HUP "$PROXY_PID"
    sleep 1.5
done
wait "$LOAD" || { cat "$WORK/load2.log" >&2; exit 1; }
ok=$(( $(cache_calls '^OK$') - ok0 )); bad=$(( $(cache_calls '^[^O]|^O[^K]') - bad0 ))
applied=$(( $(reloads applied) - applied0 )); refused=$(reloads refused)
echo "3 reloads under load: $applied applied, ${refused:-0} refused in all; calls on cache during them: $ok OK, $bad failed" >&2
[ "$applied" -eq 3 ] && [ "$bad" -eq 0 ] && [ "$ok" -gt 1000 ] ||
    { echo "reloads under load: expected 3 applied, 0 failed calls and over 1,000 OK" >&2; tail -20 "$WORK/proxy.log" >&2; exit 1; }
