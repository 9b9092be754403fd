#!/usr/bin/env bash
# Fuzz smoke test, as CI runs it: every target for FUZZ_SECONDS (default 30) from the
# checked-in seeds. Exits non-zero, naming the input, if any target crashes, leaks, runs
# past FUZZ_TIMEOUT seconds on one input or past the 2 GiB RSS limit; prints each target's
# exec count, coverage and peak RSS, and a summary table at the end.
#
#   bash fuzz/smoke.sh                          # all targets, 30 s each
#   bash fuzz/smoke.sh 600                      # 10 minutes each (FUZZ_SECONDS=600 works too)
#   FUZZ_TARGETS=stack_ingress bash fuzz/smoke.sh   # default: every target (cargo fuzz list)
#
# Installs the nightly toolchain and cargo-fuzz if they are missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"

# Seconds per target: the first argument, else $FUZZ_SECONDS, else 30.
FUZZ_SECONDS="${1:-${FUZZ_SECONDS:-30}}"
case "$FUZZ_SECONDS" in
    '' | *[!0-9]*)
        echo "usage: bash fuzz/smoke.sh [SECONDS]  (seconds per target, a whole number; got '$FUZZ_SECONDS')" >&2
        exit 2
        ;;
esac
# Per-input limit: an input that runs this long is reported as a hang (a crash).
FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-10}"

say() { printf '[fuzz-smoke] %s\n' "$*"; }

say "nightly toolchain"
if ! rustup toolchain list | grep -q nightly; then
    say "installing nightly (minimal profile)"
    rustup toolchain install nightly --profile minimal
fi

say "cargo-fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (takes a few minutes)"
    cargo install cargo-fuzz --locked
fi
cargo +nightly fuzz --version
# Every target of fuzz/Cargo.toml unless told otherwise (each needs fuzz/seeds/<target>/).
FUZZ_TARGETS="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
say "targets: $(echo $FUZZ_TARGETS)"

# The recorded stack_ingress seeds only help while they still match the stack.
say "checking the seeds still replay (cargo test in fuzz/)"
cargo test --quiet --manifest-path fuzz/Cargo.toml

scratch="$(mktemp -d "${TMPDIR:-/tmp}/ustack-fuzz-smoke.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

failed=()
summary=()
for t in $FUZZ_TARGETS; do
    seeds="fuzz/seeds/$t"
    corpus="$scratch/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    log="$scratch/$t.log"
    mkdir -p "$corpus" "$artifacts"
    if [ ! -d "$seeds" ]; then
        say "FAIL $t: no seed directory $seeds"
        summary+=("$(printf '%-18s FAIL (no seeds)' "$t")")
        failed+=("$t")
        continue
    fi

    say "building $t"
    cargo +nightly fuzz build "$t"

    say "fuzzing $t for ${FUZZ_SECONDS}s ($(ls "$seeds" | wc -l) seeds)"
    before="$(ls "$artifacts")"
    set +e
    cargo +nightly fuzz run "$t" "$corpus" "$seeds" -- \
        -max_total_time="$FUZZ_SECONDS" \
        -rss_limit_mb=2048 \
        -timeout="$FUZZ_TIMEOUT" \
        -print_final_stats=1 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE|pulse)|==[0-9]+==|thread .* panicked|SUMMARY|stat::number_of_executed_units|stat::peak_rss_mb|Test unit written to|Done [0-9]+ runs)'
    status="${PIPESTATUS[0]}"
    set -e

    crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
    if [ -z "$crash" ]; then
        # A crash file that appeared during the run, if the log did not name it.
        for f in $(ls "$artifacts" | grep -E '^(crash|leak|timeout|oom)-' || true); do
            if ! grep -qxF "$f" <<<"$before"; then crash="$artifacts/$f"; fi
        done
    fi
    if [ "$status" -ne 0 ] || [ -n "$crash" ]; then
        # libFuzzer names the input after what went wrong: crash-, leak-, timeout-, oom-.
        kind="$(basename "${crash:-unknown-}" | cut -d- -f1)"
        say "FAIL $t: ${kind} (exit $status)"
        summary+=("$(printf '%-18s FAIL (%s)' "$t" "$kind")")
        sed -n '/panicked at\|ERROR: libFuzzer\|==[0-9]*==ERROR/,+25p' "$log" | head -n 60
        if [ -n "$crash" ]; then
            say "crash input: $crash"
            say "reproduce:   cargo +nightly fuzz run $t $crash"
            say "minimize:    cargo +nightly fuzz tmin $t $crash"
        fi
        failed+=("$t")
    else
        execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
        cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)"
        # Coverage after the seeds alone, to show what the run added.
        cov0="$(grep -m 1 -E 'INITED' "$log" | grep -oE 'cov: [0-9]+' | cut -d' ' -f2)"
        rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)"
        say "ok   $t: ${execs:-?} execs, ${cov:-cov: ?} (${cov0:-?} from the seeds alone), peak RSS ${rss:-?} MB, corpus $(ls "$corpus" | wc -l) new inputs"
        summary+=("$(printf '%-18s %12s execs  cov %6s -> %-6s %6s MB' "$t" "${execs:-?}" "${cov0:-?}" "${cov#cov: }" "${rss:-?}")")
    fi
done

say "summary (${FUZZ_SECONDS}s per target):"
printf '[fuzz-smoke]   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    say "crashed: ${failed[*]}"
    exit 1
fi
say "all targets ran ${FUZZ_SECONDS}s without a crash"
