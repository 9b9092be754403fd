#!/usr/bin/env bash
# Bulk TCP benchmark: ustack vs plain smoltcp over TAP, kernel over veth as the ceiling.
#
#   sudo scripts/bench.sh                 # 1 GB per flow, all rows, median of 5 runs
#   sudo scripts/bench.sh --repeat 1      # extra arguments go to bench_tcp (see --help)
#   OUT=results.md sudo scripts/bench.sh
#   sudo scripts/bench.sh profile         # where the time goes: perf on the ustack and
#                                         # smoltcp rows, one direction at a time
#
# Builds bench_tcp in release mode (debug symbols are on in the release profile), runs it
# and tees the report (stdout and progress) to $OUT (default target/bench_tcp-<date>.md).
# Needs root: it creates network namespaces, TAP and veth interfaces, all of which bench_tcp
# removes again on exit, error or Ctrl-C.
set -euo pipefail

source "$(dirname "$0")/bench-common.sh"
bench_build bench_tcp
if [[ ${1:-} != profile ]]; then
    bench_report "$@"
fi

shift
if ! command -v perf >/dev/null; then
    echo "perf not found: apt-get install -y linux-perf (or linux-tools-\$(uname -r))" >&2
    exit 1
fi
# cpu-clock works in VMs without hardware counters. -a: the kernel's softirq work counts too.
for who in ustack smoltcp; do
    for dir in in out; do
        data=target/perf-$who-$dir.data
        echo "== perf: $who, --dir $dir" >&2
        perf record -q -a -e cpu-clock -F 4999 -g -o "$data" -- \
            "$BIN" --only "$who" --dir "$dir" --repeat 3 "$@" >/dev/null
        echo "### $who, $( [[ $dir == in ]] && echo 'kernel → userspace' || echo 'userspace → kernel')"
        python3 - "$data" <<'PY'
import collections, subprocess, sys
# Every sample of the userspace stack's thread (comm bench_tcp), by what it was doing.
data = sys.argv[1]
out = subprocess.run(["perf", "script", "-i", data, "--comms", "bench_tcp", "-F", "ip,sym,dso"],
                     capture_output=True, text=True, check=True).stdout
stacks = [b.strip().splitlines() for b in out.split("\n\n") if b.strip()]
def sym(frame):
    parts = frame.split(None, 1)
    return parts[1] if len(parts) > 1 else frame
def category(frames):
    syms = [sym(f) for f in frames]
    top = syms[0]
    if "kernel.kallsyms" not in frames[0]:
        if "memmove" in top or "memcpy" in top or "memset" in top: return "user: memcpy/memset"
        if "checksum" in top: return "user: checksums"
        if top.startswith("ustack::"): return "user: ustack (ingress classify, events)"
        if top.startswith("smoltcp::"): return "user: smoltcp TCP/IP"
        if top.startswith(("ustack_drivers", "bench_tcp")): return "user: TAP device, benchmark loop"
        return "user: libc (syscall wrappers, malloc)"
    joined = " ".join(syms)
    if "finish_task_switch" in top: return "kernel: scheduler (preempted or woken)"
    if "ksys_read" in joined: return "kernel: read(TAP), incl. work it triggers"
    if "ksys_write" in joined: return "kernel: write(TAP), incl. kernel TCP it runs"
    if "do_sys_poll" in joined or "do_select" in joined: return "kernel: poll/select"
    if "do_syscall_64" in joined: return "kernel: other syscalls"
    return "kernel: interrupts, softirq"
cats = collections.Counter(category(s) for s in stacks)
tops = collections.Counter(sym(s[0]).split(" (")[0][:100] for s in stacks)
n = len(stacks)
print(f"\n{n} samples of the bench_tcp thread at 4999 Hz = {n / 4999:.2f} CPU-s for 3 runs\n")
print("| share | where |\n|---:|---|")
for c, k in cats.most_common():
    print(f"| {100 * k / n:.1f}% | {c} |")
print("\n| self | symbol |\n|---:|---|")
for c, k in tops.most_common(12):
    print(f"| {100 * k / n:.1f}% | `{c}` |")
print()
PY
    done
done
