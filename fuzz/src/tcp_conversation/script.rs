//! The script types: what `arbitrary` decodes an input into.

use arbitrary::{Arbitrary, Unstructured};

/// A whole input.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// How the conversation starts.
    pub setup: Setup,
    /// What happens after the handshake.
    pub ops: Vec<Op>,
}

/// How the conversation starts.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Talk over IPv6 instead of IPv4.
    pub ipv6: bool,
    /// The stack connects to the peer (port 80) instead of the peer to the stack's listener.
    pub active: bool,
    /// Which handshake the harness runs before the ops.
    pub handshake: Handshake,
    /// Read everything readable after every op (otherwise only `Read` reads).
    pub auto_read: bool,
    /// The peer's initial sequence number.
    pub isn: u32,
    /// The window in the peer's SYN (and in its handshake ACK).
    pub window: u16,
    /// Options of the peer's SYN (or SYN-ACK).
    pub opts: Opts,
}

/// The handshake the harness runs before the ops.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Passive: SYN, the stack's SYN-ACK, ACK. Active: the stack's SYN, SYN-ACK, its ACK.
    Full,
    /// Passive: SYN only, no final ACK. Active: a bare SYN (simultaneous open).
    Half,
    /// Nothing: the ops do it all (or not).
    Skip,
}

/// TCP options of one segment.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Opts {
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub wscale: Option<u8>,
    /// SACK-permitted option.
    pub sack_perm: bool,
    /// Timestamps: TSval from the peer's clock (the stack's clock in ms), TSecr the last
    /// TSval the stack sent.
    pub ts: bool,
    /// One SACK block `[a, a + b)` past the last ACK the peer sent.
    pub sack: Option<(u16, u16)>,
    /// Raw option bytes, first.
    pub junk: Option<[u8; 4]>,
}

/// One step of the script.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The peer sends a segment.
    Send(Seg),
    /// Deliver one held segment (`n % held`), or with `n == 255` all of them, newest first,
    /// in one poll.
    Release(u8),
    /// Deliver again one of the last 16 delivered frames (`n` counts back from the newest).
    Replay(u8),
    /// Advance the clock by `STEPS[n % 8]` ms and poll.
    Advance(u8),
    /// Advance the clock by `n` ms and poll.
    AdvanceMs(u16),
    /// The application reads up to `n` bytes (0: everything readable).
    Read(u16),
    /// The application writes `n` more bytes of its stream.
    Write(u16),
    /// The application shuts down its sending side (`tcp_shutdown_write`).
    Shutdown,
    /// The application closes (`tcp_close`); its handle is gone.
    Close,
    /// The application aborts (`tcp_abort`); its handle is gone.
    Abort,
}

/// A segment from the peer.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// Its sequence number.
    pub seq: SeqChoice,
    /// Payload length (capped at [`MAX_PAYLOAD`]).
    ///
    /// [`MAX_PAYLOAD`]: super::MAX_PAYLOAD
    pub len: u16,
    /// Flags, see [`flag`].
    ///
    /// [`flag`]: super::flag
    pub flags: u8,
    /// Its acknowledgment number, when [`flag::ACK`] is set.
    ///
    /// [`flag::ACK`]: super::flag::ACK
    pub ack: AckChoice,
    /// Its window field.
    pub window: u16,
    /// Its options.
    pub opts: Opts,
    /// When it reaches the stack.
    pub delivery: Delivery,
}

/// Where a segment starts.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqChoice {
    /// Right after everything the peer sent so far.
    Next,
    /// `n` before that (a retransmission or an overlap).
    Back(u16),
    /// `n` past it (a hole before it).
    Ahead(u16),
    /// Where the stack's last ACK points.
    Acked,
    /// This sequence number.
    Raw(u32),
}

/// What a segment acknowledges.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckChoice {
    /// Everything the stack sent.
    Latest,
    /// What the peer acknowledged last (a duplicate ACK).
    Una,
    /// `n` before everything the stack sent (partial, or old).
    Back(u16),
    /// `n` past it (data never sent).
    Ahead(u16),
    /// This number.
    Raw(u32),
}

/// When a segment reaches the stack.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Now, then a poll.
    Now,
    /// Held back until a `Release`.
    Hold,
    /// Twice in one poll.
    Twice,
}

impl Script {
    /// Decodes an input the way the target does (`None` if `arbitrary` gives up).
    pub fn decode(data: &[u8]) -> Option<Script> {
        Script::arbitrary_take_rest(Unstructured::new(data)).ok()
    }
}
