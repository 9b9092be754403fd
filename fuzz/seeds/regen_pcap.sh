#!/usr/bin/env bash
# Regenerates the seeds that come from traffic recorded over a TAP, and the pcap_replay
# seeds. Two steps:
#
# 1. `examples/gen_pcap_seeds.rs` (root): writes the crafted pcap_replay seeds (empty,
#    header only, truncated, forged length, over-MTU, raw-IP link type, big-endian
#    nanoseconds) and records the `real_*.pcap` ones: ustack stacks with the fuzz
#    configuration (10.0.0.1/24, fd00::1/64) run on TAPs ufzpc0..5 whose host side
#    (10.0.0.2/24, fd00::2/64) sits in a temporary network namespace, where ping and python3
#    talk to them (echo over ICMP, UDP and TCP; the stack_ingress harness's own stack; session
#    engines with each codec; UDP to closed ports) while PcapRecorder records both
#    directions. The TAPs and the namespace are removed afterwards, also on failure.
# 2. `examples/split_pcap_seeds.rs` (no root): splits those captures, and the ws_frames
#    `real_*` seeds of regen_ws.sh, into `real_*` seeds of ingress_classify, stack_ingress,
#    session_codec, session_engine, udp_icmp and ws_deflate (replacing the old `real_*`).
#
#   sudo bash fuzz/seeds/regen_pcap.sh                 # from the repository root: both steps
#   bash fuzz/seeds/regen_pcap.sh --crafted-only       # no root: crafted pcaps, then split
#                                                      # the committed captures again
#
# Needs iproute2, ping and python3 for the recording. Run regen_ws.sh first if both are to
# be regenerated (the ws_deflate seeds come from its ws_frames seeds).
# `cargo test` in fuzz/ (tests/real_seeds.rs) checks the split seeds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"

if [ "${1:-}" != "--crafted-only" ] && [ "$(id -u)" -ne 0 ]; then
    echo "[regen-pcap] run as root for the recorded seeds, or pass --crafted-only" >&2
    exit 1
fi
cargo run --quiet --example gen_pcap_seeds -- "$@"
cargo run --quiet --example split_pcap_seeds
