//! Arbitrary bytes as a pcap file, replayed by `ustack_drivers::PcapReplay` into a whole
//! `ustack::Stack` (the `stack_ingress` configuration: 10.0.0.1/24, fd00::1/64, a TCP
//! listener on port 7 and a UDP socket on port 7, an application that accepts, echoes what
//! it reads and closes at end of stream, and echoes datagrams).
//!
//! The device hands the stack one packet per poll, with the clock following the capture
//! times (each gap capped at 65 s), so timers run between packets. Checks: nothing panics;
//! the replay ends within a bounded number of polls; the stack counts exactly the frames the
//! device handed out, and transmitted exactly what the device accepted; and the device's
//! `replayed`/`skipped`/`read_errors` equal an independent walk of the file's records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ustack::smoltcp::phy::{Device, DeviceCapabilities};
use ustack::smoltcp::time::{Duration, Instant};
use ustack::{Error, Stack, TcpHandle};
use ustack_drivers::pcap_replay::{ReplayRxToken, ReplayTxToken, MAX_CAPTURED};
use ustack_drivers::{PcapReplay, ReplayStats};
use ustack_fuzz::{BACKLOG, MTU, PORT};

/// At most this many packets reach one poll.
struct OnePerPoll<'d> {
    inner: PcapReplay<&'d [u8]>,
    budget: usize,
}

impl Device for OnePerPoll<'_> {
    type RxToken<'a>
        = ReplayRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = ReplayTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        self.inner.receive(now)
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// What an independent walk of the file says the replay must do.
fn expected(data: &[u8]) -> ReplayStats {
    let mut want = ReplayStats::default();
    let big = match data.get(..4) {
        Some([0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d]) => true,
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]) => false,
        _ => unreachable!("PcapReplay::new accepted a bad magic"),
    };
    let u32_at = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let ethernet = u32_at(&data[20..24]) == 1;
    let mut rest = &data[24..];
    while !rest.is_empty() {
        if rest.len() < 16 {
            want.read_errors = 1;
            break;
        }
        let len = u32_at(&rest[8..12]) as usize;
        if len > MAX_CAPTURED || rest.len() - 16 < len {
            want.read_errors = 1;
            break;
        }
        if len > MTU || !ethernet {
            want.skipped += 1;
        } else {
            want.replayed += 1;
        }
        rest = &rest[16 + len..];
    }
    want
}

fuzz_target!(|data: &[u8]| {
    let magic_ok = matches!(
        data.get(..4),
        Some(
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0x4d, 0x3c, 0xb2, 0xa1]
        )
    );
    let Ok(replay) = PcapReplay::new(data) else {
        // Refused exactly when the header is short or the magic unknown.
        assert!(data.len() < 24 || !magic_ok);
        return;
    };
    assert!(data.len() >= 24 && magic_ok);
    let want = expected(data);
    let device = OnePerPoll {
        inner: replay.with_mtu(MTU),
        budget: 0,
    };
    let mut now = Instant::from_millis(1_000);
    let mut stack = Stack::new(ustack_fuzz::config(), device, now).expect("stack");
    let listener = stack.listen(PORT, BACKLOG).expect("listen");
    let udp = stack.udp_bind(PORT).expect("udp_bind");
    let mut streams: Vec<TcpHandle> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut last_ts: Option<std::time::Duration> = None;

    // Each step hands out one packet; at most one record per 16 bytes of input.
    let max_steps = data.len() / 16 + 8;
    let mut steps = 0;
    while let Some(ts) = stack.device_mut().inner.next_timestamp() {
        steps += 1;
        assert!(
            steps <= max_steps,
            "replay not exhausted after {max_steps} polls"
        );
        let gap = last_ts.map_or(std::time::Duration::ZERO, |prev| ts.saturating_sub(prev));
        last_ts = Some(ts);
        now +=
            Duration::from_micros(gap.min(std::time::Duration::from_secs(65)).as_micros() as u64);
        stack.device_mut().budget = 1;
        stack.poll(now);
        let _ = stack.poll_delay(now);

        // The application: accept, echo, close at end of stream; echo datagrams.
        for _ in 0..1024 {
            if stack.next_event().is_none() {
                break;
            }
        }
        while let Ok(h) = stack.accept(listener) {
            if streams.len() < 16 {
                streams.push(h);
            } else {
                let _ = stack.tcp_abort(h);
            }
        }
        streams.retain(|&h| {
            for _ in 0..16 {
                match stack.tcp_read(h, &mut buf) {
                    Ok(0) => {
                        let _ = stack.tcp_close(h);
                        return false;
                    }
                    Ok(n) => {
                        let _ = stack.tcp_write(h, &buf[..n]);
                    }
                    Err(Error::WouldBlock) => return true,
                    Err(_) => {
                        let _ = stack.tcp_close(h);
                        return false;
                    }
                }
            }
            true
        });
        for _ in 0..16 {
            match stack.udp_recv_from(udp, &mut buf) {
                Ok((n, meta)) => {
                    let _ = stack.udp_send_to(udp, &buf[..n], meta.remote);
                }
                Err(_) => break,
            }
        }
        stack.poll(now);
    }
    // Let the stack send what the last packet caused, with no packet pending.
    now += Duration::from_millis(1);
    stack.device_mut().budget = 0;
    stack.poll(now);

    let got = stack.device().inner.stats();
    let stats = stack.stats();
    assert_eq!(
        (got.replayed, got.skipped, got.read_errors),
        (want.replayed, want.skipped, want.read_errors),
        "device {got:?}, file walk {want:?}"
    );
    // Every consumed receive token is one frame the stack counted, and nothing else is.
    assert_eq!(stats.rx_frames, got.replayed, "{stats:?} {got:?}");
    assert_eq!(stats.tx_frames, got.transmitted, "{stats:?} {got:?}");
    assert!(stats.rx_dropped() <= stats.rx_frames, "{stats:?}");
});
