"""Drives headless Chromium against ustack-demo's page over the Chrome DevTools Protocol.

Usage: demo_browser.py URL SCREENSHOT.png [--say TEXT]... [--message TEXT] [--settle SECONDS]

Starts /usr/bin/chromium (a new, empty profile), opens URL, waits until `#status` says
`connected`, types a unique chat message into `#msg`, clicks `#send` with real (CDP) mouse
events, waits until the message comes back as a `#log .chat .text` row and until the stats push
has put integers > 0 in `#frames-in` / `#frames-out` (and >= 1 in `#ws-in`), saves a PNG
screenshot to SCREENSHOT.png and prints one JSON line with what the page showed:

  {"status": "connected", "sent": "...", "text": "...", "from": "10.7.0.1:41234",
   "frames_in": 42, "frames_out": 40, "bytes_in": ..., "bytes_out": ..., "sessions_open": 2,
   "ws_in": 1, "ws_out": 5, "uptime": "3 s", "screenshot": "...", "png_bytes": 51234}

`--say TEXT` sends extra chat lines before the checked one; `--message TEXT` replaces the
generated unique message; `--settle S` waits S seconds before the screenshot (so the chart has
a few samples). Those are for README screenshots; the test uses none of them.

Chromium is always killed and its profile deleted, also on failure. Exits 1 with a message on
stderr (including the page's `#status` and `#log` text) when a step times out, 3 if
`websockets` is missing (tests/py/wsdata.py's check).
"""

import base64
import contextlib
import ctypes
import inspect
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no tests/py/__pycache__ left in the work tree
from wsdata import require_websockets  # noqa: E402

require_websockets()

from websockets.sync.client import connect  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# The flags that work on this machine (root, no display, no GPU, no network but the TAP link).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # running as root: the setuid/namespace sandbox refuses otherwise
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Shared memory in /tmp instead of /dev/shm, which containers often cap at 64 MB (Debian's
    # /usr/bin/chromium wrapper adds this itself only when its /dev/shm check works).
    "--disable-dev-shm-usage",
    "--no-proxy-server",  # talk to 10.7.0.2 directly even if *_proxy is set
    "--window-size=1000,700",
    "--remote-debugging-port=0",  # any free port; written to <profile>/DevToolsActivePort
]
STEP_TIMEOUT = 20.0  # seconds for each waiting step


class Failure(Exception):
    pass


class Cdp:
    """A minimal CDP client on the browser WebSocket, with flattened target sessions."""

    def __init__(self, ws_url):
        # Screenshots are big: no size limit. proxy=None (websockets >= 15): never route
        # 127.0.0.1 through a proxy from the environment.
        kw = {"proxy": None} if "proxy" in inspect.signature(connect).parameters else {}
        self._exit = contextlib.ExitStack()
        self.ws = self._exit.enter_context(
            connect(ws_url, max_size=None, open_timeout=STEP_TIMEOUT, ping_interval=None, **kw))
        self.next_id = 0
        self.events = []

    def close(self):
        self._exit.close()

    def _recv(self, deadline, what):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(what)
        try:
            return json.loads(self.ws.recv(timeout=left))
        except TimeoutError:
            raise TimeoutError(what) from None

    def call(self, method, params=None, session=None, timeout=STEP_TIMEOUT):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            m = self._recv(deadline, f"no answer to {method}")
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise Failure(f"{method} failed: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_event(self, method, session, timeout=STEP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.events):
                if m["method"] == method and m.get("sessionId") == session:
                    return self.events.pop(i)
            m = self._recv(deadline, f"no {method} event")
            if "method" in m:
                self.events.append(m)


class Page:
    def __init__(self, cdp, session):
        self.cdp, self.session = cdp, session

    def call(self, method, params=None):
        return self.cdp.call(method, params, self.session)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise Failure(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def text(self, sel):
        return self.eval(f"(document.querySelector({json.dumps(sel)}) || {{}}).textContent")

    def wait_for(self, what, expr, timeout=STEP_TIMEOUT):
        """Polls `expr` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expr)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} (after {timeout:.0f} s)")
            time.sleep(0.1)

    def describe(self):
        """The page's #status and #log text, for failure messages."""
        try:
            return json.dumps({
                "location": self.eval("location.href"),
                "#status": self.text("#status"),
                "#log": self.eval("Array.from(document.querySelectorAll('#log > div'),"
                                  " r => r.textContent)"),
                "#frames-in": self.text("#frames-in"),
                "#frames-out": self.text("#frames-out"),
                "#ws-in": self.text("#ws-in"),
            })
        except Exception as e:  # the page (or the browser) may be gone
            return f"(cannot read the page: {e})"

    def click(self, sel):
        """A real left click in the middle of the element, after scrolling it into view."""
        rect = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(sel)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()")
        if not rect:
            raise Failure(f"no {sel} on the page")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {
                "type": kind, "x": rect["x"], "y": rect["y"], "button": "left",
                "buttons": 0 if kind == "mouseMoved" else 1, "clickCount": 1})

    def type_into(self, sel, text):
        """Focuses the element and types `text` as the keyboard would (input events fire)."""
        if not self.eval(f"(() => {{ const e = document.querySelector({json.dumps(sel)});"
                         " if (!e) return false; e.focus(); e.value = ''; return true; })()"):
            raise Failure(f"no {sel} on the page")
        self.call("Input.insertText", {"text": text})


def chat_rows_js():
    return ("Array.from(document.querySelectorAll('#log .chat'), r => ({"
            " from: (r.querySelector('.from') || {}).textContent,"
            " text: (r.querySelector('.text') || {}).textContent }))")


def say(page, text):
    page.type_into("#msg", text)
    page.click("#send")
    row = page.wait_for(
        f"the chat message {text!r} echoed back as a `#log .chat .text` row",
        f"{chat_rows_js()}.find(r => r.text === {json.dumps(text)}) || null")
    return row


def counters_js():
    ids = ["frames-in", "frames-out", "bytes-in", "bytes-out", "sessions-open", "ws-in",
           "ws-out", "uptime"]
    return "({" + ", ".join(
        f"{json.dumps(i.replace('-', '_'))}: $t({json.dumps('#' + i)})" for i in ids) + "})"


def run(state, url, shot, extra, message, settle, tmp):
    """Every step; fills `state` (proc, cdp, page) as it goes, for cleanup and messages."""
    profile = os.path.join(tmp, "profile")
    os.mkdir(profile)
    log_path = os.path.join(tmp, "chromium.log")
    state["log"] = log_path

    # Chromium's helpers that outlive their parent are re-parented to this script, which
    # reaps them in stop_chromium.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER

    def pdeathsig():
        # If this script dies (even by SIGKILL), the kernel kills Chromium's main process.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    with open(log_path, "wb") as log:
        state["proc"] = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=pdeathsig)
    proc = state["proc"]

    # DevToolsActivePort: the port on line 1, the browser target's path on line 2.
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise Failure(f"chromium exited with status {proc.returncode} before DevTools was up")
        try:
            with open(port_file) as f:
                lines = f.read().split("\n")
            if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                break
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"chromium did not write {port_file}")
        time.sleep(0.05)
    ws_url = f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"

    cdp = Cdp(ws_url)
    state["cdp"] = cdp
    target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = cdp.call("Target.attachToTarget",
                       {"targetId": target, "flatten": True})["sessionId"]
    page = Page(cdp, session)
    page.call("Page.enable")
    # The screenshot is exactly the 1000x700 the window was asked for (headless otherwise
    # keeps ~90 px of the height for browser UI it does not draw).
    page.call("Emulation.setDeviceMetricsOverride",
              {"width": 1000, "height": 700, "deviceScaleFactor": 1, "mobile": False})
    page.call("Runtime.enable")
    cdp.events.clear()
    nav = page.call("Page.navigate", {"url": url})
    if nav.get("errorText"):
        raise Failure(f"cannot load {url}: {nav['errorText']}")
    cdp.wait_event("Page.loadEventFired", session)
    state["page"] = page

    page.wait_for("`#status` to say `connected`",
                  "document.getElementById('status')?.textContent === 'connected'")
    for text in extra:
        say(page, text)
    sent = message or f"hello from chromium {secrets.token_hex(4)}"
    row = say(page, sent)

    # The 1 s stats push after our message: integers, frames > 0, our message counted.
    page.eval("window.$t = (s) => (document.querySelector(s) || {}).textContent")
    page.wait_for(
        "`#frames-in` and `#frames-out` > 0 and `#ws-in` >= 1 (the 1 s stats push)",
        "(() => { const n = (s) => /^[0-9]+$/.test($t(s)) ? Number($t(s)) : -1;"
        " return n('#frames-in') > 0 && n('#frames-out') > 0 && n('#ws-in') >= 1; })()")
    if settle > 0:
        time.sleep(settle)
    counters = page.eval(counters_js())
    status = page.text("#status")

    png = base64.b64decode(page.call("Page.captureScreenshot", {"format": "png"})["data"])
    os.makedirs(os.path.dirname(os.path.abspath(shot)), exist_ok=True)
    part = f"{shot}.{os.getpid()}.part"  # written whole, then renamed: never a torn file
    with open(part, "wb") as f:
        f.write(png)
    os.replace(part, shot)

    def num(k):
        v = counters.get(k)
        return int(v) if isinstance(v, str) and v.isdigit() else v

    result = {"status": status, "sent": sent, "text": row["text"], "from": row["from"]}
    for k in ("frames_in", "frames_out", "bytes_in", "bytes_out", "sessions_open", "ws_in",
              "ws_out"):
        result[k] = num(k)
    result.update({"uptime": counters.get("uptime"), "screenshot": shot, "png_bytes": len(png)})
    print(json.dumps(result), flush=True)


def stop_chromium(state):
    cdp, proc = state.get("cdp"), state.get("proc")
    if cdp is not None:
        try:
            cdp.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            cdp.close()
        except Exception:
            pass
    if proc is None:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    # Whatever is left of the group we started (renderers, zygotes, the browser itself if
    # Browser.close did not work). This script is their subreaper, so it reaps them itself
    # rather than leaving zombies to PID 1 (which, on some machines, reaps only every ~2 s).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 5
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # none left
        if pid == 0:
            if time.monotonic() > deadline:
                print("demo_browser: warning: chromium processes still running after SIGKILL",
                      file=sys.stderr)
                break
            time.sleep(0.02)


def log_tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            lines = [line.rstrip() for line in f if "dbus" not in line]
        return "\n".join(lines[-n:])
    except OSError:
        return "(no chromium log)"


def main(argv):
    args, extra, message, settle = [], [], None, 0.0
    it = iter(argv)
    for a in it:
        if a == "--say":
            extra.append(next(it))
        elif a == "--message":
            message = next(it)
        elif a == "--settle":
            settle = float(next(it))
        else:
            args.append(a)
    if len(args) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    url, shot = args
    if not os.access(CHROMIUM, os.X_OK):
        print(f"demo_browser: {CHROMIUM} is missing: install it: apt-get install chromium",
              file=sys.stderr)
        return 1

    # SIGTERM (e.g. the test's timeout) unwinds through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="ustack-chromium-")
    state = {}
    try:
        run(state, url, shot, extra, message, settle, tmp)
        return 0
    except (TimeoutError, Failure) as e:
        page = state.get("page")
        print(f"demo_browser: {'timed out: ' if isinstance(e, TimeoutError) else ''}{e}\n"
              f"  page: {page.describe() if page else '(not loaded)'}\n"
              f"  chromium log (last lines, dbus noise left out):\n{log_tail(state.get('log'))}",
              file=sys.stderr)
        return 1
    finally:
        stop_chromium(state)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
