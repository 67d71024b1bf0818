# Sourced by the proxy benchmarks (ci/load-vs-h2load.sh, ci/proxy-hop.sh): builds the release
# binaries, starts a Redis of its own and a prism-proxy (auth on, HS256) with a memstore and a Redis
# KeyValue namespace, mints a token, writes the gRPC request bodies, and defines the helpers.
# PROXY_BINS="before=/path/a after=/path/b" starts one proxy per binary instead (for interleaved
# before/after pairs; `use_proxy N` selects one); `label=/path@N` sets that one's worker_threads
# (default PROXY_THREADS, else the proxy's default); EXTRA_<label> holds YAML lines added to that
# proxy's config (e.g. EXTRA_metrics='admin_listen: 127.0.0.1:9464'). Sets: WORK, LABELS, PORT, PROXY (pid), REDIS_PORT,
# TOKEN, TICK, BIN. Everything it started stops on exit.

need() { command -v "$1" >/dev/null 2>&1; }
if ! need h2load; then
    echo "installing nghttp2-client (h2load)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nghttp2-client >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nghttp2-client >/dev/null; }
fi
need redis-server || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 3; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins -q
BIN=target/release

. ci/bench/procs.sh


REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"

head -c 32 /dev/urandom | base64 >"$WORK/secret"
LABELS=(); PORTS=(); PROXIES=()
for entry in ${PROXY_BINS:-prism-proxy=$BIN/prism-proxy}; do
    label=${entry%%=*}; bin=${entry#*=}; threads=${PROXY_THREADS:-}
    if [[ $bin == *@* ]]; then threads=${bin##*@}; bin=${bin%@*}; fi
    port=$(free_port)
    extra="EXTRA_$label"
    cat >"$WORK/proxy-$label.yaml" <<YAML
listen: 127.0.0.1:$port
${threads:+server: { worker_threads: $threads \}}
${!extra:-}
auth:
  hs256: { secret_file: '$WORK/secret' }
backends:
  mem: { type: memstore }
  red: { type: redis, url: 'redis://127.0.0.1:$REDIS_PORT', key_prefix: bench-$label }
namespaces:
  memstore: { pattern: keyvalue, backend: mem }
  redis: { pattern: keyvalue, backend: red }
YAML
    PRISM_LOG=warn "$bin" --config "$WORK/proxy-$label.yaml" >"$WORK/proxy-$label.log" 2>&1 &
    PIDS+=($!); PROXIES+=($!); PORTS+=("$port"); LABELS+=("$label")
    wait_port "$port"
done
# use_proxy N: the N-th proxy (0-based) is the one h2, proxy_cpu and the load command talk to.
use_proxy() { PORT=${PORTS[$1]}; PROXY=${PROXIES[$1]}; LABEL=${LABELS[$1]}; }
use_proxy 0
$BIN/prism-conform mint-token --secret-file "$WORK/secret" --grant 'memstore=read,write' \
    --grant 'redis=read,write' --ttl 86400 >"$WORK/token"
TOKEN=$(cat "$WORK/token")

# gRPC request bodies: a 5-byte frame header, then the protobuf message.
python3 - "$WORK" <<'PY'
import sys, struct
def frame(msg): return b"\0" + struct.pack(">I", len(msg)) + msg
key = b"h2load/key"
value = bytes(range(256))
get = b"\x0a" + bytes([len(key)]) + key
set_ = get + b"\x12\x80\x02" + value          # field 2, length 256 (varint 0x80 0x02)
open(sys.argv[1] + "/get.bin", "wb").write(frame(get))
open(sys.argv[1] + "/set.bin", "wb").write(frame(set_))
open(sys.argv[1] + "/empty.bin", "wb").write(frame(b""))
PY

# h2 NAMESPACE BODY PATH [h2load options…]: h2load on one connection and thread, gRPC headers.
h2() {
    local ns=$1 body=$2 path=$3; shift 3
    h2load -t 1 -c 1 -H 'content-type: application/grpc' -H 'te: trailers' \
        -H "x-prism-namespace: $ns" -H "authorization: Bearer $TOKEN" -d "$body" "$@" \
        "http://127.0.0.1:$PORT$path"
}
KV=/prism.keyvalue.v1.KeyValue
for i in "${!PORTS[@]}"; do
    use_proxy "$i"
    for ns in memstore redis; do
        h2 "$ns" "$WORK/set.bin" "$KV/Set" -n 1 -m 1 >/dev/null
    done
done
use_proxy 0

TICK=$(getconf CLK_TCK)
# The proxy's CPU seconds so far (user + system).
proxy_cpu() { awk -v t="$TICK" '{print ($14 + $15) / t}' "/proc/$PROXY/stat"; }
# CPU seconds of this shell's finished children (each tool runs as one): cutime + cstime.
children_cpu() { awk -v t="$TICK" '{print ($16 + $17) / t}' "/proc/$$/stat"; }
# The DATA bytes h2load received, from its output file.
h2_data() { awk '/^traffic:/ {for (i=2;i<=NF;i++) if ($i == "data") {gsub(/[()]/, "", $(i-1)); print $(i-1)}}' "$1"; }
# h2load's figures from its output and per-request log: "ops/s p50_us succeeded data_bytes"
# (h2load appends to its log: remove it before each run).
h2_figures() { # h2_figures OUT LOG
    local reqs rps data p50
    reqs=$(awk '/^requests:/ {print $8}' "$1")
    rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$1")
    data=$(h2_data "$1")
    p50=$(cut -f3 "$2" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$rps $p50 $reqs $data"
}

# The DATA bytes of one good answer, per (namespace, path): h2load counts gRPC errors as HTTP 200,
# so a run is checked against this exactly (a failed call answers trailers-only, with no data).
declare -A ANSWER_BYTES
answer_bytes() { # answer_bytes NS BODY PATH → sets ANSWER to the bytes of one answer (cached)
    local key="$PORT $1 $3"
    if [ -z "${ANSWER_BYTES[$key]:-}" ]; then
        h2 "$1" "$2" "$3" -n 1 -m 1 >"$WORK/one.out"
        ANSWER_BYTES[$key]=$(h2_data "$WORK/one.out")
    fi
    ANSWER=${ANSWER_BYTES[$key]}
}
# check_answers NS BODY PATH SUCCEEDED DATA MIN: every call answered like the first, which had MIN+
# bytes. With -D, the answers to the calls still in flight at the end count in DATA but not in
# SUCCEEDED, so DATA may exceed SUCCEEDED × one answer (and could hide that many failures).
check_answers() {
    local one
    answer_bytes "$1" "$2" "$3"
    one=$ANSWER
    if [ "${one:-0}" -lt "$6" ] || [ "$5" -lt $(( $4 * one )) ] || [ $(( $5 % one )) != 0 ]; then
        echo "h2load on $1 $3: $4 calls, $5 data bytes; one good answer has $one (at least $6): calls failed" >&2
        for f in "$WORK"/proxy-*.log; do echo "== $f" >&2; tail -20 "$f" >&2; done
        exit 1
    fi
}
