"""Test data shared by the Python WebSocket peers and the Rust tests (tests/tests/ws_kernel.rs).

`splitmix_bytes(seed, n)` is byte for byte `ustack_tests::random_bytes(seed, n)`: SplitMix64,
each output word little-endian.
"""

import sys

MASK = (1 << 64) - 1

TEXT = "hello, ustack ✓ — ünïcödé"
BINARY = bytes(range(256))
FRAGMENTS = ["frag-one|", "frag-two|", "frag-three"]
LARGE_SEED = 0x92_0001
LARGE_LEN = 1 << 20


def splitmix_bytes(seed, n):
    out = bytearray()
    state = seed
    for _ in range((n + 7) // 8):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        out += z.to_bytes(8, "little")
    return bytes(out[:n])


def require_websockets():
    try:
        import websockets  # noqa: F401
    except ImportError:
        print("Python `websockets` is missing: pip install websockets", file=sys.stderr)
        sys.exit(3)
