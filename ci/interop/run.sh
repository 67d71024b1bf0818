#!/usr/bin/env bash
# Interop check: a Python gRPC client generated only from proto/prism/**/*.proto talks to the real
# prism-proxy binary (KeyValue on memstore and sqlite, PubSub and Queue on memstore, a Multicast
# Registry on sqlite + memstore, a Mailbox on sqlite) with authentication on (auth.mode jwt, HS256),
# then the proxy must stop gracefully on SIGTERM. The client mints its own tokens with PyJWT from the
# same random secret the proxy reads from its secret_file.
#
#   ci/interop/run.sh
#
# Needs python3 (with the venv module) and cargo; downloads the pinned packages of
# ci/interop/requirements.txt into target/interop-venv (reused on later runs). Generated stubs, the
# proxy config, the HS256 secret and the SQLite file live in a temp dir (mode 0700) that is removed on
# exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'interop: error: %s\n' "$*" >&2; exit 1; }

PYTHON="${PYTHON:-python3}"
VENV=target/interop-venv
PROXY_BIN="${CARGO_TARGET_DIR:-target}/debug/prism-proxy"
START_TIMEOUT=30 # seconds for the proxy to accept connections
STOP_TIMEOUT=10  # seconds for the proxy to exit after SIGTERM
AUTH_ISSUER=prism-interop
AUTH_AUDIENCE=prism

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON is required"
command -v cargo >/dev/null 2>&1 || die "cargo is required"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/prism-interop.XXXXXX")"
PROXY_PID=""
TEST_PID=""

show_proxy_log() {
    if [ -s "$WORK/proxy.stderr" ]; then
        printf -- '--- prism-proxy stderr (last 50 lines) ---\n' >&2
        tail -n 50 "$WORK/proxy.stderr" >&2
        printf -- '--- end of prism-proxy stderr ---\n' >&2
    fi
}

cleanup() {
    local rc=$?
    set +e
    [ -n "$TEST_PID" ] && kill -TERM "$TEST_PID" 2>/dev/null
    if [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null; then
        kill -TERM "$PROXY_PID" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$PROXY_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Python environment (reused when present and working).
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON (on Debian: apt-get install python3-venv)"
fi
log "pip install -r ci/interop/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r ci/interop/requirements.txt

# 2. Stubs from the .proto files only, into the temp dir.
mapfile -t PROTOS < <(find proto/prism -name '*.proto' | sort)
[ ${#PROTOS[@]} -gt 0 ] || die "no .proto files under proto/prism"
log "generating Python stubs from ${#PROTOS[@]} proto files"
mkdir -p "$WORK/stubs"
"$VENV/bin/python" -m grpc_tools.protoc -I proto \
    --python_out="$WORK/stubs" --grpc_python_out="$WORK/stubs" "${PROTOS[@]}"

# 3. The proxy binary.
log "cargo build --bin prism-proxy"
cargo build --quiet --bin prism-proxy
[ -x "$PROXY_BIN" ] || die "$PROXY_BIN was not built"

# 4. A fresh random HS256 secret (32 bytes, hex), readable by this user only; never printed.
SECRET_FILE="$WORK/hs256.secret"
(
    umask 077
    "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' >"$SECRET_FILE"
)
chmod 600 "$SECRET_FILE"
[ "$(wc -c <"$SECRET_FILE")" -eq 65 ] || die "could not write the HS256 secret to $SECRET_FILE"

# 5. Config on a free loopback port, authentication on, SQLite on a temp file.
PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
ADMIN_PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
cat >"$WORK/prism.yaml" <<EOF
listen: 127.0.0.1:$PORT
admin_listen: 127.0.0.1:$ADMIN_PORT
auth:
  mode: jwt
  hs256: { secret_file: "$SECRET_FILE" }
  issuer: $AUTH_ISSUER
  audience: $AUTH_AUDIENCE
backends:
  mem:  { type: memstore }
  lite: { type: sqlite, path: "$WORK/interop.db" }
namespaces:
  interop-mem:    { pattern: keyvalue, backend: mem }
  interop-lite:   { pattern: keyvalue, backend: lite }
  interop-events: { pattern: pubsub, backend: mem }
  interop-jobs:   { pattern: queue, backend: mem }
  interop-registry: { pattern: multicast_registry, slots: { registry: lite, messaging: mem } }
  interop-mail:   { pattern: mailbox, backend: lite }
EOF

# 6. Start the proxy and wait until the port answers.
log "starting $PROXY_BIN on 127.0.0.1:$PORT"
NO_COLOR=1 PRISM_LOG="${PRISM_LOG:-info}" "$PROXY_BIN" --config "$WORK/prism.yaml" \
    >"$WORK/proxy.stdout" 2>"$WORK/proxy.stderr" &
PROXY_PID=$!
deadline=$((SECONDS + START_TIMEOUT))
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
        rc=0
        wait "$PROXY_PID" || rc=$?
        PROXY_PID=""
        show_proxy_log
        die "prism-proxy exited with status $rc before listening on 127.0.0.1:$PORT"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        show_proxy_log
        die "prism-proxy did not accept connections on 127.0.0.1:$PORT within ${START_TIMEOUT}s"
    fi
    sleep 0.1
done

# 7. The Python client, minting its tokens from the same secret.
log "running ci/interop/test_interop.py"
test_rc=0
PRISM_INTEROP_TARGET="127.0.0.1:$PORT" \
    PRISM_INTEROP_ADMIN="127.0.0.1:$ADMIN_PORT" \
    PRISM_INTEROP_STUBS="$WORK/stubs" \
    PRISM_INTEROP_NAMESPACES="interop-mem=memstore,interop-lite=sqlite" \
    PRISM_INTEROP_PUBSUB=interop-events PRISM_INTEROP_QUEUE=interop-jobs \
    PRISM_INTEROP_REGISTRY=interop-registry PRISM_INTEROP_MAILBOX=interop-mail \
    PRISM_INTEROP_SECRET_FILE="$SECRET_FILE" \
    PRISM_INTEROP_ISSUER="$AUTH_ISSUER" \
    PRISM_INTEROP_AUDIENCE="$AUTH_AUDIENCE" \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    "$VENV/bin/python" ci/interop/test_interop.py &
TEST_PID=$! # in the background so that a signal to this script is handled at once by the traps
wait "$TEST_PID" || test_rc=$?
TEST_PID=""
[ "$test_rc" -eq 0 ] || show_proxy_log

# 8. Graceful shutdown: SIGTERM must make the proxy exit 0 within STOP_TIMEOUT seconds.
kill -TERM "$PROXY_PID"
deadline=$((SECONDS + STOP_TIMEOUT))
while kill -0 "$PROXY_PID" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        show_proxy_log
        die "prism-proxy still running ${STOP_TIMEOUT}s after SIGTERM"
    fi
    sleep 0.1
done
proxy_rc=0
wait "$PROXY_PID" || proxy_rc=$?
PROXY_PID=""
if [ "$proxy_rc" -ne 0 ]; then
    show_proxy_log
    die "prism-proxy exited with status $proxy_rc after SIGTERM (expected 0)"
fi
log "prism-proxy exited 0 after SIGTERM"

[ "$test_rc" -eq 0 ] || die "Python interop test failed (exit $test_rc)"
