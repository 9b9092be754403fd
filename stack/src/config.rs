//! How a [`Stack`](crate::Stack) is set up.

use smoltcp::time::Duration;
#[cfg(feature = "ipv6")]
use smoltcp::wire::Ipv6Cidr;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

/// Per-socket TCP settings. Buffer sizes take effect for sockets the stack allocates itself
/// (the `alloc` feature); caller-provided sockets keep the buffers they were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    /// Disable Nagle's algorithm, so small writes leave at once.
    pub nodelay: bool,
    /// Send keep-alive probes after this much idle time.
    pub keepalive: Option<Duration>,
    /// Abort the connection when the peer does not answer for this long.
    pub timeout: Option<Duration>,
    /// Receive buffer bytes (also the advertised window).
    pub rx_buffer: usize,
    /// Transmit buffer bytes.
    pub tx_buffer: usize,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: false,
            keepalive: None,
            timeout: None,
            rx_buffer: 64 * 1024,
            tx_buffer: 64 * 1024,
        }
    }
}

/// UDP buffer sizes for sockets the stack allocates itself (feature `udp`).
#[cfg(feature = "udp")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Datagrams the receive queue holds.
    pub rx_packets: usize,
    /// Payload bytes the receive queue holds.
    pub rx_bytes: usize,
    /// Datagrams the transmit queue holds.
    pub tx_packets: usize,
    /// Payload bytes the transmit queue holds.
    pub tx_bytes: usize,
}

#[cfg(feature = "udp")]
impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            rx_packets: 64,
            rx_bytes: 64 * 1024,
            tx_packets: 64,
            tx_bytes: 64 * 1024,
        }
    }
}

/// Addresses and limits of one stack.
///
/// ```
/// use ustack::Config;
/// let config = Config::new([0x02, 0, 0, 0, 0, 2], "10.7.0.2/24".parse().unwrap())
///     .gateway("10.7.0.1".parse().unwrap());
/// assert_eq!(config.max_sockets, 1024);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// The interface's MAC address; must be unicast.
    pub mac: EthernetAddress,
    /// IPv4 address and prefix.
    pub ipv4: Ipv4Cidr,
    /// Default IPv4 route.
    pub gateway: Option<Ipv4Address>,
    /// Optional IPv6 address and prefix (feature `ipv6`).
    #[cfg(feature = "ipv6")]
    pub ipv6: Option<Ipv6Cidr>,
    /// Seed for sequence numbers and ephemeral ports. The default is a constant, which makes
    /// both predictable to an attacker: give each boot a different one (on Linux,
    /// [`Config::seed_from_os`]; on firmware, a hardware RNG or a unique ID plus a counter).
    pub random_seed: u64,
    /// Upper bound on sockets of all kinds (sizes the readiness table with `alloc`).
    pub max_sockets: usize,
    /// Defaults for new TCP sockets.
    pub tcp: TcpOptions,
    /// Defaults for new UDP sockets.
    #[cfg(feature = "udp")]
    pub udp: UdpOptions,
    /// How long a SYN that finds its listener's backlog full is held before it is reset.
    /// Zero resets at once.
    pub syn_hold: Duration,
    /// The datagram [`Stack::udp_dial`](crate::Stack::udp_dial) sends to check its peer, and
    /// that sockets with [`Stack::udp_drop_probes`](crate::Stack::udp_drop_probes) discard.
    /// Both ends must agree on it.
    #[cfg(feature = "udp")]
    pub udp_probe: &'static [u8],
    /// Longest frame accepted from the device, in bytes with the Ethernet header; longer
    /// ones are dropped and counted as oversize. `0`, the default, means the device's MTU.
    /// Raise it for devices that hand over frames larger than the link's MTU, like a TAP
    /// with offloads, which delivers TCP segments of up to 64 KiB
    /// (`ustack_drivers::TapDevice::rx_frame_limit`).
    pub max_rx_frame: usize,
}

/// The default dial probe, [`Config::udp_probe`].
#[cfg(feature = "udp")]
pub const DEFAULT_UDP_PROBE: &[u8] = b"connect-ping";

impl Config {
    /// A configuration with the given MAC and IPv4 address, and defaults for the rest.
    pub fn new(mac: [u8; 6], ipv4: Ipv4Cidr) -> Self {
        Config {
            mac: EthernetAddress(mac),
            ipv4,
            gateway: None,
            #[cfg(feature = "ipv6")]
            ipv6: None,
            random_seed: 0x7573_7461_636b,
            max_sockets: 1024,
            tcp: TcpOptions::default(),
            #[cfg(feature = "udp")]
            udp: UdpOptions::default(),
            syn_hold: Duration::from_millis(500),
            #[cfg(feature = "udp")]
            udp_probe: DEFAULT_UDP_PROBE,
            max_rx_frame: 0,
        }
    }

    /// Sets the longest frame accepted from the device; see [`Config::max_rx_frame`].
    ///
    /// ```
    /// let config = ustack::Config::new([2, 0, 0, 0, 0, 2], "10.7.0.2/24".parse().unwrap())
    ///     .max_rx_frame(65_535 + 14);
    /// assert_eq!(config.max_rx_frame, 65_549);
    /// ```
    pub fn max_rx_frame(mut self, bytes: usize) -> Self {
        self.max_rx_frame = bytes;
        self
    }

    /// Sets the default gateway.
    pub fn gateway(mut self, gw: Ipv4Address) -> Self {
        self.gateway = Some(gw);
        self
    }

    /// Adds an IPv6 address (feature `ipv6`).
    #[cfg(feature = "ipv6")]
    pub fn ipv6(mut self, cidr: Ipv6Cidr) -> Self {
        self.ipv6 = Some(cidr);
        self
    }

    /// Sets the UDP dial probe; see [`Config::udp_probe`].
    #[cfg(feature = "udp")]
    pub fn udp_probe(mut self, probe: &'static [u8]) -> Self {
        self.udp_probe = probe;
        self
    }

    /// Sets the random seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.random_seed = seed;
        self
    }

    /// Seeds from the operating system's random source (`getrandom(2)`).
    ///
    /// ```
    /// use ustack::Config;
    /// let a = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap()).seed_from_os();
    /// let b = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap()).seed_from_os();
    /// assert_ne!(a.random_seed, b.random_seed);
    /// ```
    #[cfg(feature = "std")]
    pub fn seed_from_os(mut self) -> Self {
        let mut seed = [0u8; 8];
        // SAFETY: getrandom writes at most `seed.len()` bytes into the buffer.
        let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
        self.random_seed = if n == 8 {
            u64::from_ne_bytes(seed)
        } else {
            // No entropy source: fall back to the clock rather than the constant.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
        };
        self
    }
}
