#!/usr/bin/env bash
# The benchmarks of the AF_PACKET / faster-TAP work, in one run, then the plot:
#   1. bench_pps: UDP echo and receive-only packets per second over veth for each AF_PACKET
#      mode and fanout, against the kernel's own UDP on the same veth; TCP round-trip
#      latency (p50/p99) of ustack (AF_PACKET, TAP; blocking and busy poll) and kernel TCP.
#   2. bench_tcp: bulk TCP, ustack over TAP (default, jumbo MTU, offload) and AF_PACKET,
#      against plain smoltcp and kernel TCP over veth, both directions.
#   3. scripts/plot_bench.py: docs/bench-afpacket.png from the CSV rows.
#
#   sudo scripts/bench_afpacket.sh                    # full run (a few minutes)
#   QUICK=1 sudo scripts/bench_afpacket.sh            # smoke run (short rows, 100 MB flows)
#   PPS_ARGS="--pin" TCP_ARGS="--afpacket-mode batched" sudo scripts/bench_afpacket.sh
#   OUTDIR=/tmp/b PLOT=/tmp/b/plot.png sudo scripts/bench_afpacket.sh
#
# Reports (stdout and progress of each binary) go to $OUTDIR (default target/bench):
# pps-<date>.md, tcp-<date>.md, and the CSV rows pps.csv, tcp.csv that the plot reads.
# Needs root: network namespaces, veth and TAP interfaces, AF_PACKET sockets; the binaries
# remove everything they create on exit, error or Ctrl-C.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/${0##*/} needs root (network namespaces, veth/TAP interfaces, AF_PACKET): run it with sudo" >&2
    exit 1
fi
cd "$(dirname "$0")/.."
cargo build --release -p ustack-examples --bin bench_pps --bin bench_tcp
BIN=${CARGO_TARGET_DIR:-target}/release
OUTDIR=${OUTDIR:-target/bench}
PLOT=${PLOT:-docs/bench-afpacket.png}
mkdir -p "$OUTDIR"
stamp=$(date +%Y%m%d-%H%M%S)
machine="$(nproc) CPUs, Linux $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

if [[ -n ${QUICK:-} ]]; then
    pps_args=(--duration 1 --warmup 0.3 --rtts 5000)
    tcp_args=(--bytes 100000000 --repeat 1)
else
    pps_args=()
    tcp_args=(--repeat "${REPEAT:-5}")
fi
# shellcheck disable=SC2206 # word splitting of the extra arguments is wanted
pps_args+=(${PPS_ARGS:-})
# shellcheck disable=SC2206
tcp_args+=(${TCP_ARGS:-})

run() { # run NAME REPORT ARGS...: header, then the binary's stdout and stderr into REPORT
    local name=$1 report=$2
    shift 2
    {
        echo "<!-- $(date -u +%FT%TZ); $machine; load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) -->"
        echo "<!-- $BIN/$name $* -->"
    } | tee "$report"
    RUST_LOG=${RUST_LOG:-info} "$BIN/$name" "$@" 2>&1 | tee -a "$report"
    return "${PIPESTATUS[0]}"
}

status=0
run bench_pps "$OUTDIR/pps-$stamp.md" --csv "$OUTDIR/pps.csv" "${pps_args[@]}" || status=$?
run bench_tcp "$OUTDIR/tcp-$stamp.md" --csv "$OUTDIR/tcp.csv" "${tcp_args[@]}" || status=$?
python3 scripts/plot_bench.py --csv-dir "$OUTDIR" --out "$PLOT" || status=$?

echo >&2
echo "reports: $OUTDIR/pps-$stamp.md $OUTDIR/tcp-$stamp.md" >&2
echo "CSV:     $OUTDIR/pps.csv $OUTDIR/tcp.csv" >&2
echo "plot:    $PLOT" >&2
exit "$status"
