//! Shared harness for ustack integration tests.
//!
//! - [`privileged`]: gate for tests that need root, `/dev/net/tun` and iproute2.
//! - [`NetNs`]: a throw-away network namespace, deleted on drop.
//! - [`TapLink`]: a TAP interface whose host side lives in its own namespace
//!   at [`HOST_IP`], with ustack expected at [`STACK_IP`]. Every test gets its
//!   own namespace, so addresses never collide and nothing leaves the machine.
//! - [`unique_name`]: interface / namespace names unique across parallel
//!   tests and processes.
//! - [`SeededRng`] / [`random_bytes`]: reproducible test data without extra
//!   crates.
//!
//! # Example
//!
//! ```no_run
//! use ustack_tests::{privileged, TapLink, STACK_IP};
//!
//! if !privileged() {
//!     return;
//! }
//! let mut link = TapLink::new();
//! let device = link.take_device();
//! // Build a ustack Stack on `device` with STACK_IP / STACK_MAC, then talk to
//! // it from the host side:
//! link.ns.run(|| {
//!     let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
//!     sock.send_to(b"hi", (STACK_IP, 7)).unwrap();
//! });
//! # drop(device);
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::Duration;

use ustack_drivers::iproute::enter_netns;
use ustack_drivers::{TapBuilder, TapDevice};

/// Host-side address of a [`TapLink`] (inside its namespace).
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 1);
/// Address the ustack under test is expected to use on a [`TapLink`].
pub const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 2);
/// Prefix length of the [`TapLink`] IPv4 subnet.
pub const PREFIX_LEN: u8 = 24;
/// [`HOST_IP`] with [`PREFIX_LEN`], as `ip addr add` takes it.
pub const HOST_CIDR: &str = "10.7.0.1/24";
/// Host-side IPv6 address of a [`TapLink::with_ipv6`] link.
pub const HOST_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, 1);
/// IPv6 address the ustack under test is expected to use on an IPv6 link.
pub const STACK_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, 2);
/// Prefix length of the [`TapLink`] IPv6 subnet.
pub const PREFIX_LEN6: u8 = 64;
/// [`HOST_IP6`] with [`PREFIX_LEN6`], as `ip addr add` takes it.
pub const HOST_CIDR6: &str = "fd00:7::1/64";
/// MAC address the ustack under test is expected to use (locally
/// administered, unicast).
pub const STACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Environment variable that makes [`privileged`] return `false`.
pub const SKIP_PRIVILEGED_ENV: &str = "USTACK_SKIP_PRIVILEGED";

/// Linux capability numbers from `<linux/capability.h>`.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Longest interface name Linux accepts.
const MAX_IFNAME: usize = 15;

/// Whether privileged tests should run.
///
/// Returns `false` (after printing `skipped: USTACK_SKIP_PRIVILEGED=1` to
/// stderr) when `USTACK_SKIP_PRIVILEGED=1`. Otherwise checks that the
/// process has CAP_NET_ADMIN and CAP_SYS_ADMIN (root has both), that
/// `/dev/net/tun` exists and that `ip` (iproute2) runs, and panics with what
/// to fix if not: a privileged test that silently passes would hide bugs.
/// Also installs `env_logger` for the test (honouring `RUST_LOG`).
///
/// # Panics
///
/// When the environment cannot run privileged tests and they were not
/// skipped explicitly.
///
/// # Example
///
/// ```no_run
/// #[test]
/// fn talks_over_tap() {
///     if !ustack_tests::privileged() {
///         return;
///     }
///     // ...
/// }
/// ```
pub fn privileged() -> bool {
    let _ = env_logger::builder().is_test(true).try_init();
    if std::env::var(SKIP_PRIVILEGED_ENV).as_deref() == Ok("1") {
        eprintln!("skipped: {SKIP_PRIVILEGED_ENV}=1");
        return false;
    }
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    match CHECK.get_or_init(check_privileges) {
        Ok(()) => true,
        Err(problems) => panic!(
            "privileged tests cannot run here:\n{problems}\nfix the above, or set {SKIP_PRIVILEGED_ENV}=1 to skip these tests"
        ),
    }
}

fn check_privileges() -> Result<(), String> {
    let mut problems = Vec::new();
    match effective_caps() {
        Some(caps) => {
            for (bit, name) in [(CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")] {
                if caps & (1 << bit) == 0 {
                    problems.push(format!(
                        "  - missing {name}: run the tests as root (e.g. `sudo -E cargo test`) or grant CAP_NET_ADMIN and CAP_SYS_ADMIN"
                    ));
                }
            }
        }
        // SAFETY: geteuid has no preconditions.
        None if unsafe { libc::geteuid() } != 0 => problems.push(
            "  - not root: run the tests as root (e.g. `sudo -E cargo test`) or grant CAP_NET_ADMIN and CAP_SYS_ADMIN".into(),
        ),
        None => {}
    }
    if !Path::new("/dev/net/tun").exists() {
        problems.push(
            "  - /dev/net/tun is missing: load the tun module (`modprobe tun`) or create it (`mknod /dev/net/tun c 10 200`)".into(),
        );
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => problems.push(format!(
            "  - `ip -V` failed ({}): install iproute2",
            out.status
        )),
        Err(e) => problems.push(format!("  - cannot run `ip` ({e}): install iproute2")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The effective capability set from `/proc/self/status`, if readable.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// A name of at most 15 bytes (the Linux interface-name limit) that is unique
/// across threads and processes: the letters of `prefix`, the process id,
/// `x`, and a per-process counter in base 36, e.g. `ut4242x1b`.
///
/// Only ASCII letters of `prefix` are kept (so the digits that follow can
/// never be confused with it), and it is shortened if the whole name would
/// exceed 15 bytes. An empty result falls back to `u`.
///
/// # Example
///
/// ```
/// let a = ustack_tests::unique_name("ut");
/// let b = ustack_tests::unique_name("ut");
/// assert_ne!(a, b);
/// assert!(a.len() <= 15 && a.starts_with("ut"));
/// ```
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("{}x{}", std::process::id(), base36(n));
    let mut letters: String = prefix.chars().filter(char::is_ascii_alphabetic).collect();
    letters.truncate(MAX_IFNAME.saturating_sub(suffix.len()));
    if letters.is_empty() {
        letters.push('u');
    }
    format!("{letters}{suffix}")
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Runs `ip args...`; the error quotes the command and its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    ustack_drivers::iproute::ip(None, args)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A named network namespace (as `ip netns` manages them) that is deleted
/// when dropped, also while unwinding from a failed assertion.
///
/// Use [`run`](Self::run) / [`spawn`](Self::spawn) to execute Rust code inside
/// it and [`exec`](Self::exec) for programs. Sockets created inside stay in
/// the namespace for their whole life, even when moved to other threads.
///
/// # Example
///
/// ```no_run
/// use ustack_tests::NetNs;
///
/// let ns = NetNs::new();
/// let out = ns.exec("ip", &["-br", "link"]);
/// assert!(String::from_utf8_lossy(&out.stdout).contains("lo"));
/// ```
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with a [`unique_name`] and its loopback up.
    ///
    /// # Panics
    ///
    /// When `ip netns add` fails (usually missing privileges; call
    /// [`privileged`] first).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let ns = ustack_tests::NetNs::new();
    /// println!("created {}", ns.name());
    /// ```
    pub fn new() -> NetNs {
        // Names embed the pid, so one left behind by a killed test run can
        // collide with ours; a fresh counter value avoids it.
        let mut last_err = String::new();
        for _ in 0..5 {
            let name = unique_name("utns");
            match ip(&["netns", "add", &name]) {
                Ok(()) => {
                    let ns = NetNs { name };
                    if let Err(e) = ip(&["-n", &ns.name, "link", "set", "lo", "up"]) {
                        panic!("cannot bring up loopback in namespace {}: {e}", ns.name);
                    }
                    return ns;
                }
                Err(e) => last_err = e,
            }
        }
        panic!("cannot create a network namespace: {last_err}; run as root or grant CAP_SYS_ADMIN");
    }

    /// The namespace name, as listed by `ip netns list`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let ns = ustack_tests::NetNs::new();
    /// assert!(ns.name().starts_with("utns"));
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's bind-mount path (`/var/run/netns/NAME`), usable with
    /// `setns(2)`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let ns = ustack_tests::NetNs::new();
    /// assert!(ns.path().exists());
    /// ```
    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// Runs `f` on a new thread that has entered this namespace and returns
    /// its result. A panic in `f` is propagated to the caller.
    ///
    /// # Panics
    ///
    /// If the thread cannot enter the namespace, or if `f` panics.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::net::UdpSocket;
    ///
    /// let ns = ustack_tests::NetNs::new();
    /// // Bound inside the namespace; keeps living there after `run` returns.
    /// let sock = ns.run(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    /// sock.send_to(b"x", sock.local_addr().unwrap()).unwrap();
    /// ```
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let name = self.name.clone();
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                enter_netns(&name).unwrap_or_else(|e| panic!("{e}"));
                f()
            });
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts `f` on a new thread that has entered this namespace, e.g. a
    /// server that must keep running while the test drives the stack.
    ///
    /// The thread panics (visible through [`JoinHandle::join`]) if it cannot
    /// enter the namespace. The namespace is only removed once such threads
    /// have finished, even if the `NetNs` is dropped earlier.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::net::TcpListener;
    ///
    /// let ns = ustack_tests::NetNs::new();
    /// let server = ns.spawn(|| {
    ///     let listener = TcpListener::bind("0.0.0.0:8080").unwrap();
    ///     let (_conn, peer) = listener.accept().unwrap();
    ///     peer
    /// });
    /// // ... connect from ustack, then:
    /// let peer = server.join().unwrap();
    /// ```
    pub fn spawn<T, F>(&self, f: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let name = self.name.clone();
        std::thread::spawn(move || {
            enter_netns(&name).unwrap_or_else(|e| panic!("{e}"));
            f()
        })
    }

    /// Runs `program args...` inside the namespace (`ip netns exec`) and
    /// returns its output, whatever its exit status.
    ///
    /// # Panics
    ///
    /// If `ip` cannot be started at all.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let ns = ustack_tests::NetNs::new();
    /// let out = ns.exec("ping", &["-c1", "-W1", "127.0.0.1"]);
    /// assert!(out.status.success());
    /// ```
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `ip netns exec {} {program}`: {e}; install iproute2",
                    self.name
                )
            })
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "warning: cannot delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// A TAP interface whose host side sits in its own [`NetNs`] with address
/// [`HOST_CIDR`] (and loopback up), ready for a ustack at [`STACK_IP`] /
/// [`STACK_MAC`].
///
/// The host side has IPv6 autoconfiguration off, so the kernel sends no
/// router solicitations, DAD or MLD frames on its own: on a [`new`](Self::new)
/// link every frame the stack sees was caused by the test. (A
/// [`with_ipv6`](Self::with_ipv6) link additionally carries two MLDv2
/// reports, ICMPv6 type 143, in its first second.)
///
/// Dropping the link removes the interface (if the device was not taken)
/// and the namespace; a taken device that outlives the link just stops
/// receiving.
///
/// # Example
///
/// ```no_run
/// use ustack_tests::{privileged, TapLink};
///
/// if privileged() {
///     let mut link = TapLink::new();
///     let device = link.take_device();
///     println!("{} in {}", device.name(), link.ns.name());
/// }
/// ```
#[derive(Debug)]
pub struct TapLink {
    /// The namespace holding the host side.
    pub ns: NetNs,
    /// The ustack side; `None` once [`take_device`](Self::take_device) was
    /// called.
    pub device: Option<TapDevice>,
    name: String,
}

impl TapLink {
    /// Creates the namespace and an IPv4-only link.
    ///
    /// # Panics
    ///
    /// When the namespace or TAP cannot be created; call [`privileged`]
    /// first.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let link = ustack_tests::TapLink::new();
    /// assert!(link.device.is_some());
    /// ```
    pub fn new() -> TapLink {
        Self::build(false)
    }

    /// Like [`new`](Self::new), but the host side also has [`HOST_CIDR6`]
    /// (added without DAD, usable at once) for tests that expect the stack
    /// at [`STACK_IP6`]. Expect two unsolicited MLDv2 reports (ICMPv6 type
    /// 143) from the host within about a second; smoltcp ignores them.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let link = ustack_tests::TapLink::with_ipv6();
    /// let out = link.ns.exec("ip", &["-6", "addr"]);
    /// assert!(String::from_utf8_lossy(&out.stdout).contains("fd00:7::1"));
    /// ```
    pub fn with_ipv6() -> TapLink {
        Self::build(true)
    }

    fn build(ipv6: bool) -> TapLink {
        let ns = NetNs::new();
        let name = unique_name("utap");
        let mut builder = TapBuilder::new(&name)
            .netns(ns.name())
            .host_addr(HOST_CIDR)
            .ipv6_autoconf(false);
        if ipv6 {
            builder = builder.host_addr(HOST_CIDR6);
        }
        let device = builder
            .create()
            .unwrap_or_else(|e| panic!("cannot create TAP link: {e}"));
        TapLink {
            ns,
            device: Some(device),
            name,
        }
    }

    /// Takes the device out, e.g. to move it into a ustack `Stack`.
    ///
    /// # Panics
    ///
    /// If the device was already taken.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let mut link = ustack_tests::TapLink::new();
    /// let device = link.take_device();
    /// assert!(link.device.is_none());
    /// # drop(device);
    /// ```
    pub fn take_device(&mut self) -> TapDevice {
        self.device
            .take()
            .expect("TapLink::take_device called twice; the device was already taken")
    }

    /// The TAP interface name (also valid after the device was taken).
    ///
    /// # Example
    ///
    /// ```no_run
    /// let link = ustack_tests::TapLink::new();
    /// let out = link.ns.exec("ip", &["link", "show", link.name()]);
    /// assert!(out.status.success());
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for TapLink {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TapLink {
    fn drop(&mut self) {
        // Remove the interface before the namespace: the other order also
        // works (the kernel deletes a TAP with its namespace) but leaves a
        // confusing "cannot open network namespace" line in debug logs.
        drop(self.device.take());
    }
}

/// Waits until `fd` is readable or `timeout` passes; `true` if readable.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// let mut link = ustack_tests::TapLink::new();
/// let device = link.take_device();
/// if ustack_tests::wait_readable(&device, Duration::from_millis(100)) {
///     // a frame is waiting
/// }
/// ```
pub fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let raw: RawFd = fd.as_raw_fd();
    let mut pfd = libc::pollfd {
        fd: raw,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid, initialised pollfd that outlives the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    rc > 0 && pfd.revents & libc::POLLIN != 0
}

/// A small, fast, reproducible random number generator (SplitMix64) for test
/// data. Not for cryptography.
///
/// # Example
///
/// ```
/// use ustack_tests::SeededRng;
///
/// let mut a = SeededRng::new(7);
/// let mut b = SeededRng::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator whose output depends only on `seed`.
    ///
    /// # Example
    ///
    /// ```
    /// let mut rng = ustack_tests::SeededRng::new(42);
    /// let _ = rng.next_u64();
    /// ```
    pub fn new(seed: u64) -> SeededRng {
        SeededRng { state: seed }
    }

    /// The next 64 random bits.
    ///
    /// # Example
    ///
    /// ```
    /// let mut rng = ustack_tests::SeededRng::new(0);
    /// assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`0` when `bound` is `0`), e.g. for random
    /// segment sizes.
    ///
    /// # Example
    ///
    /// ```
    /// let mut rng = ustack_tests::SeededRng::new(1);
    /// assert!(rng.below(10) < 10);
    /// ```
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift keeps the bias negligible for test purposes.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Fills `buf` with random bytes.
    ///
    /// # Example
    ///
    /// ```
    /// let mut buf = [0u8; 5];
    /// ustack_tests::SeededRng::new(3).fill(&mut buf);
    /// ```
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// `len` reproducible random bytes derived from `seed`.
///
/// # Example
///
/// ```
/// let data = ustack_tests::random_bytes(9, 1000);
/// assert_eq!(data, ustack_tests::random_bytes(9, 1000));
/// assert_eq!(data.len(), 1000);
/// ```
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    SeededRng::new(seed).fill(&mut out);
    out
}

/// Fails with what to install when Python's `websockets` library, the WebSocket tests' real
/// peer, is missing (`.ci/run` installs it).
pub fn require_websockets() {
    let out = Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3 and `pip install websockets`")
        });
    assert!(
        out.status.success(),
        "Python `websockets` is missing: pip install websockets ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{Device, RxToken, TxToken};
    use smoltcp::time::Instant;
    use smoltcp::wire::{ArpOperation, EthernetAddress};
    use std::collections::HashSet;
    use std::net::UdpSocket;
    use std::time::Instant as StdInstant;

    #[test]
    fn unique_names_are_short_and_distinct() {
        let names: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..200).map(|_| unique_name("ut")).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let set: HashSet<&String> = names.iter().collect();
        assert_eq!(set.len(), names.len());
        for name in &names {
            assert!(name.len() <= 15, "{name}");
            assert!(name.starts_with("ut"), "{name}");
        }
        let long = unique_name("a-very-long-prefix-indeed");
        assert!(long.len() <= 15 && long.starts_with("avery"), "{long}");
        assert!(unique_name("42").starts_with('u'));
    }

    #[test]
    fn rng_is_deterministic_and_matches_splitmix64() {
        let mut rng = SeededRng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(random_bytes(5, 100), random_bytes(5, 100));
        assert_ne!(random_bytes(5, 100), random_bytes(6, 100));
        // Lengths that are not multiples of 8 are filled completely.
        let a = random_bytes(5, 13);
        assert_eq!(&a[..], &random_bytes(5, 100)[..13]);
        let mut rng = SeededRng::new(11);
        assert!((0..1000).all(|_| rng.below(7) < 7));
        assert_eq!(rng.below(0), 0);
    }

    fn netns_inode() -> std::fs::Metadata {
        std::fs::metadata("/proc/thread-self/ns/net").unwrap()
    }

    #[test]
    fn netns_run_spawn_exec_and_drop() {
        if !privileged() {
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let ns = NetNs::new();
        let path = ns.path();
        assert!(path.exists());
        let outside = netns_inode().ino();
        let inside = ns.run(|| netns_inode().ino());
        assert_ne!(outside, inside);
        assert_eq!(
            ns.spawn(move || netns_inode().ino()).join().unwrap(),
            inside
        );
        assert_eq!(netns_inode().ino(), outside, "caller must stay outside");

        // Loopback is up inside; a socket made there keeps working here.
        let sock = ns.run(|| UdpSocket::bind("127.0.0.1:0").unwrap());
        sock.send_to(b"loop", sock.local_addr().unwrap()).unwrap();
        let mut buf = [0; 8];
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(sock.recv(&mut buf).unwrap(), 4);

        let out = ns.exec("ip", &["-br", "link", "show", "lo"]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("UNKNOWN")
                || String::from_utf8_lossy(&out.stdout).contains("UP")
        );

        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ns.run(|| panic!("inside"))));
        assert!(caught.is_err(), "panics inside run must reach the caller");

        drop(ns);
        assert!(!path.exists(), "namespace must be deleted on drop");
    }

    #[test]
    fn netns_is_deleted_when_the_test_panics() {
        if !privileged() {
            return;
        }
        let mut path = PathBuf::new();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ns = NetNs::new();
            path = ns.path();
            panic!("test failure");
        }));
        assert!(result.is_err());
        assert!(!path.as_os_str().is_empty() && !path.exists());
    }

    /// Polls `device` until a frame matching `want` arrives or 3 s pass.
    fn wait_for_frame(device: &mut TapDevice, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let deadline = StdInstant::now() + Duration::from_secs(3);
        while StdInstant::now() < deadline {
            wait_readable(device, Duration::from_millis(50));
            while let Some((rx, _tx)) = device.receive(Instant::ZERO) {
                let frame = rx.consume(|f| f.to_vec());
                if want(&frame) {
                    return Some(frame);
                }
            }
        }
        None
    }

    fn is_arp_request_for(frame: &[u8], ip: Ipv4Addr) -> bool {
        frame.len() >= 42
            && frame[12..14] == [0x08, 0x06]
            && frame[20..22] == [0, 1]
            && frame[38..42] == ip.octets()
    }

    #[test]
    fn tap_link_delivers_host_traffic_to_the_device() {
        if !privileged() {
            return;
        }
        let mut link = TapLink::new();
        let name = link.name().to_owned();
        let ns_path = link.ns.path();
        let mut device = link.take_device();
        assert_eq!(device.name(), name);
        let out = link.ns.exec("ip", &["-4", "addr", "show", "dev", &name]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(HOST_CIDR));

        // Any traffic to STACK_IP makes the host ARP for it first.
        link.ns.run(|| {
            let sock = UdpSocket::bind((HOST_IP, 0)).unwrap();
            sock.send_to(b"hello", (STACK_IP, 9)).unwrap();
        });
        let arp = wait_for_frame(&mut device, |f| is_arp_request_for(f, STACK_IP))
            .expect("an ARP request for STACK_IP");
        assert_eq!(arp[28..32], HOST_IP.octets());

        // Answering it releases the queued datagram towards STACK_MAC.
        let host_mac: [u8; 6] = arp[6..12].try_into().unwrap();
        let ours = ustack::frames::Link {
            peer_mac: EthernetAddress(STACK_MAC),
            our_mac: EthernetAddress(host_mac),
            peer4: STACK_IP,
            our4: HOST_IP,
            ..Default::default()
        };
        let reply = ours.arp(ArpOperation::Reply, ours.our_mac, ours.our_mac);
        device
            .transmit(Instant::ZERO)
            .unwrap()
            .consume(reply.len(), |buf| buf.copy_from_slice(&reply));
        let udp = wait_for_frame(&mut device, |f| f.len() > 42 && f[12..14] == [0x08, 0])
            .expect("the UDP datagram after the ARP reply");
        assert_eq!(udp[..6], STACK_MAC);
        assert!(udp.ends_with(b"hello"));

        // ping, when installed, reaches the device too.
        let ping = link.ns.exec("ping", &["-c1", "-W1", &STACK_IP.to_string()]);
        if ping.status.code().is_some()
            && !String::from_utf8_lossy(&ping.stderr).contains("No such file")
        {
            let echo = wait_for_frame(&mut device, |f| {
                f.len() > 34 && f[12..14] == [0x08, 0] && f[23] == 1
            });
            assert!(
                echo.is_some(),
                "ping sent no ICMP echo request to the device"
            );
        }

        drop(link);
        assert!(!ns_path.exists());
        // The interface went away with the namespace; the device only errors.
        assert!(device.receive(Instant::ZERO).is_none());
    }

    #[test]
    fn tap_link_with_ipv6_is_usable_without_autoconf_noise() {
        if !privileged() {
            return;
        }
        let mut link = TapLink::with_ipv6();
        let mut device = link.take_device();
        link.ns.run(|| {
            let sock = UdpSocket::bind((HOST_IP6, 0)).unwrap();
            sock.send_to(b"hello6", (STACK_IP6, 9)).unwrap();
        });
        // Apart from the kernel's MLD reports for its own address, the first
        // frame must be the neighbour solicitation for STACK_IP6: no router
        // solicitation or DAD chatter.
        let is_mld_report = |f: &[u8]| f.len() > 62 && f[20] == 0 && f[54] == 58 && f[62] == 143;
        let ns = wait_for_frame(&mut device, |f| !is_mld_report(f))
            .expect("a neighbour solicitation for STACK_IP6");
        assert_eq!(ns[12..14], [0x86, 0xdd], "IPv6 frame");
        assert_eq!(ns[20], 58, "ICMPv6");
        assert_eq!(ns[54], 135, "neighbour solicitation");
        assert_eq!(ns[62..78], STACK_IP6.octets(), "target");
    }
}
