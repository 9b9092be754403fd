//! Connected UDP, ICMP errors and the dial check, with frames injected from a scripted peer.

extern crate std;

use std::vec::Vec;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpEndpoint, Ipv6Cidr};

use crate::frames::Link;
use crate::test_wire::Wire;
use crate::{Config, DialOptions, DialStatus, Error, Ready, Stack, Token, UdpHandle};

const PEER_PORT: u16 = 5000;
const OTHER_PORT: u16 = 6000;
const LOCAL: u16 = 4000;
const PORT_UNREACHABLE_V4: u8 = 3;
const HOST_UNREACHABLE_V4: u8 = 1;
const FRAG_NEEDED_V4: u8 = 4;
const PORT_UNREACHABLE_V6: u8 = 4;
const ADDR_UNREACHABLE_V6: u8 = 3;

struct Peer {
    stack: Stack<'static, Wire>,
    link: Link,
    now: Instant,
}

impl Peer {
    fn new() -> Peer {
        let link = Link::default();
        let config = Config::new(link.our_mac.0, "10.0.0.1/24".parse().unwrap())
            .ipv6(Ipv6Cidr::new(link.our6, 64));
        let stack = Stack::new(config, Wire::default(), Instant::ZERO).unwrap();
        Peer {
            stack,
            link,
            now: Instant::ZERO,
        }
    }

    fn peer4(&self, port: u16) -> IpEndpoint {
        IpEndpoint::new(self.link.peer4.into(), port)
    }

    fn peer6(&self, port: u16) -> IpEndpoint {
        IpEndpoint::new(self.link.peer6.into(), port)
    }

    /// Delivers frames and polls; returns the events of that poll.
    fn deliver(&mut self, frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<crate::Event> {
        self.stack.device_mut().inbound.extend(frames);
        self.now += Duration::from_millis(1);
        self.stack.poll(self.now);
        core::iter::from_fn(|| self.stack.next_event()).collect()
    }

    fn connected(&mut self, remote: IpEndpoint) -> UdpHandle {
        let h = self.stack.udp_bind(LOCAL).unwrap();
        self.stack.udp_connect(h, remote).unwrap();
        h
    }

    fn recv(&mut self, h: UdpHandle) -> Result<(Vec<u8>, IpEndpoint), Error> {
        let mut buf = [0u8; 256];
        let (n, meta) = self.stack.udp_recv_from(h, &mut buf)?;
        Ok((buf[..n].to_vec(), meta.remote))
    }

    /// ICMPv4 port unreachable quoting only the IP header and 8 bytes, as RFC 792 allows.
    fn refused4(&self, local: u16, remote: u16) -> Vec<u8> {
        let sent = self.link.sent_udp4(local, remote, b"a datagram we sent");
        self.link.unreachable4(PORT_UNREACHABLE_V4, &sent[..20 + 8])
    }
}

#[test]
fn only_the_peers_datagrams_are_delivered_and_the_rest_are_counted() {
    let mut p = Peer::new();
    let h = p.connected(p.peer4(PEER_PORT));
    let l = p.link;
    p.deliver([
        l.udp4(PEER_PORT, LOCAL, b"one"),
        l.udp4(OTHER_PORT, LOCAL, b"stranger"),
        l.udp4(PEER_PORT, LOCAL, b"two"),
        l.udp4(OTHER_PORT, LOCAL, b"stranger"),
        l.udp4(OTHER_PORT, LOCAL, b"stranger"),
    ]);
    let peer = p.peer4(PEER_PORT);
    assert_eq!(p.recv(h), Ok((b"one".to_vec(), peer)));
    assert_eq!(p.recv(h), Ok((b"two".to_vec(), peer)));
    assert_eq!(p.recv(h), Err(Error::WouldBlock));
    assert_eq!(p.stack.stats().udp_foreign_dropped, 3);
    // Dropped at ingress: smoltcp never queued them, so they took no buffer space.
    assert_eq!(p.stack.stats().rx_frames, 5);
}

#[test]
fn a_strangers_flood_takes_no_room_from_the_peer() {
    let mut p = Peer::new();
    let opts = crate::UdpOptions {
        rx_packets: 2,
        ..crate::UdpOptions::default()
    };
    let h = p.stack.udp_bind_with(LOCAL, opts).unwrap();
    p.stack.udp_connect(h, p.peer4(PEER_PORT)).unwrap();
    let l = p.link;
    let flood = (0..10).map(|_| l.udp4(OTHER_PORT, LOCAL, b"flood"));
    p.deliver(flood.chain([l.udp4(PEER_PORT, LOCAL, b"peer")]));
    assert_eq!(p.recv(h), Ok((b"peer".to_vec(), p.peer4(PEER_PORT))));
    assert_eq!(p.stack.stats().udp_foreign_dropped, 10);
}

#[test]
fn datagrams_queued_before_connect_from_others_are_dropped_at_recv() {
    let mut p = Peer::new();
    let h = p.stack.udp_bind(LOCAL).unwrap();
    let l = p.link;
    p.deliver([
        l.udp4(OTHER_PORT, LOCAL, b"early stranger"),
        l.udp4(PEER_PORT, LOCAL, b"early peer"),
    ]);
    p.stack.udp_connect(h, p.peer4(PEER_PORT)).unwrap();
    assert_eq!(p.recv(h), Ok((b"early peer".to_vec(), p.peer4(PEER_PORT))));
    assert_eq!(p.stack.stats().udp_foreign_dropped, 1);
    // Disconnected again, anyone's datagrams are delivered with their address.
    p.stack.udp_disconnect(h).unwrap();
    p.deliver([l.udp4(OTHER_PORT, LOCAL, b"late stranger")]);
    assert_eq!(
        p.recv(h),
        Ok((b"late stranger".to_vec(), p.peer4(OTHER_PORT)))
    );
}

#[test]
fn send_and_send_to_each_need_their_mode() {
    let mut p = Peer::new();
    let h = p.stack.udp_bind(LOCAL).unwrap();
    assert_eq!(
        p.stack.udp_send(h, b"x"),
        Err(Error::DestinationAddressRequired)
    );
    assert_eq!(p.stack.udp_peer_addr(h), Err(Error::NotConnected));
    p.stack.udp_connect(h, p.peer4(PEER_PORT)).unwrap();
    assert_eq!(p.stack.udp_peer_addr(h), Ok(p.peer4(PEER_PORT)));
    let e = p
        .stack
        .udp_send_to(h, b"x", p.peer4(PEER_PORT))
        .unwrap_err();
    assert_eq!(e, Error::AlreadyConnected);
    assert!(std::format!("{e}").contains("use of WriteTo with pre-connected connection"));
    p.stack.udp_send(h, b"x").unwrap();
    p.stack.udp_disconnect(h).unwrap();
    p.stack.udp_send_to(h, b"y", p.peer4(PEER_PORT)).unwrap();
    assert_eq!(
        p.stack.udp_send(h, b"z"),
        Err(Error::DestinationAddressRequired)
    );
}

#[test]
fn connect_rejects_self_unspecified_port_zero_and_missing_ip_version() {
    let mut p = Peer::new();
    let h = p.stack.udp_bind(LOCAL).unwrap();
    let own = IpEndpoint::new(p.link.our4.into(), LOCAL);
    match p.stack.udp_connect(h, own) {
        Err(Error::InvalidInput(why)) => assert!(why.contains("self-connect"), "{why}"),
        other => panic!("self-connect gave {other:?}"),
    }
    let own6 = IpEndpoint::new(p.link.our6.into(), LOCAL);
    assert!(matches!(
        p.stack.udp_connect(h, own6),
        Err(Error::InvalidInput(_))
    ));
    // Our address with another port is a legitimate peer.
    p.stack
        .udp_connect(h, IpEndpoint::new(p.link.our4.into(), LOCAL + 1))
        .unwrap();
    for bad in ["0.0.0.0:53", "10.0.0.2:0"] {
        assert!(matches!(
            p.stack.udp_connect(h, bad.parse().unwrap()),
            Err(Error::InvalidInput(_))
        ));
    }
    let v4only = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    let mut s = Stack::new(v4only, Wire::default(), Instant::ZERO).unwrap();
    let h = s.udp_bind(LOCAL).unwrap();
    assert!(matches!(
        s.udp_connect(h, p.peer6(PEER_PORT)),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn port_unreachable_with_an_8_byte_quote_refuses_once_with_an_error_event() {
    let mut p = Peer::new();
    let h = p.connected(p.peer4(PEER_PORT));
    let events = p.deliver([p.refused4(LOCAL, PEER_PORT)]);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].token, Token::Udp(h));
    assert!(events[0].ready.contains(Ready::ERROR | Ready::READABLE));
    assert_eq!(p.recv(h), Err(Error::ConnectionRefused));
    assert_eq!(p.recv(h), Err(Error::WouldBlock));
    assert_eq!(p.stack.stats().udp_icmp_errors, 1);
    // The error is not sticky: the socket keeps working.
    p.stack.udp_send(h, b"again").unwrap();
}

#[test]
fn a_pending_error_is_reported_by_send_too_and_nothing_is_sent() {
    let mut p = Peer::new();
    let h = p.connected(p.peer4(PEER_PORT));
    let l = p.link;
    let quote = l.sent_udp4(LOCAL, PEER_PORT, b"full quote");
    p.deliver([l.unreachable4(HOST_UNREACHABLE_V4, &quote)]);
    let before = p.stack.device().sent.len();
    assert_eq!(p.stack.udp_send(h, b"lost?"), Err(Error::HostUnreachable));
    p.deliver([]);
    assert_eq!(p.stack.device().sent.len(), before);
    assert_eq!(p.stack.udp_send(h, b"sent"), Ok(()));
}

#[test]
fn icmp_errors_that_do_not_quote_this_socket_change_nothing() {
    let mut p = Peer::new();
    let h = p.connected(p.peer4(PEER_PORT));
    let l = p.link;
    let unconnected = p.stack.udp_bind(LOCAL + 1).unwrap();
    let wrong_source = Link {
        our4: "10.0.0.3".parse().unwrap(),
        ..l
    };
    let sent = wrong_source.sent_udp4(LOCAL, PEER_PORT, b"x");
    let other_ip = Link {
        our4: "10.0.0.99".parse().unwrap(),
        ..l
    };
    let other_mac = Link {
        our_mac: smoltcp::wire::EthernetAddress([2, 0, 0, 0, 0, 0x99]),
        ..l
    };
    p.deliver([
        p.refused4(LOCAL, OTHER_PORT),    // another remote port
        p.refused4(LOCAL + 2, PEER_PORT), // another local port
        p.refused4(LOCAL + 1, PEER_PORT), // the unconnected socket
        // Our port and peer, but the quoted source is not one of our addresses.
        l.unreachable4(PORT_UNREACHABLE_V4, &sent[..28]),
        // Fragmentation needed is path-MTU advice, not an error.
        l.unreachable4(FRAG_NEEDED_V4, &l.sent_udp4(LOCAL, PEER_PORT, b"x")),
        // A quote cut inside the UDP ports.
        l.unreachable4(
            PORT_UNREACHABLE_V4,
            &l.sent_udp4(LOCAL, PEER_PORT, b"x")[..23],
        ),
        // A genuine quote, but the ICMP message is for another host (IP, then MAC).
        other_ip.unreachable4(PORT_UNREACHABLE_V4, &l.sent_udp4(LOCAL, PEER_PORT, b"x")),
        other_mac.unreachable4(PORT_UNREACHABLE_V4, &l.sent_udp4(LOCAL, PEER_PORT, b"x")),
    ]);
    assert_eq!(p.recv(h), Err(Error::WouldBlock));
    assert_eq!(p.recv(unconnected), Err(Error::WouldBlock));
    assert_eq!(p.stack.stats().udp_icmp_errors, 0);
}

#[test]
fn icmpv6_port_and_address_unreachable_map_to_their_errors() {
    let mut p = Peer::new();
    let h = p.connected(p.peer6(PEER_PORT));
    let l = p.link;
    let quote = l.sent_udp6(LOCAL, PEER_PORT, b"v6 datagram");
    p.deliver([l.unreachable6(PORT_UNREACHABLE_V6, &quote[..48])]);
    assert_eq!(p.recv(h), Err(Error::ConnectionRefused));
    p.deliver([l.unreachable6(ADDR_UNREACHABLE_V6, &quote)]);
    assert_eq!(p.recv(h), Err(Error::HostUnreachable));
    assert_eq!(p.recv(h), Err(Error::WouldBlock));
    let elsewhere = Link {
        our6: "fd00::99".parse().unwrap(),
        ..l
    };
    p.deliver([elsewhere.unreachable6(PORT_UNREACHABLE_V6, &quote)]);
    assert_eq!(p.recv(h), Err(Error::WouldBlock));
    assert_eq!(p.stack.stats().udp_icmp_errors, 2);
}

#[test]
fn reconnecting_clears_a_pending_error_and_closing_forgets_the_peer() {
    let mut p = Peer::new();
    let h = p.connected(p.peer4(PEER_PORT));
    p.deliver([p.refused4(LOCAL, PEER_PORT)]);
    p.stack.udp_connect(h, p.peer4(OTHER_PORT)).unwrap();
    assert_eq!(p.recv(h), Err(Error::WouldBlock));
    assert_eq!(p.stack.ingress.udp_connected, 1);
    p.stack.udp_close(h).unwrap();
    assert_eq!(p.stack.ingress.udp_connected, 0);
    // The port's next owner is unconnected: anyone's datagrams arrive.
    let h2 = p.stack.udp_bind(LOCAL).unwrap();
    let l = p.link;
    p.deliver([l.udp4(OTHER_PORT + 1, LOCAL, b"hi")]);
    assert_eq!(p.recv(h2).map(|(d, _)| d), Ok(b"hi".to_vec()));
    assert_eq!(p.stack.stats().udp_foreign_dropped, 0);
}

#[test]
fn probes_are_dropped_only_where_asked() {
    let mut p = Peer::new();
    let h = p.stack.udp_bind(LOCAL).unwrap();
    let l = p.link;
    let probe = crate::DEFAULT_UDP_PROBE;
    p.deliver([l.udp4(PEER_PORT, LOCAL, probe)]);
    assert_eq!(p.recv(h).map(|(d, _)| d), Ok(probe.to_vec()));
    p.stack.udp_drop_probes(h, true).unwrap();
    p.deliver([
        l.udp4(PEER_PORT, LOCAL, probe),
        l.udp4(PEER_PORT, LOCAL, b"data"),
    ]);
    assert_eq!(p.recv(h).map(|(d, _)| d), Ok(b"data".to_vec()));
    assert_eq!(p.stack.stats().udp_probes_dropped, 1);
}

/// Runs a dial against the scripted peer; `answer` may inject frames after the probe left.
fn dial(
    p: &mut Peer,
    opts: DialOptions,
    answer: impl Fn(&Link, u16) -> Vec<Vec<u8>>,
) -> (Result<UdpHandle, Error>, Duration) {
    let start = p.now;
    let d = p.stack.udp_dial(p.peer4(PEER_PORT), opts, p.now).unwrap();
    let local = p.stack.udp_local_port(d.handle()).unwrap();
    let l = p.link;
    // Let the peer resolve us: ARP first, then the probe goes out.
    p.deliver([l.arp(smoltcp::wire::ArpOperation::Reply, l.our_mac, l.our_mac)]);
    p.deliver([]);
    let mut answered = false;
    loop {
        match p.stack.udp_dial_check(&d, p.now) {
            Ok(DialStatus::Pending { until }) => assert_eq!(until, d.deadline()),
            Ok(DialStatus::Reachable(h)) => return (Ok(h), p.now - start),
            Err(e) => return (Err(e), p.now - start),
        }
        let frames = if answered {
            Vec::new()
        } else {
            answered = true;
            answer(&l, local)
        };
        p.deliver(frames);
        p.now += Duration::from_millis(10);
    }
}

#[test]
fn dial_fails_on_port_unreachable_and_closes_its_socket() {
    let mut p = Peer::new();
    let (r, _) = dial(&mut p, DialOptions::default(), |l, local| {
        let sent = l.sent_udp4(local, PEER_PORT, crate::DEFAULT_UDP_PROBE);
        std::vec![l.unreachable4(PORT_UNREACHABLE_V4, &sent)]
    });
    assert_eq!(r, Err(Error::ConnectionRefused));
    assert_eq!(p.stack.ingress.udp_connected, 0);
    // The probe did go out, with the configured bytes.
    let probe = crate::DEFAULT_UDP_PROBE;
    assert!(p.stack.device().sent.iter().any(|f| f.ends_with(probe)));
}

#[test]
fn dial_passes_on_an_echoed_probe_at_once_and_never_delivers_it() {
    let mut p = Peer::new();
    let (r, took) = dial(&mut p, DialOptions::default(), |l, local| {
        std::vec![l.udp4(PEER_PORT, local, crate::DEFAULT_UDP_PROBE)]
    });
    let h = r.unwrap();
    assert!(took < Duration::from_secs(1), "took {took}");
    assert_eq!(p.recv(h), Err(Error::WouldBlock));
    assert_eq!(p.stack.stats().udp_probes_dropped, 1);
}

#[test]
fn dial_passes_on_silence_unless_strict() {
    let mut p = Peer::new();
    let opts = DialOptions {
        probe_timeout: Duration::from_millis(200),
        ..DialOptions::default()
    };
    let (r, took) = dial(&mut p, opts, |_, _| Vec::new());
    assert!(r.is_ok());
    assert!(took >= Duration::from_millis(200), "took {took}");
    let strict = DialOptions {
        strict: true,
        ..opts
    };
    let (r, _) = dial(&mut p, strict, |_, _| Vec::new());
    assert_eq!(r, Err(Error::TimedOut));
}

#[test]
fn a_real_reply_to_the_dial_stays_for_the_application() {
    let mut p = Peer::new();
    let (r, _) = dial(&mut p, DialOptions::default(), |l, local| {
        std::vec![l.udp4(PEER_PORT, local, b"welcome")]
    });
    let h = r.unwrap();
    assert_eq!(p.recv(h).map(|(d, _)| d), Ok(b"welcome".to_vec()));
}

#[test]
fn icmp_errors_are_checked_against_addresses_changed_through_the_interface() {
    let mut p = Peer::new();
    let h = p.connected(p.peer4(PEER_PORT));
    p.deliver([]);
    let moved = Link {
        our4: "10.0.0.5".parse().unwrap(),
        ..p.link
    };
    p.stack.interface().update_ip_addrs(|addrs| {
        addrs[0] = smoltcp::wire::IpCidr::new(moved.our4.into(), 24);
    });
    let quote = |l: &Link| l.sent_udp4(LOCAL, PEER_PORT, b"x");
    // The old address is no longer ours; the new one is.
    p.deliver([p.link.unreachable4(PORT_UNREACHABLE_V4, &quote(&p.link))]);
    assert_eq!(p.recv(h), Err(Error::WouldBlock));
    p.deliver([moved.unreachable4(PORT_UNREACHABLE_V4, &quote(&moved))]);
    assert_eq!(p.recv(h), Err(Error::ConnectionRefused));
}

#[test]
fn frames_beyond_the_mtu_are_oversize_unless_max_rx_frame_allows_them() {
    for (limit, delivered) in [(0, false), (4000, true), (3000, false)] {
        let link = Link::default();
        let config =
            Config::new(link.our_mac.0, "10.0.0.1/24".parse().unwrap()).max_rx_frame(limit);
        let mut stack = Stack::new(config, Wire::default(), Instant::ZERO).unwrap();
        let h = stack.udp_bind(LOCAL).unwrap();
        let payload = std::vec![0x5a; 3000];
        // 14 + 20 + 8 + 3000 = 3042 bytes: over the wire's 1514-byte MTU.
        stack
            .device_mut()
            .inbound
            .push_back(link.udp4(PEER_PORT, LOCAL, &payload));
        stack.poll(Instant::from_millis(1));
        let mut buf = std::vec![0u8; 4000];
        let got = stack.udp_recv_from(h, &mut buf).map(|(n, _)| n);
        if delivered {
            assert_eq!(got, Ok(3000), "limit {limit}");
            assert_eq!(&buf[..3000], &payload[..]);
            assert_eq!(stack.stats().rx_oversize, 0);
        } else {
            assert_eq!(got, Err(Error::WouldBlock), "limit {limit}");
            assert_eq!(stack.stats().rx_oversize, 1, "limit {limit}");
        }
    }
}
