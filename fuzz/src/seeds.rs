//! What the seed tests, generators and WebSocket targets share: reading a target's seed
//! directory, reading recorded captures, and the byte that encodes negotiated
//! permessage-deflate parameters.

use std::fs;
use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;

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

/// Every frame of an Ethernet pcap capture with its capture time in microseconds, up to
/// the first cut record; panics on a file that is not one (the recorded seeds are).
pub fn pcap_frames(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = PcapReader::new(file)
        .unwrap_or_else(|e| panic!("{}: not a pcap file: {e}", path.display()));
    assert_eq!(
        reader.header().datalink,
        DataLink::ETHERNET,
        "{}: not an Ethernet capture",
        path.display()
    );
    let mut out = Vec::new();
    while let Some(Ok(packet)) = reader.next_packet() {
        let at = u64::try_from(packet.timestamp.as_micros()).unwrap_or(u64::MAX);
        out.push((at, packet.data.into_owned()));
    }
    out
}
