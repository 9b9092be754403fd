//! Reproduces, with smoltcp 0.14 alone (no ustack code), the panic the `stack_ingress` fuzz
//! target found: a SYN-ACK that acknowledges a connecting socket's SYN *before that SYN was
//! ever transmitted* (it is waiting for ARP) puts the socket in ESTABLISHED with
//! `remote_last_ack == Some(peer ISN)` but `remote_last_win == 0`, and the next
//! `Interface::poll_delay` panics with "attempt to subtract sequence numbers with underflow"
//! in `tcp::Socket::last_scaled_window` (via `window_to_update` and `poll_at`).
//!
//! With the argument `syn` the peer sends a plain SYN instead (simultaneous open): the socket
//! goes SYN-SENT -> SYN-RECEIVED in the same state and panics the same way. That variant needs
//! no guess of our ISN, only of the ephemeral port.
//!
//! `cargo run --example smoltcp_synack_before_syn [-- syn]` (panics on smoltcp 0.14.0).

use std::collections::VecDeque;

use ustack::smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use ustack::smoltcp::phy::{
    ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken,
};
use ustack::smoltcp::socket::tcp;
use ustack::smoltcp::time::Instant;
use ustack::smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpCidr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber,
};

#[derive(Default)]
struct Dev {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}
struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);
impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}
impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}
impl Device for Dev {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const OUR_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const PEER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

/// A connecting socket on a fresh interface (fixed seed, so the ISN is the same every run).
fn setup() -> (Interface, SocketSet<'static>, SocketHandle, Dev) {
    let mut dev = Dev::default();
    let mut cfg = Config::new(OUR_MAC.into());
    cfg.random_seed = 42;
    let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
    iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(OUR_IP), 24)).unwrap());
    let mut sockets = SocketSet::new(vec![]);
    let sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 2048]),
        tcp::SocketBuffer::new(vec![0; 2048]),
    );
    let h = sockets.add(sock);
    sockets
        .get_mut::<tcp::Socket>(h)
        .connect(iface.context(), (PEER_IP, 80), 49152)
        .unwrap();
    (iface, sockets, h, dev)
}

fn synack(local_port: u16, ack: Option<TcpSeqNumber>) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let tcp = TcpRepr {
        src_port: 80,
        dst_port: local_port,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(7_000_000),
        ack_number: ack,
        window_len: 8192,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: PEER_IP,
        dst_addr: OUR_IP,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; 14 + 20 + tcp.buffer_len()];
    EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: OUR_MAC,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    let mut p = Ipv4Packet::new_unchecked(&mut buf[14..]);
    ip.emit(&mut p, &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(p.payload_mut()),
        &PEER_IP.into(),
        &OUR_IP.into(),
        &caps,
    );
    buf
}

fn arp_reply() -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER_IP,
        target_hardware_addr: OUR_MAC,
        target_protocol_addr: OUR_IP,
    };
    let mut buf = vec![0u8; 14 + arp.buffer_len()];
    EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: OUR_MAC,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    arp.emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
    buf
}

fn main() {
    // Run 1: learn the ISN the socket will use, by letting ARP resolve and reading its SYN.
    let (mut iface, mut sockets, _h, mut dev) = setup();
    iface.poll(Instant::from_millis(1), &mut dev, &mut sockets);
    dev.rx.push_back(arp_reply());
    iface.poll(Instant::from_millis(2), &mut dev, &mut sockets);
    let syn = dev.tx.iter().find_map(|f| {
        let e = EthernetFrame::new_checked(&f[..]).ok()?;
        let ip = Ipv4Packet::new_checked(e.payload()).ok()?;
        let t = TcpPacket::new_checked(ip.payload()).ok()?;
        t.syn().then(|| t.seq_number())
    });
    let isn = syn.expect("no SYN sent in run 1");
    println!("run 1: the socket's SYN has seq {}", isn.0 as u32);

    // Run 2: same state, but ARP is unanswered, so the SYN is never transmitted. The peer's
    // SYN-ACK for it (ack = ISN + 1), or a plain SYN, is accepted anyway.
    let plain_syn = std::env::args().any(|a| a == "syn");
    let (mut iface, mut sockets, h, mut dev) = setup();
    iface.poll(Instant::from_millis(1), &mut dev, &mut sockets);
    println!(
        "run 2: {} frame(s) sent (ARP request only); state {}",
        dev.tx.len(),
        sockets.get::<tcp::Socket>(h).state()
    );
    dev.rx
        .push_back(synack(49152, if plain_syn { None } else { Some(isn + 1) }));
    iface.poll(Instant::from_millis(2), &mut dev, &mut sockets);
    println!(
        "run 2: state after the peer's {}: {}",
        if plain_syn { "SYN" } else { "SYN-ACK" },
        sockets.get::<tcp::Socket>(h).state()
    );
    println!("run 2: calling poll_delay (panics on smoltcp 0.14.0)...");
    let d = iface.poll_delay(Instant::from_millis(2), &sockets);
    println!("no panic: poll_delay = {d:?}");
}
