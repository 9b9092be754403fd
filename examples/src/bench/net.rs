//! Network namespaces, veth pairs and host-side counters, all through iproute2, each removed
//! again by a guard's `Drop` (which also runs on errors and panics).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

pub use ustack_drivers::iproute::ip;

/// A network namespace that exists as long as this guard does.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one of the same name first) with `lo` up.
    pub fn create(name: &str) -> io::Result<Netns> {
        if std::path::Path::new("/var/run/netns").join(name).exists() {
            log::warn!("netns {name} exists (left over from a killed run?); deleting it");
            let _ = ip(None, &["netns", "del", name]);
        }
        ip(None, &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ip(Some(name), &["link", "set", "lo", "up"])?;
        log::debug!("netns {name}: created");
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also destroys every interface in it (veth ends, moved TAPs).
        match ip(None, &["netns", "del", &self.name]) {
            Ok(_) => log::debug!("netns {}: deleted", self.name),
            Err(e) => log::warn!("netns {}: cleanup failed: {e}", self.name),
        }
    }
}

/// A fresh namespace `{prefix}-u` and a TAP `{prefix}u` whose host side sits in it at
/// [`HOST_IP`](super::HOST_IP)/24: the link every userspace-stack row runs over.
#[allow(dead_code)] // bench_tcp builds its TAPs with user_tap_with; the other benches use this
pub fn user_tap(prefix: &str) -> io::Result<(Netns, ustack_drivers::TapDevice)> {
    user_tap_with(prefix, TapOptions::default())
}

/// How a benchmark's TAP is set up beyond the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOptions {
    /// MTU of the link (both sides), for jumbo frames; `None` is the kernel's 1500.
    pub mtu: Option<usize>,
    /// `IFF_VNET_HDR` with `TUNSETOFFLOAD`: the kernel hands over large TCP segments and
    /// checksum-partial frames.
    pub offload: bool,
}

/// [`user_tap`] with a jumbo MTU or kernel offloads.
pub fn user_tap_with(
    prefix: &str,
    opts: TapOptions,
) -> io::Result<(Netns, ustack_drivers::TapDevice)> {
    let ns = Netns::create(&format!("{prefix}-u"))?;
    let mut b = ustack_drivers::TapDevice::builder(&format!("{prefix}u"))
        .netns(ns.name())
        .host_addr(&format!("{}/24", std::net::Ipv4Addr::from(super::HOST_IP)))
        .ipv6_autoconf(false);
    if let Some(mtu) = opts.mtu {
        b = b.mtu(mtu);
    }
    if opts.offload {
        b = b.offload(true);
    }
    Ok((ns, b.create()?))
}

/// Moves the calling thread into namespace `ns` (threads switch network namespace one by one).
pub fn enter(ns: &str) -> io::Result<()> {
    let path = format!("/var/run/netns/{ns}");
    let f = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {path}: {e}")))?;
    // SAFETY: `f` is an open namespace file for the duration of the call.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns({path}): {e}")));
    }
    Ok(())
}

/// Two namespaces joined by a veth pair: `a` holds `10.8.0.1/24`, `b` holds `10.8.0.2/24`.
#[derive(Debug)]
pub struct VethPair {
    // Field order is drop order: nothing else to tear down, the namespaces take the veth along.
    /// First namespace.
    pub a: Netns,
    /// Second namespace.
    pub b: Netns,
}

/// Address of the veth end in namespace `a`.
pub const VETH_A_IP: [u8; 4] = [10, 8, 0, 1];
/// Address of the veth end in namespace `b`.
pub const VETH_B_IP: [u8; 4] = [10, 8, 0, 2];

impl VethPair {
    /// Creates both namespaces and the veth pair between them, with addresses, links up.
    pub fn create(prefix: &str) -> io::Result<VethPair> {
        let a = Netns::create(&format!("{prefix}-va"))?;
        let b = Netns::create(&format!("{prefix}-vb"))?;
        // Created directly inside the namespaces, so it never appears in the root namespace.
        ip(
            Some(a.name()),
            &[
                "link",
                "add",
                "veth-a",
                "type",
                "veth",
                "peer",
                "name",
                "veth-b",
                "netns",
                b.name(),
            ],
        )?;
        ip(
            Some(a.name()),
            &["addr", "add", "10.8.0.1/24", "dev", "veth-a"],
        )?;
        ip(
            Some(b.name()),
            &["addr", "add", "10.8.0.2/24", "dev", "veth-b"],
        )?;
        ip(Some(a.name()), &["link", "set", "veth-a", "up"])?;
        ip(Some(b.name()), &["link", "set", "veth-b", "up"])?;
        Ok(VethPair { a, b })
    }
}

/// Moves a TAP created in the root namespace into `ns`, gives it `cidr` and brings it up.
/// The TAP itself disappears when its (non-persistent) descriptor is closed.
pub fn move_tap_into(tap: &str, ns: &Netns, cidr: &str) -> io::Result<()> {
    ip(None, &["link", "set", tap, "netns", ns.name()])?;
    // No IPv6 link-local address: the link carries only the benchmark's traffic.
    ip(
        Some(ns.name()),
        &["link", "set", tap, "addrgenmode", "none"],
    )?;
    ip(Some(ns.name()), &["addr", "add", cidr, "dev", tap])?;
    ip(Some(ns.name()), &["link", "set", tap, "up"])?;
    Ok(())
}

/// Host-side counters of an interface: (rx packets, tx packets, rx+tx dropped).
pub fn link_counters(ns: &str, dev: &str) -> io::Result<(u64, u64, u64)> {
    let out = ip(Some(ns), &["-s", "link", "show", "dev", dev])?;
    // Format: a line starting with "RX:" (column names), then one with the numbers:
    // bytes packets errors dropped ...; the same for "TX:".
    let mut lines = out.lines().map(str::trim);
    let mut rx = None;
    let mut tx = None;
    while let Some(l) = lines.next() {
        let which = if l.starts_with("RX:") {
            &mut rx
        } else if l.starts_with("TX:") {
            &mut tx
        } else {
            continue;
        };
        let nums: Vec<u64> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if nums.len() >= 4 {
            *which = Some((nums[1], nums[3]));
        }
    }
    match (rx, tx) {
        (Some((rxp, rxd)), Some((txp, txd))) => Ok((rxp, txp, rxd + txd)),
        _ => Err(io::Error::other(format!(
            "cannot parse `ip -s link show dev {dev}` output"
        ))),
    }
}

/// The link of every AF_PACKET row: namespace `{prefix}-ap` holds the kernel peer's veth end
/// `{prefix}p` at [`HOST_IP`](super::HOST_IP)/24, namespace `{prefix}-au` holds ustack's end
/// `{prefix}a`. ustack's end has no IPv4 address (so the local kernel never answers for
/// ustack's address) unless the row is a kernel anchor that asks for one. Offloads (TSO, GSO,
/// GRO, checksums) are off on both ends, so the peer sends real, checksummed, MTU-sized
/// frames; neither end gets an IPv6 address.
#[derive(Debug)]
pub struct UserVeth {
    // Field order is drop order: the pair first, then the namespaces.
    pair: ustack_drivers::veth::VethPair,
    /// The kernel peer's namespace.
    pub peer: Netns,
    /// ustack's namespace (the kernel's, for anchor rows).
    pub user: Netns,
}

impl UserVeth {
    /// Creates both namespaces and the veth pair. With `user_ip`, ustack's end gets
    /// [`USER_IP`](super::USER_IP)/24, for the rows where the kernel plays ustack's part.
    pub fn create(prefix: &str, user_ip: bool, mtu: Option<usize>) -> io::Result<UserVeth> {
        let peer = Netns::create(&format!("{prefix}-ap"))?;
        let user = Netns::create(&format!("{prefix}-au"))?;
        let host = format!("{}/24", std::net::Ipv4Addr::from(super::HOST_IP));
        let mut b = ustack_drivers::veth::VethBuilder::new(
            (&format!("{prefix}p"), peer.name()),
            (&format!("{prefix}a"), user.name()),
        )
        .addr_a(&host)
        .offloads_off_a()
        .offloads_off_b();
        if user_ip {
            b = b.addr_b(&format!("{}/24", std::net::Ipv4Addr::from(super::USER_IP)));
        }
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        let pair = b.create()?;
        Ok(UserVeth { pair, peer, user })
    }

    /// Opens an AF_PACKET device on ustack's end (from a thread inside its namespace).
    /// `fanout` puts the socket into that `PACKET_FANOUT_HASH` group.
    pub fn open(
        &self,
        mode: ustack_drivers::IoMode,
        fanout: Option<u16>,
    ) -> io::Result<ustack_drivers::AfPacket> {
        let name = self.pair.name_b();
        ustack_drivers::iproute::in_netns(self.user.name(), || {
            let mut b = ustack_drivers::AfPacket::builder(name).mode(mode);
            if let Some(group) = fanout {
                b = b.fanout(group);
            }
            b.open()
        })?
    }
}
