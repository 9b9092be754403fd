//! The checked-in seeds still mean what they were recorded for. ustack changes (sequence
//! numbers, ports, timers) can make a recorded conversation stop matching the stack; then
//! regenerate them with `cargo run --example gen_seeds`.

use ustack::ingress::{classify, Verdict};
use ustack_fuzz::{seeds, Harness, MTU};

#[test]
fn classify_seeds_are_valid_frames() {
    for (name, frame) in seeds::all("ingress_classify") {
        assert!(
            matches!(classify(&frame, MTU), Verdict::Pass(_)),
            "{name}: {:?}",
            classify(&frame, MTU)
        );
    }
}

#[test]
fn stack_seeds_reach_the_application() {
    for (name, data) in seeds::all("stack_ingress") {
        let mut h = Harness::new(false);
        h.run(&data);
        let stats = h.stack.stats();
        if name.starts_with("regression_") {
            // Inputs that once crashed: not crashing is all they check.
            continue;
        }
        assert_eq!(stats.rx_dropped(), 0, "{name}: {stats:?}");
        assert!(stats.rx_frames > 0, "{name}: {stats:?}");
        if name.contains("conversation") {
            assert!(
                h.tcp_read > 0,
                "{name}: no data reached the application ({stats:?})"
            );
        }
        if name.starts_with("udp") {
            assert!(
                h.udp_read > 0,
                "{name}: the datagram did not reach the socket ({stats:?})"
            );
        }
        if name.contains("syn_flood") {
            assert!(
                stats.tcp_syn_deferred > 0 && stats.tcp_accepted > 0,
                "{name}: {stats:?}"
            );
        }
        if name.contains("passive") {
            assert!(stats.tcp_accepted > 0, "{name}: {stats:?}");
        }
    }
}

#[test]
fn udp_icmp_seeds_agree_with_the_model() {
    for (name, data) in seeds::all("udp_icmp") {
        // The model's checks run inside: a disagreement panics.
        let report = ustack_fuzz::udp_icmp::run(&data);
        if name.starts_with("match_") {
            assert!(
                report.delivered > 0 && !report.taken.is_empty(),
                "{name}: no ICMP error reached the socket ({report:?})"
            );
        } else if name.starts_with("nomatch_") {
            assert_eq!(
                (report.delivered, report.taken.len()),
                (0, 0),
                "{name}: {report:?}"
            );
        }
    }
}

#[test]
fn udp_icmp_seeds_say_what_they_are_named() {
    use ustack::Error;
    let run = |name: &str| {
        let data = seeds::all("udp_icmp")
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no seed {name}"))
            .1;
        ustack_fuzz::udp_icmp::run(&data).taken
    };
    let refused = vec![(0, Error::ConnectionRefused)];
    assert_eq!(run("match_v4_port_unreachable"), refused);
    assert_eq!(run("match_v4_port_unreachable_rfc792"), refused);
    assert_eq!(
        run("match_v4_host_unreachable"),
        vec![(0, Error::HostUnreachable)]
    );
    assert_eq!(
        run("match_v6_port_unreachable"),
        vec![(1, Error::ConnectionRefused)]
    );
}
