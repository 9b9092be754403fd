//! The session engine end to end: a raw TCP client writes an arbitrary stream, in
//! arbitrary chunks, to a TCP server [`Engine`] running `Service::new(codec, listener)`,
//! whose listener records every package and echoes it with `write_pkg`. One stack talks to
//! itself over smoltcp's `Loopback`, with a simulated clock stepping 1 ms.
//!
//! Checked against decoding the whole stream at once with a fresh codec (the reference):
//!
//! - no panic, and the run settles within [`MAX_STEPS`] steps;
//! - callbacks come as `on_open`, `on_message`..., then (`on_error`) `on_close` at most
//!   once, and nothing after `on_close`;
//! - the packages delivered are the reference's packages, in order: all of them, or, when
//!   the session ended with `MessageTooLarge`, exactly those before the package (or the
//!   unfinished rest) that broke the limit. `max_msg_len` is checked on a known length, on a
//!   whole package and on an unfinished rest of unknown length (`rest >= max`), none of
//!   which depends on chunking: packages too long to decode in place (over half the receive
//!   buffer, declared or not) are assembled in a pool buffer instead;
//! - no error otherwise: with the client closing its side at the end, `on_close` follows,
//!   after `on_error(UnexpectedEof { buffered })` if the stream ends in an unfinished
//!   package of `buffered` bytes; without, the session stays open;
//! - `write_pkg` fails exactly when the codec cannot encode the package (a line ending in
//!   `\r`), and the client reads back the concatenation of the encoded packages, in order,
//!   then the end of the stream; after `MessageTooLarge` (the connection is reset) a prefix.
//!
//! Input: `[codec, max_hi, max_lo, flags, n_chunks, chunk..., stream...]`.
//!
//! - `codec % 5`: `LengthPrefixed` U16_BE, U16_LE, U32_BE, U32_LE, `Lines`;
//! - `max_msg_len = 1 + u16::from_be_bytes([max_hi, max_lo]) % 4096`;
//! - `flags`: bit 0 the client closes its side once everything is written; bit 1 the client
//!   sets `nodelay`; bits 2-3 the server's receive buffer ([`RX_BUFFERS`]); bits 4-5 how much
//!   the client reads per step ([`READ_LIMITS`]);
//! - each chunk byte `c` is one write's length: `c` (0 means 1) below 0x80, else
//!   `((c & 0x7f) + 1) * 32`; they repeat for the whole stream, one chunk per step, and after
//!   [`MAX_CHUNK_STEPS`] the rest goes as fast as the socket takes it;
//! - the stream is the rest, at most [`MAX_STREAM`] bytes.
#![no_main]

use std::cell::RefCell;
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use ustack::session::codec::{Codec, CodecError, Decoded, LengthPrefixed, Lines};
use ustack::session::{
    Engine, EngineStats, EventListener, Limits, Reject, ServerOptions, Service, Session,
    SessionError,
};
use ustack::smoltcp::phy::{Loopback, Medium};
use ustack::smoltcp::time::{Duration, Instant};
use ustack::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
use ustack::{Config, Error, Stack, TcpOptions};

/// Longest stream written.
const MAX_STREAM: usize = 8 * 1024;
/// Steps that write one chunk each; the rest of the stream goes at once after them.
const MAX_CHUNK_STEPS: usize = 1024;
/// Steps (of 1 ms) a run may take to settle.
const MAX_STEPS: usize = 4000;
/// Steps without any change after which a run whose client stays open has settled (all
/// written and acknowledged, every echo read).
const QUIET_STEPS: usize = 25;
/// The server's receive buffers, by `flags >> 2 & 3`.
const RX_BUFFERS: [usize; 4] = [4096, 1024, 2048, 8192];
/// Bytes the client reads per step, by `flags >> 4 & 3`.
const READ_LIMITS: [usize; 4] = [usize::MAX, 64, 512, 1500];
/// Both ends' transmit buffers and the client's receive buffer.
const BUFFER: usize = 4096;
const PORT: u16 = 9000;
const IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);

/// A callback the listener saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Open,
    /// A package, and what writing it back returned.
    Msg(Vec<u8>, Result<(), SessionError>),
    Error(SessionError),
    Close,
}

type Log = Rc<RefCell<Vec<Ev>>>;

/// Records every callback; echoes every package.
struct Rec(Log);

impl<C> EventListener<C> for Rec
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    fn on_open(&mut self, _: &mut Session<'_, C>) -> Result<(), Reject> {
        self.0.borrow_mut().push(Ev::Open);
        Ok(())
    }
    fn on_message(&mut self, s: &mut Session<'_, C>, pkg: &[u8]) {
        let r = s.write_pkg(&pkg);
        self.0.borrow_mut().push(Ev::Msg(pkg.to_vec(), r));
    }
    fn on_error(&mut self, _: &mut Session<'_, C>, e: &SessionError) {
        self.0.borrow_mut().push(Ev::Error(*e));
    }
    fn on_close(&mut self, _: &mut Session<'_, C>) {
        self.0.borrow_mut().push(Ev::Close);
    }
}

/// What follows the last whole package of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing.
    Empty,
    /// A package whose header says `total` bytes, of which `have` are there.
    Known { total: usize, have: usize },
    /// `have` bytes of a package of unknown length.
    Unknown { have: usize },
}

/// The reference: the whole stream decoded at once by a fresh codec.
fn reference<C>(mut codec: C, stream: &[u8]) -> (Vec<(Vec<u8>, usize)>, Tail)
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError>,
{
    let mut pkgs = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        match codec
            .decode(rest)
            .expect("the shipped codecs accept any stream")
        {
            Decoded::Packet(p, n) => {
                assert!(n > 0 && n <= rest.len());
                pkgs.push((p.to_vec(), n));
                at += n;
            }
            Decoded::NeedMoreKnownLen(total) => {
                let have = rest.len();
                return (pkgs, Tail::Known { total, have });
            }
            Decoded::NeedMore if rest.is_empty() => return (pkgs, Tail::Empty),
            Decoded::NeedMore => return (pkgs, Tail::Unknown { have: rest.len() }),
        }
    }
}

/// The fuzz input, parsed.
struct Input<'d> {
    max: usize,
    close: bool,
    nodelay: bool,
    rx_buffer: usize,
    read_limit: usize,
    chunks: Vec<usize>,
    stream: &'d [u8],
}

fn parse(data: &[u8]) -> Option<(u8, Input<'_>)> {
    let [codec, hi, lo, flags, n, rest @ ..] = data else {
        return None;
    };
    let n = usize::from(*n).min(rest.len());
    let (cuts, stream) = rest.split_at(n);
    let chunks = cuts
        .iter()
        .map(|&c| match c {
            0 => 1,
            1..=0x7f => usize::from(c),
            _ => (usize::from(c & 0x7f) + 1) * 32,
        })
        .collect::<Vec<_>>();
    let input = Input {
        max: 1 + usize::from(u16::from_be_bytes([*hi, *lo])) % 4096,
        close: flags & 1 != 0,
        nodelay: flags & 2 != 0,
        rx_buffer: RX_BUFFERS[usize::from(flags >> 2 & 3)],
        read_limit: READ_LIMITS[usize::from(flags >> 4 & 3)],
        chunks: if chunks.is_empty() { vec![1] } else { chunks },
        stream: &stream[..stream.len().min(MAX_STREAM)],
    };
    Some((*codec, input))
}

/// What a run ended with.
struct Outcome {
    events: Vec<Ev>,
    /// Bytes the client read back.
    echoed: Vec<u8>,
    /// The client read the end of the stream.
    eof: bool,
    /// The client's socket failed (reset).
    client_err: Option<Error>,
    steps: usize,
    /// The run ended because it settled, not at [`MAX_STEPS`].
    settled: bool,
    /// The engine's counters at the end.
    stats: EngineStats,
    /// Buffers the engine held at the end, and its open sessions.
    held: usize,
    sessions: usize,
}

/// Runs the server engine and the raw client until the run settles.
fn run<C>(codec: C, inp: &Input<'_>) -> Outcome
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError> + Clone + 'static,
{
    let mut config =
        Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().expect("cidr")).seed(0x5e55_1017);
    config.max_sockets = 8;
    config.tcp = TcpOptions {
        nodelay: inp.nodelay,
        rx_buffer: BUFFER,
        tx_buffer: BUFFER,
        ..TcpOptions::default()
    };
    let mut now = Instant::from_millis(1_000);
    let mut stack = Stack::new(config, Loopback::new(Medium::Ethernet), now).expect("stack");
    let mut engine = Engine::new(&stack, now);
    let log = Log::default();
    let opts = ServerOptions {
        backlog: 1,
        tcp: TcpOptions {
            rx_buffer: inp.rx_buffer,
            tx_buffer: BUFFER,
            ..TcpOptions::default()
        },
        limits: Limits {
            max_msg_len: inp.max,
            ..Limits::default()
        },
        ..ServerOptions::default()
    };
    engine
        .tcp_server(
            &mut stack,
            PORT,
            opts,
            Service::new(codec.clone(), Rec(log.clone())),
        )
        .expect("tcp_server");
    let c = stack
        .connect(IpEndpoint::new(IpAddress::Ipv4(IP), PORT))
        .expect("connect");

    let stream = inp.stream;
    let mut buf = vec![0u8; 2048];
    let (mut written, mut chunk, mut chunk_end) = (0usize, 0usize, 0usize);
    let mut shut = false;
    let mut out = Outcome {
        events: Vec::new(),
        echoed: Vec::new(),
        eof: false,
        client_err: None,
        steps: 0,
        settled: false,
        stats: EngineStats::default(),
        held: 0,
        sessions: 0,
    };
    let mut quiet = 0;
    // Bytes the echoes written so far encode to, over the first `counted` callbacks.
    let (mut counted, mut echo_due) = (0, 0);
    let mut enc = Vec::new();
    let mut last = (0, 0, 0, usize::MAX);
    while out.steps < MAX_STEPS {
        out.steps += 1;
        engine.poll(&mut stack, now);
        let finished = out.eof || out.client_err.is_some();
        if !finished && stack.tcp_connected(c) == Ok(true) {
            // Write: one chunk per step while there are chunk steps left, then all of it.
            if written < stream.len() {
                if written == chunk_end {
                    chunk_end = if chunk < MAX_CHUNK_STEPS {
                        let len = inp.chunks[chunk % inp.chunks.len()];
                        chunk += 1;
                        (written + len).min(stream.len())
                    } else {
                        stream.len()
                    };
                }
                match stack.tcp_write(c, &stream[written..chunk_end]) {
                    Ok(n) => written += n,
                    Err(Error::WouldBlock) => {}
                    Err(e) => out.client_err = Some(e),
                }
            } else if inp.close && !shut {
                stack.tcp_shutdown_write(c).expect("shutdown_write");
                shut = true;
            }
            // Read back, at most `read_limit` bytes per step.
            let mut budget = inp.read_limit;
            while budget > 0 && out.client_err.is_none() {
                let k = budget.min(buf.len());
                match stack.tcp_read(c, &mut buf[..k]) {
                    Ok(0) => {
                        out.eof = true;
                        break;
                    }
                    Ok(n) => {
                        out.echoed.extend_from_slice(&buf[..n]);
                        budget -= n;
                    }
                    Err(Error::WouldBlock) => break,
                    Err(e) => out.client_err = Some(e),
                }
            }
        } else if let Err(e) = stack.tcp_connected(c) {
            out.client_err.get_or_insert(e);
        }
        let events = log.borrow().len();
        let closed = log.borrow().contains(&Ev::Close);
        for e in &log.borrow()[counted..] {
            if let Ev::Msg(p, Ok(())) = e {
                enc.clear();
                let _ = codec.clone().encode(&&p[..], &mut enc);
                echo_due += enc.len();
            }
        }
        counted = events;
        if closed && (out.eof || out.client_err.is_some()) {
            out.settled = true;
            break;
        }
        let unacked = stack.tcp_send_queue(c).unwrap_or(0);
        let now_state = (events, out.echoed.len(), written, unacked);
        quiet = if now_state == last { quiet + 1 } else { 0 };
        last = now_state;
        let settled = written == stream.len() && unacked == 0 && out.echoed.len() == echo_due;
        if !inp.close && settled && quiet >= QUIET_STEPS {
            out.settled = true;
            break;
        }
        now += Duration::from_millis(1);
    }
    out.events = log.take();
    out.stats = engine.stats();
    out.held = engine.held_bytes();
    out.sessions = engine.session_count();
    out
}

fn check<C>(codec: C, inp: &Input<'_>)
where
    C: for<'b> Codec<Pkg<'b> = &'b [u8], Error = CodecError> + Clone + 'static,
{
    let (pkgs, tail) = reference(codec.clone(), inp.stream);
    let out = run(codec.clone(), inp);
    let ctx = format!(
        "max_msg_len {}, rx buffer {}, close {}, {} packages {:?}, tail {tail:?}, {} steps, \
         events {:?}",
        inp.max,
        inp.rx_buffer,
        inp.close,
        pkgs.len(),
        pkgs.iter().map(|p| p.1).collect::<Vec<_>>(),
        out.steps,
        summary(&out.events)
    );

    // Callback order: open, messages, then optionally error, then close; nothing after.
    let ev = &out.events;
    assert_eq!(
        ev.first(),
        Some(&Ev::Open),
        "the session never opened: {ctx}"
    );
    let mut delivered = Vec::new();
    let mut rest = &ev[1..];
    while let [Ev::Msg(p, r), more @ ..] = rest {
        delivered.push((p, r));
        rest = more;
    }
    let (error, closed) = match rest {
        [] => (None, false),
        [Ev::Close] => (None, true),
        [Ev::Error(e), Ev::Close] => (Some(*e), true),
        _ => panic!("callbacks out of order (after the messages: {rest:?}): {ctx}"),
    };

    // The engine's own account agrees, and a closed session gave its buffers back.
    let st = out.stats;
    let too_large = matches!(error, Some(SessionError::MessageTooLarge { .. }));
    assert!(
        st.opened == 1
            && st.closed == u64::from(closed)
            && st.errors == u64::from(error.is_some())
            && st.too_large == u64::from(too_large)
            && st.rejected == 0,
        "{st:?}: {ctx}"
    );
    assert_eq!(out.sessions, usize::from(!closed), "open sessions: {ctx}");
    if closed {
        assert_eq!(out.held, 0, "a closed session still holds buffers: {ctx}");
    }

    // Delivered packages: a prefix of the reference, each echoed iff it encodes.
    let k = delivered.len();
    assert!(k <= pkgs.len(), "more packages than the reference: {ctx}");
    let mut want_echo = Vec::new();
    for (i, ((got, wrote), (want, _))) in delivered.iter().zip(&pkgs).enumerate() {
        assert!(
            *got == want,
            "package {i} differs from the reference: {ctx}"
        );
        let mut enc = Vec::new();
        let encoded = codec.clone().encode(&&want[..], &mut enc);
        assert_eq!(
            wrote.is_ok(),
            encoded.is_ok(),
            "package {i}: write_pkg {wrote:?}, encode {encoded:?}: {ctx}"
        );
        want_echo.extend_from_slice(&enc);
    }

    // Where the limit ends the session: a whole package, a declared length or an
    // unfinished rest of unknown length over max_msg_len, whatever the chunking.
    let definite = pkgs.iter().position(|p| p.1 > inp.max).or(match tail {
        Tail::Known { total, .. } if total > inp.max => Some(pkgs.len()),
        Tail::Unknown { have } if have >= inp.max => Some(pkgs.len()),
        _ => None,
    });

    match error {
        Some(SessionError::MessageTooLarge { len, max }) => {
            assert!(
                max == inp.max && len >= max,
                "MessageTooLarge {{ len: {len}, max: {max} }}: {ctx}"
            );
            assert_eq!(
                Some(k),
                definite,
                "MessageTooLarge after {k} packages: {ctx}"
            );
            assert!(
                want_echo.starts_with(&out.echoed),
                "the echo is not a prefix of the encoded packages ({} of {} bytes): {ctx}",
                out.echoed.len(),
                want_echo.len()
            );
        }
        other => {
            assert_eq!(definite, None, "no MessageTooLarge ({other:?}): {ctx}");
            assert_eq!(k, pkgs.len(), "packages missing ({other:?}): {ctx}");
            let want_err = match tail {
                Tail::Known { have, .. } | Tail::Unknown { have } if inp.close => {
                    Some(SessionError::UnexpectedEof { buffered: have })
                }
                _ => None,
            };
            assert_eq!(other, want_err, "the error that ended the session: {ctx}");
            assert_eq!(closed, inp.close, "on_close: {ctx}");
            assert!(
                out.echoed == want_echo,
                "echo of {} bytes, expected {}: {ctx}",
                out.echoed.len(),
                want_echo.len()
            );
            if inp.close {
                assert!(out.eof, "no end of stream ({:?}): {ctx}", out.client_err);
            } else {
                assert_eq!(out.client_err, None, "{ctx}");
            }
        }
    }
    assert!(
        out.settled,
        "the run did not settle in {MAX_STEPS} steps: {ctx}"
    );
}

/// Events without package contents, for messages.
fn summary(ev: &[Ev]) -> Vec<String> {
    ev.iter()
        .map(|e| match e {
            Ev::Msg(p, r) => format!("msg {} {}", p.len(), if r.is_ok() { "ok" } else { "err" }),
            e => format!("{e:?}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((which, inp)) = parse(data) else {
        return;
    };
    match which % 5 {
        0 => check(LengthPrefixed::U16_BE, &inp),
        1 => check(LengthPrefixed::U16_LE, &inp),
        2 => check(LengthPrefixed::U32_BE, &inp),
        3 => check(LengthPrefixed::U32_LE, &inp),
        _ => check(Lines::new(), &inp),
    }
});
