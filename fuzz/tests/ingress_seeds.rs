//! The `ingress` seeds still do what their names say: replayed through the harness (whose
//! own checks run on every byte and message delivered), each one reaches the state it was
//! written for. After a ustack change that breaks one, regenerate them with
//! `cargo run --example gen_ingress_seeds` and look at what it prints.

use std::fs;

use ustack::Error;
use ustack_fuzz::ingress::{run, Report, AFTER_FIXES};
use ustack_fuzz::seeds;

type Check = fn(&Report) -> bool;

/// What each seed must reach, beyond the harness's own checks passing.
const EXPECT: &[(&str, Check)] = &[
    // Streaming: the bytes the application read were checked against the pattern.
    ("stream", |r| {
        r.est_read > 5000 && r.est_read == r.ps_written
    }),
    ("stream_drop_dup_delay", |r| r.est_read > 1000),
    ("stream_mutated", |r| r.est_read > 1000),
    // A full window, then reading again: everything arrives.
    ("stream_zero_window", |r| {
        r.est_read > 4000 && r.est_read == r.ps_written
    }),
    ("stream_peer_close", |r| {
        r.est_read == r.ps_written && r.est_eof
    }),
    // Templated segments land in the window: injected data reaches the application.
    ("tcp_data_inwindow", |r| r.est_read == 500),
    ("tcp_data_out_of_order", |r| r.est_read == 500),
    // Injected bytes past the peer's, then the peer's own over them: the same bytes.
    ("tcp_data_overlap_with_peer", |r| {
        r.est_read == r.ps_written && r.injected == 1
    }),
    ("tcp_rst", |r| r.est_error == Some(Error::ConnectionReset)),
    // Out of the window, a reset is ignored and the stream goes on.
    ("tcp_rst_out_of_window", |r| {
        r.est_error.is_none() && r.est_read == r.ps_written && r.est_read > 0
    }),
    // A SYN on the established connection does not end it (RFC 5961 challenge ACK).
    ("tcp_syn", |r| {
        r.est_error.is_none() && r.est_read == r.ps_written
    }),
    ("tcp_fin", |r| r.est_eof && r.est_read == r.ps_written),
    ("tcp_window0", |r| r.est_error.is_none() && !r.est_eof),
    ("tcp_options", |r| r.est_read == 80 || r.est_read == 40),
    // A whole connection the input opens on the listener: accepted, data, FIN.
    ("tcp_new_connection", |r| {
        r.extra_accepted == 1 && r.extra_read == 100
    }),
    ("ws_message", |r| {
        r.ws_sent == 1 && r.ws_received == 1 && r.ws_echoed == 1
    }),
    ("ws_messages_lossy", |r| {
        r.ws_sent == 3 && r.ws_received == 3
    }),
    ("ws_retransmit_template", |r| {
        r.ws_sent == 2 && r.ws_received == 2
    }),
    ("ws_peer_close", |r| {
        r.ws_received == 1 && r.ws_closed == Some(Some(1000))
    }),
    ("ws_server_send_close", |r| r.ws_closed == Some(Some(1000))),
    ("ws_rst", |r| {
        r.ws_received == 1 && r.ws_closed == Some(None)
    }),
    // Garbage in the WebSocket stream ends the session with a protocol error.
    ("ws_garbage_unpatched", |r| {
        r.tainted_ws && r.ws_received == 1 && r.ws_closed.is_some()
    }),
    ("tcp_garbage_unpatched", |r| {
        r.tainted_tcp && r.est_read == 15
    }),
    // The setup's datagram, the peer's, the injected one and the stranger's.
    ("udp_bound", |r| r.udp_bound_rx == 4),
    ("udp_connected", |r| r.udp_conn_rx == 2),
    // The connected socket drops a stranger's datagram.
    ("udp_connected_stranger", |r| r.udp_conn_rx == 0),
    ("icmp_port_unreachable", |r| r.udp_conn_errors == 1),
    ("icmp_host_unreachable_short_quote", |r| {
        r.udp_conn_errors == 1
    }),
    // A quote of another port or of the unconnected socket matches nothing.
    ("icmp_wrong_port", |r| r.udp_conn_errors == 0),
    ("clock_idle", |r| {
        r.est_read == r.ps_written && r.est_read > 0 && r.ws_received == 1
    }),
    ("app_shutdown_abort", |r| r.est_read > 0),
    // The peer's real frames injected again are duplicates: nothing is delivered twice.
    ("replay_peer_frames", |r| {
        r.est_read == r.ps_written && r.ws_received == 1 && !r.tainted_tcp
    }),
    ("replay_unpatched", |r| r.tainted_tcp || r.tainted_ws),
    // smoltcp 0.14 takes 10 bytes past the peer's FIN in CLOSE-WAIT; the application, not
    // reading when the FIN came, reads them before the end of stream (see `AFTER_FIXES`).
    ("finding_data_after_fin", |r| {
        let fixed = r.est_read == 0 && r.est_data_after_fin.is_none();
        let pending = r.est_read == 10 && r.est_data_after_fin == Some(0);
        r.est_eof && if AFTER_FIXES { fixed } else { pending }
    }),
];

#[test]
fn ingress_seeds_do_what_their_names_say() {
    let dir = seeds::dir("ingress");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut total = 0;
    for name in &names {
        let data = fs::read(dir.join(name)).expect("read seed");
        total += data.len();
        let Some((_, check)) = EXPECT.iter().find(|(n, _)| n == name) else {
            // finding_* and regression_* seeds only have to pass the harness's checks.
            assert!(
                name.starts_with("finding_") || name.starts_with("regression_"),
                "{name}: no expectation; add one to EXPECT"
            );
            run(&data);
            continue;
        };
        let r = run(&data);
        assert!(check(&r), "{name}: {r:?}");
        assert!(
            !r.tainted_tcp || name.contains("unpatched"),
            "{name}: {r:?}"
        );
    }
    for (n, _) in EXPECT {
        assert!(names.iter().any(|x| x == n), "seed {n} is missing");
    }
    assert!(total < 1 << 20, "ingress seeds take {total} bytes");
}
