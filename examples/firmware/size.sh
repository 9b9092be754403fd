#!/usr/bin/env bash
# Size report of the firmware: .text/.data/.bss of the release image, and code by crate.
#
#   examples/firmware/size.sh            # builds (release, opt-level "s"), then reports
#
# Uses llvm-size/llvm-nm from PATH (Debian's `llvm`), or from rustup's llvm-tools component
# (installed if neither is there). The by-crate table sums the sizes of code symbols by the
# first path segment of their demangled names; after LTO, code inlined into the firmware's
# own functions counts as `ustack_firmware`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET=thumbv7m-none-eabi
rustup target add "$TARGET" >/dev/null 2>&1
(cd "$HERE" && cargo build --release --quiet)
ELF="${CARGO_TARGET_DIR:-$HERE/target}/$TARGET/release/ustack-firmware"

tool() {
    if command -v "$1" >/dev/null; then
        echo "$1"
        return
    fi
    local dir
    dir="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
    if [[ ! -x $dir/$1 ]]; then
        rustup component add llvm-tools >/dev/null
    fi
    echo "$dir/$1"
}
SIZE=$(tool llvm-size)
NM=$(tool llvm-nm)

echo "## $ELF"
echo
"$SIZE" -A "$ELF" | awk '$1 ~ /^\.(vector_table|text|rodata|data|bss|uninit)$/ { printf "%-14s %8d bytes\n", $1, $2 }'
echo
echo "code by crate (bytes of text symbols):"
"$NM" --print-size --size-sort --radix=d -C "$ELF" | python3 -c '
import re, sys, collections
sizes = collections.Counter()
for line in sys.stdin:
    parts = line.split(None, 3)
    if len(parts) < 4 or parts[2] not in "tT":
        continue
    name = parts[3].strip()
    # Trait impls keep the legacy mangling ($LT$ = <, $u20$ = space, .. = ::); undo it.
    for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$RF$", "&"), ("$C$", ","), ("..", "::")):
        name = name.replace(a, b)
    name = name.lstrip("_<&").removeprefix("mut ").removeprefix("dyn ")
    crate = re.split(r"::|<| as |,", name)[0] or "?"
    if crate.startswith(("aeabi", "mem")) or crate in ("u16", "u32", "u64", "i32", "i64"):
        crate = "compiler_builtins / core ints"
    elif crate[:1].isupper() or crate in ("main", "etext", "stext", "pre_init"):
        crate = "cortex_m_rt (vectors, handlers)"
    sizes[crate] += int(parts[1])
for crate, n in sizes.most_common(12):
    print(f"  {crate:32} {n:8d}")
rest = sum(n for _, n in sizes.most_common()[12:])
if rest:
    other = "(others)"
    print(f"  {other:32} {rest:8d}")
total = "total"
print(f"  {total:32} {sum(sizes.values()):8d}")
'
