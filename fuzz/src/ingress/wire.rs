//! The harness as the wire between the stacks: a middlebox that drops, duplicates, delays
//! and mutates frames, patches payloads on the checked tuples to what `PS` really sent, and
//! learns each side's sequence numbers from what crosses it.

use ustack::smoltcp::phy::{Device, RxToken, TxToken};
use ustack::smoltcp::time::Instant;

use super::segment::{
    fix_checksums, may_be_icmp, seg4, wrapping_after, Seg, Tuple, ACK, FIN, RST, SYN,
};
use super::setup::Harness;
use super::{
    pattern, Dev, FRAMES, MAX_HELD, MTU, PHANTOM, PS_IP, PUMP_ROUNDS, ST_IP, ST_PORT, WS_PORT,
    WS_STREAM_MAX,
};

#[derive(Clone, Copy)]
pub(super) enum WireAct {
    Drop,
    Dup,
    Delay,
    Mutate(u16, u8),
}

fn recv(dev: &mut Dev<'_>, now: Instant) -> Option<Vec<u8>> {
    let (rx, _) = dev.receive(now)?;
    Some(rx.consume(|f| f.to_vec()))
}

fn send(dev: &mut Dev<'_>, now: Instant, f: &[u8]) -> bool {
    match dev.transmit(now) {
        Some(tx) if f.len() <= MTU => {
            tx.consume(f.len(), |b| b.copy_from_slice(f));
            true
        }
        _ => false,
    }
}

impl Harness<'_> {
    pub(super) fn on_tuple(&self, s: &Seg, t: &Tuple) -> bool {
        t.known
            && s.src == PS_IP.octets()
            && s.dst == ST_IP.octets()
            && s.sport == t.ps_port
            && s.dport == t.st_port
    }

    /// Makes an injected or mutated frame's payload on a checked tuple what `PS` sent.
    pub(super) fn patch(&self, f: &mut Vec<u8>) {
        let Some(s) = seg4(f) else {
            return;
        };
        let start = s.seq.wrapping_add(u32::from(s.flags & SYN != 0));
        if self.on_tuple(&s, &self.est_t) {
            let off = start.wrapping_sub(self.est_t.base);
            for (j, b) in f[s.data].iter_mut().enumerate() {
                *b = pattern(off.wrapping_add(j as u32));
            }
            fix_checksums(f);
        } else if self.on_tuple(&s, &self.ws_t) {
            let off = start.wrapping_sub(self.ws_t.base);
            let mut keep = s.data.len();
            for (j, b) in f[s.data.clone()].iter_mut().enumerate() {
                let o = off.wrapping_add(j as u32);
                if (o as i32) < 0 {
                    continue; // before the stream: never delivered
                }
                match self.ws_stream.get(o as usize) {
                    Some(&x) => *b = x,
                    None => {
                        keep = j;
                        break;
                    }
                }
            }
            if keep < s.data.len() {
                let end = s.data.start + keep;
                f.truncate(end);
                let total = (end - s.ip) as u16;
                f[s.ip + 2..s.ip + 4].copy_from_slice(&total.to_be_bytes());
            }
            fix_checksums(f);
        }
    }

    pub(super) fn inject(&mut self, f: &[u8]) {
        self.report.injected += 1;
        self.icmp_seen |= may_be_icmp(f);
        self.note_fin(f);
        if let Some(log) = &mut self.log {
            log.push((0, f.to_vec()));
        }
        send(&mut self.st_wire, self.now, f);
    }

    /// Notes where a FIN reaching `ST` on the established tuple ends the stream (the one
    /// place [`AFTER_FIXES`] lets the read check shift).
    ///
    /// [`AFTER_FIXES`]: super::AFTER_FIXES
    fn note_fin(&mut self, f: &[u8]) {
        let Some(s) = seg4(f) else {
            return;
        };
        if s.flags & FIN != 0 && self.on_tuple(&s, &self.est_t) {
            let at = s
                .seq
                .wrapping_add(u32::from(s.flags & SYN != 0))
                .wrapping_add(s.data.len() as u32)
                .wrapping_sub(self.est_t.base);
            self.est_fins.insert(at);
        }
    }

    /// Notes what `PS` sent on the checked tuples (before any wire action).
    fn observe_ps(&mut self, f: &[u8]) {
        let Some(s) = seg4(f) else {
            return;
        };
        if s.src != PS_IP.octets() || s.dst != ST_IP.octets() {
            return;
        }
        if self.setup && s.flags & SYN != 0 && s.flags & ACK == 0 {
            let t = match s.dport {
                ST_PORT => &mut self.est_t,
                WS_PORT => &mut self.ws_t,
                _ => return,
            };
            t.ps_port = s.sport;
            t.base = s.seq.wrapping_add(1);
            t.known = true;
        }
        let end = s
            .seq
            .wrapping_add(s.data.len() as u32)
            .wrapping_add(u32::from(s.flags & (SYN | FIN) != 0));
        for t in [&mut self.est_t, &mut self.ws_t] {
            if t.known
                && s.sport == t.ps_port
                && s.dport == t.st_port
                && (s.flags & SYN != 0 || wrapping_after(end, t.ps_nxt))
            {
                t.ps_nxt = end;
            }
        }
        if self.on_tuple(&s, &self.ws_t) {
            let off = s
                .seq
                .wrapping_add(u32::from(s.flags & SYN != 0))
                .wrapping_sub(self.ws_t.base);
            if (off as i32) >= 0 && (off as usize) <= self.ws_stream.len() {
                let off = off as usize;
                let data = &f[s.data];
                let end = (off + data.len()).min(WS_STREAM_MAX);
                if end > off {
                    let n = end - off;
                    let old = self.ws_stream.len().min(end);
                    // PS retransmits the same bytes: what it sent never changes.
                    assert_eq!(
                        &self.ws_stream[off.min(old)..old],
                        &data[..old.saturating_sub(off)],
                        "PS sent different bytes at the same offset"
                    );
                    if end > self.ws_stream.len() {
                        let from = self.ws_stream.len() - off;
                        self.ws_stream.extend_from_slice(&data[from..n]);
                    }
                }
            }
        }
    }

    /// Notes `ST`'s numbers on the checked tuples; returns whether the frame answers a
    /// phantom connection (and so stops here).
    fn observe_st(&mut self, f: &[u8]) -> bool {
        let Some(s) = seg4(f) else {
            return false;
        };
        if s.src != ST_IP.octets() || s.dst != PS_IP.octets() {
            return false;
        }
        let phantom = s.sport == ST_PORT
            && (PHANTOM..PHANTOM + 86).contains(&s.dport)
            && s.dport != self.est_t.ps_port
            && s.dport != self.ws_t.ps_port;
        if phantom && self.new_t.ps_port != s.dport {
            self.new_t = Tuple {
                ps_port: s.dport,
                st_port: ST_PORT,
                ..Tuple::default()
            };
        }
        for t in [&mut self.est_t, &mut self.ws_t, &mut self.new_t] {
            if !(s.sport == t.st_port && s.dport == t.ps_port) {
                continue;
            }
            if s.flags & RST != 0 {
                continue;
            }
            if s.flags & ACK != 0 {
                t.st_ack = s.ack;
            }
            let end = s
                .seq
                .wrapping_add((s.data.len()) as u32)
                .wrapping_add(u32::from(s.flags & (SYN | FIN) != 0));
            if s.flags & SYN != 0 || wrapping_after(end, t.st_nxt) {
                t.st_nxt = end;
            }
        }
        phantom
    }

    /// Direction 0 is `PS` to `ST`, 1 is `ST` to `PS`.
    pub(super) fn deliver(&mut self, d: usize, f: &[u8]) {
        if d == 0 {
            // PS answers a mutated datagram with port unreachable, legitimately.
            self.icmp_seen |= may_be_icmp(f);
            self.note_fin(f);
            send(&mut self.st_wire, self.now, f);
        } else {
            send(&mut self.ps_wire, self.now, f);
        }
    }

    fn wire(&mut self, d: usize, mut f: Vec<u8>) {
        match self.pending[d].take() {
            None => self.deliver(d, &f),
            Some(WireAct::Drop) => {}
            Some(WireAct::Dup) => {
                self.deliver(d, &f);
                self.deliver(d, &f);
            }
            Some(WireAct::Delay) if self.held[d].len() < MAX_HELD => self.held[d].push(f),
            Some(WireAct::Delay) => self.deliver(d, &f),
            Some(WireAct::Mutate(pos, xor)) => {
                if !f.is_empty() {
                    let i = usize::from(pos) % f.len();
                    f[i] ^= xor;
                }
                if d == 0 {
                    self.patch(&mut f);
                }
                self.deliver(d, &f);
            }
        }
    }

    /// Moves every frame waiting on the wire; returns whether any moved.
    fn forward(&mut self) -> bool {
        let mut moved = false;
        for _ in 0..2 * FRAMES {
            let Some(f) = recv(&mut self.st_wire, self.now) else {
                break;
            };
            moved = true;
            if let Some(log) = &mut self.log {
                log.push((1, f.clone()));
            }
            if !self.observe_st(&f) {
                self.wire(1, f);
            }
        }
        for _ in 0..2 * FRAMES {
            let Some(f) = recv(&mut self.ps_wire, self.now) else {
                break;
            };
            moved = true;
            if let Some(log) = &mut self.log {
                log.push((0, f.clone()));
            }
            self.observe_ps(&f);
            self.wire(0, f);
        }
        moved
    }

    /// Polls both sides and forwards until the wire is idle; returns whether anything
    /// crossed it.
    pub(super) fn pump(&mut self) -> bool {
        let mut any = false;
        for _ in 0..PUMP_ROUNDS {
            self.se.poll(&mut self.st, self.now);
            let _ = self.se.poll_delay(&mut self.st, self.now);
            self.pe.poll(&mut self.ps, self.now);
            if self.client_log.borrow().2 && !self.client_done {
                self.client_done = true;
                self.pe
                    .close_endpoint(&mut self.ps, self.ws_client, self.now);
            }
            self.serve_st();
            self.serve_ps();
            self.check_ws();
            if !self.forward() {
                break;
            }
            any = true;
        }
        any
    }
}
