#!/usr/bin/env bash
# Connected `send` vs unconnected `send_to`: ustack over TAP and the kernel over veth to a
# kernel sink, and ustack's own CPU cost per datagram over the in-memory pipe, in one run.
#
#   sudo scripts/bench_udp.sh                  # 10^6 datagrams of 64 B per row, median of 5
#   sudo scripts/bench_udp.sh --repeat 9       # extra arguments go to bench_udp (see --help)
#   OUT=results.md sudo scripts/bench_udp.sh
#   sudo scripts/bench_udp.sh profile          # perf, per path and mode: where the sender's
#                                              # time goes, and what differs between the modes
#   PATHS=pipe COUNT=2000000 REPEAT=5 sudo scripts/bench_udp.sh profile
#
# Builds bench_udp in release mode (debug symbols are on in the release profile), runs it and
# tees the report (stdout and progress) to $OUT (default target/bench_udp-<date>.md).
# Needs root: it creates network namespaces, TAP and veth interfaces, all of which bench_udp
# removes again on exit, error or Ctrl-C. (`bench_udp --only pipe` alone needs no root.)
set -euo pipefail

source "$(dirname "$0")/bench-common.sh"
bench_build bench_udp
if [[ ${1:-} != profile ]]; then
    bench_report "$@"
fi

shift
if ! command -v perf >/dev/null; then
    echo "perf not found: apt-get install -y linux-perf (or linux-tools-\$(uname -r))" >&2
    exit 1
fi
COUNT=${COUNT:-1000000}
REPEAT=${REPEAT:-3}
# cpu-clock works in VMs without hardware counters; in a VM a sample taken while interrupts
# are disabled is charged where they are enabled again (`_raw_spin_unlock_irqrestore`,
# `handle_softirqs`), so read kernel self times as "kernel network path". Only the sending
# thread is summarised: the main thread (comm bench_udp) for ustack, `udp-sender` for the kernel.
for path in ${PATHS:-pipe tap kernel}; do
    comm=bench_udp
    [[ $path == kernel ]] && comm=udp-sender
    for mode in connected unconnected; do
        data=target/perf-udp-$path-$mode.data
        echo "== perf: $path, $mode" >&2
        perf record -q -e cpu-clock -F 4999 -g -o "$data" -- \
            "$BIN" --only "$path" --mode "$mode" --count $COUNT --repeat $REPEAT --pipe-repeat $REPEAT "$@" >/dev/null
    done
    python3 - "$path" "$comm" $COUNT $REPEAT <<'PY'
import collections, subprocess, sys
# Every sample of the sending thread: self time (innermost frame) and inclusive time (any
# frame), per symbol, in ns per datagram, for both modes.
path, comm, count, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
FREQ = 4999
# The pipe rows also send 50 000 untimed warm-up datagrams each.
datagrams = repeat * (count + (min(50000, count) if path == "pipe" else 0))
def sym(frame):
    parts = frame.split(None, 1)
    name = parts[1] if len(parts) > 1 else frame
    kernel = "kernel.kallsyms" in name
    name = name.rsplit(" (", 1)[0]
    return f"{name[:90]}{' [k]' if kernel else ''}"
def profile(mode):
    out = subprocess.run(["perf", "script", "-i", f"target/perf-udp-{path}-{mode}.data",
                          "--comms", comm, "-F", "ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    own, incl = collections.Counter(), collections.Counter()
    for block in out.split("\n\n"):
        frames = [sym(f) for f in block.strip().splitlines()]
        # The source-selection micro-benchmark is not part of sending.
        if not frames or any("source_selection_ns" in f for f in frames):
            continue
        own[frames[0]] += 1
        for f in set(frames) - {"[unknown]"}:  # user frames without frame pointers
            incl[f] += 1
    scale = 1e9 / FREQ / datagrams
    return ({k: v * scale for k, v in own.items()}, {k: v * scale for k, v in incl.items()})
(c, ci), (u, ui) = profile("connected"), profile("unconnected")
note = " (includes the sink's frame checks, which the benchmark does not time)" if path == "pipe" else ""
print(f"\n### {path}: sending thread (`{comm}`), ns per datagram under perf{note}\n")
print(f"total: connected {sum(c.values()):.0f}, unconnected {sum(u.values()):.0f} ns/datagram\n")
def table(title, a, b, keys):
    print(f"| {title} | connected | unconnected | unconnected − connected |\n|---|---:|---:|---:|")
    for k in keys:
        print(f"| `{k}` | {a.get(k, 0):.1f} | {b.get(k, 0):.1f} | {b.get(k, 0) - a.get(k, 0):+.1f} |")
    print()
both = set(c) | set(u)
table("self time", c, u, sorted(both, key=lambda k: -max(c.get(k, 0), u.get(k, 0)))[:15])
# Leave out the call path's trunk (syscall entry, udp_sendmsg, ...: over 40% of the thread),
# which carries every difference below it.
total = max(sum(c.values()), sum(u.values()))
both = [k for k in set(ci) | set(ui) if max(ci.get(k, 0), ui.get(k, 0)) < 0.4 * total]
table("inclusive (below the trunk), largest differences", ci, ui,
      sorted(both, key=lambda k: -abs(ui.get(k, 0) - ci.get(k, 0)))[:12])
PY
done
