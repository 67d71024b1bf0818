# Sourced by the memory probes (ci/slow-body-rss.sh, ci/hostile-probes.sh): takes the proxy binary
# from $1 (default: a fresh release build of prism-proxy), builds the probe examples named in
# PROBES, and defines start_proxy [SERVER_SETTINGS] (auth off, a memstore KeyValue namespace `m` and
# a PubSub namespace `events`, on a free loopback port; sets PORT and PROXY_PID) and stop_proxy.
# Sets EXAMPLES (where the probes are). Whatever it started stops on exit.
proxy="${1:-}"
if [ -z "$proxy" ]; then
    cargo build --quiet --release --bin prism-proxy
    proxy="${CARGO_TARGET_DIR:-target}/release/prism-proxy"
fi
examples=()
for probe in $PROBES; do examples+=(--example "$probe"); done
cargo build --quiet --release -p prism-runtime "${examples[@]}"
EXAMPLES="${CARGO_TARGET_DIR:-target}/release/examples"
probe_work=$(mktemp -d)
PROXY_PID=""
stop_proxy() {
    if [ -n "$PROXY_PID" ]; then
        kill -KILL "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID" 2>/dev/null || true
        PROXY_PID=""
    fi
}
trap 'stop_proxy; rm -rf "$probe_work"' EXIT
start_proxy() {
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$probe_work/prism.yaml" <<YAML
listen: 127.0.0.1:$PORT
auth: { mode: none }
server: { ${1:-} }
backends: { m: { type: memstore } }
namespaces:
  m: { pattern: keyvalue, backend: m }
  events: { pattern: pubsub, backend: m }
YAML
    "$proxy" --config "$probe_work/prism.yaml" 2>"$probe_work/proxy.log" &
    PROXY_PID=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.1; done
}
