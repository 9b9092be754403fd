#!/usr/bin/env bash
# Regenerates the WebSocket fuzz seeds, the `real_*` ones from real traffic: Python
# `websockets` clients talk to ustack's ws_echo over a TAP interface while tcpdump records
# it, and `cargo run --example gen_ws_seeds -- --pcap ...` splits each TCP conversation
# into request/response seeds (ws_handshake) and frame-stream seeds (ws_frames).
#
#   sudo bash fuzz/seeds/regen_ws.sh          # from the repository root; needs root (TAP)
#
# Needs python3 with `websockets` (pip install websockets) and tcpdump. The TAP name and
# subnet (ufzws0, 10.213.0.0/24) are used by nothing else in the repository.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fuzz="$(dirname "$here")"
root="$(dirname "$fuzz")"
TAP="${TAP:-ufzws0}"
HOST_CIDR="${HOST_CIDR:-10.213.0.1/24}"
STACK_IP="${STACK_IP:-10.213.0.2}"
PORT="${PORT:-9001}"

say() { printf '[regen-ws] %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || { say "run as root (TAP interface)"; exit 1; }
command -v tcpdump >/dev/null || { say "tcpdump is missing"; exit 1; }
python3 -c 'import websockets' 2>/dev/null || { say "pip install websockets"; exit 1; }

scratch="$(mktemp -d "${TMPDIR:-/tmp}/ustack-ws-seeds.XXXXXX")"
echo_pid=""
dump_pid=""
cleanup() {
    [ -n "$dump_pid" ] && kill -INT "$dump_pid" 2>/dev/null && wait "$dump_pid" 2>/dev/null || true
    [ -n "$echo_pid" ] && kill -INT "$echo_pid" 2>/dev/null && wait "$echo_pid" 2>/dev/null || true
    ip link del "$TAP" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

say "building ws_echo"
cargo build --quiet --release -p ustack-examples --bin ws_echo --manifest-path "$root/Cargo.toml"

say "ws_echo on $TAP ($STACK_IP:$PORT, deflate accepted)"
"$root/target/release/ws_echo" --tap "$TAP" --host-cidr "$HOST_CIDR" --stack-ip "$STACK_IP" \
    --port "$PORT" --deflate >"$scratch/echo.log" 2>&1 &
echo_pid=$!
for _ in $(seq 50); do
    ip link show "$TAP" >/dev/null 2>&1 && break
    sleep 0.1
done
ip link show "$TAP" >/dev/null || { cat "$scratch/echo.log"; exit 1; }

tcpdump -i "$TAP" -U -s 0 -w "$scratch/ws.pcap" "tcp port $PORT" 2>"$scratch/tcpdump.log" &
dump_pid=$!
sleep 1

say "clients"
python3 - "ws://$STACK_IP:$PORT/" "$scratch/names.txt" <<'EOF'
import sys
from websockets.sync.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

url, names = sys.argv[1], sys.argv[2]

def talk(ws, deflate):
    ws.send("Hello, ustack")
    assert ws.recv() == "Hello, ustack"
    ws.send(bytes(range(256)))
    assert ws.recv() == bytes(range(256))
    # Fragmented: one frame per piece.
    ws.send(["frag", "mented ", "\u00e9t\u00e9"])
    assert ws.recv() == "fragmented \u00e9t\u00e9"
    ws.ping(b"are you there").wait(5)
    for i in range(3):
        text = f"message {i}: " + "the same words again and again " * 8
        ws.send(text)
        assert ws.recv() == text
    big = bytes((i * 7) % 251 for i in range(3000))
    ws.send(big)
    assert ws.recv() == big
    ws.send("")
    assert ws.recv() == ""
    ws.close(1000, "bye")

conversations = [
    ("plain", dict(compression=None)),
    ("deflate", dict()),  # websockets' default offer: permessage-deflate; client_max_window_bits
    ("deflate_no_takeover", dict(compression=None, extensions=[ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True,
        server_max_window_bits=10, client_max_window_bits=9)])),
]
with open(names, "w") as f:
    for name, kw in conversations:
        with connect(url, ping_interval=None, open_timeout=5, **kw) as ws:
            port = ws.socket.getsockname()[1]
            talk(ws, "deflate" in name)
        print(name, port, file=f)
        print(f"  {name}: client port {port}")
EOF
sleep 1
kill -INT "$dump_pid"
wait "$dump_pid" 2>/dev/null || true
dump_pid=""

say "splitting the capture into seeds"
cd "$fuzz"
cargo run --quiet --example gen_ws_seeds -- --pcap "$scratch/ws.pcap" --names "$scratch/names.txt" --port "$PORT"
