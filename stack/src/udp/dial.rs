//! The dial check: Getty's `dialUDP`, sans-IO.
//!
//! Connecting a UDP socket sends nothing, so a dial to a closed port "succeeds". The dial
//! check sends one probe datagram and waits: an ICMP port unreachable fails the dial, and a
//! reply or silence until the timeout passes it. Silence must pass, because UDP has no
//! handshake (a healthy peer may simply not answer a probe) and ICMP is often filtered. Who
//! needs proof of life sets [`DialOptions::strict`], and silence then fails with
//! [`Error::TimedOut`].

use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::error::{Error, Result};
use crate::event::UdpHandle;
use crate::Stack;

/// How [`Stack::udp_dial`] checks its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialOptions {
    /// How long to wait for an ICMP error or a reply. Default 1 s.
    pub probe_timeout: Duration,
    /// Require a reply: silence until the timeout fails with [`Error::TimedOut`].
    /// Default off, since silence is what a healthy UDP peer usually sends.
    pub strict: bool,
    /// Local port; 0 (the default) picks an ephemeral one.
    pub local_port: u16,
}

impl Default for DialOptions {
    fn default() -> Self {
        DialOptions {
            probe_timeout: Duration::from_secs(1),
            strict: false,
            local_port: 0,
        }
    }
}

/// A dial whose probe is queued; drive it with [`Stack::udp_dial_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDial {
    handle: UdpHandle,
    deadline: Instant,
    strict: bool,
}

impl UdpDial {
    /// The connected socket being checked.
    pub fn handle(&self) -> UdpHandle {
        self.handle
    }

    /// When the probe's time is up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Where a dial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialStatus {
    /// No verdict yet: poll the stack and check again, at the latest at `until`.
    Pending {
        /// The dial's deadline.
        until: Instant,
    },
    /// The peer is considered reachable; the socket is connected and ready.
    Reachable(UdpHandle),
}

impl<'a, D: Device> Stack<'a, D> {
    /// Binds, connects to `remote`, and queues the probe datagram ([`Config::udp_probe`]).
    /// The socket drops probes from then on, so an echoed probe never reaches the
    /// application. Silence until the timeout passes, because UDP has no handshake (a healthy
    /// peer may not answer a probe) and ICMP is often filtered; [`DialOptions::strict`]
    /// requires a reply instead.
    ///
    /// [`Config::udp_probe`]: crate::Config::udp_probe
    ///
    /// ```
    /// # use ustack::{Config, Stack, Error, DialOptions, DialStatus};
    /// # use ustack::smoltcp::{phy::{Loopback, Medium}, time::{Duration, Instant}};
    /// # let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    /// # let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    /// // Nothing listens on 10.0.0.1:9, and ustack answers with ICMP port unreachable.
    /// let dial = stack.udp_dial("10.0.0.1:9".parse().unwrap(), DialOptions::default(), Instant::ZERO)?;
    /// let mut now = Instant::ZERO;
    /// let verdict = loop {
    ///     stack.poll(now);
    ///     match stack.udp_dial_check(&dial, now) {
    ///         Ok(DialStatus::Pending { .. }) => now += Duration::from_millis(1),
    ///         other => break other,
    ///     }
    /// };
    /// assert_eq!(verdict, Err(Error::ConnectionRefused));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn udp_dial(
        &mut self,
        remote: IpEndpoint,
        opts: DialOptions,
        now: Instant,
    ) -> Result<UdpDial> {
        let handle = self.udp_bind(opts.local_port)?;
        let probe = self.config.udp_probe;
        let sent = self.udp_connect(handle, remote).and_then(|()| {
            self.udp_drop_probes(handle, true)?;
            self.udp_send(handle, probe)
        });
        if let Err(e) = sent {
            let _ = self.udp_close(handle);
            return Err(e);
        }
        Ok(UdpDial {
            handle,
            deadline: now + opts.probe_timeout,
            strict: opts.strict,
        })
    }

    /// The dial's verdict so far. On an error the socket is closed and the error returned:
    /// [`Error::ConnectionRefused`] (ICMP port unreachable), [`Error::HostUnreachable`], or
    /// in strict mode [`Error::TimedOut`].
    pub fn udp_dial_check(&mut self, dial: &UdpDial, now: Instant) -> Result<DialStatus> {
        let h = dial.handle;
        let i = self.udp_slot(h)?;
        if let Err(e) = self.udp_take_error(i) {
            let _ = self.udp_close(h);
            return Err(e);
        }
        self.udp_skim(i);
        if self.slots[i].replied {
            return Ok(DialStatus::Reachable(h));
        }
        if now < dial.deadline {
            return Ok(DialStatus::Pending {
                until: dial.deadline,
            });
        }
        if dial.strict {
            let _ = self.udp_close(h);
            return Err(Error::TimedOut);
        }
        Ok(DialStatus::Reachable(h))
    }
}
