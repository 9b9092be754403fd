//! The checked-in seeds still mean what they were recorded for. ustack changes (sequence
//! numbers, ports, timers) can make a recorded conversation stop matching the stack; then
//! regenerate them with `cargo run --example gen_seeds`.

use std::fs;
use std::path::Path;

use ustack::ingress::{classify, Verdict};
use ustack_fuzz::{Harness, MTU};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
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

#[test]
fn classify_seeds_are_valid_frames() {
    for (name, frame) in seeds("ingress_classify") {
        assert!(
            matches!(classify(&frame, MTU), Verdict::Pass(_)),
            "{name}: {:?}",
            classify(&frame, MTU)
        );
    }
}

#[test]
fn stack_seeds_reach_the_application() {
    for (name, data) in seeds("stack_ingress") {
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
    for (name, data) in seeds("udp_icmp") {
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
        let data = seeds("udp_icmp")
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
