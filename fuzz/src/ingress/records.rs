//! The input's records: the builder the seed generator writes them with, and the harness
//! side that reads them back and turns each into frames, wire actions or calls.

use ustack::frames::Link;
use ustack::smoltcp::time::Duration;
use ustack::smoltcp::wire::{Ipv4Address, TcpControl, TcpRepr, TcpSeqNumber};

use super::segment::{fix_checksums, seg4};
use super::setup::Harness;
use super::wire::WireAct;
use super::{
    MTU, PHANTOM, PHANTOM_ISN, PS_IP, PS_MAC, PS_UDP, STEPS, STRANGER_IP, ST_IP, ST_MAC, ST_PORT,
    ST_UDP_CONN, WS_PORT,
};

/// The record kinds (`op % 8`).
pub mod op {
    /// Raw frame.
    pub const RAW: u8 = 0;
    /// TCP segment on a live tuple.
    pub const TCP: u8 = 1;
    /// UDP datagram.
    pub const UDP: u8 = 2;
    /// ICMP destination unreachable.
    pub const ICMP: u8 = 3;
    /// Wire control.
    pub const WIRE: u8 = 4;
    /// Clock step.
    pub const CLOCK: u8 = 5;
    /// Peer action.
    pub const PEER: u8 = 6;
    /// `ST` application action.
    pub const APP: u8 = 7;
    /// On a raw frame: do not patch (turns the matching check off).
    pub const NOPATCH: u8 = 0x80;
    /// On a wire control: the `ST` to `PS` direction.
    pub const TO_PS: u8 = 0x10;
}

/// Builds inputs (for the seed generator and the tests).
#[derive(Default, Clone)]
pub struct Input(pub Vec<u8>);

impl Input {
    /// A raw frame.
    pub fn raw(&mut self, frame: &[u8], patch: bool) -> &mut Self {
        let len = u16::try_from(frame.len()).expect("frame too long");
        self.0.push(if patch {
            op::RAW
        } else {
            op::RAW | op::NOPATCH
        });
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(frame);
        self
    }

    /// A TCP segment: `target` 0 established, 1 WebSocket, 2 + 3k a new connection.
    #[allow(clippy::too_many_arguments)]
    pub fn tcp(
        &mut self,
        target: u8,
        flags: u8,
        seq: i16,
        ack: i16,
        win: u16,
        len: u16,
        opts: &[u8],
    ) -> &mut Self {
        self.0.extend_from_slice(&[op::TCP, target, flags]);
        self.0.extend_from_slice(&seq.to_be_bytes());
        self.0.extend_from_slice(&ack.to_be_bytes());
        self.0.extend_from_slice(&win.to_be_bytes());
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.push(opts.len() as u8);
        self.0.extend_from_slice(opts);
        self
    }

    /// A TCP segment whose payload is not rewritten (it ends the target's check).
    pub fn tcp_unpatched(
        &mut self,
        target: u8,
        flags: u8,
        seq: i16,
        ack: i16,
        payload: &[u8],
    ) -> &mut Self {
        let len = u16::try_from(payload.len()).expect("payload too long");
        self.tcp(target, flags, seq, ack, 4096, len, &[]);
        let at = self.0.len() - 12;
        self.0[at] |= op::NOPATCH;
        self.0.extend_from_slice(payload);
        self
    }

    /// A UDP datagram.
    pub fn udp(&mut self, to_connected: bool, stranger: bool, payload: &[u8]) -> &mut Self {
        let to = u8::from(to_connected) | u8::from(stranger) << 1;
        self.0
            .extend_from_slice(&[op::UDP, to, payload.len() as u8]);
        self.0.extend_from_slice(payload);
        self
    }

    /// An ICMP destination unreachable.
    pub fn icmp(&mut self, code: u8, quote: u8) -> &mut Self {
        self.0.extend_from_slice(&[op::ICMP, code, quote]);
        self
    }

    /// A wire control: `what` 0 drop, 1 duplicate, 2 delay, 3 mutate, 4 release.
    pub fn wire(&mut self, to_ps: bool, what: u8, pos: u16, xor: u8) -> &mut Self {
        let o = if to_ps {
            op::WIRE | op::TO_PS
        } else {
            op::WIRE
        };
        self.0.extend_from_slice(&[o, what]);
        self.0.extend_from_slice(&pos.to_be_bytes());
        self.0.push(xor);
        self
    }

    /// A clock step (index into [`STEPS`]).
    pub fn clock(&mut self, step: u8) -> &mut Self {
        self.0.extend_from_slice(&[op::CLOCK, step]);
        self
    }

    /// A peer action.
    pub fn peer(&mut self, what: u8, n: u8) -> &mut Self {
        self.0.extend_from_slice(&[op::PEER, what, n]);
        self
    }

    /// An application action on `ST`.
    pub fn app(&mut self, what: u8) -> &mut Self {
        self.0.extend_from_slice(&[op::APP, what]);
        self
    }
}

/// Reads record fields; past the end, zeros.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        let mut v = a.to_vec();
        v.resize(n, 0);
        v
    }
}

impl Harness<'_> {
    /// Runs a whole input and the final checks.
    pub fn run(&mut self, data: &[u8]) {
        let mut r = Reader(data);
        let mut records = 0;
        while !r.0.is_empty() && records < 4096 {
            records += 1;
            self.record(&mut r);
            self.pump();
            self.check_counters();
        }
        self.finish();
    }

    fn record(&mut self, r: &mut Reader<'_>) {
        let o = r.u8();
        match o % 8 {
            op::RAW => {
                let len = usize::from(r.u16()) % (MTU + 1);
                let mut f = r.bytes(len);
                if o & op::NOPATCH != 0 {
                    if let Some(s) = seg4(&f) {
                        if self.on_tuple(&s, &self.est_t) {
                            self.report.tainted_tcp = true;
                        }
                        if self.on_tuple(&s, &self.ws_t) {
                            self.report.tainted_ws = true;
                        }
                    }
                } else {
                    self.patch(&mut f);
                }
                self.inject(&f);
            }
            op::TCP => self.tcp_template(r, o & op::NOPATCH != 0),
            op::UDP => {
                let to = r.u8();
                let len = usize::from(r.u8());
                let payload = r.bytes(len);
                let link = self.link(if to & 2 != 0 { STRANGER_IP } else { PS_IP });
                let sport = if to & 2 != 0 { PS_UDP + 1 } else { PS_UDP };
                let dport = if to & 1 != 0 { ST_UDP_CONN } else { ST_PORT };
                self.inject(&link.udp4(sport, dport, &payload));
            }
            op::ICMP => {
                let code = r.u8();
                let q = r.u8();
                let link = self.link(PS_IP);
                let sport = if q & 1 != 0 { ST_PORT } else { ST_UDP_CONN };
                let dport = if q & 2 != 0 { PS_UDP + 1 } else { PS_UDP };
                let mut quote = link.sent_udp4(sport, dport, b"hello connected");
                if q & 4 != 0 {
                    quote.truncate(28);
                }
                self.inject(&link.unreachable4(code, &quote));
            }
            op::WIRE => {
                let what = r.u8();
                let pos = r.u16();
                let xor = r.u8();
                let d = usize::from(o & op::TO_PS != 0);
                match what % 5 {
                    0 => self.pending[d] = Some(WireAct::Drop),
                    1 => self.pending[d] = Some(WireAct::Dup),
                    2 => self.pending[d] = Some(WireAct::Delay),
                    3 => self.pending[d] = Some(WireAct::Mutate(pos, xor)),
                    _ => {
                        for f in std::mem::take(&mut self.held[d]) {
                            self.deliver(d, &f);
                        }
                    }
                }
            }
            op::CLOCK => {
                self.now += Duration::from_millis(STEPS[usize::from(r.u8() % 8)]);
            }
            op::PEER => {
                let what = r.u8();
                let n = usize::from(r.u8());
                self.peer(what % 6, n);
            }
            _ => {
                let what = r.u8();
                self.app(what % 8);
            }
        }
    }

    fn link(&self, from: Ipv4Address) -> Link {
        Link {
            peer_mac: PS_MAC,
            our_mac: ST_MAC,
            peer4: from,
            our4: ST_IP,
            ..Link::default()
        }
    }

    fn tcp_template(&mut self, r: &mut Reader<'_>, nopatch: bool) {
        let target = r.u8();
        let flags = r.u8();
        let dseq = r.u16() as i16;
        let dack = r.u16() as i16;
        let win = r.u16();
        let len = usize::from(r.u16()) % 1461;
        let opt_len = usize::from(r.u8()) % 41;
        let mut opts = r.bytes(opt_len);
        opts.resize(opt_len.div_ceil(4) * 4, 0);
        let (sport, dport, seq0, ack0) = match target % 3 {
            0 => (
                self.est_t.ps_port,
                ST_PORT,
                self.est_t.rcv_nxt(),
                self.est_t.st_nxt,
            ),
            1 => (
                self.ws_t.ps_port,
                WS_PORT,
                self.ws_t.rcv_nxt(),
                self.ws_t.st_nxt,
            ),
            _ => {
                let port = PHANTOM + u16::from(target / 3);
                if self.new_t.ps_port == port {
                    (port, ST_PORT, self.new_t.st_ack, self.new_t.st_nxt)
                } else {
                    (port, ST_PORT, PHANTOM_ISN, 0)
                }
            }
        };
        let seq = seq0.wrapping_add(dseq as i32 as u32);
        let ack = ack0.wrapping_add(dack as i32 as u32);
        // Build with smoltcp's emitter (a valid header), then set the raw flags and
        // options the input asked for.
        // Unpatched, the payload is the input's: garbage into a live stream, which ends
        // that stream's check.
        let payload = if nopatch {
            match target % 3 {
                0 => self.report.tainted_tcp = true,
                1 => self.report.tainted_ws = true,
                _ => {}
            }
            r.bytes(len)
        } else {
            vec![0u8; len]
        };
        let repr = TcpRepr {
            src_port: sport,
            dst_port: dport,
            control: TcpControl::None,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: Some(TcpSeqNumber(ack as i32)),
            window_len: win,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &payload,
        };
        let mut f = self.link(PS_IP).tcp4(&repr);
        // Insert the options after the 20-byte TCP header.
        let t = 14 + 20;
        let tail = f.split_off(t + 20);
        f.extend_from_slice(&opts);
        f.extend_from_slice(&tail);
        f[t + 12] = (((20 + opts.len()) / 4) << 4) as u8;
        f[t + 13] = flags;
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        if !nopatch {
            self.patch(&mut f);
        }
        fix_checksums(&mut f);
        self.inject(&f);
    }
}
