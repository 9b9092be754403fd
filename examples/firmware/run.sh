#!/usr/bin/env bash
# Builds the mps2-an385 firmware and boots it in QEMU on a fresh TAP interface.
#
#   examples/firmware/run.sh            # TAP "ustfw0", host side 10.7.0.1/24; Ctrl-A X quits
#
# Environment:
#   USTACK_TAP       TAP name (default ustfw0); pick a unique one to run several at once
#   USTACK_HOST_IP   host-side address of the TAP (default 10.7.0.1/24)
#   USTACK_NETNS     if set, a network namespace (created if missing, removed on exit if
#                    created here) that holds the TAP and runs QEMU: the host side of the
#                    link then lives only in that namespace
#   USTACK_TIMEOUT   if set, QEMU is killed after this many seconds
#   CARGO_TARGET_DIR honoured for the build
# Needs root (or sudo) for the TAP. The TAP (and a namespace it created) is always removed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAP="${USTACK_TAP:-ustfw0}"
HOST_IP="${USTACK_HOST_IP:-10.7.0.1/24}"
NETNS="${USTACK_NETNS:-}"
TARGET=thumbv7m-none-eabi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "run.sh: installing qemu-system-arm" >&2
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-system-arm
fi

rustup target add "$TARGET"
(cd "$HERE" && cargo build --release)
ELF="${CARGO_TARGET_DIR:-$HERE/target}/$TARGET/release/ustack-firmware"

# Runs a command in the namespace, if there is one.
in_ns() {
    if [ -n "$NETNS" ]; then
        $SUDO ip netns exec "$NETNS" "$@"
    else
        $SUDO "$@"
    fi
}

CREATED_NS=""
cleanup() {
    in_ns ip link del "$TAP" 2>/dev/null || true
    if [ -n "$CREATED_NS" ]; then
        $SUDO ip netns del "$NETNS" 2>/dev/null || true
    fi
}
QEMU_PID=""
# A signal to this script stops QEMU first, then the EXIT trap removes the TAP.
stop() {
    if [ -n "$QEMU_PID" ]; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    exit "$1"
}
trap cleanup EXIT
trap 'stop 130' INT
trap 'stop 143' TERM

if [ -n "$NETNS" ] && ! $SUDO ip netns list | grep -qw "$NETNS"; then
    $SUDO ip netns add "$NETNS"
    CREATED_NS=1
    in_ns ip link set lo up
fi
in_ns ip tuntap add dev "$TAP" mode tap
in_ns ip addr add "$HOST_IP" dev "$TAP"
in_ns ip link set "$TAP" up

QEMU=(qemu-system-arm -M mps2-an385 -nographic
    -semihosting-config enable=on,target=native
    -kernel "$ELF"
    -nic "tap,ifname=$TAP,script=no,downscript=no")
if [ -n "${USTACK_TIMEOUT:-}" ]; then
    QEMU=(timeout --foreground "$USTACK_TIMEOUT" "${QEMU[@]}")
fi
echo "run.sh: booting on $TAP (host ${HOST_IP}${NETNS:+, netns $NETNS}); Ctrl-A X quits" >&2
if [ -n "$NETNS" ]; then
    QEMU=(ip netns exec "$NETNS" "${QEMU[@]}")
fi
# In the background so that a signal reaches the traps at once; a simple command, so that $!
# is QEMU (or sudo, timeout, ip netns exec, which pass signals on or exec it). Stdin stays
# the terminal, so Ctrl-A X works.
$SUDO "${QEMU[@]}" <&0 &
QEMU_PID=$!
status=0
wait "$QEMU_PID" || status=$?
QEMU_PID=""
exit "$status"
