//! What the kernel-peer tests share: a ustack echo server on its own thread, a kernel-side
//! echo client, and a pcap reader that tells which TCP flags crossed the link.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ustack::runtime::{self, PollMode};
use ustack::smoltcp::phy::Device;
use ustack::smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Cidr, Ipv4Packet, Ipv6Cidr, TcpPacket,
};
use ustack::{Config, Stack};
use ustack_examples::echo::{Echo, EchoStats};
use ustack_tests::{PREFIX_LEN6, STACK_IP, STACK_IP6, STACK_MAC};

/// ustack's configuration on a [`ustack_tests::TapLink`].
pub fn config() -> Config {
    Config::new(STACK_MAC, Ipv4Cidr::new(STACK_IP, ustack_tests::PREFIX_LEN)).seed(0x5eed)
}

/// [`config`] plus ustack's IPv6 address, for a [`ustack_tests::TapLink::with_ipv6`] link.
pub fn config_v6() -> Config {
    config().ipv6(Ipv6Cidr::new(STACK_IP6, PREFIX_LEN6))
}

/// The kernel's view of ustack's echo port.
pub fn echo_addr() -> SocketAddr {
    SocketAddr::from((STACK_IP, 7))
}

/// A ustack echo server (TCP and UDP port 7) polled on its own thread until stopped.
pub struct EchoServer<D: Device + Send + 'static> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(Stack<'static, D>, EchoStats)>>,
}

impl<D: Device + AsRawFd + Send + 'static> EchoServer<D> {
    pub fn start(device: D, backlog: usize) -> Self {
        Self::start_with(config(), device, backlog)
    }

    pub fn start_with(config: Config, device: D, backlog: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut stack = Stack::new(config, device, runtime::now()).expect("stack");
            let mut echo = Echo::bind(&mut stack, 7, backlog).expect("bind echo");
            runtime::run(&mut stack, PollMode::Block, &flag, |s, ev| {
                echo.on_event(s, ev)
            })
            .expect("poll loop");
            (stack, echo.stats())
        });
        EchoServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl<D: Device + Send + 'static> EchoServer<D> {
    /// Stops the loop and hands back the stack (for its counters and device) and echo counters.
    pub fn stop(mut self) -> (Stack<'static, D>, EchoStats) {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().expect("running").join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl<D: Device + Send + 'static> Drop for EchoServer<D> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends `data` on `stream` while reading the echo, half-closes, and returns all bytes read
/// until the peer's FIN.
pub fn echo_through(stream: TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut reader = stream.try_clone()?;
    let reading = std::thread::spawn(move || {
        let mut got = Vec::new();
        reader.read_to_end(&mut got).map(|_| got)
    });
    let mut writer = stream;
    writer.write_all(data)?;
    writer.shutdown(std::net::Shutdown::Write)?;
    reading.join().expect("reader thread")
}

/// Connects to a TCP echo at `addr` (from the calling thread's namespace) and runs
/// [`echo_through`]; the connect and every read give up after `timeout`.
pub fn echo_connect(
    addr: SocketAddr,
    data: &[u8],
    timeout: std::time::Duration,
) -> std::io::Result<Vec<u8>> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    echo_through(s, data)
}

/// TCP control flags seen in a capture, split by direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub syn: u32,
    pub syn_ack: u32,
    pub fin: u32,
    pub rst: u32,
}

/// Asserts that a capture holds one connection opened by the kernel and closed FIN/FIN, no RST.
pub fn assert_clean_close(pcap: impl Read) -> usize {
    let (from_stack, from_kernel, frames) = tcp_flags(pcap);
    let kernel = Flags {
        syn: 1,
        syn_ack: 0,
        fin: 1,
        rst: 0,
    };
    let stack = Flags {
        syn: 0,
        syn_ack: 1,
        fin: 1,
        rst: 0,
    };
    assert_eq!(
        (from_kernel, from_stack),
        (kernel, stack),
        "(kernel, ustack) flags"
    );
    frames
}

/// Per-direction TCP flags of a capture: (sent by ustack, sent by the kernel), and the frame count.
pub fn tcp_flags(pcap: impl Read) -> (Flags, Flags, usize) {
    let mut reader = pcap_file::pcap::PcapReader::new(pcap).expect("a pcap file");
    let (mut from_stack, mut from_kernel, mut frames) = (Flags::default(), Flags::default(), 0);
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.expect("a readable pcap record");
        frames += 1;
        let Ok(eth) = EthernetFrame::new_checked(&pkt.data[..]) else {
            continue;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            continue;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            continue;
        };
        if ip.next_header() != IpProtocol::Tcp {
            continue;
        }
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            continue;
        };
        let f = if ip.src_addr() == STACK_IP {
            &mut from_stack
        } else {
            &mut from_kernel
        };
        match (tcp.syn(), tcp.ack()) {
            (true, false) => f.syn += 1,
            (true, true) => f.syn_ack += 1,
            _ => {}
        }
        f.fin += u32::from(tcp.fin());
        f.rst += u32::from(tcp.rst());
    }
    (from_stack, from_kernel, frames)
}
