//! Building the firmware and running it in QEMU on a TAP inside a namespace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use ustack_tests::{unique_name, NetNs, HOST_CIDR};

/// The line the firmware prints once its services listen.
const READY: &str = "ustack: 10.7.0.2/24 up";
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the release image (its own workspace and target directory) and returns its path.
pub fn build() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/firmware");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("firmware");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        // The outer `cargo test` sets these for the host; the firmware is cross-compiled.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("cannot run cargo to build the firmware");
    assert!(
        out.status.success(),
        "building examples/firmware failed; is the target installed? (`rustup target add thumbv7m-none-eabi`)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("thumbv7m-none-eabi/release/ustack-firmware")
}

/// QEMU running the firmware, attached to a TAP in a namespace. Dropping it kills QEMU and
/// deletes the TAP.
pub struct Firmware<'a> {
    ns: &'a NetNs,
    tap: String,
    qemu: Option<Child>,
    lines: Receiver<String>,
    log: String,
}

impl<'a> Firmware<'a> {
    /// Creates the TAP in `ns` (host side `HOST_CIDR`), boots `elf`, and waits for the
    /// firmware to say it is ready.
    pub fn boot(ns: &'a NetNs, elf: &Path) -> Firmware<'a> {
        assert!(
            Command::new("qemu-system-arm")
                .arg("--version")
                .output()
                .is_ok(),
            "qemu-system-arm is missing; install it: apt-get install qemu-system-arm"
        );
        let tap = unique_name("utfw");
        let mut fw = Firmware {
            ns,
            tap: tap.clone(),
            qemu: None,
            lines: mpsc::channel().1,
            log: String::new(),
        };
        for args in [
            vec!["ip", "tuntap", "add", "dev", &tap, "mode", "tap"],
            vec!["ip", "link", "set", &tap, "addrgenmode", "none"],
            vec!["ip", "addr", "add", HOST_CIDR, "dev", &tap],
            vec!["ip", "link", "set", &tap, "up"],
        ] {
            let out = ns.exec(args[0], &args[1..]);
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let nic = format!("tap,ifname={tap},script=no,downscript=no");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "qemu-system-arm"])
            .args(["-M", "mps2-an385", "-nographic", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-kernel")
            .arg(elf)
            .args(["-nic", &nic])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start qemu-system-arm");
        let (tx, rx) = mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        fw.qemu = Some(child);
        fw.lines = rx;
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while !fw.log.contains(READY) {
            if !fw.read_until(deadline) {
                panic!(
                    "the firmware did not report `{READY}` within {BOOT_TIMEOUT:?}; its output:\n{}",
                    fw.log
                );
            }
        }
        fw
    }

    /// Adds everything the firmware prints for the next `d` to the log (for output it
    /// prints periodically, like its stack report every 250 ms).
    pub fn read_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while self.read_until(deadline) {}
    }

    /// Adds one line to the log; false if none came before `deadline`.
    fn read_until(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.log.push_str(&line);
                self.log.push('\n');
                true
            }
            Err(_) => false,
        }
    }

    /// Kills QEMU and returns everything the firmware printed.
    pub fn stop(mut self) -> String {
        self.kill();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.log.push_str(&line);
            self.log.push('\n');
        }
        std::mem::take(&mut self.log)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.qemu.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Firmware<'_> {
    fn drop(&mut self) {
        self.kill();
        let _ = self.ns.exec("ip", &["link", "del", &self.tap]);
    }
}
