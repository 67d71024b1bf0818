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
export PRISM_REQUIRE_BACKENDS="${PRISM_REQUIRE_BACKENDS:-redis,postgres}"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings (default features, then the container provisioner)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p prism-conform --features container --all-targets --quiet -- -D warnings

log "tests"
if need_cmd cargo-nextest; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

log "doc tests"
cargo test --workspace --doc --quiet

log "prism-conform run on memstore, sqlite, redis, postgres → reports/"
cargo run --quiet --bin prism-conform -- run --report-dir reports \
    --backend memstore --backend sqlite --backend redis --backend postgres

log "Python gRPC interop client (ci/interop) → prism-proxy"
need_cmd python3 || apt_install python3
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
ci/interop/run.sh
