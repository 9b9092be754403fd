"""A WebSocket echo server for one connection (ustack's WsClient dials it).

Usage: ws_echo_server.py HOST PORT deflate|plain

Prints `listening` once bound, then, after the one connection ended, a line per message
(`text <len>` / `binary <len>`), `extensions: ...` and `closed <code>`; then exits.
"""

import sys
import threading

from wsdata import require_websockets

require_websockets()

from websockets.sync.server import serve  # noqa: E402

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
report = []
done = threading.Event()


def handler(ws):
    try:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        report.append(f"extensions: {ext.split(';')[0] if ext else 'none'}")
        for msg in ws:
            kind = "text" if isinstance(msg, str) else "binary"
            report.append(f"{kind} {len(msg)}")
            ws.send(msg)
    finally:
        # The iteration ends once the close handshake is over.
        report.append(f"closed {ws.close_code}")
        done.set()


with serve(
    handler,
    host,
    port,
    compression="deflate" if mode == "deflate" else None,
    max_size=4 << 20,
    ping_interval=None,
    close_timeout=20,
) as server:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("listening", flush=True)
    if not done.wait(timeout=60):
        print("timeout: no connection finished", flush=True)
        sys.exit(1)
    server.shutdown()

for line in report:
    print(line, flush=True)
