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
