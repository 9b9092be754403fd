//! Two ustack instances over the in-memory pipe: no TAP, no root.

use ustack::smoltcp::time::{Duration, Instant};
use ustack::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
use ustack::{Config, Error, Stack, TcpHandle, TcpOptions};
use ustack_drivers::{PipeDevice, PipeLink};

const LEN: usize = 8 * 1024 * 1024;
type Dev<'a> = PipeDevice<'a, 64, 1514>;

fn stack<'a>(dev: Dev<'a>, last: u8) -> Stack<'a, Dev<'a>> {
    let mut config = Config::new(
        [2, 0, 0, 0, 0, last],
        format!("10.9.0.{last}/24").parse().unwrap(),
    )
    .seed(last.into());
    config.tcp = TcpOptions {
        rx_buffer: 256 * 1024,
        tx_buffer: 256 * 1024,
        ..TcpOptions::default()
    };
    Stack::new(config, dev, Instant::ZERO).unwrap()
}

/// One direction of the transfer: what is left to send and what has arrived.
struct Flow {
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
    eof: bool,
}

impl Flow {
    fn new(seed: u64) -> Flow {
        Flow {
            out: ustack_tests::random_bytes(seed, LEN),
            sent: 0,
            got: Vec::with_capacity(LEN),
            eof: false,
        }
    }

    /// Writes what fits, half-closes when done, reads what arrived.
    fn pump<D: ustack::smoltcp::phy::Device>(
        &mut self,
        s: &mut Stack<'_, D>,
        h: TcpHandle,
        buf: &mut [u8],
    ) {
        while self.sent < LEN {
            match s.tcp_write(h, &self.out[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    if self.sent == LEN {
                        s.tcp_shutdown_write(h).unwrap();
                    }
                }
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("write failed: {e}"),
            }
        }
        loop {
            match s.tcp_read(h, buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }
}

#[test]
fn two_stacks_exchange_8_mib_both_ways_over_the_pipe() {
    let link: PipeLink<64, 1514> = PipeLink::new();
    let (da, db) = link.split();
    let (mut a, mut b) = (stack(da, 1), stack(db, 2));
    let listener = a.listen(5000, 4).unwrap();
    let client = b
        .connect(IpEndpoint::new(
            IpAddress::Ipv4(Ipv4Address::new(10, 9, 0, 1)),
            5000,
        ))
        .unwrap();
    let (mut fa, mut fb) = (Flow::new(1), Flow::new(2));
    let mut server = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut now = Instant::ZERO;
    let mut rounds = 0u64;
    while !(fa.eof && fb.eof) {
        rounds += 1;
        assert!(
            rounds < 2_000_000,
            "transfer stalled: a sent {} got {}, b sent {} got {}",
            fa.sent,
            fa.got.len(),
            fb.sent,
            fb.got.len()
        );
        let busy = a.poll(now) | b.poll(now);
        while a.next_event().is_some() {}
        while b.next_event().is_some() {}
        if server.is_none() {
            server = a.accept(listener).ok();
        }
        if let Some(h) = server {
            fa.pump(&mut a, h, &mut buf);
        }
        if b.tcp_connected(client) == Ok(true) {
            fb.pump(&mut b, client, &mut buf);
        }
        // Virtual time: jump to the next timer when both sides are idle.
        let idle = !busy && link_idle(&a, &b);
        let step = match (a.poll_delay(now), b.poll_delay(now)) {
            (Some(x), Some(y)) => x.min(y),
            (x, y) => x.or(y).unwrap_or(Duration::from_millis(10)),
        };
        now += if idle {
            step.max(Duration::from_micros(100))
        } else {
            Duration::from_micros(100)
        };
    }
    assert_eq!(fa.got.len(), LEN);
    assert!(fa.got == fb.out, "server received corrupted bytes");
    assert!(fb.got == fa.out, "client received corrupted bytes");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.rx_dropped() + sb.rx_dropped(), 0);
    assert_eq!(
        sa.tx_frames, sb.rx_frames,
        "every frame a sent arrived at b"
    );
    assert_eq!(
        sb.tx_frames, sa.rx_frames,
        "every frame b sent arrived at a"
    );
}

fn link_idle(a: &Stack<'_, Dev<'_>>, b: &Stack<'_, Dev<'_>>) -> bool {
    a.device().rx_pending() == 0 && b.device().rx_pending() == 0
}
