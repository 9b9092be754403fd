//! The `udp_icmp` target: ICMP destination-unreachable messages that quote arbitrary
//! datagrams, aimed at connected and unconnected UDP sockets. A model of the sockets says
//! which messages must leave an error on which socket; the stack must agree after every poll.
//! Only a quote that names a connected socket exactly changes socket state.
//!
//! # Sockets
//!
//! The stack of [`crate::config`] (10.0.0.1/24, fd00::1/64) starts with three UDP sockets:
//!
//! | id | port | peer |
//! | --- | --- | --- |
//! | 0 (A) | [`PORT_A`] 4000 | 10.0.0.2:[`PEER_PORT`] 9000 |
//! | 1 (A6) | [`PORT_A6`] 4006 | \[fd00::2\]:[`PEER_PORT6`] 9006 |
//! | 2 (B) | [`PORT_B`] 5000 | none: unconnected |
//!
//! Actions in the input connect, disconnect, close and rebind them.
//!
//! # Input
//!
//! A sequence of ops, each an op byte and a body; a body cut short by the end of the input
//! reads as zeros.
//!
//! - op bits 0-2, the body:
//!   - 0 and 6: a structured ICMPv4 destination-unreachable ([`Quote`]);
//!   - 1 and 7: a structured ICMPv6 destination-unreachable;
//!   - 2: `[len_hi, len_lo, message]`: a raw ICMPv4 message (type byte on), in a valid IPv4
//!     frame from the peer with its checksum filled in;
//!   - 3: the same for ICMPv6;
//!   - 4: `[len_hi, len_lo, frame]`: a raw Ethernet frame;
//!   - 5: `[action]`: bits 0-1 the socket (3 means 0), bits 2-5 the [`Act`] (mod 10).
//! - bit 3 ([`op::BATCH`]): no poll after this op (frames queue up for one poll).
//! - bits 4-5: after the poll, how pending errors are taken ([`Take`]).
//! - bits 6-7: how far the clock moves before the poll: 0, 10 ms, 1 s, 65 s.
//!
//! A structured quote is
//!
//! ```text
//! [code, addrs, src raw?, dst raw?, sport_hi, sport_lo, dport_hi, dport_lo, tamper,
//!  proto?, byte0?, options?, frag_hi?, frag_lo?, type?, unused(4)?,
//!  keep_hi, keep_lo, tail_len, tail...]
//! ```
//!
//! `addrs` holds the source (low nibble) and destination (high nibble) address choices
//! ([`Addr`]); a raw choice (7) takes 4 (IPv4) or 16 (IPv6) bytes right after `addrs`. The
//! quote is the IP packet of a UDP datagram between those addresses and ports carrying
//! `tail`, altered as the [`tamper`] bits say, then cut to `keep` bytes.
//!
//! # Oracle
//!
//! Every frame is read by [`crate::reference`] (gated by `classify` passing it, whose facts
//! must equal the reference reading), and for structured quotes the reading must be what the
//! fields were built to say. At each poll the model matches every ICMP error of the frames
//! queued since the last poll against the sockets as they are then: the quote's source must
//! be one of our addresses and a socket's port, and its destination that socket's peer
//! (unconnected and closed sockets never match). Each match (at most the last
//! [`HITS_PER_POLL`] of one poll) leaves its kind pending on the socket and counts once.
//! After the poll the stack must have queued an event with [`Ready::ERROR`] for exactly the
//! sockets that matched, `udp_icmp_errors` must equal the matches so far, and the next
//! `udp_recv_from`/`udp_send` on a socket must return its pending error
//! ([`Error::ConnectionRefused`] for a port unreachable, [`Error::HostUnreachable`]
//! otherwise) exactly once, and nothing but data or [`Error::WouldBlock`] when none is
//! pending. Connecting or disconnecting clears a pending error.

use ustack::frames::Link;
use ustack::ingress::{classify, Facts, IcmpError, Unreachable, Verdict};
use ustack::smoltcp::time::{Duration, Instant};
use ustack::smoltcp::wire::{
    Icmpv4Packet, Icmpv6Packet, IpAddress, IpEndpoint, IpProtocol, Ipv4Address, Ipv6Address,
};
use ustack::{Error, Ready, Stack, Token, UdpHandle};

use crate::frames::{self, LINK};
use crate::reference::{self, ETH};
use crate::{config, FuzzDevice, MTU, OUR_IP, OUR_IP6, PEER_IP, PEER_IP6};

/// Local port of socket 0 (A), connected over IPv4.
pub const PORT_A: u16 = 4000;
/// Local port of socket 1 (A6), connected over IPv6.
pub const PORT_A6: u16 = 4006;
/// Local port of socket 2 (B), unconnected.
pub const PORT_B: u16 = 5000;
/// A's peer port (on [`PEER_IP`]).
pub const PEER_PORT: u16 = 9000;
/// A6's peer port (on [`PEER_IP6`]).
pub const PEER_PORT6: u16 = 9006;
/// Another host on the link: [`Act::ConnectOther`] goes there.
pub const OTHER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 3);
/// Another IPv6 host on the link.
pub const OTHER_IP6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 3);
/// A router: the source of ICMP errors with [`tamper::ROUTER`].
pub const ROUTER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 254);
/// An IPv6 router.
pub const ROUTER_IP6: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe);
/// ICMP errors one poll can deliver (ustack keeps the last 16 of a poll).
pub const HITS_PER_POLL: usize = 16;
/// Clock steps selected by op bits 6-7, in milliseconds.
pub const STEPS: [u64; 4] = [0, 10, 1_000, 65_000];
/// The sockets' ports, by id.
pub const PORTS: [u16; 3] = [PORT_A, PORT_A6, PORT_B];

/// Bits of the op byte.
pub mod op {
    /// The body (see the module documentation).
    pub const KIND: u8 = 0x07;
    /// Queue without polling.
    pub const BATCH: u8 = 0x08;
    /// Shift of the two [`Take`](super::Take) bits.
    pub const TAKE_SHIFT: u8 = 4;
    /// Shift of the two clock step bits.
    pub const STEP_SHIFT: u8 = 6;
}

/// Bits of a structured quote's `tamper` byte: what to change in the quoted datagram.
pub mod tamper {
    /// One more byte: the quote's protocol (IPv4) or next header (IPv6).
    pub const PROTO: u8 = 0x01;
    /// One more byte: the quote's first byte (version and IPv4 header length), raw.
    pub const BYTE0: u8 = 0x02;
    /// One more byte: IPv4, that many option words (mod 11); IPv6, a hop-by-hop header
    /// between the IPv6 and UDP headers.
    pub const OPTIONS: u8 = 0x04;
    /// Two more bytes: IPv4, the flags-and-fragment-offset field; IPv6, a fragment header
    /// with that field.
    pub const FRAG: u8 = 0x08;
    /// One more byte: the ICMP type instead of destination-unreachable.
    pub const TYPE: u8 = 0x10;
    /// The ICMP error comes from a router rather than from the peer.
    pub const ROUTER: u8 = 0x20;
    /// Four more bytes: the ICMP header's unused field.
    pub const UNUSED: u8 = 0x40;
}

/// An address a quote names, chosen by a nibble (mod 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// 0: ours (10.0.0.1, fd00::1).
    Ours,
    /// 1: the peer's (10.0.0.2, fd00::2).
    Peer,
    /// 2: another host's (10.0.0.3, fd00::3).
    Other,
    /// 3: unspecified.
    Unspecified,
    /// 4: broadcast (IPv4), ours mapped (::ffff:10.0.0.1).
    Special4,
    /// 5: subnet broadcast 10.0.0.255, the peer's mapped (::ffff:10.0.0.2).
    Special5,
    /// 6: loopback 127.0.0.1, link-local fe80::1.
    Special6,
    /// 7: raw bytes (the first 4 for IPv4).
    Raw([u8; 16]),
}

impl Addr {
    fn nibble(self) -> u8 {
        match self {
            Addr::Ours => 0,
            Addr::Peer => 1,
            Addr::Other => 2,
            Addr::Unspecified => 3,
            Addr::Special4 => 4,
            Addr::Special5 => 5,
            Addr::Special6 => 6,
            Addr::Raw(_) => 7,
        }
    }

    fn v4(self) -> Ipv4Address {
        match self {
            Addr::Ours => OUR_IP,
            Addr::Peer => PEER_IP,
            Addr::Other => OTHER_IP,
            Addr::Unspecified => Ipv4Address::UNSPECIFIED,
            Addr::Special4 => Ipv4Address::BROADCAST,
            Addr::Special5 => Ipv4Address::new(10, 0, 0, 255),
            Addr::Special6 => Ipv4Address::new(127, 0, 0, 1),
            Addr::Raw(b) => Ipv4Address::new(b[0], b[1], b[2], b[3]),
        }
    }

    fn v6(self) -> Ipv6Address {
        match self {
            Addr::Ours => OUR_IP6,
            Addr::Peer => PEER_IP6,
            Addr::Other => OTHER_IP6,
            Addr::Unspecified => Ipv6Address::UNSPECIFIED,
            Addr::Special4 => OUR_IP.to_ipv6_mapped(),
            Addr::Special5 => PEER_IP.to_ipv6_mapped(),
            Addr::Special6 => Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            Addr::Raw(b) => Ipv6Address::from(b),
        }
    }

    fn ip(self, v6: bool) -> IpAddress {
        if v6 {
            IpAddress::Ipv6(self.v6())
        } else {
            IpAddress::Ipv4(self.v4())
        }
    }
}

/// A structured ICMP destination-unreachable and the datagram it quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// ICMPv6 (type 1) rather than ICMPv4 (type 3).
    pub v6: bool,
    /// The ICMP code.
    pub code: u8,
    /// The quoted datagram's source: us, if the error is about our datagram.
    pub src: Addr,
    /// The quoted datagram's destination: the peer that could not be reached.
    pub dst: Addr,
    /// The quoted source port.
    pub src_port: u16,
    /// The quoted destination port.
    pub dst_port: u16,
    /// [`tamper::PROTO`].
    pub proto: Option<u8>,
    /// [`tamper::BYTE0`].
    pub byte0: Option<u8>,
    /// [`tamper::OPTIONS`].
    pub options: Option<u8>,
    /// [`tamper::FRAG`].
    pub frag: Option<u16>,
    /// [`tamper::TYPE`].
    pub icmp_type: Option<u8>,
    /// [`tamper::ROUTER`].
    pub router: bool,
    /// [`tamper::UNUSED`].
    pub unused: Option<[u8; 4]>,
    /// Quote bytes kept (at most the whole datagram).
    pub keep: u16,
    /// The quoted datagram's payload.
    pub payload: Vec<u8>,
}

impl Quote {
    /// An unaltered quote of the whole datagram `src`:`src_port` to `dst`:`dst_port`.
    pub fn new(v6: bool, code: u8, src: Addr, src_port: u16, dst: Addr, dst_port: u16) -> Quote {
        Quote {
            v6,
            code,
            src,
            dst,
            src_port,
            dst_port,
            proto: None,
            byte0: None,
            options: None,
            frag: None,
            icmp_type: None,
            router: false,
            unused: None,
            keep: u16::MAX,
            payload: b"a datagram we sent".to_vec(),
        }
    }

    /// The quoted bytes, and what ustack must read from them when the fields alone say it:
    /// `Some(None)` for "no ICMP error", `None` when only the bytes can tell (the header
    /// length or next header was altered so that the ports are read from elsewhere).
    pub fn quote(&self) -> (Vec<u8>, Option<Option<IcmpError>>) {
        let (src, dst) = (self.src.ip(self.v6), self.dst.ip(self.v6));
        let mut q;
        let mut header;
        let mut ext = false;
        if self.v6 {
            let link = Link {
                our6: self.src.v6(),
                peer6: self.dst.v6(),
                ..LINK
            };
            q = link.sent_udp6(self.src_port, self.dst_port, &self.payload);
            header = 40;
            if self.options.is_some() {
                // Hop-by-hop options: next header, length 0 (8 bytes), PadN of 4.
                let hbh = [q[6], 0, 1, 4, 0, 0, 0, 0];
                q.splice(40..40, hbh);
                q[6] = 0;
                ext = true;
            }
            if let Some(f) = self.frag {
                let [hi, lo] = f.to_be_bytes();
                let fh = [q[6], 0, hi, lo, 0x75, 0x73, 0x74, 0x6b];
                q.splice(40..40, fh);
                q[6] = 44;
                ext = true;
            }
            if ext {
                let plen = (q.len() - 40) as u16;
                q[4..6].copy_from_slice(&plen.to_be_bytes());
            }
        } else {
            let link = Link {
                our4: self.src.v4(),
                peer4: self.dst.v4(),
                ..LINK
            };
            q = link.sent_udp4(self.src_port, self.dst_port, &self.payload);
            header = 20;
            if let Some(n) = self.options {
                let words = usize::from(n % 11);
                // End-of-options-list padding: any bytes do, nobody parses them.
                q.splice(20..20, std::iter::repeat_n(0u8, words * 4));
                header += words * 4;
                q[0] = 0x40 | (header / 4) as u8;
                let total = q.len() as u16;
                q[2..4].copy_from_slice(&total.to_be_bytes());
            }
            if let Some(f) = self.frag {
                q[6..8].copy_from_slice(&f.to_be_bytes());
            }
        }
        if let Some(p) = self.proto {
            q[if self.v6 { 6 } else { 9 }] = p;
        }
        if let Some(b) = self.byte0 {
            q[0] = b;
        }
        q.truncate(usize::from(self.keep));

        let none = Some(None);
        let intended = 'i: {
            let std_type = if self.v6 { 1 } else { 3 };
            if self.icmp_type.unwrap_or(std_type) != std_type || (!self.v6 && self.code == 4) {
                break 'i none;
            }
            let version = self.byte0.map_or(if self.v6 { 6 } else { 4 }, |b| b >> 4);
            if version != if self.v6 { 6 } else { 4 } {
                break 'i none;
            }
            if let (false, Some(b)) = (self.v6, self.byte0) {
                let ihl = usize::from(b & 0x0f) * 4;
                if ihl < 20 {
                    break 'i none;
                }
                if ihl != header {
                    break 'i None; // the ports are read from wherever that header ends
                }
            }
            let proto = self.proto.unwrap_or(match (self.v6, ext) {
                (false, _) | (true, false) => 17,
                (true, true) => 0, // hop-by-hop or fragment header: not UDP
            });
            if proto != 17 {
                break 'i none;
            }
            if ext {
                break 'i None; // UDP named, but an extension header where its ports should be
            }
            if !self.v6 && self.frag.is_some_and(|f| f & 0x1fff != 0) {
                break 'i none;
            }
            if q.len() < header + 4 {
                break 'i none;
            }
            let kind = match (self.v6, self.code) {
                (false, 3) | (true, 4) => Unreachable::Port,
                _ => Unreachable::Host,
            };
            let to = if self.v6 {
                IpAddress::Ipv6(LINK.our6)
            } else {
                IpAddress::Ipv4(LINK.our4)
            };
            Some(Some(IcmpError {
                to,
                local: IpEndpoint::new(src, self.src_port),
                remote: IpEndpoint::new(dst, self.dst_port),
                kind,
            }))
        };
        (q, intended)
    }

    /// The whole frame, and what [`quote`](Self::quote) says ustack must read from it.
    pub fn frame(&self) -> (Vec<u8>, Option<Option<IcmpError>>) {
        let (q, intended) = self.quote();
        let mut link = LINK;
        if self.router {
            link.peer4 = ROUTER_IP;
            link.peer6 = ROUTER_IP6;
        }
        let mut f = if self.v6 {
            link.unreachable6(self.code, &q)
        } else {
            link.unreachable4(self.code, &q)
        };
        if self.icmp_type.is_some() || self.unused.is_some() {
            let at = ETH + if self.v6 { 40 } else { 20 };
            let msg = &mut f[at..];
            if let Some(t) = self.icmp_type {
                msg[0] = t;
            }
            if let Some(u) = self.unused {
                msg[4..8].copy_from_slice(&u);
            }
            if self.v6 {
                Icmpv6Packet::new_unchecked(msg).fill_checksum(&link.peer6, &link.our6);
            } else {
                Icmpv4Packet::new_unchecked(msg).fill_checksum();
            }
        }
        (f, intended)
    }

    fn decode(v6: bool, r: &mut Reader<'_>) -> Quote {
        let code = r.u8();
        let addrs = r.u8();
        let addr = |nibble: u8, r: &mut Reader<'_>| match nibble & 7 {
            0 => Addr::Ours,
            1 => Addr::Peer,
            2 => Addr::Other,
            3 => Addr::Unspecified,
            4 => Addr::Special4,
            5 => Addr::Special5,
            6 => Addr::Special6,
            _ => {
                let mut b = [0u8; 16];
                let n = if v6 { 16 } else { 4 };
                for x in &mut b[..n] {
                    *x = r.u8();
                }
                Addr::Raw(b)
            }
        };
        let src = addr(addrs & 0x0f, r);
        let dst = addr(addrs >> 4, r);
        let src_port = r.u16();
        let dst_port = r.u16();
        let t = r.u8();
        let opt = |bit: u8, r: &mut Reader<'_>| (t & bit != 0).then(|| r.u8());
        let proto = opt(tamper::PROTO, r);
        let byte0 = opt(tamper::BYTE0, r);
        let options = opt(tamper::OPTIONS, r);
        let frag = (t & tamper::FRAG != 0).then(|| r.u16());
        let icmp_type = opt(tamper::TYPE, r);
        let router = t & tamper::ROUTER != 0;
        let unused = (t & tamper::UNUSED != 0).then(|| [r.u8(), r.u8(), r.u8(), r.u8()]);
        let keep = r.u16();
        let n = usize::from(r.u8());
        let payload = r.bytes(n).to_vec();
        Quote {
            v6,
            code,
            src,
            dst,
            src_port,
            dst_port,
            proto,
            byte0,
            options,
            frag,
            icmp_type,
            router,
            unused,
            keep,
            payload,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code);
        out.push(self.src.nibble() | self.dst.nibble() << 4);
        let n = if self.v6 { 16 } else { 4 };
        for a in [self.src, self.dst] {
            if let Addr::Raw(b) = a {
                out.extend_from_slice(&b[..n]);
            }
        }
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        out.push(
            bit(self.proto.is_some(), tamper::PROTO)
                | bit(self.byte0.is_some(), tamper::BYTE0)
                | bit(self.options.is_some(), tamper::OPTIONS)
                | bit(self.frag.is_some(), tamper::FRAG)
                | bit(self.icmp_type.is_some(), tamper::TYPE)
                | bit(self.router, tamper::ROUTER)
                | bit(self.unused.is_some(), tamper::UNUSED),
        );
        out.extend(self.proto);
        out.extend(self.byte0);
        out.extend(self.options);
        if let Some(f) = self.frag {
            out.extend_from_slice(&f.to_be_bytes());
        }
        out.extend(self.icmp_type);
        if let Some(u) = self.unused {
            out.extend_from_slice(&u);
        }
        out.extend_from_slice(&self.keep.to_be_bytes());
        let n = self.payload.len().min(255);
        out.push(n as u8);
        out.extend_from_slice(&self.payload[..n]);
    }
}

/// What an action op does to one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// 0: a datagram to the socket from its peer (its first peer, if unconnected).
    Datagram,
    /// 1: a datagram to the socket from the peer's address but another port.
    Stranger,
    /// 2: `udp_disconnect`.
    Disconnect,
    /// 3: `udp_connect` to the socket's first peer (B's is A's).
    Connect,
    /// 4: `udp_connect` to [`OTHER_IP`] / [`OTHER_IP6`] on the peer port.
    ConnectOther,
    /// 5: `udp_drop_probes(true)`.
    ProbesOn,
    /// 6: `udp_drop_probes(false)`.
    ProbesOff,
    /// 7: a datagram carrying the dial probe from the socket's peer.
    Probe,
    /// 8: `udp_close`, or `udp_bind` again on its port if closed.
    CloseOrBind,
    /// 9: an ARP reply and a neighbor solicitation from the peer: queued datagrams leave.
    Neighbors,
}

const ACTS: [Act; 10] = [
    Act::Datagram,
    Act::Stranger,
    Act::Disconnect,
    Act::Connect,
    Act::ConnectOther,
    Act::ProbesOn,
    Act::ProbesOff,
    Act::Probe,
    Act::CloseOrBind,
    Act::Neighbors,
];

/// How pending errors are taken after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// 0: `udp_recv_from` on every socket until it would block.
    Recv,
    /// 1: `udp_send` on connected sockets (`udp_send_to` on the others), then `udp_recv_from`.
    Send,
    /// 2: nothing: errors stay pending (later matches overwrite them).
    Keep,
    /// 3: `udp_recv` until it would block.
    RecvNoAddr,
}

/// What an op carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A structured ICMP destination-unreachable.
    Icmp(Quote),
    /// A raw ICMP message in a valid frame from the peer.
    RawIcmp {
        /// ICMPv6 rather than ICMPv4.
        v6: bool,
        /// The message, from its type byte on.
        msg: Vec<u8>,
    },
    /// A raw frame.
    RawFrame(Vec<u8>),
    /// An action on socket `sock` (0 A, 1 A6, 2 B).
    Act {
        /// The socket id.
        sock: usize,
        /// What to do.
        act: Act,
    },
}

/// One op of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// What it carries.
    pub body: Body,
    /// Queue without polling.
    pub batch: bool,
    /// How errors are taken after the poll.
    pub take: Take,
    /// Index into [`STEPS`].
    pub step: u8,
}

impl Op {
    /// An op that polls right away (no clock step) and takes errors with `udp_recv_from`.
    pub fn new(body: Body) -> Op {
        Op {
            body,
            batch: false,
            take: Take::Recv,
            step: 0,
        }
    }

    /// Appends the op to an input.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = match &self.body {
            Body::Icmp(q) => u8::from(q.v6),
            Body::RawIcmp { v6, .. } => 2 + u8::from(*v6),
            Body::RawFrame(_) => 4,
            Body::Act { .. } => 5,
        };
        let take = self.take as u8;
        out.push(
            kind | if self.batch { op::BATCH } else { 0 }
                | take << op::TAKE_SHIFT
                | (self.step & 3) << op::STEP_SHIFT,
        );
        match &self.body {
            Body::Icmp(q) => q.encode(out),
            Body::RawIcmp { msg: b, .. } | Body::RawFrame(b) => {
                let n = b.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(&b[..n]);
            }
            Body::Act { sock, act } => {
                let a = ACTS.iter().position(|x| x == act).expect("act") as u8;
                out.push((*sock as u8 & 3) | a << 2);
            }
        }
    }
}

/// Encodes a whole input.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in ops {
        o.encode(&mut out);
    }
    out
}

/// Reads an input's bytes; past the end it reads zeros.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
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

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (b, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        b
    }
}

/// Splits an input into ops.
pub fn ops(data: &[u8]) -> Vec<Op> {
    let mut r = Reader(data);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let b = r.u8();
        let body = match b & op::KIND {
            k @ (0 | 1 | 6 | 7) => Body::Icmp(Quote::decode(k & 1 == 1, &mut r)),
            k @ (2 | 3) => {
                let n = usize::from(r.u16());
                Body::RawIcmp {
                    v6: k == 3,
                    msg: r.bytes(n).to_vec(),
                }
            }
            4 => {
                let n = usize::from(r.u16());
                Body::RawFrame(r.bytes(n).to_vec())
            }
            _ => {
                let a = r.u8();
                Body::Act {
                    sock: usize::from(a & 3) % 3,
                    act: ACTS[usize::from(a >> 2 & 0x0f) % ACTS.len()],
                }
            }
        };
        let take = match b >> op::TAKE_SHIFT & 3 {
            0 => Take::Recv,
            1 => Take::Send,
            2 => Take::Keep,
            _ => Take::RecvNoAddr,
        };
        out.push(Op {
            body,
            batch: b & op::BATCH != 0,
            take,
            step: b >> op::STEP_SHIFT,
        });
    }
    out
}

/// A raw ICMP message in a valid frame from the peer (checksum filled in when there is room).
pub fn raw_icmp_frame(v6: bool, msg: &[u8]) -> Vec<u8> {
    if v6 {
        let msg = &msg[..msg.len().min(MTU - ETH - 40)];
        let (src, dst) = (LINK.peer6, LINK.our6);
        LINK.ipv6(IpProtocol::Icmpv6, 64, msg.len(), |b, _, _| {
            b.copy_from_slice(msg);
            if b.len() >= 4 {
                Icmpv6Packet::new_unchecked(b).fill_checksum(&src, &dst);
            }
        })
    } else {
        let msg = &msg[..msg.len().min(MTU - ETH - 20)];
        LINK.ipv4(IpProtocol::Icmp, msg.len(), |b, _, _| {
            b.copy_from_slice(msg);
            if b.len() >= 4 {
                Icmpv4Packet::new_unchecked(b).fill_checksum();
            }
        })
    }
}

/// Whether smoltcp would take `frame` as addressed to this stack: to our MAC (or broadcast or
/// multicast) and to our IP address of the frame's version.
pub fn addressed_to_us(frame: &[u8]) -> bool {
    if frame.len() < ETH || (frame[..6] != crate::OUR_MAC.0 && frame[0] & 1 == 0) {
        return false;
    }
    let ip = &frame[ETH..];
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => ip.get(16..20) == Some(&OUR_IP.octets()[..]),
        0x86dd => ip.get(24..40) == Some(&OUR_IP6.octets()[..]),
        _ => false,
    }
}

/// A UDP datagram from `from` to our `port`.
fn datagram(from: IpEndpoint, port: u16, payload: &[u8]) -> Vec<u8> {
    match from.addr {
        IpAddress::Ipv4(a) => Link { peer4: a, ..LINK }.udp4(from.port, port, payload),
        IpAddress::Ipv6(a) => Link { peer6: a, ..LINK }.udp6(from.port, port, payload),
    }
}

/// The peer socket `i` starts with (B's is A's).
pub fn first_peer(i: usize) -> IpEndpoint {
    match i {
        1 => IpEndpoint::new(IpAddress::Ipv6(PEER_IP6), PEER_PORT6),
        _ => IpEndpoint::new(IpAddress::Ipv4(PEER_IP), PEER_PORT),
    }
}

fn other_peer(i: usize) -> IpEndpoint {
    match i {
        1 => IpEndpoint::new(IpAddress::Ipv6(OTHER_IP6), PEER_PORT6),
        _ => IpEndpoint::new(IpAddress::Ipv4(OTHER_IP), PEER_PORT),
    }
}

fn error_of(kind: Unreachable) -> Error {
    match kind {
        Unreachable::Port => Error::ConnectionRefused,
        Unreachable::Host => Error::HostUnreachable,
    }
}

/// What the model knows about one socket.
#[derive(Debug, Clone, Copy)]
struct Model {
    port: u16,
    /// None while closed.
    handle: Option<UdpHandle>,
    remote: Option<IpEndpoint>,
    pending: Option<Unreachable>,
    drop_probe: bool,
}

/// What a run did, for the seed tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// ICMP errors delivered to sockets (the model's count, equal to `udp_icmp_errors`).
    pub delivered: u64,
    /// Errors taken from sockets: (socket id, error).
    pub taken: Vec<(usize, Error)>,
    /// Datagrams received.
    pub received: u64,
}

/// The stack, its three sockets and the model.
pub struct IcmpHarness {
    /// The stack under test.
    pub stack: Stack<'static, FuzzDevice>,
    now: Instant,
    socks: [Model; 3],
    /// The ICMP error (if any) of each frame queued since the last poll.
    queued: Vec<Option<IcmpError>>,
    /// What happened so far.
    pub report: Report,
    buf: Vec<u8>,
}

impl Default for IcmpHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl IcmpHarness {
    /// Builds the stack with A and A6 connected and B unconnected, and polls once.
    pub fn new() -> IcmpHarness {
        let now = Instant::from_millis(1_000);
        let mut stack = Stack::new(config(), FuzzDevice::default(), now).expect("stack");
        let mut socks = PORTS.map(|port| Model {
            port,
            handle: Some(stack.udp_bind(port).expect("udp_bind")),
            remote: None,
            pending: None,
            drop_probe: false,
        });
        for (i, s) in socks.iter_mut().enumerate().take(2) {
            let peer = first_peer(i);
            stack
                .udp_connect(s.handle.expect("bound"), peer)
                .expect("udp_connect");
            s.remote = Some(peer);
        }
        let mut h = IcmpHarness {
            stack,
            now,
            socks,
            queued: Vec::new(),
            report: Report::default(),
            buf: vec![0; 4096],
        };
        h.poll(Take::Recv);
        h
    }

    /// Runs a whole input, then polls and takes every pending error.
    pub fn run(&mut self, data: &[u8]) {
        for o in ops(data) {
            self.step(&o);
        }
        self.poll(Take::Recv);
    }

    /// Runs one op.
    pub fn step(&mut self, o: &Op) {
        match &o.body {
            Body::Icmp(q) => {
                let (frame, intended) = q.frame();
                self.queue(frame, intended);
            }
            Body::RawIcmp { v6, msg } => self.queue(raw_icmp_frame(*v6, msg), None),
            Body::RawFrame(f) => self.queue(f.clone(), None),
            Body::Act { sock, act } => self.act(*sock, *act),
        }
        if o.batch {
            return;
        }
        self.now += Duration::from_millis(STEPS[usize::from(o.step & 3)]);
        self.poll(o.take);
    }

    /// Queues a frame, noting the ICMP error it carries. `intended` is what the frame was
    /// built to carry, when its builder can say.
    fn queue(&mut self, frame: Vec<u8>, intended: Option<Option<IcmpError>>) {
        let reading = match classify(&frame, MTU) {
            Verdict::Pass(facts) => {
                let want = reference::facts(&frame);
                assert_eq!(
                    facts, want,
                    "classify's facts differ from the frame's bytes"
                );
                match facts {
                    Facts::IcmpError(e) => Some(e),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(want) = intended {
            assert_eq!(reading, want, "the quote does not read as it was built");
        }
        // An ICMP error for another host changes nothing, as smoltcp discards its frame.
        let reading = reading.filter(|_| addressed_to_us(&frame));
        self.stack.device_mut().rx.push_back(frame);
        self.queued.push(reading);
    }

    /// The socket an ICMP error must reach, if any.
    fn target(&self, e: &IcmpError) -> Option<usize> {
        let ours = [IpAddress::Ipv4(OUR_IP), IpAddress::Ipv6(OUR_IP6)];
        if !ours.contains(&e.local.addr) {
            return None;
        }
        self.socks.iter().position(|s| {
            s.handle.is_some() && s.port == e.local.port && s.remote == Some(e.remote)
        })
    }

    /// Polls, checks events and counters against the model, and takes errors as `take` says.
    pub fn poll(&mut self, take: Take) {
        self.stack.poll(self.now);
        let _ = self.stack.poll_delay(self.now);

        let queued = std::mem::take(&mut self.queued);
        let hits: Vec<(usize, Unreachable)> = queued
            .iter()
            .flatten()
            .filter_map(|e| self.target(e).map(|i| (i, e.kind)))
            .collect();
        let mut errored = [false; 3];
        for &(i, kind) in &hits[hits.len().saturating_sub(HITS_PER_POLL)..] {
            self.socks[i].pending = Some(kind);
            errored[i] = true;
            self.report.delivered += 1;
        }

        let mut seen = [false; 3];
        for _ in 0..1024 {
            let Some(ev) = self.stack.next_event() else {
                break;
            };
            let Token::Udp(h) = ev.token else {
                panic!("event for a socket the harness never opened: {ev:?}");
            };
            let i = self.socks.iter().position(|s| s.handle == Some(h));
            match i {
                Some(i) => seen[i] |= ev.ready.contains(Ready::ERROR),
                None => assert!(
                    !ev.ready.contains(Ready::ERROR),
                    "ERROR event for a closed socket: {ev:?}"
                ),
            }
        }
        let stats = self.stack.stats();
        assert_eq!(
            seen, errored,
            "ERROR events (A, A6, B) differ from the model's matches {hits:?} for {queued:?}"
        );
        assert_eq!(
            stats.udp_icmp_errors, self.report.delivered,
            "udp_icmp_errors differs from the model's matches {hits:?} for {queued:?}: {stats:?}"
        );
        self.take(take);
    }

    fn take(&mut self, take: Take) {
        for i in 0..self.socks.len() {
            let Some(h) = self.socks[i].handle else {
                continue;
            };
            assert_eq!(
                self.stack.udp_peer_addr(h).ok(),
                self.socks[i].remote,
                "socket {i}'s peer"
            );
            match take {
                Take::Keep => {}
                Take::Recv | Take::RecvNoAddr => {
                    let pending = self.socks[i].pending.take();
                    self.drain(i, pending, take == Take::RecvNoAddr);
                }
                Take::Send => {
                    let pending = self.socks[i].pending.take();
                    let r = match self.socks[i].remote {
                        Some(_) => self.stack.udp_send(h, b"udp_icmp send"),
                        None => {
                            assert_eq!(
                                self.stack.udp_send(h, b"x"),
                                Err(Error::DestinationAddressRequired)
                            );
                            self.stack
                                .udp_send_to(h, b"udp_icmp send_to", first_peer(i))
                        }
                    };
                    match (pending, r) {
                        (Some(k), Err(e)) if e == error_of(k) => self.report.taken.push((i, e)),
                        (None, Ok(()) | Err(Error::WouldBlock)) => {}
                        (p, r) => panic!("socket {i}: send gave {r:?}, pending error {p:?}"),
                    }
                    self.drain(i, None, false);
                }
            }
        }
    }

    /// Receives until the socket would block: its pending error first, then only data.
    fn drain(&mut self, i: usize, mut pending: Option<Unreachable>, no_addr: bool) {
        let s = self.socks[i];
        let h = s.handle.expect("open socket");
        for _ in 0..64 {
            let r = if no_addr {
                self.stack.udp_recv(h, &mut self.buf).map(|n| (n, None))
            } else {
                self.stack
                    .udp_recv_from(h, &mut self.buf)
                    .map(|(n, m)| (n, Some(m)))
            };
            match (pending.take(), r) {
                (Some(k), Err(e)) if e == error_of(k) => self.report.taken.push((i, e)),
                (None, Ok((n, meta))) => {
                    self.report.received += 1;
                    if let (Some(m), Some(peer)) = (meta, s.remote) {
                        assert_eq!(m.remote, peer, "socket {i} got a stranger's datagram");
                    }
                    if s.drop_probe {
                        assert_ne!(
                            &self.buf[..n],
                            self.stack.config().udp_probe,
                            "socket {i} got a probe while dropping them"
                        );
                    }
                }
                (None, Err(Error::WouldBlock)) => break,
                (p, r) => panic!("socket {i}: receive gave {r:?}, pending error {p:?}"),
            }
        }
    }

    fn act(&mut self, i: usize, act: Act) {
        let s = self.socks[i];
        let peer = s.remote.unwrap_or_else(|| first_peer(i));
        match act {
            Act::Datagram => self.queue(datagram(peer, s.port, b"from the peer"), None),
            Act::Stranger => {
                let from = IpEndpoint::new(peer.addr, peer.port.wrapping_add(1));
                self.queue(datagram(from, s.port, b"from a stranger"), None);
            }
            Act::Probe => {
                let probe = self.stack.config().udp_probe;
                self.queue(datagram(peer, s.port, probe), None);
            }
            Act::Neighbors => {
                self.queue(frames::arp_reply(), None);
                self.queue(frames::ndisc_solicit(), None);
            }
            _ => {
                let Some(h) = s.handle else {
                    if act == Act::CloseOrBind {
                        match self.stack.udp_bind(s.port) {
                            Ok(h) => {
                                self.socks[i] = Model {
                                    handle: Some(h),
                                    remote: None,
                                    pending: None,
                                    drop_probe: false,
                                    ..s
                                }
                            }
                            // The closed socket still has datagrams to send.
                            Err(Error::AddrInUse) => {}
                            Err(e) => panic!("udp_bind({}): {e:?}", s.port),
                        }
                    }
                    return;
                };
                let m = &mut self.socks[i];
                match act {
                    Act::Disconnect => {
                        self.stack.udp_disconnect(h).expect("udp_disconnect");
                        m.remote = None;
                        m.pending = None;
                    }
                    Act::Connect | Act::ConnectOther => {
                        let to = if act == Act::Connect {
                            first_peer(i)
                        } else {
                            other_peer(i)
                        };
                        self.stack.udp_connect(h, to).expect("udp_connect");
                        m.remote = Some(to);
                        m.pending = None;
                    }
                    Act::ProbesOn | Act::ProbesOff => {
                        let on = act == Act::ProbesOn;
                        self.stack.udp_drop_probes(h, on).expect("udp_drop_probes");
                        m.drop_probe = on;
                    }
                    Act::CloseOrBind => {
                        self.stack.udp_close(h).expect("udp_close");
                        m.handle = None;
                        m.remote = None;
                        m.pending = None;
                        m.drop_probe = false;
                    }
                    _ => unreachable!(),
                }
            }
        }
    }
}

/// Runs an input through a fresh harness; panics where the stack and the model disagree.
pub fn run(data: &[u8]) -> Report {
    let mut h = IcmpHarness::new();
    h.run(data);
    h.report
}
