#!/usr/bin/env bash
# The README's walk through the gate server, run and checked (`.ci/run` runs it): nats-server,
# `gatekit serve --config examples/gate.toml`, the Python chat back end, then two chat clients —
# Bob listens, Alice talks — and the checks that Alice's request was answered, Bob got the push,
# the metrics counted the calls, and SIGTERM shut the gate down with exit 0. Loopback only (the
# ports of examples/gate.toml: 4222, 7000, 7001, 9100), every wait bounded, everything it starts
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
GATEKIT=${GATEKIT:-target/release/gatekit}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
work=$(mktemp -d)
pids=()
cleanup() {
  # The last started first (the back end before NATS), each given 5 s before SIGKILL.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    p=${pids[i]}
    kill "$p" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "run-chat: $*" >&2
  for f in "$work"/*.out; do echo "--- $f" >&2; cat "$f" >&2; done
  exit 1
}
# Waits (10 s at most) until a TCP port on 127.0.0.1 accepts.
wait_port() {
  python3 - "$1" <<'PY' || fail "nothing listens on 127.0.0.1:$1 after 10 s"
import socket, sys, time
end = time.monotonic() + 10
while time.monotonic() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}
# Waits (10 s at most) until a file holds a line matching a pattern.
wait_line() {
  for _ in $(seq 200); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  fail "no line matching '$2' in $1 after 10 s"
}

[ -x "$GATEKIT" ] || fail "$GATEKIT is not built (cargo build --release -p gatekit-harness)"
"$NATS_SERVER" -a 127.0.0.1 -p 4222 >"$work/nats.out" 2>&1 &
pids+=($!)
wait_port 4222
"$GATEKIT" serve --config examples/gate.toml >"$work/gate.out" 2>&1 &
gate=$!
pids+=($gate)
wait_port 7000
python3 examples/backends/python/chat.py --nats nats://127.0.0.1:4222 >"$work/backend.out" 2>&1 &
pids+=($!)
wait_line "$work/backend.out" '^ready'

timeout 30 python3 examples/clients/chat_client.py --name bob --room lobby --listen 5 >"$work/bob.out" 2>&1 &
bob=$!
pids+=($bob)
wait_line "$work/bob.out" '^join ok'
timeout 30 python3 examples/clients/chat_client.py --name alice --room lobby --say "hi bob" >"$work/alice.out" 2>&1 \
  || fail "alice's client failed"
wait "$bob" || fail "bob's client failed"
grep -q '^send ok {"delivered": *2}' "$work/alice.out" || fail "alice's chat/send was not answered as delivered to 2"
grep -q '^push chat/message .*"from": *"alice".*hi bob' "$work/bob.out" || fail "bob got no push of alice's message"

python3 - <<'PY' || fail "the metrics did not count the chat calls"
import re, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9100/metrics", timeout=5).read().decode()
n = sum(float(v) for v in re.findall(r'^gatekit_requests_total\{module="chat",status="ok"\} (\S+)$', text, re.M))
print(f"run-chat: metrics: {n:.0f} chat calls answered ok")
sys.exit(0 if n >= 5 else 1)
PY

kill -TERM "$gate"
for _ in $(seq 200); do kill -0 "$gate" 2>/dev/null || break; sleep 0.05; done
kill -0 "$gate" 2>/dev/null && fail "the gate did not stop within 10 s of SIGTERM"
wait "$gate" || fail "the gate exited with $? at SIGTERM"
echo "run-chat: alice's message reached bob through gate → NATS → Python back end → gate; SIGTERM exit 0"
sed 's/^/  alice: /' "$work/alice.out"
sed 's/^/  bob:   /' "$work/bob.out"
