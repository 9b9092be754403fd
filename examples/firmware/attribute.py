#!/usr/bin/env python3
"""Attributes every byte of a firmware's .text to the crate (or module) whose code it is.

    attribute.py ELF [crate|module|layer] [ROWS]

Symbol sizes (nm) charge inlined code to the function it was inlined into, so after LTO
much of ustack shows up as the firmware's `main`. This walks the debug line tables
instead: each instruction goes to the innermost inlined frame that belongs to a crate of
this project or one of its dependencies, and only falls back to `core` or
`compiler_builtins` when none does. Needs llvm-objdump and llvm-symbolizer, and an image
built with debug info (the release profile has `debug = 2`).
"""
import collections
import re
import subprocess
import sys

# Frames from these are charged to themselves; anything else (core, alloc, compiler
# builtins) only gets the instructions no frame of these claims.
CLAIMING = {
    "ustack", "ustack_drivers", "ustack_firmware", "smoltcp", "sha1", "httparse", "base64",
    "cortex-m", "cortex-m-rt", "cortex-m-semihosting",
}
LOCAL = {"stack": "ustack", "drivers": "ustack_drivers", "examples/firmware": "ustack_firmware"}


def layer(crate, module):
    """ustack's layers: TCP/IP (lwIP's scope), sessions, WebSocket; the rest is the board's."""
    if crate == "smoltcp" or (crate == "ustack" and not module.startswith(("session", "ws"))):
        return "TCP/IP: smoltcp + ustack's stack, sockets, ingress"
    if crate == "ustack" and module.startswith("session"):
        return "sessions: ustack::session"
    if (crate == "ustack" and module.startswith("ws")) or crate in ("sha1", "httparse", "base64"):
        return "WebSocket: ustack::ws + sha1, httparse, base64"
    if crate == "heapless":
        return "heapless"
    return "not ustack: " + crate


def place(path):
    """(crate, module path) for a source file."""
    m = re.search(r"/(stack|drivers|examples/firmware)/src/(.*)\.rs:", path)
    if m and "/registry/" not in path:
        return LOCAL[m.group(1)], m.group(2).replace("/", "::")
    m = re.search(r"/registry/src/[^/]+/([A-Za-z0-9_\-]+?)-[0-9]+\.[^/]*/src/(.*)\.rs:", path)
    if m:
        return m.group(1), m.group(2).replace("/", "::")
    m = re.search(r"/library/([a-z_\-]+)/", path)
    if m:
        return m.group(1).replace("-", "_"), ""
    return "(no line info)", ""


def main():
    elf = sys.argv[1]
    depth = sys.argv[2] if len(sys.argv) > 2 else "crate"
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    dis = subprocess.run(
        ["llvm-objdump", "-d", "--no-show-raw-insn", "--section=.text", elf],
        capture_output=True, text=True, check=True,
    ).stdout
    addrs = sorted(int(m.group(1), 16) for m in re.finditer(r"^\s+([0-9a-f]+):\s", dis, re.M))
    if not addrs:
        sys.exit(f"attribute.py: no .text instructions in {elf}")
    heads = subprocess.run(["llvm-objdump", "-h", elf], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^\s*\d+\s+\.text\s+([0-9a-f]+)\s+([0-9a-f]+)", heads, re.M)
    end = int(m.group(2), 16) + int(m.group(1), 16)
    # Each instruction (or literal pool) runs to the next one; the last to the section's end.
    sizes = [b - a for a, b in zip(addrs, addrs[1:] + [end])]
    out = subprocess.run(
        ["llvm-symbolizer", "--inlining", "--functions=none", "--obj", elf],
        input="\n".join(hex(a) for a in addrs), capture_output=True, text=True, check=True,
    ).stdout
    blocks = out.strip("\n").split("\n\n")
    if len(blocks) != len(addrs):
        sys.exit("attribute.py: llvm-symbolizer's answer does not line up with the addresses")
    total = collections.Counter()
    for size, block in zip(sizes, blocks):
        frames = [place(line) for line in block.split("\n") if line and not line.startswith("0x")]
        crate, module = next((f for f in frames if f[0] in CLAIMING), frames[0] if frames else ("?", ""))
        if depth == "layer":
            key = layer(crate, module)
        else:
            key = crate if depth == "crate" or not module else f"{crate}::{module}"
        total[key] += size
    for key, n in total.most_common(rows):
        print(f"  {key:54} {n:8d}")
    rest = sum(n for _, n in total.most_common()[rows:])
    if rest:
        print(f"  {'(others)':54} {rest:8d}")
    print(f"  {'total':54} {sum(total.values()):8d}")


if __name__ == "__main__":
    main()
