//! The flags every TAP program shares: `--tap NAME --host-cidr A.B.C.D/N --stack-ip A.B.C.D [--pcap FILE]`.

use std::net::Ipv4Addr;

use ustack::smoltcp::wire::Ipv4Cidr;

/// Where the TAP link lives and how ustack sits on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapArgs {
    /// TAP interface name.
    pub tap: String,
    /// Host-side address and prefix, e.g. `10.7.0.1/24`.
    pub host_cidr: String,
    /// The host-side address alone.
    pub host_ip: Ipv4Addr,
    /// Prefix length of the link.
    pub prefix: u8,
    /// ustack's address on the link.
    pub stack_ip: Ipv4Addr,
    /// Record every frame to this pcap file.
    pub pcap: Option<String>,
}

impl Default for TapArgs {
    fn default() -> Self {
        TapArgs {
            tap: "ustack0".into(),
            host_cidr: "10.7.0.1/24".into(),
            host_ip: Ipv4Addr::new(10, 7, 0, 1),
            prefix: 24,
            stack_ip: Ipv4Addr::new(10, 7, 0, 2),
            pcap: None,
        }
    }
}

impl TapArgs {
    /// ustack's interface address with the link prefix.
    pub fn stack_cidr(&self) -> Ipv4Cidr {
        Ipv4Cidr::new(self.stack_ip, self.prefix)
    }

    /// Parses the flags; `--help` and errors return the text to print.
    ///
    /// ```
    /// use ustack_examples::cli::TapArgs;
    /// let a = TapArgs::parse(["--tap", "t1", "--stack-ip", "10.9.0.2", "--host-cidr", "10.9.0.1/24"]).unwrap();
    /// assert_eq!((a.tap.as_str(), a.prefix), ("t1", 24));
    /// assert!(TapArgs::parse(["--stack-ip", "10.8.0.2"]).is_err()); // not on the host's link
    /// ```
    pub fn parse<I, S>(args: I) -> Result<TapArgs, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut a = TapArgs::default();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let flag = flag.as_ref().to_owned();
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.into());
            }
            let value = it
                .next()
                .map(|v| v.as_ref().to_owned())
                .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
            match flag.as_str() {
                "--tap" => a.tap = value,
                "--host-cidr" => {
                    let (ip, prefix) = value
                        .split_once('/')
                        .ok_or_else(|| format!("--host-cidr wants A.B.C.D/N, got {value:?}"))?;
                    a.host_ip = ip
                        .parse()
                        .map_err(|_| format!("--host-cidr: bad address {ip:?}"))?;
                    a.prefix = prefix
                        .parse()
                        .ok()
                        .filter(|p| (1..=30).contains(p))
                        .ok_or_else(|| {
                            format!("--host-cidr: prefix must be 1..=30, got {prefix:?}")
                        })?;
                    a.host_cidr = value;
                }
                "--stack-ip" => {
                    a.stack_ip = value
                        .parse()
                        .map_err(|_| format!("--stack-ip: bad address {value:?}"))?
                }
                "--pcap" => a.pcap = Some(value),
                _ => return Err(format!("unknown flag {flag}\n\n{USAGE}")),
            }
        }
        let mask = u32::MAX << (32 - u32::from(a.prefix));
        if u32::from(a.host_ip) & mask != u32::from(a.stack_ip) & mask || a.host_ip == a.stack_ip {
            return Err(format!(
                "--stack-ip {} must be a different address on the host's link {}",
                a.stack_ip, a.host_cidr
            ));
        }
        Ok(a)
    }
}

/// Usage text for the TAP programs.
pub const USAGE: &str =
    "flags: --tap NAME (default ustack0) --host-cidr A.B.C.D/N (default 10.7.0.1/24) \
--stack-ip A.B.C.D (default 10.7.0.2) [--pcap FILE]";
