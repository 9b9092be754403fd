//! `ustack-demo --pipe`: placeholder, replaced by the scripted pipe client.

/// Runs the pipe demo.
pub fn run() -> Result<(), String> {
    Err("--pipe is not written yet".into())
}
