//! The link every AF_PACKET test runs over: namespace `peer` holds the kernel's end of a veth
//! pair at [`PEER_IP`] (offloads off, so it sends real checksummed MTU-sized frames), and
//! namespace `user` holds ustack's end, up with no kernel address, so only ustack answers
//! for [`USTACK_IP`]. Both ends have `addrgenmode none`: no IPv6 chatter crosses the link.

use std::net::{Ipv4Addr, SocketAddr};

use ustack::smoltcp::wire::Ipv4Cidr;
use ustack::Config;
use ustack_drivers::veth::{VethBuilder, VethPair};
use ustack_drivers::{AfPacket, IoMode};
use ustack_tests::{unique_name, NetNs};

/// The kernel peer's address on its veth end.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
/// ustack's address (no kernel holds it).
pub const USTACK_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
/// Port of ustack's TCP and UDP echo.
pub const PORT: u16 = 7;

/// ustack's echo as the kernel peer addresses it.
pub fn echo_addr() -> SocketAddr {
    SocketAddr::from((USTACK_IP, PORT))
}

/// Two namespaces joined by a veth pair; everything is removed on drop, also when a test
/// panics.
pub struct Link {
    // Field order is drop order: the pair first, then the namespaces (which would take the
    // pair along anyway).
    pair: VethPair,
    /// The kernel peer's namespace.
    pub peer: NetNs,
    /// ustack's namespace, where its packet sockets are opened.
    pub user: NetNs,
}

impl Link {
    /// Creates both namespaces and the veth pair between them (links up).
    pub fn new() -> Link {
        let peer = NetNs::new();
        let user = NetNs::new();
        let (peer_if, user_if) = (unique_name("vp"), unique_name("vu"));
        let pair = VethBuilder::new((&peer_if, peer.name()), (&user_if, user.name()))
            .addr_a(&format!("{PEER_IP}/24"))
            .offloads_off_a()
            .create()
            .unwrap_or_else(|e| panic!("cannot create the veth link: {e}"));
        Link { pair, peer, user }
    }

    /// ustack's end of the pair.
    pub fn user_if(&self) -> &str {
        self.pair.name_b()
    }

    /// The kernel peer's end of the pair.
    pub fn peer_if(&self) -> &str {
        self.pair.name_a()
    }

    /// A packet socket on ustack's end, opened from inside ustack's namespace.
    pub fn open(&self, mode: IoMode, fanout: Option<u16>) -> AfPacket {
        let name = self.user_if().to_owned();
        self.user.run(move || {
            let mut builder = AfPacket::builder(&name).mode(mode);
            if let Some(group) = fanout {
                builder = builder.fanout(group);
            }
            builder
                .open()
                .unwrap_or_else(|e| panic!("cannot open AF_PACKET on {name}: {e}"))
        })
    }

    /// Kernel counters of ustack's end (what crossed the veth into ustack's namespace).
    pub fn user_counters(&self) -> IfCounters {
        IfCounters::read(&self.user, self.user_if())
    }

    /// Kernel counters of the peer's end.
    pub fn peer_counters(&self) -> IfCounters {
        IfCounters::read(&self.peer, self.peer_if())
    }
}

/// ustack's configuration for a device: its MAC (shared by fanout stacks) and [`USTACK_IP`].
pub fn config(dev: &AfPacket) -> Config {
    Config::new(dev.mac(), Ipv4Cidr::new(USTACK_IP, 24)).seed(0xaf9a_c4e7)
}

/// Packet counters of one interface, as `/proc/net/dev` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfCounters {
    /// Frames received (on a veth: what the other end handed over).
    pub rx_packets: u64,
    /// Frames dropped on send (on a veth: the other end's backlog was full).
    pub tx_dropped: u64,
}

impl IfCounters {
    /// Reads `ifname`'s line of `/proc/thread-self/net/dev` inside `ns` (`/proc/net` would
    /// show the main thread's namespace, not the reading thread's).
    pub fn read(ns: &NetNs, ifname: &str) -> IfCounters {
        let table = ns
            .run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))
            .unwrap_or_else(|e| panic!("cannot read /proc/thread-self/net/dev: {e}"));
        let line = table
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{ifname}:")))
            .unwrap_or_else(|| panic!("{ifname} missing from /proc/net/dev:\n{table}"));
        // rx: bytes packets errs drop fifo frame compressed multicast, then tx: bytes
        // packets errs drop ...
        let n: Vec<u64> = line
            .split_whitespace()
            .map(|w| w.parse().expect("a number in /proc/net/dev"))
            .collect();
        assert!(
            n.len() >= 12,
            "short /proc/net/dev line for {ifname}: {line}"
        );
        IfCounters {
            rx_packets: n[1],
            tx_dropped: n[11],
        }
    }
}
