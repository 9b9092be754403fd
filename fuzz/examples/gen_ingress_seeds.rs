//! Writes the `ingress` seeds into `fuzz/seeds/ingress/` (or the directory given as
//! argument).
//!
//! ```text
//! cd fuzz && cargo run --example gen_ingress_seeds
//! ```
//!
//! Each seed is a conversation run against the real harness: the peer stack streaming data
//! through drops, duplicates, delays and mutations, the harness's templated segments on the
//! established, WebSocket and new connections (in-window data, RST, SYN, FIN, window 0),
//! WebSocket messages and closes, UDP to both sockets and ICMP errors. `replay_*` seeds hold
//! frames the peer really sent, captured from a run and injected again as raw frames.
//! `tests/ingress_seeds.rs` checks that every seed does what its name says.

use std::fs;
use std::path::PathBuf;

use ustack_fuzz::ingress::{Harness, Input, Links};

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;

/// The frames `PS` sent to `ST` while `input` ran, as the wire saw them.
fn capture(input: &Input) -> Vec<Vec<u8>> {
    let links = Links::new();
    let mut h = Harness::new(&links);
    h.log = Some(Vec::new());
    h.run(&input.0);
    h.log
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|(d, _)| *d == 0)
        .map(|(_, f)| f)
        .collect()
}

fn seeds() -> Vec<(&'static str, Input)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, f: &dyn Fn(&mut Input)| {
        let mut i = Input::default();
        f(&mut i);
        out.push((name, i));
    };
    add("stream", &|i| {
        for _ in 0..8 {
            i.peer(0, 120).clock(2);
        }
    });
    add("stream_drop_dup_delay", &|i| {
        i.wire(false, 0, 0, 0).peer(0, 100).clock(4);
        i.wire(false, 1, 0, 0).peer(0, 100).clock(2);
        i.wire(false, 2, 0, 0).peer(0, 100).peer(0, 50);
        i.wire(false, 4, 0, 0).clock(4).clock(5);
        i.wire(true, 0, 0, 0).peer(0, 30).clock(5);
    });
    add("stream_mutated", &|i| {
        i.wire(false, 3, 60, 0xff).peer(0, 100).clock(2);
        i.wire(false, 3, 40, 0x01).peer(0, 100).clock(4);
        i.wire(true, 3, 50, 0x10).peer(0, 20).clock(5);
    });
    add("stream_zero_window", &|i| {
        i.app(0);
        for _ in 0..12 {
            i.peer(0, 255).clock(2);
        }
        i.clock(5).clock(5).app(0).clock(4).clock(5);
    });
    add("stream_peer_close", &|i| {
        i.peer(0, 50).clock(1).peer(4, 0).clock(3).clock(4);
    });
    add("tcp_data_inwindow", &|i| {
        i.tcp(0, ACK | PSH, 0, 0, 4096, 500, &[]);
    });
    add("tcp_data_out_of_order", &|i| {
        i.tcp(0, ACK, 300, 0, 4096, 200, &[]);
        i.tcp(0, ACK, 0, 0, 4096, 300, &[]).clock(2);
    });
    add("tcp_data_overlap_with_peer", &|i| {
        i.peer(0, 60)
            .tcp(0, ACK, -100, 0, 4096, 300, &[])
            .peer(0, 60);
        i.clock(3);
    });
    add("tcp_rst", &|i| {
        i.peer(0, 10).tcp(0, RST, 0, 0, 0, 0, &[]);
    });
    add("tcp_rst_out_of_window", &|i| {
        i.tcp(0, RST, 20000, 0, 0, 0, &[]).peer(0, 10).clock(2);
    });
    add("tcp_syn", &|i| {
        i.peer(0, 10)
            .tcp(0, SYN, 0, 0, 4096, 0, &[2, 4, 5, 180])
            .clock(3);
        i.peer(0, 10).clock(3);
    });
    add("tcp_fin", &|i| {
        i.peer(0, 10)
            .clock(1)
            .tcp(0, FIN | ACK, 0, 0, 4096, 0, &[])
            .clock(3);
    });
    add("tcp_window0", &|i| {
        i.tcp(0, ACK, 0, 0, 0, 0, &[]);
        i.app(1).app(1).clock(4).clock(5).clock(6);
        i.tcp(0, ACK, 0, 0, 8192, 0, &[]).clock(3);
    });
    add("tcp_options", &|i| {
        i.tcp(
            0,
            ACK,
            0,
            0,
            4096,
            40,
            &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        );
        i.tcp(0, ACK, 0, 0, 4096, 40, &[5, 10, 0, 0, 0, 1, 0, 0, 0, 9]);
    });
    add("tcp_new_connection", &|i| {
        i.tcp(2, SYN, 0, 0, 4096, 0, &[2, 4, 5, 180]).clock(1);
        i.tcp(2, ACK, 0, 0, 4096, 0, &[]).clock(1);
        i.tcp(2, ACK | PSH, 0, 0, 4096, 100, &[]).clock(3);
        i.tcp(2, FIN | ACK, 0, 0, 4096, 0, &[]).clock(3);
    });
    add("ws_message", &|i| {
        i.peer(1, 10).clock(1);
    });
    add("ws_messages_lossy", &|i| {
        i.wire(false, 0, 0, 0).peer(1, 100).clock(4);
        i.wire(false, 1, 0, 0).peer(1, 3).clock(1);
        i.wire(true, 0, 0, 0).peer(1, 200).clock(4).clock(5);
    });
    add("ws_retransmit_template", &|i| {
        i.peer(1, 20).clock(1);
        i.tcp(1, ACK | PSH, -100, 0, 4096, 100, &[]).clock(1);
        i.tcp(1, ACK | PSH, 0, 0, 4096, 100, &[]);
        i.peer(1, 1).clock(1);
    });
    add("ws_peer_close", &|i| {
        i.peer(1, 2).clock(1).peer(5, 0).clock(3).clock(4);
    });
    add("ws_server_send_close", &|i| {
        i.app(6).clock(1).peer(1, 1).app(7).clock(3).clock(4);
    });
    add("ws_rst", &|i| {
        i.peer(1, 2).clock(1).tcp(1, RST, 0, 0, 0, 0, &[]).clock(3);
    });
    add("ws_garbage_unpatched", &|i| {
        i.peer(1, 2).clock(1);
        i.tcp_unpatched(
            1,
            ACK | PSH,
            0,
            0,
            &[0x82, 0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        );
        i.clock(3).peer(1, 2).clock(3);
    });
    add("tcp_garbage_unpatched", &|i| {
        i.tcp_unpatched(0, ACK | PSH, 0, 0, b"not the pattern")
            .clock(2);
    });
    add("udp_bound", &|i| {
        i.udp(false, false, b"datagram to the unconnected socket");
        i.udp(false, true, b"from a stranger").app(5).clock(1);
        i.peer(2, 40).clock(1);
    });
    add("udp_connected", &|i| {
        i.udp(true, false, b"datagram from the peer");
        i.peer(3, 40).app(4).clock(1);
    });
    add("udp_connected_stranger", &|i| {
        i.udp(true, true, b"not the peer").clock(1);
    });
    add("icmp_port_unreachable", &|i| {
        i.icmp(3, 0).clock(1).app(4).clock(1);
    });
    add("icmp_host_unreachable_short_quote", &|i| {
        i.icmp(1, 4).clock(1);
    });
    add("icmp_wrong_port", &|i| {
        i.icmp(3, 2).icmp(3, 1).clock(1);
    });
    add("clock_idle", &|i| {
        i.peer(0, 10)
            .clock(7)
            .clock(7)
            .peer(0, 10)
            .peer(1, 1)
            .clock(3);
    });
    add("app_shutdown_abort", &|i| {
        i.app(1)
            .clock(1)
            .app(2)
            .clock(3)
            .peer(0, 20)
            .clock(1)
            .app(3)
            .clock(3);
    });
    // Finding (smoltcp 0.14, see `AFTER_FIXES` in src/ingress.rs): the application is not
    // reading when the peer's FIN arrives, then 10 bytes past the FIN are accepted in
    // CLOSE-WAIT and read before the end of stream, one sequence number early.
    add("finding_data_after_fin", &|i| {
        i.app(0).peer(4, 0).tcp(0, ACK, 0, 0, 4096, 10, &[]).app(0);
    });
    out
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("seeds")
                .join("ingress")
        });
    fs::create_dir_all(&dir).expect("mkdir");
    let mut all = seeds();
    // Real frames: PS's data segments and its WebSocket frames, captured and re-injected
    // raw after the run that produced them (the harness is deterministic, so the replay's
    // sequence numbers are the ones the peer really used).
    let mut base = Input::default();
    base.peer(0, 100).clock(1).peer(1, 10).clock(1);
    let frames = capture(&base);
    let mut replay = base.clone();
    for f in frames.iter().rev().take(6) {
        replay.raw(f, true);
    }
    replay.clock(2);
    all.push(("replay_peer_frames", replay));
    let mut replay = base.clone();
    for f in frames.iter().rev().take(6) {
        replay.raw(f, false);
    }
    all.push(("replay_unpatched", replay));
    for (name, input) in &all {
        fs::write(dir.join(name), &input.0).expect("write seed");
        let r = ustack_fuzz::ingress::run(&input.0);
        println!(
            "{name}: {} bytes, read {} eof {} err {:?}, ws {}/{} closed {:?}, udp {}/{} icmp {}, extra {} ({} bytes)",
            input.0.len(),
            r.est_read,
            r.est_eof,
            r.est_error,
            r.ws_received,
            r.ws_sent,
            r.ws_closed,
            r.udp_bound_rx,
            r.udp_conn_rx,
            r.udp_conn_errors,
            r.extra_accepted,
            r.extra_read
        );
    }
}
