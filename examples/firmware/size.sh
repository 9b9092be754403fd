#!/usr/bin/env bash
# Size report of the firmware (release, opt-level "s"): sections of the full image and of
# the baseline (same board, no network stack), the difference, and code by crate.
#
#   examples/firmware/size.sh            # builds both images, then reports
#   examples/firmware/size.sh module     # also code by module
#
# Code by crate comes from attribute.py, which follows inlining through the debug line
# tables (symbol sizes would charge most of ustack to the firmware's main after LTO).
# Needs llvm-size, llvm-objdump and llvm-symbolizer: Debian's `llvm` package, installed if
# llvm-symbolizer is missing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET=thumbv7m-none-eabi
DEPTH="${1:-}"

if ! command -v llvm-symbolizer >/dev/null; then
    echo "size.sh: installing Debian's llvm (llvm-size, llvm-objdump, llvm-symbolizer)" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends llvm
fi
rustup target add "$TARGET" >/dev/null 2>&1
(cd "$HERE" && cargo build --release --quiet --bins)
OUT="${CARGO_TARGET_DIR:-$HERE/target}/$TARGET/release"

section() { llvm-size -A "$1" | awk -v s="$2" '$1 == s { print $2 }'; }

printf '%-14s %14s %10s %10s\n' section ustack-firmware baseline difference
for s in .vector_table .text .rodata .data .bss; do
    full=$(section "$OUT/ustack-firmware" "$s")
    base=$(section "$OUT/baseline" "$s")
    printf '%-14s %14d %10d %10d\n' "$s" "${full:-0}" "${base:-0}" $((${full:-0} - ${base:-0}))
done
tables="$(mktemp)"
trap 'rm -f "$tables"' EXIT
echo
echo "ustack-firmware, code by layer (bytes of .text):"
python3 "$HERE/attribute.py" "$OUT/ustack-firmware" layer 20 | tee "$tables"
# The issue's measure: stack, sessions and WebSocket together.
awk '$1 ~ /^(TCP\/IP|sessions|WebSocket|heapless)/ { n += $NF }
     END { printf "  = stack + session + WebSocket: %d bytes (%.1f KiB)\n", n, n / 1024 }' "$tables"
echo
echo "ustack-firmware, code by crate:"
python3 "$HERE/attribute.py" "$OUT/ustack-firmware" crate 20
if [ "$DEPTH" = module ]; then
    echo
    echo "ustack-firmware, code by module:"
    python3 "$HERE/attribute.py" "$OUT/ustack-firmware" module 60
fi
