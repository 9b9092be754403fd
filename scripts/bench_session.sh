#!/usr/bin/env bash
# Session layer benchmarks, in one run of one binary:
#   - echo msgs/s for 1, 10 and 100 sessions over a TAP: ustack inline (`Service`) and on the
#     task pool (`Pooled`, round-robin and ordered), against the kernel over veth with the same
#     codec (u32-BE length prefix) and the same kernel `std::net` clients; ping-pong and
#     pipelined; every thread on one CPU, and unpinned;
#   - the task pool's dispatch cost per task for the 1:N, 1:1 and M:N layouts (and std mpsc);
#   - heap bytes per idle session, 10 000 sessions over the in-memory pipe.
#
#   sudo scripts/bench_session.sh                     # the full run, median of 3 (about 7 minutes)
#   sudo scripts/bench_session.sh --duration 1        # extra arguments go to bench_session (see --help)
#   OUT=results.md sudo scripts/bench_session.sh
#
# Builds bench_session in release mode, runs it and tees the report (stdout and progress) to
# $OUT (default target/bench_session-<date>.md). bench_report passes --repeat 5; the --repeat 3
# after it wins (the last one counts), which keeps the run under 10 minutes. Needs root: the echo
# part creates network namespaces, TAP and veth interfaces, all of which bench_session removes
# again on exit, error or Ctrl-C. The other parts alone need no root:
#   target/release/bench_session --only pool,heap
set -euo pipefail

source "$(dirname "$0")/bench-common.sh"
bench_build bench_session
bench_report --repeat 3 "$@"
