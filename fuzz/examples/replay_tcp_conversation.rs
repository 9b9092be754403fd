//! Prints a `tcp_conversation` input as the script it decodes to, then runs it and prints
//! the report (a check that fails panics with its message):
//! `cargo run --example replay_tcp_conversation -- <file>`.

use ustack_fuzz::tcp_conversation::{run_script, Script};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: cargo run --example replay_tcp_conversation -- <input file>");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    let Some(script) = Script::decode(&data) else {
        eprintln!("{path}: too short to decode as a script (a Setup needs at least 19 bytes)");
        std::process::exit(1);
    };
    println!("{script:#?}");
    println!("{:#?}", run_script(&script));
}
