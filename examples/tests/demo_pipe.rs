//! `ustack-demo --pipe`: the services on one ustack, a scripted client on another, wired in
//! memory. It must pass its script and exit 0 anywhere, also as `nobody` on a machine without
//! `/dev/net/tun`; and without `--pipe`, an unprivileged user must be told in one line to use
//! sudo or `--pipe`.

use std::process::{Command, Output};

use ustack_tests::privileged;

const BIN: &str = env!("CARGO_BIN_EXE_ustack-demo");

/// `setpriv` arguments that turn root into nobody, without groups or capabilities.
const NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/// What each step of the script must report, verbatim.
const EXPECTED: &[&str] = &[
    // TCP echo: a line, then 64 KiB.
    "tcp echo    10.7.0.1:49152 -> 10.7.0.2:7     line of 38 B back, identical",
    "tcp echo    10.7.0.1:49152 -> 10.7.0.2:7     sent 65536 B, got 65536 B back, identical",
    // Length-prefixed echo.
    "-> 10.7.0.2:9000  4 packages (0, 4, 1460, 262144 B) back, same framing, identical",
    // UDP echo, unconnected.
    "-> 10.7.0.2:7     sent 14 B, got 14 B back from 10.7.0.2:7, identical",
    // Connected UDP: the open port passes the dial, the closed one is refused.
    "-> 10.7.0.2:7     reachable: the echo answered the probe; sent 24 B, got 24 B back from 10.7.0.2:7",
    "-> 10.7.0.2:9     refused: Error::ConnectionRefused (1 ICMP port unreachable came back)",
    // HTTP.
    "/        200 text/html; charset=utf-8,",
    "identical to page.html",
    "/stats   200 application/json,",
    "B of valid JSON: frames in ",
    "echoed 65574 B TCP, 3 UDP datagrams, 4 packages",
    "/nope    404",
    // WebSockets: three upgrades, the room's notices, a chat line seen by both members.
    "ws upgrade  alice 10.7.0.1:49160 -> ws://10.7.0.2:8080/chat  101 Switching Protocols; {\"type\":\"welcome\",\"you\":\"10.7.0.1:49160\",\"members\":1}",
    "ws upgrade  bob   10.7.0.1:49161 -> ws://10.7.0.2:8080/chat  101 Switching Protocols; {\"type\":\"welcome\",\"you\":\"10.7.0.1:49161\",\"members\":2}",
    "ws upgrade  alice got {\"type\":\"join\",\"who\":\"10.7.0.1:49161\",\"members\":2}",
    "ws upgrade  echo  10.7.0.1:49162 -> ws://10.7.0.2:8080/ws    101 Switching Protocols",
    "chat        alice got {\"type\":\"chat\",\"from\":\"10.7.0.1:49160\",\"text\":\"hello from alice, over ustack\",\"seq\":1}",
    "chat        bob   got {\"type\":\"chat\",\"from\":\"10.7.0.1:49160\",\"text\":\"hello from alice, over ustack\",\"seq\":1}",
    "chat        bob   got a stats push:",
    "ws echo     echo  text 21 B back as text, identical; binary 65536 B back as binary, identical",
    // Close 1000 by the client, the leave notice, close 1001 at the server's shutdown.
    "ws close    alice sends close 1000 \"bye\"; the server answers close 1000",
    "ws close    bob   got {\"type\":\"leave\",\"who\":\"10.7.0.1:49160\",\"members\":1}",
    "shutdown    bob   got close 1001 (going away)",
    "shutdown    echo  got close 1001 (going away)",
    "shutdown    every session closed",
    "; 0 lost,",
    "summary after ",
    "  sessions   9 opened (1 TCP echo, 1 length-prefixed, 1 /ws, 2 /chat), 9 closed, 0 errors",
    "  echoed     65574 B over TCP, 3 UDP datagrams, 4 length-prefixed packages",
    "  drops      none",
];

const LAST_LINE: &str = "pipe demo: all 11 steps passed";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs `program args`, without a RUST_LOG from the caller's environment.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Checks a successful run's transcript and returns it.
fn transcript(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "--pipe failed: {}",
        describe(out)
    );
    let t = text(&out.stdout);
    for want in EXPECTED {
        assert!(
            t.contains(want),
            "the transcript lacks {want:?}:\n{}",
            describe(out)
        );
    }
    assert_eq!(
        t.lines().last(),
        Some(LAST_LINE),
        "the transcript must end with {LAST_LINE:?}:\n{}",
        describe(out)
    );
    t
}

#[test]
fn pipe_demo_passes_its_script_and_exits_0() {
    let out = run(BIN, &["--pipe"], &[]);
    transcript(&out);
}

#[test]
fn pipe_demo_runs_as_nobody_without_dev_net_tun() {
    if !privileged() {
        return;
    }
    // A fresh mount namespace hides /dev/net under an empty tmpfs (unshare makes its mounts
    // private, so the host keeps its /dev/net/tun); then the demo runs as nobody, after the
    // shell checked that it really is nobody, without capabilities and without the device,
    // and that nobody can execute the binary at all.
    let outer = r#"mount -t tmpfs none /dev/net || exit 90
test ! -e /dev/net/tun || { echo "check: /dev/net/tun is still there under the tmpfs" >&2; exit 91; }
exec setpriv "$@" -- sh -c "$INNER" inner "$BIN""#;
    let inner = r#"test "$(id -u)" = 65534 || { echo "check: uid is $(id -u), not 65534" >&2; exit 92; }
grep -q '^CapEff:[[:space:]]*0*$' /proc/self/status || { echo "check: nobody still has capabilities" >&2; exit 93; }
test ! -e /dev/net/tun || { echo "check: nobody sees /dev/net/tun" >&2; exit 94; }
test -x "$1" || { echo "check: nobody cannot execute $1 (is a directory above it closed to others?)" >&2; exit 95; }
exec "$1" --pipe"#;
    let mut args = vec!["--mount", "sh", "-c", outer, "outer"];
    args.extend(NOBODY);
    let out = run("unshare", &args, &[("INNER", inner), ("BIN", BIN)]);
    assert!(
        !text(&out.stderr).contains("check: "),
        "the sandbox is not what the test needs: {}",
        describe(&out)
    );
    let as_nobody = transcript(&out);
    // The clock is simulated and the seeds are fixed, so the run is the same as any other.
    let as_caller = transcript(&run(BIN, &["--pipe"], &[]));
    assert_eq!(
        as_nobody, as_caller,
        "nobody's transcript differs from the caller's"
    );
}

#[test]
fn without_pipe_nobody_is_told_in_one_line_to_use_sudo_or_pipe() {
    if !privileged() {
        return;
    }
    // /dev/net/tun is there, but only root may open it. A network namespace of its own keeps
    // the root namespace untouched whatever happens.
    let mut args = vec!["--net", "setpriv"];
    args.extend(NOBODY);
    args.extend(["--", BIN]);
    let out = run("unshare", &args, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = text(&out.stderr);
    assert_eq!(
        err.lines().count(),
        1,
        "stderr must be one line: {}",
        describe(&out)
    );
    assert!(err.ends_with('\n'), "{}", describe(&out));
    for want in [
        "ustack-demo: ",
        "needs root or CAP_NET_ADMIN",
        "sudo",
        "--pipe",
    ] {
        assert!(
            err.contains(want),
            "stderr lacks {want:?}: {}",
            describe(&out)
        );
    }
    assert!(
        err.starts_with("ustack-demo: "),
        "stderr must start with `ustack-demo: `: {}",
        describe(&out)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may be printed to stdout when the TAP cannot be made: {}",
        describe(&out)
    );
}
