//! Writes the `tcp_conversation` seeds into `seeds/tcp_conversation/`.
//!
//! ```sh
//! cd fuzz && cargo run --example gen_tcp_conversation_seeds
//! ```
//!
//! Each seed is a [`Script`] written with `tcp_conversation::encode`. Its name says what it
//! must do, and `tests/tcp_conversation_seeds.rs` checks it: `readN` (the application reads
//! exactly N bytes), `eof`, `reset` / `refused` (the read error), `stackfin`, `ackedN` (the
//! stack dequeued N acknowledged bytes), `retx` (the stack retransmitted data), `zerowin`
//! (the stack advertised a zero window), `noconn` (the application never got a connection).
//! `real_kernel_echo` follows the segment sizes, windows, options and timing of the Linux
//! conversation in `seeds/pcap_replay/real_tcp_echo.pcap`.

use std::path::{Path, PathBuf};

use ustack_fuzz::tcp_conversation::{
    encode, flag, run_script, AckChoice, Delivery, Handshake, Op, Opts, Script, Seg, SeqChoice,
    Setup,
};

const PA: u8 = flag::PSH | flag::ACK;

fn setup(ipv6: bool, active: bool, handshake: Handshake, auto_read: bool) -> Setup {
    Setup {
        ipv6,
        active,
        handshake,
        auto_read,
        isn: 0x1000_0000,
        window: 8192,
        opts: Opts {
            mss: Some(1460),
            ..Opts::default()
        },
    }
}

/// A segment at `seq` with `len` bytes and `flags`, acknowledging everything, window 8192.
fn seg(seq: SeqChoice, len: u16, flags: u8) -> Seg {
    Seg {
        seq,
        len,
        flags,
        ack: AckChoice::Latest,
        window: 8192,
        opts: Opts::default(),
        delivery: Delivery::Now,
    }
}

fn send(s: Seg) -> Op {
    Op::Send(s)
}

/// `len` in-order bytes with PSH|ACK.
fn data(len: u16) -> Op {
    send(seg(SeqChoice::Next, len, PA))
}

fn fin() -> Op {
    send(seg(SeqChoice::Next, 0, flag::FIN | flag::ACK))
}

fn ack() -> Op {
    send(seg(SeqChoice::Next, 0, flag::ACK))
}

fn hold(mut s: Seg) -> Op {
    s.delivery = Delivery::Hold;
    Op::Send(s)
}

fn scripts() -> Vec<(&'static str, Script)> {
    let passive = setup(false, false, Handshake::Full, true);
    let mut v = Vec::new();
    v.push((
        "clean_transfer_read1500_eof",
        Script {
            setup: passive,
            ops: vec![data(500), data(500), data(500), fin(), Op::Read(0)],
        },
    ));
    v.push((
        "reordered_read1500_eof",
        Script {
            setup: passive,
            ops: vec![
                hold(seg(SeqChoice::Next, 500, PA)),
                hold(seg(SeqChoice::Next, 500, PA)),
                hold(seg(SeqChoice::Next, 500, flag::ACK)),
                hold(seg(SeqChoice::Next, 0, flag::FIN | flag::ACK)),
                Op::Release(255),
                Op::Advance(2),
                // The FIN came before the hole was filled and was dropped: send it again.
                send(seg(SeqChoice::Back(1), 0, flag::FIN | flag::ACK)),
            ],
        },
    ));
    v.push((
        "reordered_one_by_one_read1200_eof",
        Script {
            setup: passive,
            ops: vec![
                hold(seg(SeqChoice::Next, 400, PA)),
                data(400),
                hold(seg(SeqChoice::Next, 400, flag::FIN | PA)),
                Op::Release(1),
                Op::Release(0),
                send(seg(SeqChoice::Back(1), 0, flag::FIN | flag::ACK)),
            ],
        },
    ));
    let mut twice = seg(SeqChoice::Next, 300, PA);
    twice.delivery = Delivery::Twice;
    v.push((
        "duplicate_overlap_read1400_eof",
        Script {
            setup: passive,
            ops: vec![
                data(600),
                send(seg(SeqChoice::Back(300), 600, PA)),
                send(twice),
                Op::Replay(0),
                Op::Replay(2),
                send(seg(SeqChoice::Back(900), 1000, flag::ACK)),
                data(100),
                fin(),
                Op::Replay(0),
            ],
        },
    ));
    v.push((
        "out_of_window_read400_eof",
        Script {
            setup: passive,
            ops: vec![
                data(400),
                send(seg(SeqChoice::Ahead(5000), 500, PA)),
                send(seg(SeqChoice::Raw(0x8000_0000), 500, PA)),
                send(seg(SeqChoice::Back(2000), 100, PA)),
                data(400),
                send(seg(SeqChoice::Ahead(100), 0, flag::FIN | flag::ACK)),
                send(seg(SeqChoice::Next, 0, flag::FIN | flag::ACK)),
                send(seg(SeqChoice::Acked, 0, flag::FIN | flag::ACK)),
            ],
        },
    ));
    // The application does not read: the 2 KiB buffer fills, the window closes, the peer
    // probes, then the application drains it.
    let mut zw = vec![data(1000), data(1000), data(1000), Op::Advance(4)];
    zw.push(send(seg(SeqChoice::Acked, 1, PA)));
    zw.push(Op::Read(0));
    zw.push(send(seg(SeqChoice::Acked, 1000, PA)));
    zw.push(Op::Read(0));
    v.push((
        "zerowin_read3048",
        Script {
            setup: setup(false, false, Handshake::Full, false),
            ops: zw,
        },
    ));
    // The peer advertises a zero window: the stack holds its data and probes.
    let mut closed = seg(SeqChoice::Next, 0, flag::ACK);
    closed.window = 0;
    let mut open = seg(SeqChoice::Next, 0, flag::ACK);
    open.window = 4096;
    v.push((
        "peer_zero_window_probes_acked1500",
        Script {
            setup: passive,
            ops: vec![
                send(closed),
                Op::Write(1500),
                Op::Advance(4),
                Op::Advance(5),
                Op::Advance(5),
                send(open),
                Op::Advance(3),
                ack(),
                Op::Advance(4),
                ack(),
            ],
        },
    ));
    v.push((
        "rst_established_read100_reset",
        Script {
            setup: passive,
            ops: vec![
                data(100),
                send(seg(SeqChoice::Next, 0, flag::RST)),
                Op::Read(0),
            ],
        },
    ));
    v.push((
        "rst_after_fin_read100_eof",
        Script {
            setup: passive,
            ops: vec![
                data(100),
                fin(),
                send(seg(SeqChoice::Next, 0, flag::RST | flag::ACK)),
                Op::Read(0),
            ],
        },
    ));
    v.push((
        "rst_in_syn_received_noconn",
        Script {
            setup: setup(false, false, Handshake::Half, true),
            ops: vec![
                send(seg(SeqChoice::Next, 0, flag::RST)),
                Op::Advance(4),
                data(10),
            ],
        },
    ));
    let mut refuse = seg(SeqChoice::Raw(0), 0, flag::RST | flag::ACK);
    refuse.ack = AckChoice::Latest;
    v.push((
        "active_refused",
        Script {
            setup: setup(false, true, Handshake::Skip, true),
            ops: vec![send(refuse), Op::Read(0)],
        },
    ));
    v.push((
        "active_simultaneous_open_read200_eof",
        Script {
            setup: setup(false, true, Handshake::Half, true),
            ops: vec![ack(), data(200), fin()],
        },
    ));
    let all = Opts {
        mss: Some(536),
        wscale: Some(7),
        sack_perm: true,
        ts: true,
        sack: None,
        junk: Some([1, 1, 1, 1]),
    };
    let mut opt_setup = setup(false, false, Handshake::Full, true);
    opt_setup.opts = all;
    let ts = Opts {
        ts: true,
        ..Opts::default()
    };
    let tsd = |seq, len, flags| {
        let mut s = seg(seq, len, flags);
        s.opts = ts;
        s.window = 64;
        send(s)
    };
    let mut sack = seg(SeqChoice::Next, 0, flag::ACK);
    sack.opts = Opts {
        ts: true,
        sack: Some((536, 536)),
        ..Opts::default()
    };
    sack.ack = AckChoice::Una;
    v.push((
        "options_ts_sack_wscale_read1000_eof_acked1600",
        Script {
            setup: opt_setup,
            ops: vec![
                tsd(SeqChoice::Next, 500, PA),
                Op::Write(1600),
                tsd(SeqChoice::Ahead(100), 400, PA),
                send(sack),
                tsd(SeqChoice::Back(500), 100, PA),
                Op::Advance(4),
                tsd(SeqChoice::Next, 0, flag::FIN | flag::ACK),
                Op::Advance(3),
                tsd(SeqChoice::Next, 0, flag::ACK),
            ],
        },
    ));
    v.push((
        "simultaneous_close_read300_eof_stackfin",
        Script {
            setup: passive,
            ops: vec![
                data(300),
                Op::Write(200),
                hold(seg(SeqChoice::Next, 0, flag::FIN | flag::ACK)),
                Op::Shutdown,
                Op::Release(0),
                Op::Advance(3),
                ack(),
                Op::Read(0),
                Op::Advance(7),
            ],
        },
    ));
    v.push((
        "retx_after_step_acked1000",
        Script {
            setup: passive,
            ops: vec![
                Op::Write(1000),
                Op::Advance(4),
                Op::Advance(5),
                send(seg(SeqChoice::Next, 0, flag::ACK)),
            ],
        },
    ));
    v.push((
        "ipv6_active_read700_eof_stackfin",
        Script {
            setup: setup(true, true, Handshake::Full, true),
            ops: vec![
                data(700),
                Op::Write(700),
                ack(),
                fin(),
                Op::Close,
                Op::Advance(3),
                ack(),
            ],
        },
    ));
    v.push((
        "ipv6_passive_read1400_eof",
        Script {
            setup: setup(true, false, Handshake::Full, true),
            ops: vec![data(1400), fin()],
        },
    ));
    // Linux's SYN (MSS 1460, SACK-permitted, timestamps, window scale 10, window 64240), its
    // ACK with window 63, then 14 bytes, the 14-byte echo, 1024 bytes and their echo, FIN,
    // the stack's FIN and the last ACK, 1.2-1.5 s apart as recorded.
    let kernel = Setup {
        ipv6: false,
        active: false,
        handshake: Handshake::Full,
        auto_read: true,
        isn: 2_455_425_062,
        window: 64240,
        opts: Opts {
            mss: Some(1460),
            wscale: Some(10),
            sack_perm: true,
            ts: true,
            sack: None,
            junk: None,
        },
    };
    let k = |len, flags| {
        let mut s = seg(SeqChoice::Next, len, flags);
        s.window = 63;
        send(s)
    };
    v.push((
        "real_kernel_echo_read1038_eof_stackfin_acked1038",
        Script {
            setup: kernel,
            ops: vec![
                Op::AdvanceMs(1533),
                k(14, PA),
                Op::Write(14),
                Op::AdvanceMs(1212),
                k(0, flag::ACK),
                k(1024, PA),
                Op::Write(1024),
                Op::AdvanceMs(1279),
                k(0, flag::FIN | flag::ACK),
                Op::Close,
                Op::AdvanceMs(1246),
                k(0, flag::ACK),
            ],
        },
    ));
    v.push((
        "abort_after_data_read500",
        Script {
            setup: passive,
            ops: vec![
                data(500),
                Op::Write(100),
                Op::Abort,
                data(100),
                Op::Advance(7),
            ],
        },
    ));
    v.push((
        "skip_handshake_noconn",
        Script {
            setup: setup(false, false, Handshake::Skip, true),
            ops: vec![data(100), fin(), send(seg(SeqChoice::Next, 0, flag::SYN))],
        },
    ));
    // Finding: shutting down the sending side while connecting makes reads fail with
    // `TimedOut` at once (see `AFTER_FIXES` in src/tcp_conversation.rs).
    v.push((
        "regression_shutdown_while_connecting",
        Script {
            setup: setup(false, true, Handshake::Skip, false),
            ops: vec![Op::Shutdown, Op::Read(0)],
        },
    ));
    // Finding: a close in SYN-RECEIVED (after a simultaneous open) sends a FIN with the
    // SYN's sequence number; the peer's ACK of the SYN then moves the stack to FIN-WAIT-2.
    v.push((
        "regression_fin_reuses_syn_seq",
        Script {
            setup: setup(false, true, Handshake::Half, true),
            ops: vec![Op::Shutdown, Op::Advance(5), ack()],
        },
    ));
    // Finding: data past the peer's FIN is accepted in CLOSE-WAIT and read after end of
    // stream. The harness trims such data while the finding is pending; the seed test runs
    // it untrimmed.
    v.push((
        "finding_data_after_fin",
        Script {
            setup: passive,
            ops: vec![
                send(seg(SeqChoice::Next, 400, flag::FIN | PA)),
                send(seg(SeqChoice::Next, 400, PA)),
            ],
        },
    ));
    // Finding: the second segment runs past the 2048-byte window the stack advertised; its
    // data is cut at the window and its FIN accepted: end of stream after 2048 bytes, 752
    // bytes before the FIN lost.
    v.push((
        "finding_fin_past_window",
        Script {
            setup: passive,
            ops: vec![data(1400), send(seg(SeqChoice::Next, 1400, flag::FIN | PA))],
        },
    ));
    // Finding: bytes 100..300 arrive out of order, then bytes 0..200 with a FIN at 200
    // (where the stack's ACK points). The FIN is in order, but the hole it fills lets the
    // queued bytes 200..300 through too: 300 bytes, end of stream, and the FIN acknowledged
    // at 301 instead of 201. A correct TCP (and Linux) ends the stream at 200 and drops
    // what was queued past the FIN.
    v.push((
        "finding_ooo_data_past_fin",
        Script {
            setup: passive,
            ops: vec![
                send(seg(SeqChoice::Ahead(100), 200, PA)),
                send(seg(SeqChoice::Acked, 200, flag::FIN | PA)),
            ],
        },
    ));
    v
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write seed");
    println!("{name}: {} bytes", bytes.len());
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds/tcp_conversation");
    std::fs::create_dir_all(&dir).expect("seed dir");
    for (name, script) in scripts() {
        let report = run_script(&script);
        println!("{report:?}");
        write(&dir, name, &encode(&script));
    }
}
