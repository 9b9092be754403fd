//! What the demo counts, and the JSON that `/stats` and the chat's push carry.

use std::net::Ipv4Addr;

use serde_json::{json, Value};
use ustack::session::EngineStats;
use ustack::smoltcp::time::Instant;
use ustack::Stats;

/// Counters the services keep themselves (the stack and the engine keep the rest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// WebSocket messages received on `/ws` and `/chat`.
    pub ws_in: u64,
    /// WebSocket messages sent (echoes, chat lines, notices, stats pushes).
    pub ws_out: u64,
    /// Chat lines accepted.
    pub chat: u64,
    /// Bytes echoed on TCP port 7.
    pub tcp_echo_bytes: u64,
    /// Datagrams echoed on UDP port 7.
    pub udp_echo_datagrams: u64,
    /// Packages echoed on port 9000.
    pub lp_echo_packages: u64,
    /// Sessions opened, by service.
    pub opened_tcp_echo: u64,
    /// See `opened_tcp_echo`.
    pub opened_lp_echo: u64,
    /// See `opened_tcp_echo`.
    pub opened_ws_echo: u64,
    /// See `opened_tcp_echo`.
    pub opened_chat: u64,
    /// `/ws` sessions open now.
    pub ws_echo_open: usize,
    /// `/chat` members now.
    pub chat_open: usize,
}

/// Open sessions per endpoint, as the engine counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Open {
    /// TCP port 7.
    pub tcp_echo: usize,
    /// UDP port 7 (one session for the bound socket).
    pub udp_echo: usize,
    /// TCP port 9000.
    pub lp_echo: usize,
    /// TCP port 8080: pages, `/ws` and `/chat`, and upgrades in progress.
    pub http: usize,
}

/// Everything `/stats` reports, refreshed after every poll.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the demo started, and the latest poll.
    pub start: Instant,
    /// See `start`.
    pub now: Instant,
    /// ustack's address.
    pub stack_ip: Ipv4Addr,
    /// The stack's frame counters and drops.
    pub stack: Stats,
    /// The session engine's counters.
    pub engine: EngineStats,
    /// Open sessions.
    pub open: Open,
    /// The services' own counters.
    pub counters: Counters,
}

impl Snapshot {
    /// A snapshot at start-up: all zero.
    pub fn new(stack_ip: Ipv4Addr, now: Instant) -> Self {
        Snapshot {
            start: now,
            now,
            stack_ip,
            stack: Stats::default(),
            engine: EngineStats::default(),
            open: Open::default(),
            counters: Counters::default(),
        }
    }

    /// Seconds since start.
    pub fn uptime(&self) -> f64 {
        (self.now - self.start).total_millis() as f64 / 1000.0
    }

    /// The `/stats` document.
    pub fn json(&self) -> Value {
        let (s, e, o, c) = (&self.stack, &self.engine, &self.open, &self.counters);
        let ws = (c.ws_echo_open + c.chat_open).min(o.http);
        json!({
            "uptime_s": self.uptime(),
            "stack_ip": self.stack_ip.to_string(),
            "sessions": {
                // Port 8080 sessions are WebSocket once upgraded; pages and upgrades in
                // progress are plain TCP.
                "open": {"tcp": o.tcp_echo + o.lp_echo + o.http - ws, "udp": o.udp_echo, "ws": ws},
                "by_service": {
                    "tcp_echo": o.tcp_echo, "udp_echo": o.udp_echo, "lp_echo": o.lp_echo,
                    "http": o.http, "ws_echo": c.ws_echo_open, "chat": c.chat_open,
                },
                "opened": e.opened, "closed": e.closed, "rejected": e.rejected,
                "errors": e.errors, "timeouts": e.timeouts,
            },
            "frames": {"in": s.rx_frames, "out": s.tx_frames},
            "bytes": {"in": s.rx_bytes, "out": s.tx_bytes},
            "messages": {
                "ws_in": c.ws_in, "ws_out": c.ws_out, "chat": c.chat,
                "tcp_echo_bytes": c.tcp_echo_bytes,
                "udp_echo_datagrams": c.udp_echo_datagrams,
                "lp_echo_packages": c.lp_echo_packages,
            },
            "drops": self.drops().into_iter().collect::<serde_json::Map<_, _>>(),
        })
    }

    /// Every drop counter with its reason, in a fixed order.
    pub fn drops(&self) -> [(String, Value); 9] {
        let s = &self.stack;
        [
            ("truncated", s.rx_truncated),
            ("oversize", s.rx_oversize),
            ("bad_checksum", s.rx_bad_checksum),
            ("malformed", s.rx_malformed),
            ("unsupported_ethertype", s.rx_unsupported),
            ("tcp_syn_backlog_full", s.tcp_syn_backlog_full),
            ("udp_foreign", s.udp_foreign_dropped),
            ("udp_undecodable", self.engine.udp_dropped),
            ("too_large", self.engine.too_large),
        ]
        .map(|(k, v)| (k.to_string(), v.into()))
    }

    /// The lines printed when the demo stops.
    pub fn summary(&self) -> String {
        let (s, e, c) = (&self.stack, &self.engine, &self.counters);
        let drops: Vec<String> = self
            .drops()
            .iter()
            .filter(|(_, v)| v.as_u64() != Some(0))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "summary after {:.1} s:\n\
             \x20 sessions   {} opened ({} TCP echo, {} length-prefixed, {} /ws, {} /chat), {} closed, {} errors\n\
             \x20 frames     {} in ({} B), {} out ({} B)\n\
             \x20 echoed     {} B over TCP, {}, {}\n\
             \x20 websocket  {} in, {} out; {}\n\
             \x20 drops      {}",
            self.uptime(),
            e.opened,
            c.opened_tcp_echo,
            c.opened_lp_echo,
            c.opened_ws_echo,
            c.opened_chat,
            e.closed,
            e.errors,
            s.rx_frames,
            s.rx_bytes,
            s.tx_frames,
            s.tx_bytes,
            c.tcp_echo_bytes,
            plural(c.udp_echo_datagrams, "UDP datagram"),
            plural(c.lp_echo_packages, "length-prefixed package"),
            plural(c.ws_in, "message"),
            c.ws_out,
            plural(c.chat, "chat line"),
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            }
        )
    }
}

/// `1 thing`, `2 things`.
fn plural(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_documented_field() {
        let mut snap = Snapshot::new(Ipv4Addr::new(10, 7, 0, 2), Instant::from_millis(0));
        snap.now = Instant::from_millis(1500);
        snap.stack.rx_frames = 3;
        snap.stack.rx_bad_checksum = 2;
        snap.open.http = 4;
        snap.counters.chat_open = 3;
        snap.counters.udp_echo_datagrams = 1;
        let j = snap.json();
        assert_eq!(j["uptime_s"], 1.5);
        assert_eq!(j["frames"]["in"], 3);
        assert_eq!(j["sessions"]["open"]["ws"], 3);
        assert_eq!(
            j["sessions"]["open"]["tcp"], 1,
            "the fourth is a page request"
        );
        assert_eq!(j["drops"]["bad_checksum"], 2);
        assert_eq!(j["drops"].as_object().unwrap().len(), 9);
        let sum = snap.summary();
        assert!(sum.contains("drops      bad_checksum 2"), "{sum}");
        assert!(
            sum.contains("1 UDP datagram, 0 length-prefixed packages"),
            "{sum}"
        );
    }
}
