#!/usr/bin/env bash
# Is `prism-conform load` an accurate instrument? Drives one prism-proxy (auth on; a memstore and a
# Redis namespace) with h2load (nghttp2's C HTTP/2 load generator, raw gRPC frames) and with
# `prism-conform load --target` in turn, Get of one existing 256-byte key at 1 and at 32 calls in
# flight on one connection, ROUNDS rounds interleaved, and prints both tools' medians side by side:
# ops/s, p50 (h2load's from its per-request log), the proxy's CPU seconds per 1,000 calls under each
# tool, and each tool's own CPU per 1,000 calls. Exits 1 when a median p50 or ops/s of the load
# command is more than 15% away from h2load's. A benchmark, not a test: run it on a quiet machine.
#
#   ci/load-vs-h2load.sh                 # 3 rounds of 10 s per cell
#   ROUNDS=5 SECONDS_PER_RUN=20 ci/load-vs-h2load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_RUN:-10}
INFLIGHT=${INFLIGHT:-"1 32"}
BACKENDS=${BACKENDS:-"memstore redis"}

. ci/bench/proxy-env.sh

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    for ns in $BACKENDS; do
        for m in $INFLIGHT; do
            # h2load
            rm -f "$WORK/h2.log"
            c0=$(proxy_cpu); t0=$(children_cpu)
            h2 "$ns" "$WORK/get.bin" "$KV/Get" -D "$SECS" -m "$m" --log-file="$WORK/h2.log" >"$WORK/h2.out"
            c1=$(proxy_cpu); t1=$(children_cpu)
            read -r rps p50 reqs data < <(h2_figures "$WORK/h2.out" "$WORK/h2.log")
            # Every Get found the 256-byte value (h2load counts gRPC errors as successes).
            check_answers "$ns" "$WORK/get.bin" "$KV/Get" "$reqs" "$data" 261
            pcpu=$(awk -v a="$c0" -v b="$c1" -v n="$reqs" 'BEGIN {printf "%.4f", (b-a)/n*1000}')
            tcpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" 'BEGIN {printf "%.4f", (b-a)/n*1000}')
            printf '%s\t%s\th2load\t%s\t%s\t%s\t%s\n' "$ns" "$m" "$rps" "$p50" "$pcpu" "$tcpu" >>"$RESULTS"
            # prism-conform load, on the same proxy
            t0=$(children_cpu)
            $BIN/prism-conform load --target "http://127.0.0.1:$PORT" --namespace "$ns" \
                --token-file "$WORK/token" --proxy-pid "$PROXY" --profile kv-get --users "$m" \
                --duration "${SECS}s" --report-dir "$WORK/load" >/dev/null 2>"$WORK/load.err" \
                || { cat "$WORK/load.err" >&2; exit 1; }
            t1=$(children_cpu)
            python3 - "$WORK/load/load-summary.json" "$ns" "$m" "$t0" "$t1" >>"$RESULTS" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
p = s["proxy"]
calls = max(p["calls"], 1)
own = (float(sys.argv[5]) - float(sys.argv[4])) / calls * 1000
print(f"{sys.argv[2]}\t{sys.argv[3]}\tload\t{p['ops_per_sec']:.0f}\t{p['latency']['p50_us']}\t{s['proxy_cpu_seconds_per_1000']:.4f}\t{own:.4f}")
EOF
            echo "round $round: $ns, $m in flight done" >&2
        done
    done
done

python3 - "$RESULTS" "$ROUNDS" "$SECS" <<'EOF'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cells = {}
for ns, m, tool, rps, p50, pcpu, tcpu in rows:
    cells.setdefault((ns, int(m)), {}).setdefault(tool, []).append((float(rps), float(p50), float(pcpu), float(tcpu)))
med = lambda xs, i: st.median(x[i] for x in xs)
print(f"\nGet of one 256-byte key, one connection, medians of {sys.argv[2]} interleaved runs of {sys.argv[3]} s")
print("| backend | in flight | h2load ops/s | load ops/s | ratio | h2load p50 µs | load p50 µs | ratio | proxy CPU-s/1k (h2load / load) | client CPU-s/1k (h2load / load) |")
print("|---|---|---|---|---|---|---|---|---|---|")
bad = []
for (ns, m), t in sorted(cells.items()):
    h, l = t["h2load"], t["load"]
    r_ops = med(l, 0) / med(h, 0)
    r_p50 = med(l, 1) / med(h, 1)
    print(f"| {ns} | {m} | {med(h,0):,.0f} | {med(l,0):,.0f} | {r_ops:.2f} | {med(h,1):.0f} | {med(l,1):.0f} | {r_p50:.2f} | {med(h,2):.4f} / {med(l,2):.4f} | {med(h,3):.4f} / {med(l,3):.4f} |")
    for name, r in (("ops/s", r_ops), ("p50", r_p50)):
        if abs(r - 1) > 0.15:
            bad.append(f"{ns} at {m} in flight: {name} ratio {r:.2f}")
if bad:
    print("\nmore than 15% from h2load: " + "; ".join(bad))
    sys.exit(1)
print("\nevery cell within 15% of h2load")
EOF
