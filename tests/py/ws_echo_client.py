"""Talks to a WebSocket echo server (ustack's WsServer) and prints one line per check.

Usage: ws_echo_client.py URL deflate|plain

Each line is `name: ok` or `name: FAIL <why>`; the Rust test compares the whole transcript.
Exits 1 on a failed check, 3 if `websockets` is missing.
"""

import sys

from wsdata import (BINARY, FRAGMENTS, LARGE_LEN, LARGE_SEED, TEXT, require_websockets,
                    splitmix_bytes)

require_websockets()

from websockets.sync.client import connect  # noqa: E402

url, mode = sys.argv[1], sys.argv[2]
failed = False


def check(name, ok, why=""):
    global failed
    print(f"{name}: ok" if ok else f"{name}: FAIL {why}", flush=True)
    failed |= not ok


large = splitmix_bytes(LARGE_SEED, LARGE_LEN)
with connect(
    url,
    compression="deflate" if mode == "deflate" else None,
    max_size=4 << 20,
    open_timeout=20,
    close_timeout=20,
    ping_interval=None,
) as ws:
    ext = ws.response.headers.get("Sec-WebSocket-Extensions")
    print(f"extensions: {ext.split(';')[0] if ext else 'none'}", flush=True)

    ws.send(TEXT)
    got = ws.recv(timeout=30)
    check("text", got == TEXT, repr(got))

    ws.send(BINARY)
    got = ws.recv(timeout=30)
    check("binary", got == BINARY, repr(got[:32]))

    # An iterable is sent as a fragmented message: one frame per item.
    ws.send(FRAGMENTS)
    got = ws.recv(timeout=30)
    check("fragmented", got == "".join(FRAGMENTS), repr(got))

    ws.send(large)
    got = ws.recv(timeout=30)
    check("large", isinstance(got, bytes) and got == large,
          f"{type(got).__name__} of {len(got)} bytes")

    pong = ws.ping(b"py-ping")
    check("pong", pong.wait(timeout=30), "no pong")

    ws.close()
    check("close", ws.close_code == 1000, f"close code {ws.close_code}")

sys.exit(1 if failed else 0)
