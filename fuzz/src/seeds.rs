//! What the seed tests, generators and WebSocket targets share: reading a target's seed
//! directory, and the byte that encodes negotiated permessage-deflate parameters.

use std::fs;
use std::path::PathBuf;

use ustack::ws::deflate::DeflateParams;

/// `fuzz/seeds/<target>`.
pub fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target)
}

/// Every seed of `target` as `(name, bytes)`, sorted by name; panics if there is none.
pub fn all(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = dir(target);
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("dir entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, fs::read(&p).expect("read seed"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// The negotiated deflate parameters one input byte stands for (`ws_frames`' and
/// `ws_deflate`'s `dparams`): window bits 8 + bits 0-2 (server) and 8 + bits 3-5 (client),
/// no context takeover for the server with bit 6, for the client with bit 7.
pub fn deflate_params(b: u8) -> DeflateParams {
    DeflateParams {
        server_max_window_bits: 8 + (b & 7),
        client_max_window_bits: 8 + ((b >> 3) & 7),
        server_no_context_takeover: b & 0x40 != 0,
        client_no_context_takeover: b & 0x80 != 0,
    }
}
