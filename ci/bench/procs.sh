# Sourced by the ci/ scripts that start servers: a work dir removed at exit, the PIDS killed at exit,
# free_port (an unused loopback port) and wait_port PORT (until it accepts, at most 30 s).
[ -n "${PRISM_PROCS_SH:-}" ] && return 0
PRISM_PROCS_SH=1
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 3; }
