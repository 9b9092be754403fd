//! TAP tests against the real kernel. They need root (or CAP_NET_ADMIN plus
//! CAP_SYS_ADMIN for namespaces), /dev/net/tun and iproute2; without root they
//! fail saying so, and they skip only when USTACK_SKIP_PRIVILEGED=1.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant as StdInstant};

use smoltcp::phy::{Device, RxToken, TxToken};
use smoltcp::time::Instant;
use ustack_drivers::{PcapRecorder, TapBuilder, TapDevice};

mod common;
use common::{privileged, unique};

const STACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn ip(args: &[&str]) -> io::Result<std::process::Output> {
    Command::new("ip").args(args).output()
}

/// A named network namespace deleted on drop.
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        let name = unique("udn");
        let out = ip(&["netns", "add", &name]).unwrap();
        assert!(
            out.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ns(name)
    }

    /// Runs `f` on a thread inside the namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap();
                // SAFETY: valid namespace fd; affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// Waits up to `timeout` for a frame matching `want`, returning every frame seen.
fn wait_for<D: Device + AsRawFd>(
    dev: &mut D,
    timeout: Duration,
    want: impl Fn(&[u8]) -> bool,
) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    let deadline = StdInstant::now() + timeout;
    let mut seen = Vec::new();
    while StdInstant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: dev.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 50) };
        while let Some((rx, _tx)) = dev.receive(Instant::ZERO) {
            let frame = rx.consume(|f| f.to_vec());
            if want(&frame) {
                return (Some(frame), seen);
            }
            seen.push(frame);
        }
    }
    (None, seen)
}

fn is_arp_request_for(frame: &[u8], target: [u8; 4]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 1]
        && frame[38..42] == target
}

fn describe(frames: &[Vec<u8>]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            format!(
                "{}B ethertype {:02x}{:02x} dst {:02x?}",
                f.len(),
                f[12],
                f[13],
                &f[..6]
            )
        })
        .collect()
}

#[test]
fn netns_topology_carries_frames_both_ways() {
    if !privileged() {
        return;
    }
    let ns = Ns::new();
    let name = unique("utp");
    let mut tap = TapBuilder::new(&name)
        .netns(&ns.0)
        .host_addr("10.7.0.1/24")
        .ipv6_autoconf(false)
        .create()
        .unwrap();
    assert_eq!(tap.netns(), Some(ns.0.as_str()));
    assert_eq!(tap.mtu(), 1500);
    assert_eq!(tap.capabilities().max_transmission_unit, 1514);
    // Not visible in the root namespace any more.
    assert!(!ip(&["link", "show", &name]).unwrap().status.success());

    // The host sends UDP to 10.7.0.2; it must ARP first.
    ns.run(|| {
        let sock = UdpSocket::bind("10.7.0.1:0").unwrap();
        sock.send_to(b"hello ustack", "10.7.0.2:9").unwrap();
    });
    let (arp, noise) = wait_for(&mut tap, Duration::from_secs(3), |f| {
        is_arp_request_for(f, [10, 7, 0, 2])
    });
    let arp = arp.unwrap_or_else(|| panic!("no ARP request; saw {:?}", describe(&noise)));
    assert!(
        noise.is_empty(),
        "unexpected frames on a quiet link: {:?}",
        describe(&noise)
    );
    let host_mac: [u8; 6] = arp[6..12].try_into().unwrap();

    // Answer the ARP; the kernel then releases the queued datagram.
    let mut reply = Vec::new();
    reply.extend_from_slice(&host_mac);
    reply.extend_from_slice(&STACK_MAC);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&STACK_MAC);
    reply.extend_from_slice(&[10, 7, 0, 2]);
    reply.extend_from_slice(&host_mac);
    reply.extend_from_slice(&[10, 7, 0, 1]);
    let tx = tap.transmit(Instant::ZERO).unwrap();
    tx.consume(reply.len(), |buf| buf.copy_from_slice(&reply));
    assert_eq!(tap.stats().tx_frames, 1);
    assert_eq!(tap.stats().tx_dropped, 0);

    let (udp, noise) = wait_for(&mut tap, Duration::from_secs(3), |f| {
        f.len() > 42 && f[12..14] == [0x08, 0] && f[23] == 17
    });
    let udp = udp.unwrap_or_else(|| panic!("no UDP frame; saw {:?}", describe(&noise)));
    assert_eq!(&udp[..6], &STACK_MAC);
    assert!(udp.ends_with(b"hello ustack"));
    assert_eq!(tap.stats().rx_frames, 2);

    drop(tap);
    let out = ip(&["-n", &ns.0, "link", "show", &name]).unwrap();
    assert!(!out.status.success(), "interface survived the device");
}

#[test]
fn create_in_root_namespace_and_remove_on_drop() {
    if !privileged() {
        return;
    }
    let name = unique("utr");
    let tap = TapDevice::create(&name, "10.77.0.1/24").unwrap();
    let out = ip(&["addr", "show", "dev", &name]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.77.0.1/24"), "{text}");
    assert!(text.contains(",UP"), "{text}");
    assert_eq!(tap.name(), name);
    drop(tap);
    assert!(!ip(&["link", "show", &name]).unwrap().status.success());
}

#[test]
fn errors_say_what_to_do() {
    if !privileged() {
        return;
    }
    let err =
        TapDevice::create_in_netns(&unique("ute"), "no-such-ns-xyz", "10.7.0.1/24").unwrap_err();
    assert!(err.to_string().contains("ip netns add"), "{err}");
    eprintln!("{err}");
    let err = TapDevice::create(&unique("ute"), "not-an-address").unwrap_err();
    assert!(err.to_string().contains("not-an-address"), "{err}");
    eprintln!("{err}");

    let name = unique("utb");
    let _first = TapDevice::open(&name).unwrap();
    // A non-persistent TAP cannot be attached twice.
    let err = TapDevice::open(&name).unwrap_err();
    assert!(err.to_string().contains("already"), "{err}");
    eprintln!("{err}");
}

#[test]
fn create_refuses_an_existing_name_and_leaves_that_interface_alone() {
    if !privileged() {
        return;
    }
    // A veth stands for anyone else's interface: create must not adopt (and later
    // delete) it.
    let name = unique("utx");
    let peer = format!("{name}p");
    let out = ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = TapBuilder::new(&name)
        .host_addr("10.78.0.1/24")
        .create()
        .unwrap_err();
    let still_there = ip(&["link", "show", &name]).unwrap().status.success();
    let _ = ip(&["link", "del", &name]);
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("`{name}` already exists")),
        "{err}"
    );
    assert!(err.to_string().contains("ip link del"), "{err}");
    assert!(
        still_there,
        "the failed create removed the existing interface"
    );

    // The same for a TAP that is alive in this process.
    let tap = TapDevice::create(&unique("utx"), "10.79.0.1/24").unwrap();
    let err = TapDevice::create(tap.name(), "10.79.1.1/24").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert!(ip(&["link", "show", tap.name()]).unwrap().status.success());
}

#[test]
fn namespace_deleted_under_the_device() {
    if !privileged() {
        return;
    }
    let ns = Ns::new();
    let name = unique("utd");
    let mut tap = TapDevice::create_in_netns(&name, &ns.0, "10.7.0.1/24").unwrap();
    drop(ns);
    std::thread::sleep(Duration::from_millis(200));
    // Whatever the kernel did with the interface, the device must not panic.
    let mut frames = 0;
    while tap.receive(Instant::ZERO).is_some() && frames < 100 {
        frames += 1;
    }
    let tx = tap.transmit(Instant::ZERO).unwrap();
    tx.consume(60, |buf| buf[..6].fill(0xff));
    eprintln!(
        "after netns deletion: {:?}; root ns has it: {}",
        tap.stats(),
        ip(&["link", "show", &name]).unwrap().status.success()
    );
}

/// ICMPv6 type of an MLDv2 report.
fn is_mld_report(frame: &[u8]) -> bool {
    frame.len() > 62
        && frame[12..14] == [0x86, 0xdd]
        && frame[20] == 0
        && frame[54] == 58
        && frame[62] == 143
}

#[test]
fn ipv6_autoconf_off_keeps_the_link_quiet() {
    if !privileged() {
        return;
    }
    let ns = Ns::new();
    let v4 = unique("utq");
    let mut quiet = TapBuilder::new(&v4)
        .netns(&ns.0)
        .host_addr("10.7.0.1/24")
        .ipv6_autoconf(false)
        .create()
        .unwrap();
    let v6 = unique("utq");
    let mut quiet6 = TapBuilder::new(&v6)
        .netns(&ns.0)
        .host_addr("10.8.0.1/24")
        .host_addr("fd00:8::1/64")
        .ipv6_autoconf(false)
        .create()
        .unwrap();
    let mut noisy = TapDevice::create_in_netns(&unique("utn"), &ns.0, "10.9.0.1/24").unwrap();
    let (_, chatter) = wait_for(&mut quiet, Duration::from_millis(1500), |_| false);
    assert!(
        chatter.is_empty(),
        "IPv4-only quiet link carried {:?}",
        describe(&chatter)
    );
    // An IPv6 address joins its solicited-node group, which the kernel
    // announces with MLDv2 reports (hop-by-hop header, then ICMPv6 143).
    let (_, chatter) = wait_for(&mut quiet6, Duration::from_millis(10), |_| false);
    eprintln!("IPv6 quiet link carried {:?}", describe(&chatter));
    assert!(
        chatter.iter().all(|f| is_mld_report(f)),
        "IPv6 quiet link carried {:?}",
        describe(&chatter)
    );
    let (_, chatter) = wait_for(&mut noisy, Duration::from_millis(10), |_| false);
    // With autoconf on, the kernel also sends DAD and router solicitations
    // (unless IPv6 is disabled system-wide).
    eprintln!("default link carried {:?}", describe(&chatter));
    let out = ip(&["-n", &ns.0, "-6", "addr", "show", "dev", &v6]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fd00:8::1/64") && !text.contains("fe80"),
        "{text}"
    );
}

#[test]
fn recorded_tap_traffic_is_readable_by_tcpdump() {
    if !privileged() {
        return;
    }
    let ns = Ns::new();
    let name = unique("utc");
    let tap = TapBuilder::new(&name)
        .netns(&ns.0)
        .host_addr("10.7.0.1/24")
        .ipv6_autoconf(false)
        .create()
        .unwrap();
    let path = std::env::temp_dir().join(format!("{name}.pcap"));
    let mut rec = PcapRecorder::create(tap, &path).unwrap();
    ns.run(|| {
        let sock = UdpSocket::bind("10.7.0.1:0").unwrap();
        sock.send_to(b"x", "10.7.0.2:9").unwrap();
    });
    let (arp, _) = wait_for(&mut rec, Duration::from_secs(3), |f| {
        is_arp_request_for(f, [10, 7, 0, 2])
    });
    assert!(arp.is_some());
    rec.flush().unwrap();
    assert_eq!(rec.frames_recorded(), rec.inner().stats().rx_frames);
    match Command::new("tcpdump").arg("-nr").arg(&path).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "tcpdump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains("ARP, Request who-has 10.7.0.2 tell 10.7.0.1"),
                "{text}"
            );
        }
        Err(e) => eprintln!("tcpdump not available ({e}); checked the recorder only"),
    }
    drop(rec);
    let _ = std::fs::remove_file(&path);
}
