//! Running iproute2's `ip`, with errors that quote the command and say what to do.

use std::io;
use std::process::Command;

/// Runs `ip [-n netns] args...` and returns its standard output. A failure quotes the command
/// and its stderr; a missing `ip` says to install iproute2.
///
/// # Example
///
/// ```no_run
/// let links = ustack_drivers::iproute::ip(None, &["-br", "link"])?;
/// assert!(links.contains("lo"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn ip(netns: Option<&str>, args: &[&str]) -> io::Result<String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    let shown = match netns {
        Some(ns) => format!("ip -n {ns} {}", args.join(" ")),
        None => format!("ip {}", args.join(" ")),
    };
    let out = cmd.output().map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound {
            "`ip` not found; install iproute2".to_owned()
        } else {
            e.to_string()
        };
        io::Error::new(e.kind(), format!("cannot run `{shown}`: {hint}"))
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!(
        "`{shown}` failed ({}): {}",
        out.status,
        stderr.trim()
    )))
}

/// Moves the calling thread into the network namespace `netns` (as listed by `ip netns list`).
///
/// Network namespaces are per thread: sockets and packet sockets the thread opens afterwards
/// live in `netns`, and keep living there when handed to other threads.
///
/// # Example
///
/// ```no_run
/// std::thread::spawn(|| {
///     ustack_drivers::iproute::enter_netns("test1")?;
///     // std::net sockets and AfPacket devices opened here belong to test1.
///     Ok::<(), std::io::Error>(())
/// });
/// ```
pub fn enter_netns(netns: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let path = std::path::Path::new("/var/run/netns").join(netns);
    let file = std::fs::File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot open network namespace {}: {e}; create it with `ip netns add {netns}`",
                path.display()
            ),
        )
    })?;
    // SAFETY: `file` is an open namespace descriptor for the whole call; setns only changes
    // the calling thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "cannot enter network namespace {}: {e}; needs root or CAP_SYS_ADMIN",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Runs `f` on a new thread inside the network namespace `netns` and returns its result.
///
/// # Example
///
/// ```no_run
/// let mtu = ustack_drivers::iproute::in_netns("test1", || std::fs::read_to_string("/proc/net/dev"))??;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| enter_netns(netns).map(|()| f()))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
