#!/usr/bin/env bash
# WebSocket benchmarks, ustack against tungstenite 0.30, in one run:
#   - criterion (examples/benches/ws.rs): the upgrade (request bytes in, 101 out; ns/op and
#     heap allocations per op) and reading frames (100 000 masked 20-byte text messages,
#     64 masked 1 MiB binary messages; msgs/s and GB/s);
#   - bench_ws: echo msgs/s over a virtual link, 100 connections × 20 B and × 16 KiB, ustack
#     WsServer over TAP against a tungstenite server on the kernel over veth, the same
#     tungstenite load client for both (median of 3 runs).
#
#   sudo scripts/bench_ws.sh                      # everything (about 6 minutes)
#   sudo scripts/bench_ws.sh --repeat 5           # extra arguments go to bench_ws (see --help)
#   CRITERION_ARGS="--measurement-time 2" sudo scripts/bench_ws.sh
#   OUT=results.md sudo scripts/bench_ws.sh
#
# Writes the raw criterion output, the bench_ws report and a summary table to $OUT (default
# target/bench_ws-<date>.md). Needs root for bench_ws (network namespaces, TAP and veth, all
# removed again on exit, error or Ctrl-C); the criterion part alone needs none:
#   cargo bench -p ustack-examples --bench ws
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/${0##*/} needs root (network namespaces, TAP and veth interfaces): run it with sudo" >&2
    exit 1
fi
cd "$(dirname "$0")/.."
OUT=${OUT:-target/bench_ws-$(date +%Y%m%d-%H%M%S).md}
mkdir -p "$(dirname "$OUT")"
CRIT_LOG=${OUT%.md}-criterion.txt
machine="$(nproc) CPUs, Linux $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

echo "== [1/4] building (release): bench_ws and the ws criterion bench" >&2
cargo build --release -p ustack-examples --bin bench_ws
cargo bench -p ustack-examples --bench ws --no-run

{
    echo "<!-- $(date -u +%FT%TZ); $machine; load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) -->"
    echo
} | tee "$OUT"

echo "== [2/4] criterion: upgrade and frames (raw output in $CRIT_LOG)" >&2
# Fresh estimates: criterion compares with the previous run's otherwise, which is noise here.
rm -rf target/criterion/upgrade_* target/criterion/frames_*
# shellcheck disable=SC2086 # CRITERION_ARGS is a list of flags
cargo bench -p ustack-examples --bench ws -- ${CRITERION_ARGS:-} 2>&1 | tee "$CRIT_LOG" \
    | grep --line-buffered -E '^(upgrade|frames)/[^ ]+$|time:|^ALLOCS|^(upgrade|frames)/[^:]+:' >&2

echo "== [3/4] summary of the criterion run" >&2
python3 - "$CRIT_LOG" <<'PY' | tee -a "$OUT"
import json, os, re, sys
log = open(sys.argv[1]).read()
allocs = {m[0]: float(m[1]) for m in re.findall(r'^ALLOCS (\S+) ([\d.]+) per op', log, re.M)}
root = 'target/criterion'
def est(group, bench):
    # criterion writes group "upgrade/rfc" as directory "upgrade_rfc"
    d = os.path.join(root, group.replace('/', '_'), bench, 'new')
    e = json.load(open(os.path.join(d, 'estimates.json')))
    return e['median']['point_estimate'], e['median']['confidence_interval']
print('### WebSocket upgrade: request in, 101 out (criterion median)\n')
print('| request | implementation | ns/op (95% CI) | allocations/op | ×ustack time |')
print('|---|---|---:|---:|---:|')
for req in ['rfc', 'browser']:
    g = f'upgrade/{req}'
    base = est(g, 'ustack')[0]
    for b in ['ustack', 'tungstenite-parts', 'tungstenite-accept_hdr']:
        t, ci = est(g, b)
        print(f"| {req} | {b} | {t:.0f} ({ci['lower_bound']:.0f}–{ci['upper_bound']:.0f}) | {allocs.get(g + '/' + b, float('nan')):.0f} | {t / base:.2f}× |")
print()
print('### WebSocket frames: read, unmask, validate (criterion median)\n')
print('| stream | implementation | ms/iteration | msgs/s | GB/s (payload) | allocations/iteration | ×tungstenite speed |')
print('|---|---|---:|---:|---:|---:|---:|')
for name, msgs, size in [('small-100k-x20B-text', 100_000, 20), ('large-64-x1MiB-binary', 64, 1 << 20)]:
    g = f'frames/{name}'
    tung = est(g, 'tungstenite')[0]
    for b in ['ustack', 'ustack-one-copy', 'tungstenite', 'memcpy-only']:
        t, _ = est(g, b)
        a = allocs.get(g + '/' + b)
        acell = '–' if a is None else f'{a:.0f}'
        mm = '–' if b == 'memcpy-only' else f'{msgs / t * 1e9:,.0f}'.replace(',', ' ')
        print(f"| {name} | {b} | {t / 1e6:.2f} | {mm} | {msgs * size / t:.2f} | {acell} | {tung / t:.2f}× |")
print()
PY

echo "== [4/4] bench_ws: echo over TAP (ustack) and veth (tungstenite)" >&2
set +e
RUST_LOG=${RUST_LOG:-info} target/release/bench_ws --repeat 3 "$@" | tee -a "$OUT"
status=${PIPESTATUS[0]}
echo "report written to $OUT (criterion output: $CRIT_LOG)" >&2
exit "$status"
