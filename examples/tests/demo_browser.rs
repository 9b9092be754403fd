//! A real browser against `ustack-demo`: headless Chromium loads the page over the TAP link,
//! sends a chat message, and the page shows it echoed back with the stack's counters above
//! zero. The browser is driven over the DevTools protocol by `tests/py/demo_browser.py`; its
//! screenshot is kept in `target/demo-artifacts/demo-browser.png` (not committed).
//!
//! Needs root (TAP, network namespace), `/usr/bin/chromium` (`apt-get install chromium`) and
//! Python 3 with `websockets`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use ustack_tests::{privileged, unique_name, NetNs, HOST_IP};

const CHROMIUM: &str = "/usr/bin/chromium";
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const URL: &str = "http://10.7.0.2:8080/";
/// How long the demo gets to print its banner, and to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The script's own steps time out after 20 s each; this only catches a hung script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

/// A child process that is killed (SIGKILL) and reaped if still running when dropped, so a
/// failing assertion never leaves a demo or a browser behind.
struct Guard {
    what: &'static str,
    child: Child,
}

impl Guard {
    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends `sig` to the child (by its pid; `ip netns exec` execs, so it is the program).
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits up to `timeout` for the child to exit.
    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => return None,
                Err(e) => panic!("cannot wait for {}: {e}", self.what),
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("killing {} (pid {})", self.what, self.pid());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads all of `r` on a thread, into a string.
fn collect(r: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(r).read_to_string(&mut s);
        s
    })
}

/// Forwards the lines of `r` over a channel, from a thread.
fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn is_png(path: &Path) -> (bool, usize) {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    (bytes.starts_with(b"\x89PNG\r\n\x1a\n"), bytes.len())
}

#[test]
fn chromium_chats_with_the_demo_over_tap() {
    if !privileged() {
        return;
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test drives a real browser; install it: apt-get install chromium"
    );
    let started = Instant::now();
    let workspace = Path::new(WORKSPACE)
        .canonicalize()
        .expect("the workspace directory");
    let artifacts = workspace.join("target/demo-artifacts");
    std::fs::create_dir_all(&artifacts)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", artifacts.display()));
    let shot = artifacts.join("demo-browser.png");
    let _ = std::fs::remove_file(&shot);

    // Declared before the guards, so the demo and the script are killed before the namespace
    // goes.
    let ns = NetNs::new();
    let tap = unique_name("ud");
    let mut demo = Guard {
        what: "ustack-demo",
        child: Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                env!("CARGO_BIN_EXE_ustack-demo"),
            ])
            .args([
                "--tap",
                &tap,
                "--host-cidr",
                "10.7.0.1/24",
                "--stack-ip",
                "10.7.0.2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start ustack-demo under `ip netns exec`"),
    };
    let demo_out = lines(demo.child.stdout.take().unwrap());
    let demo_err = collect(demo.child.stderr.take().unwrap());

    // Ready once the banner is out: the TAP exists and the stack is polling.
    let banner = format!("ustack-demo: ustack serves 10.7.0.2 on TAP {tap}");
    let deadline = Instant::now() + START_TIMEOUT;
    let mut stdout = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match demo_out.recv_timeout(left) {
            Ok(line) => {
                let ready = line.starts_with(&banner);
                stdout.push(line);
                if ready {
                    break;
                }
            }
            Err(e) => {
                let why = match e {
                    RecvTimeoutError::Timeout => "did not print its banner within 20 s",
                    RecvTimeoutError::Disconnected => "closed its stdout before the banner",
                };
                demo.signal(libc::SIGKILL);
                let status = demo.wait_timeout(START_TIMEOUT);
                panic!(
                    "ustack-demo {why} (status {status:?})\nstdout:\n{}\nstderr:\n{}",
                    stdout.join("\n"),
                    demo_err.join().unwrap_or_default()
                );
            }
        }
    }

    // The browser, in the same namespace as the TAP's host side.
    let script = workspace.join("tests/py/demo_browser.py");
    let mut browser = Guard {
        what: "demo_browser.py",
        child: Command::new("ip")
            .args(["netns", "exec", ns.name(), "python3"])
            .arg(&script)
            .arg(URL)
            .arg(&shot)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start python3 under `ip netns exec`"),
    };
    let script_out = collect(browser.child.stdout.take().unwrap());
    let script_err = collect(browser.child.stderr.take().unwrap());
    let status = match browser.wait_timeout(SCRIPT_TIMEOUT) {
        Some(status) => status,
        None => {
            // SIGTERM lets the script kill Chromium and delete its profile.
            browser.signal(libc::SIGTERM);
            browser.wait_timeout(Duration::from_secs(10));
            panic!(
                "demo_browser.py still running after {SCRIPT_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                script_out.join().unwrap_or_default(),
                script_err.join().unwrap_or_default()
            );
        }
    };
    let out = script_out.join().unwrap_or_default();
    let err = script_err.join().unwrap_or_default();
    assert!(
        status.success(),
        "demo_browser.py failed ({status})\nstdout:\n{out}\nstderr:\n{err}"
    );
    println!("demo_browser.py: {}", out.trim());
    let last = out.lines().last().unwrap_or_default();
    let seen: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the script's last line is not JSON ({e}): {last:?}"));

    let sent = seen["sent"].as_str().expect("`sent` in the script's JSON");
    assert!(!sent.is_empty());
    assert_eq!(seen["status"], "connected", "{seen}");
    assert_eq!(seen["text"].as_str(), Some(sent), "echoed text: {seen}");
    let from = seen["from"].as_str().unwrap_or_default();
    assert!(
        from.starts_with(&format!("{HOST_IP}:")),
        "the chat row's sender {from:?} should be the host side {HOST_IP}:PORT: {seen}"
    );
    let count = |key: &str| {
        seen[key]
            .as_u64()
            .unwrap_or_else(|| panic!("`{key}` is not an integer on the page: {seen}"))
    };
    assert!(count("frames_in") > 0, "{seen}");
    assert!(count("frames_out") > 0, "{seen}");
    assert!(count("ws_in") >= 1, "{seen}");

    let (png, size) = is_png(&shot);
    assert!(png, "{} is not a PNG", shot.display());
    assert!(
        size > 10_000,
        "{} is only {size} bytes: not a real screenshot",
        shot.display()
    );
    println!("screenshot: {} ({size} bytes)", shot.display());

    // SIGTERM: WebSockets closed, TAP removed, summary, exit 0.
    demo.signal(libc::SIGTERM);
    let status = demo.wait_timeout(START_TIMEOUT);
    if status.is_none() {
        demo.signal(libc::SIGKILL);
        demo.wait_timeout(START_TIMEOUT);
    }
    // The rest of its stdout, up to EOF (it has exited, so EOF comes at once).
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(line) = demo_out.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        stdout.push(line);
    }
    let stderr = demo_err.join().unwrap_or_default();
    let stdout = stdout.join("\n");
    assert!(
        matches!(status, Some(s) if s.success()),
        "ustack-demo should exit 0 after SIGTERM, got {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.lines().any(|l| l == format!("TAP {tap} removed")),
        "no `TAP {tap} removed` line\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    println!("took {:.1} s", started.elapsed().as_secs_f64());
}
