#!/usr/bin/env bash
# The proxy hop against its floors, measured from outside with h2load (nghttp2's C HTTP/2 load
# generator) on one prism-proxy (auth on) and a Redis of its own, ROUNDS rounds interleaved, medians:
#   1. memstore Get at 32 in flight against the proxy's own health check at 32 in flight (ops/s)
#   2. Redis Get at 32 in flight through the proxy against direct `redis-benchmark -c 32` (ops/s)
#   3. Redis Get at 1 in flight: p50 through the proxy minus direct `redis-benchmark -c 1` p50
#   4. the proxy's CPU seconds per 1,000 calls at 1,000 calls/s (memstore Get)
#   5. the proxy's peak RSS (its whole life, so the 32-in-flight runs too: an upper bound)
# A benchmark, not a test: it prints the figures and whether each goal is met, and always exits 0
# unless something failed to run.
#
#   ci/proxy-hop.sh                        # 3 rounds of 10 s per figure
#   ROUNDS=5 PROXY_THREADS=1 ci/proxy-hop.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_RUN:-10}

. ci/bench/proxy-env.sh

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
record() { printf '%s\t%s\t%s\n' "$LABEL" "$1" "$2" >>"$RESULTS"; }
run_h2() { # run_h2 NS BODY PATH MIN_ANSWER_BYTES [options…]  → sets rps p50 reqs data
    local ns=$1 body=$2 path=$3 min=$4; shift 4
    rm -f "$WORK/h2.log"
    h2 "$ns" "$body" "$path" "$@" --log-file="$WORK/h2.log" >"$WORK/h2.out"
    read -r rps p50 reqs data < <(h2_figures "$WORK/h2.out" "$WORK/h2.log")
    check_answers "$ns" "$body" "$path" "$reqs" "$data" "$min"
}
redis_bench() { # redis_bench CLIENTS → "rps p50_us" of GET on a 256-byte value
    redis-benchmark -p "$REDIS_PORT" -c "$1" -n "$2" -d 256 -t get --csv 2>/dev/null |
        python3 -c 'import csv,sys; r=list(csv.DictReader(sys.stdin))[0]; print(float(r["rps"]), float(r["p50_latency_ms"])*1000)' ||
        { echo "redis-benchmark --csv gave no percentiles (Redis 7 or later is needed)" >&2; exit 3; }
}
redis-cli -p "$REDIS_PORT" set key:__rand_int__ "$(head -c 256 /dev/zero | tr '\0' x)" >/dev/null

for round in $(seq "$ROUNDS"); do
  for i in "${!PORTS[@]}"; do
    use_proxy "$i"
    run_h2 memstore "$WORK/empty.bin" /grpc.health.v1.Health/Check 7 -D "$SECS" -m 32
    record health32_ops "$rps"
    run_h2 memstore "$WORK/get.bin" "$KV/Get" 261 -D "$SECS" -m 32
    record mem32_ops "$rps"
    run_h2 redis "$WORK/get.bin" "$KV/Get" 261 -D "$SECS" -m 32
    record redis32_ops "$rps"
    read -r drps _ < <(redis_bench 32 $((SECS * 60000)))
    record direct32_ops "$drps"
    run_h2 redis "$WORK/get.bin" "$KV/Get" 261 -D "$SECS" -m 1
    record redis1_p50 "$p50"
    read -r _ dp50 < <(redis_bench 1 $((SECS * 10000)))
    record direct1_p50 "$dp50"
    c0=$(proxy_cpu)
    run_h2 memstore "$WORK/get.bin" "$KV/Get" 261 -D "$SECS" -m 1 --rps 1000
    c1=$(proxy_cpu)
    record cpu_per_1k "$(awk -v a="$c0" -v b="$c1" -v n="$reqs" 'BEGIN {printf "%.4f", (b-a)/n*1000}')"
    record calls_per_s_paced "$rps"
    record rss_mib "$(awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$PROXY/status")"
    echo "round $round: $LABEL done" >&2
  done
done

python3 - "$RESULTS" "$ROUNDS" "$SECS" "${PROXY_THREADS:-}" <<'EOF'
import sys
sys.path.insert(0, "ci/bench")
from results import load
v, labels, med = load(sys.argv[1])
threads = sys.argv[4] or "its default, unless a label says @N"
print(f"\nprism-proxy (worker_threads: {threads}), h2load -t 1 -c 1, medians of {sys.argv[2]} interleaved runs of {sys.argv[3]} s")
print("| goal | " + " | ".join(labels) + " | met? |")
print("|---|" + "---|" * len(labels) + "---|")
def row(goal, cell):
    cells = [cell(l) for l in labels]
    print(f"| {goal} | " + " | ".join(c[0] for c in cells) + f" | {'yes' if cells[-1][1] else 'no'} |")
def ratio(a, b, goal):
    return lambda l: (f"{med(a, l):,.0f} vs {med(b, l):,.0f} ops/s = {med(a, l) / med(b, l):.2f}×", med(a, l) / med(b, l) >= goal)
row("memstore Get at 32 in flight ≥ 0.9× the health check's ops/s", ratio("mem32_ops", "health32_ops", 0.9))
row("Redis Get at 32 in flight ≥ 0.5× direct redis-benchmark ops/s", ratio("redis32_ops", "direct32_ops", 0.5))
added = lambda l: med("redis1_p50", l) - med("direct1_p50", l)
row("Redis Get at 1 in flight: added p50 ≤ 40 µs",
    lambda l: (f"{med('redis1_p50', l):.0f} − {med('direct1_p50', l):.0f} = {added(l):.0f} µs", added(l) <= 40))
row("≤ 0.03 CPU-s per 1,000 calls at 1,000 calls/s",
    lambda l: (f"{med('cpu_per_1k', l):.4f} (at {med('calls_per_s_paced', l):,.0f} calls/s)", med("cpu_per_1k", l) <= 0.03))
row("peak RSS at 1,000 calls/s ≤ 30 MiB (whole run)",
    lambda l: (f"{max(v['rss_mib'][l]):.1f} MiB", max(v["rss_mib"][l]) <= 30))
if len(labels) > 1:
    print(f"\n(met? is for the last column, {labels[-1]})")
EOF
