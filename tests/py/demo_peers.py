"""Kernel-side WebSocket peers for ustack-demo's tests (examples/tests/demo_tap.rs).

Usage:
  demo_peers.py ws-echo URL        /ws echo: text, binary, empty and 100 KiB messages, once
                                   without compression and once with the default
                                   permessage-deflate offer
  demo_peers.py chat URL N         /chat: N clients join, each sends one line, every client
                                   must get all N chat lines and a stats push
  demo_peers.py chat-hold URL      /chat: one member that stays until the server closes it

Every command prints its result as ONE JSON line on stdout (the last line) for the Rust
test to assert on; chat-hold also prints a `connected` line first. A failed check prints
`demo_peers <command>: <what> ...` on stderr and exits 1; a missing `websockets` exits 3;
anything that takes longer than the command's deadline exits 2.
"""

import asyncio
import json
import sys

from wsdata import BINARY, TEXT, require_websockets, splitmix_bytes

require_websockets()

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

# 100 KiB messages, text and binary, reproducible (the seed is arbitrary).
BIG_SEED = 0xDE40_0001
BIG_LEN = 100 * 1024
# One recv, one connect or one close never takes this long on a local link.
STEP_TIMEOUT = 20


class Failed(Exception):
    """A check did not hold; the message says which and what came instead."""


def fail(what):
    raise Failed(what)


def show(value, limit=80):
    """A short description of a message for error output."""
    if isinstance(value, (bytes, str)) and len(value) > limit:
        return f"{type(value).__name__} of {len(value)} (starts {value[:24]!r})"
    return repr(value)


def opts(**extra):
    # No pings (they are not messages and would only add noise), no proxy from the
    # environment, room for the large echoes.
    return dict(ping_interval=None, proxy=None, max_size=4 << 20,
                open_timeout=STEP_TIMEOUT, close_timeout=STEP_TIMEOUT, **extra)


async def recv(ws, what):
    try:
        return await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
    except asyncio.TimeoutError:
        fail(f"no message within {STEP_TIMEOUT} s while waiting for {what}")
    except ConnectionClosed as e:
        fail(f"connection closed ({e}) while waiting for {what}")


# ---------------------------------------------------------------------------------------
# ws-echo
# ---------------------------------------------------------------------------------------

def echo_messages():
    big_bin = splitmix_bytes(BIG_SEED, BIG_LEN)
    # Printable ASCII and a few multi-byte characters, exactly BIG_LEN characters.
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 ✓é—"
    big_text = "".join(alphabet[b % len(alphabet)] for b in big_bin)
    return [
        ("text", TEXT),
        ("binary", BINARY),
        ("empty text", ""),
        ("empty binary", b""),
        ("100 KiB binary", big_bin),
        ("100 KiB text", big_text),
    ]


async def ws_echo_run(url, mode):
    kwargs = opts(compression=None) if mode == "none" else opts()
    async with connect(url, **kwargs) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        if mode == "none" and ext is not None:
            fail(f"{mode}: the server answered extensions {ext!r} to an offer of none")
        if mode == "deflate" and (ext is None or "permessage-deflate" not in ext):
            fail(f"{mode}: permessage-deflate was offered but not negotiated ({ext!r})")
        sent = 0
        for name, msg in echo_messages():
            await ws.send(msg)
            sent += 1
            got = await recv(ws, f"the echo of the {name} message")
            if type(got) is not type(msg):
                fail(f"{mode}: {name}: sent {type(msg).__name__}, got {type(got).__name__} back")
            if got != msg:
                fail(f"{mode}: {name}: echo differs: sent {show(msg)}, got {show(got)}")
        await asyncio.wait_for(ws.close(), STEP_TIMEOUT)
        if ws.close_code != 1000:
            fail(f"{mode}: closing got code {ws.close_code} back, not 1000")
        return {"compression": mode, "extension": ext, "messages": sent,
                "close_code": ws.close_code}


async def ws_echo(url):
    runs = []
    for mode in ("none", "deflate"):
        runs.append(await ws_echo_run(url, mode))
    return {"result": "ok", "runs": runs, "messages": sum(r["messages"] for r in runs)}


# ---------------------------------------------------------------------------------------
# chat
# ---------------------------------------------------------------------------------------

async def chat_client(i, url, n, ready, all_ready):
    """One member: join, wait for everyone, send one line, collect until all lines came."""
    async with connect(url, **opts()) as ws:
        local = ws.local_address
        me = f"{local[0]}:{local[1]}"
        log = []  # every message, in order

        async def next_msg(what):
            raw = await recv(ws, what)
            if not isinstance(raw, str):
                fail(f"client {i}: got a binary message {show(raw)}; the chat sends text")
            try:
                doc = json.loads(raw)
            except ValueError:
                fail(f"client {i}: a message is not JSON: {show(raw)}")
            if doc.get("type") == "error":
                fail(f"client {i}: the server sent an error: {raw}")
            log.append(doc)
            return doc

        first = await next_msg("the welcome")
        if first.get("type") != "welcome":
            fail(f"client {i}: the first message is not a welcome: {first}")
        if first.get("you") != me:
            fail(f"client {i}: welcome says you are {first.get('you')!r}, the socket is {me}")
        # Everyone has joined once a welcome or join says there are n members.
        doc = first
        while not (doc.get("type") in ("welcome", "join") and doc.get("members") == n):
            doc = await next_msg(f"the join that makes {n} members")
        ready.append(i)
        if len(ready) == n:
            all_ready.set()
        await asyncio.wait_for(all_ready.wait(), STEP_TIMEOUT)

        line = f"line {i} from client {i} ✓"
        await ws.send(line)

        def chats():
            return [d for d in log if d.get("type") == "chat"]

        def good_stats():
            return [d for d in log if d.get("type") == "stats"
                    and d.get("stats", {}).get("frames", {}).get("in", 0) > 0]

        while len(chats()) < n or not good_stats():
            await next_msg(f"{n} chat lines (have {len(chats())}) and a stats push "
                           f"(have {len(good_stats())})")
        joins = [d for d in log if d.get("type") in ("welcome", "join")]
        return {
            "client": i,
            "you": me,
            "sent": line,
            "chat": [{k: d.get(k) for k in ("from", "text", "seq")} for d in chats()],
            "joins": [{k: d.get(k) for k in ("type", "who", "you", "members")} for d in joins],
            "stats_pushes": len(good_stats()),
            "frames_in": good_stats()[-1]["stats"]["frames"]["in"],
        }


async def chat(url, n):
    ready, all_ready = [], asyncio.Event()
    clients = await asyncio.gather(
        *(chat_client(i, url, n, ready, all_ready) for i in range(n)))
    # Every client got every line, from the right sender, with the same seq everywhere.
    sender = {c["sent"]: c["you"] for c in clients}
    seq_of = {}
    for c in clients:
        if len(c["chat"]) != n:
            fail(f"client {c['client']} got {len(c['chat'])} chat lines, not {n}: {c['chat']}")
        texts = sorted(m["text"] for m in c["chat"])
        if texts != sorted(sender):
            fail(f"client {c['client']} got lines {texts}, sent were {sorted(sender)}")
        for m in c["chat"]:
            if m["from"] != sender[m["text"]]:
                fail(f"client {c['client']}: {m['text']!r} is from {m['from']}, "
                     f"but {sender[m['text']]} sent it")
            if seq_of.setdefault(m["text"], m["seq"]) != m["seq"]:
                fail(f"{m['text']!r} has seq {m['seq']} at client {c['client']}, "
                     f"{seq_of[m['text']]} elsewhere")
    seqs = sorted(seq_of.values())
    if len(set(seqs)) != n or not all(isinstance(s, int) for s in seqs):
        fail(f"seq values are not {n} distinct integers: {seqs}")
    return {"result": "ok", "clients": clients, "seqs": seqs}


# ---------------------------------------------------------------------------------------
# chat-hold
# ---------------------------------------------------------------------------------------

async def chat_hold(url):
    # The server closes after SIGTERM; allow for a slow test around it.
    hold_for = 60
    async with connect(url, **opts()) as ws:
        first = json.loads(await recv(ws, "the welcome"))
        if first.get("type") != "welcome":
            fail(f"the first message is not a welcome: {first}")
        print(json.dumps({"event": "connected", "you": first.get("you")}), flush=True)
        messages = 1
        try:
            async with asyncio.timeout(hold_for):
                async for _ in ws:
                    messages += 1
        except TimeoutError:
            fail(f"the server did not close the connection within {hold_for} s")
        except ConnectionClosed:
            pass  # an abnormal end; close_code below tells which
        rcvd = ws.close_code if ws.close_code is not None else 1006
        return {"event": "closed", "code": rcvd, "reason": ws.close_reason,
                "messages": messages}


def main():
    usage = "usage: demo_peers.py ws-echo URL | chat URL N | chat-hold URL"
    if len(sys.argv) < 3:
        print(usage, file=sys.stderr)
        return 2
    cmd, url = sys.argv[1], sys.argv[2]
    if cmd == "ws-echo":
        job, deadline = ws_echo(url), 60
    elif cmd == "chat" and len(sys.argv) == 4:
        job, deadline = chat(url, int(sys.argv[3])), 60
    elif cmd == "chat-hold":
        job, deadline = chat_hold(url), 120
    else:
        print(usage, file=sys.stderr)
        return 2

    async def bounded():
        return await asyncio.wait_for(job, deadline)

    try:
        result = asyncio.run(bounded())
    except Failed as e:
        print(f"demo_peers {cmd}: {e}", file=sys.stderr)
        return 1
    except (asyncio.TimeoutError, TimeoutError):
        print(f"demo_peers {cmd}: did not finish within {deadline} s", file=sys.stderr)
        return 2
    except Exception as e:  # refused handshakes, resets, ...: one clear line
        print(f"demo_peers {cmd}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
