#!/usr/bin/env bash
# Regenerates the pcap_replay fuzz seeds (fuzz/seeds/pcap_replay/): the crafted ones
# (empty, header only, truncated, forged length, over-MTU, raw-IP link type, big-endian
# nanoseconds) and, as root, the `real_*.pcap` ones: `examples/gen_pcap_seeds.rs` runs a
# ustack echo stack (the fuzz configuration, 10.0.0.1/24) on TAPs ufzpc0..2 whose host
# side (10.0.0.2/24) sits in a temporary network namespace, where ping and python3
# clients talk to it over ICMP, UDP and TCP while PcapRecorder records both directions.
#
#   sudo bash fuzz/seeds/regen_pcap.sh                 # from the repository root
#   bash fuzz/seeds/regen_pcap.sh --crafted-only       # no root needed
#
# Needs iproute2, ping and python3 for the recorded seeds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"

if [ "${1:-}" != "--crafted-only" ] && [ "$(id -u)" -ne 0 ]; then
    echo "[regen-pcap] run as root for the recorded seeds, or pass --crafted-only" >&2
    exit 1
fi
cargo run --quiet --example gen_pcap_seeds -- "$@"
