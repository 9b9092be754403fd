//! veth pairs between network namespaces: the link an [`AfPacket`](crate::AfPacket) device
//! and a kernel peer share in tests and benchmarks.
//!
//! The pair is created directly in the first end's namespace, so it never shows up in the
//! root namespace, and deleting either end (on drop) deletes both.

use std::io;

use crate::iproute::{in_netns, ip};

/// One end of a [`VethPair`] being built.
#[derive(Debug, Clone)]
struct End {
    name: String,
    netns: String,
    addrs: Vec<String>,
    offloads_off: bool,
}

impl End {
    fn new(name: &str, netns: &str) -> End {
        End {
            name: name.to_owned(),
            netns: netns.to_owned(),
            addrs: Vec::new(),
            offloads_off: false,
        }
    }
}

/// Builds a [`VethPair`]: names, namespaces (both must exist), addresses, MTU, offloads.
///
/// Both ends get `addrgenmode none`, so the kernel adds no IPv6 link-local address and
/// sends no DAD, router solicitations or MLD reports on its own: the link carries only
/// what the caller causes. An end given no address is one the local kernel never answers
/// for, which is what a userspace stack on a raw socket needs.
///
/// # Example
///
/// ```no_run
/// use ustack_drivers::veth::VethBuilder;
///
/// // ip netns add peer; ip netns add user
/// let pair = VethBuilder::new(("vpeer", "peer"), ("vuser", "user"))
///     .addr_a("10.9.0.1/24")
///     .offloads_off_a()
///     .create()?;
/// // Open ustack_drivers::AfPacket on "vuser" from a thread inside "user".
/// # drop(pair);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct VethBuilder {
    a: End,
    b: End,
    mtu: Option<usize>,
}

impl VethBuilder {
    /// Starts a pair whose ends are `(name, netns)` each.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let builder = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2"));
    /// ```
    pub fn new(a: (&str, &str), b: (&str, &str)) -> VethBuilder {
        VethBuilder {
            a: End::new(a.0, a.1),
            b: End::new(b.0, b.1),
            mtu: None,
        }
    }

    /// Adds an address in CIDR notation to end `a` (IPv6 ones without DAD).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let b = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2"));
    /// let b = b.addr_a("10.9.0.1/24").addr_a("fd00:9::1/64");
    /// ```
    pub fn addr_a(mut self, cidr: &str) -> VethBuilder {
        self.a.addrs.push(cidr.to_owned());
        self
    }

    /// Adds an address in CIDR notation to end `b`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let b = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2"));
    /// let b = b.addr_b("10.9.0.2/24");
    /// ```
    pub fn addr_b(mut self, cidr: &str) -> VethBuilder {
        self.b.addrs.push(cidr.to_owned());
        self
    }

    /// Turns off TSO, GSO, GRO and checksum offload on end `a`, so what it sends are
    /// real, checksummed, MTU-sized frames (see [`ethtool`](crate::ethtool)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let b = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2"));
    /// let b = b.offloads_off_a();
    /// ```
    pub fn offloads_off_a(mut self) -> VethBuilder {
        self.a.offloads_off = true;
        self
    }

    /// Like [`offloads_off_a`](Self::offloads_off_a), for end `b`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let b = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2"));
    /// let b = b.offloads_off_b();
    /// ```
    pub fn offloads_off_b(mut self) -> VethBuilder {
        self.b.offloads_off = true;
        self
    }

    /// Sets the MTU of both ends (default: the kernel's 1500).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let b = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2"));
    /// let b = b.mtu(9000);
    /// ```
    pub fn mtu(mut self, mtu: usize) -> VethBuilder {
        self.mtu = Some(mtu);
        self
    }

    /// Creates the pair, configures both ends and brings them up. On failure the
    /// half-made pair is removed again.
    ///
    /// # Errors
    ///
    /// A missing namespace, a name that is taken or longer than 15 bytes, a bad address, or
    /// offloads that cannot be turned off; each message quotes the failing command.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let pair = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2")).create()?;
    /// assert_eq!(pair.name_b(), "vb");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn create(self) -> io::Result<VethPair> {
        let (a, b) = (&self.a, &self.b);
        ip(
            Some(&a.netns),
            &[
                "link", "add", &a.name, "type", "veth", "peer", "name", &b.name, "netns", &b.netns,
            ],
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{e}; both namespaces must exist (`ip netns add NAME`) and the names must be free"
                ),
            )
        })?;
        let pair = VethPair {
            a: self.a.clone(),
            b: self.b.clone(),
        };
        for end in [a, b] {
            let ns = Some(end.netns.as_str());
            ip(ns, &["link", "set", &end.name, "addrgenmode", "none"])?;
            if let Some(mtu) = self.mtu {
                ip(ns, &["link", "set", &end.name, "mtu", &mtu.to_string()])?;
            }
            for cidr in &end.addrs {
                let mut args = vec!["addr", "add", cidr.as_str(), "dev", end.name.as_str()];
                if cidr.contains(':') {
                    args.push("nodad");
                }
                ip(ns, &args)?;
            }
            if end.offloads_off {
                in_netns(&end.netns, || crate::ethtool::disable_offloads(&end.name))??;
            }
            ip(ns, &["link", "set", &end.name, "up"])?;
        }
        log::debug!(
            "veth {}@{} <-> {}@{}: created",
            a.name,
            a.netns,
            b.name,
            b.netns
        );
        Ok(pair)
    }
}

/// A veth pair between two namespaces, deleted when dropped.
///
/// # Example
///
/// ```no_run
/// use ustack_drivers::veth::VethBuilder;
///
/// let pair = VethBuilder::new(("va", "ns1"), ("vb", "ns2")).addr_a("10.9.0.1/24").create()?;
/// assert_eq!((pair.name_a(), pair.netns_b()), ("va", "ns2"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct VethPair {
    a: End,
    b: End,
}

impl VethPair {
    /// Name of end `a`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let pair = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2")).create()?;
    /// assert_eq!(pair.name_a(), "va");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn name_a(&self) -> &str {
        &self.a.name
    }

    /// Name of end `b`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let pair = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2")).create()?;
    /// assert_eq!(pair.name_b(), "vb");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn name_b(&self) -> &str {
        &self.b.name
    }

    /// Namespace of end `a`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let pair = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2")).create()?;
    /// assert_eq!(pair.netns_a(), "ns1");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn netns_a(&self) -> &str {
        &self.a.netns
    }

    /// Namespace of end `b`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let pair = ustack_drivers::veth::VethBuilder::new(("va", "ns1"), ("vb", "ns2")).create()?;
    /// assert_eq!(pair.netns_b(), "ns2");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn netns_b(&self) -> &str {
        &self.b.netns
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Fails harmlessly when the namespace went first: the kernel took the pair with it.
        if let Err(e) = ip(Some(&self.a.netns), &["link", "del", &self.a.name]) {
            log::debug!("veth {}: cleanup: {e}", self.a.name);
        }
    }
}
