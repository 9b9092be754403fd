# Sourced by scripts/bench*.sh: the root check, the release build, and the report run.
#
#   bench_build NAME    checks for root, builds the NAME binary; sets BIN
#   bench_report ARGS   runs "$BIN --repeat 5 ARGS", teeing stdout and progress to $OUT
#                       (default target/NAME-<date>.md); exits with the binary's status

bench_build() {
    NAME=$1
    if [[ $(id -u) -ne 0 ]]; then
        echo "scripts/${0##*/} needs root (network namespaces, TAP and veth interfaces): run it with sudo" >&2
        exit 1
    fi
    cd "$(dirname "$0")/.."
    cargo build --release -p ustack-examples --bin "$NAME"
    BIN=target/release/$NAME
}

bench_report() {
    local machine status
    machine="$(nproc) CPUs, Linux $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    OUT=${OUT:-target/$NAME-$(date +%Y%m%d-%H%M%S).md}
    mkdir -p "$(dirname "$OUT")"
    {
        echo "<!-- $(date -u +%FT%TZ); $machine; load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) -->"
        echo "<!-- $BIN --repeat 5 $* -->"
    } | tee "$OUT"
    # Progress (stderr) goes to the file too; the exit status is the benchmark's.
    set +e
    RUST_LOG=${RUST_LOG:-info} "$BIN" --repeat 5 "$@" 2>&1 | tee -a "$OUT"
    status=${PIPESTATUS[0]}
    echo "report written to $OUT" >&2
    exit "$status"
}
