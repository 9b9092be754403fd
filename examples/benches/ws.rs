//! WebSocket micro-benchmarks, ustack against tungstenite 0.30 (criterion).
//!
//! - **upgrade**: an HTTP/1.1 upgrade request in, the `101 Switching Protocols` out.
//!   ustack: `server_upgrade` into a reused 512-byte `SliceOut`. tungstenite, two ways:
//!   `parts` is the least it can do for "bytes in, bytes out" (`Request::try_parse`, then
//!   `create_response` and `write_response` into a reused `Vec`); `accept_hdr` is what a
//!   server calls (the handshake machine over an in-memory stream, a no-op callback, and the
//!   `WebSocket` it returns). Two requests: the RFC 6455 §1.3 sample and a browser's.
//! - **frames**: reading, unmasking and validating client→server frames that lie in one
//!   buffer: 100 000 masked 20-byte text messages, and 64 masked 1 MiB binary messages.
//!   Unmasking is destructive, so every iteration starts from the pristine masked bytes,
//!   and both get them the same way, as from a socket: 128 KiB at a time (tungstenite's
//!   default read buffer), one copy each. tungstenite's `read` pulls them through an
//!   in-memory stream (`Read::read` copies into its read buffer) until the stream says
//!   `WouldBlock`; ustack's receive loop copies each 128 KiB behind the unread tail of a
//!   reused buffer and `read`s whole frames out of it in place. `ustack-one-copy` copies
//!   the whole stream at once instead, then reads; `memcpy-only` is that copy alone.
//!
//! Heap allocations per operation are counted by this binary's global allocator over a
//! fixed number of untimed operations before each group runs, and printed as lines that
//! start with `ALLOCS` (`scripts/bench_ws.sh` collects them into the report).
//!
//! `cargo bench -p ustack-examples --bench ws` (or `scripts/bench_ws.sh`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};
use tungstenite::protocol::{Role as TRole, WebSocketConfig};
use ustack::session::codec::SliceOut;
use ustack::ws::conn::{Event, MsgBuf, Step, WsConfig, WsConn};
use ustack::ws::handshake::{server_upgrade, NoHooks, ServerConfig, Upgrade};
use ustack::ws::Role;

// ---------------------------------------------------------------------------------------
// allocation counting

/// The system allocator, counting every allocation call (`alloc`, `alloc_zeroed` and
/// `realloc` each count one; frees are not counted).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `op` `n` times after one warm-up call and prints the allocation calls per call.
fn report_allocs(name: &str, n: u64, mut op: impl FnMut()) {
    op();
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        op();
    }
    let calls = ALLOCS.load(Ordering::Relaxed) - before;
    println!(
        "ALLOCS {name} {:.3} per op ({calls} allocation calls over {n} ops)",
        calls as f64 / n as f64
    );
}

// ---------------------------------------------------------------------------------------
// upgrade

/// RFC 6455 §1.3's sample request (with `Origin`), as in gobwas/ws's upgrade benchmark.
const REQ_RFC: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

/// What a desktop browser sends (13 headers, 540 bytes). Neither server is configured for
/// permessage-deflate, so both decline the offered extension.
const REQ_BROWSER: &[u8] = b"GET /socket?room=lobby HTTP/1.1\r\n\
Host: chat.example.com:8443\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// An in-memory stream for tungstenite's handshake: reads yield `input`, writes collect
/// into `output` (whose capacity is kept between operations).
struct Mem {
    input: &'static [u8],
    pos: usize,
    output: Vec<u8>,
}

impl Mem {
    fn reset(&mut self) {
        self.pos = 0;
        self.output.clear();
    }
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.pos..];
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn ustack_upgrade(req: &[u8], cfg: &ServerConfig, buf: &mut [u8]) -> usize {
    let mut out = SliceOut::new(buf);
    match server_upgrade(req, cfg, &mut NoHooks, &mut out) {
        Upgrade::Upgraded { used, .. } => {
            debug_assert_eq!(used, req.len());
            out.filled().len()
        }
        other => panic!("ustack did not upgrade: {other:?}"),
    }
}

fn tungstenite_parts(req: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let (used, request) = Request::try_parse(req)
        .expect("tungstenite: bad request")
        .expect("tungstenite: partial request");
    debug_assert_eq!(used, req.len());
    let response = create_response(&request).expect("tungstenite: refused");
    write_response(&mut *out, &response).expect("tungstenite: write_response");
    out.len()
}

fn tungstenite_accept(mem: &mut Mem) -> usize {
    mem.reset();
    // `NoCallback` is tungstenite's no-op header callback.
    let ws = tungstenite::accept_hdr(&mut *mem, tungstenite::handshake::server::NoCallback)
        .expect("tungstenite: accept_hdr");
    drop(ws);
    mem.output.len()
}

/// The `Sec-WebSocket-Accept` value in a response, to check both answered alike.
fn accept_header(resp: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(resp).expect("response is ASCII");
    assert!(text.starts_with("HTTP/1.1 101"), "not a 101: {text}");
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| v.trim().as_bytes().to_vec())
        })
        .expect("no Sec-WebSocket-Accept")
}

fn upgrade(c: &mut Criterion) {
    let cfg = ServerConfig::default();
    for (name, req) in [("rfc", REQ_RFC), ("browser", REQ_BROWSER)] {
        let mut buf = [0u8; 512];
        let mut out = Vec::with_capacity(512);
        let mut mem = Mem {
            input: req,
            pos: 0,
            output: Vec::with_capacity(512),
        };
        // Both answer the same 101 (same accept key, no extension).
        let n = ustack_upgrade(req, &cfg, &mut buf);
        let ours = buf[..n].to_vec();
        tungstenite_parts(req, &mut out);
        tungstenite_accept(&mut mem);
        assert_eq!(accept_header(&ours), accept_header(&out));
        assert_eq!(accept_header(&ours), accept_header(&mem.output));
        for r in [&ours, &out, &mem.output] {
            let t = String::from_utf8_lossy(r).to_ascii_lowercase();
            assert!(!t.contains("sec-websocket-extensions"), "{t}");
        }
        println!(
            "upgrade/{name}: request {} B; response ustack {} B, tungstenite {} B",
            req.len(),
            ours.len(),
            out.len()
        );

        const N: u64 = 10_000;
        report_allocs(&format!("upgrade/{name}/ustack"), N, || {
            black_box(ustack_upgrade(black_box(req), &cfg, &mut buf));
        });
        report_allocs(&format!("upgrade/{name}/tungstenite-parts"), N, || {
            black_box(tungstenite_parts(black_box(req), &mut out));
        });
        report_allocs(&format!("upgrade/{name}/tungstenite-accept_hdr"), N, || {
            black_box(tungstenite_accept(&mut mem));
        });

        let mut g = c.benchmark_group(format!("upgrade/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("ustack", |b| {
            b.iter(|| ustack_upgrade(black_box(req), &cfg, &mut buf))
        });
        g.bench_function("tungstenite-parts", |b| {
            b.iter(|| tungstenite_parts(black_box(req), &mut out))
        });
        g.bench_function("tungstenite-accept_hdr", |b| {
            b.iter(|| tungstenite_accept(&mut mem))
        });
        g.finish();
    }
}

// ---------------------------------------------------------------------------------------
// frames

/// A small deterministic generator for masking keys (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// One masked client frame (FIN set) of `opcode` around `payload`.
fn masked_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}

/// `count` masked messages of `size` bytes each (text: printable ASCII), in one buffer.
fn stream(count: usize, size: usize, text: bool) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(count * (size + 14));
    let mut payload = vec![0u8; size];
    for i in 0..count {
        for (j, b) in payload.iter_mut().enumerate() {
            *b = if text {
                b'a' + ((i + j) % 26) as u8
            } else {
                (i * 31 + j * 7) as u8
            };
        }
        let key = (rng.next() as u32).to_ne_bytes();
        masked_frame(&mut out, if text { 1 } else { 2 }, &payload, key);
    }
    out
}

/// Bytes one receive copies in: tungstenite's default `read_buffer_size` (128 KiB), which
/// is also how much its `read` asks its stream for at a time.
const RECV: usize = 128 << 10;

/// The ustack side, as a server's receive loop runs it: copy up to [`RECV`] bytes from the
/// pristine stream behind what is left in a reused buffer, `read` whole frames out of it
/// in place until it says `NeedMore`, move the unread tail to the front, repeat.
struct UstackReader {
    conn: WsConn,
    store: MsgBuf<'static>,
    replies: Vec<u8>,
    work: Vec<u8>,
}

impl UstackReader {
    fn new() -> Self {
        let cfg = WsConfig {
            max_message_size: 2 << 20,
            ..WsConfig::default()
        };
        UstackReader {
            conn: WsConn::new(Role::Server, cfg),
            store: MsgBuf::heap(),
            replies: Vec::new(),
            work: vec![0; 2 * RECV],
        }
    }

    /// Messages and payload bytes read.
    fn run(&mut self, src: &[u8]) -> (u64, u64) {
        let (mut msgs, mut bytes) = (0u64, 0u64);
        let (mut start, mut end, mut fed) = (0usize, 0usize, 0usize);
        loop {
            let mut need = None;
            while start < end {
                match self.conn.read(
                    &mut self.work[start..end],
                    &mut self.store,
                    &mut self.replies,
                ) {
                    Ok(Step::Frame {
                        used,
                        event: Some(Event::Message(m)),
                    }) => {
                        msgs += 1;
                        bytes += black_box(m.as_bytes()).len() as u64;
                        start += used;
                    }
                    Ok(Step::NeedMore { total }) => {
                        need = total;
                        break;
                    }
                    other => panic!("ustack: unexpected {other:?}"),
                }
            }
            if fed == src.len() {
                assert_eq!(start, end, "ustack: a partial frame at the end");
                return (msgs, bytes);
            }
            if start > 0 {
                self.work.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            // Room for the frame that is arriving plus one receive; the buffer keeps its
            // size between iterations, so this allocates only in the warm-up.
            let want = need.unwrap_or(0).max(end) + RECV;
            if self.work.len() < want {
                self.work.resize(want, 0);
            }
            let n = RECV.min(src.len() - fed);
            self.work[end..end + n].copy_from_slice(&src[fed..fed + n]);
            fed += n;
            end += n;
        }
    }

    /// The other way to give it fresh bytes: one copy of the whole stream, then every
    /// frame read in place. Two passes over memory when the stream outgrows the caches.
    fn run_one_copy(&mut self, src: &[u8]) -> (u64, u64) {
        if self.work.len() < src.len() {
            self.work.resize(src.len(), 0);
        }
        let work = &mut self.work[..src.len()];
        work.copy_from_slice(src);
        let (mut msgs, mut bytes, mut pos) = (0u64, 0u64, 0usize);
        while pos < work.len() {
            match self
                .conn
                .read(&mut work[pos..], &mut self.store, &mut self.replies)
            {
                Ok(Step::Frame {
                    used,
                    event: Some(Event::Message(m)),
                }) => {
                    msgs += 1;
                    bytes += black_box(m.as_bytes()).len() as u64;
                    pos += used;
                }
                other => panic!("ustack: unexpected {other:?} at {pos}"),
            }
        }
        (msgs, bytes)
    }
}

/// A stream over the pristine masked bytes: each `read` copies the next bytes out, and the
/// end is `WouldBlock` (the connection stays usable for the next iteration).
struct Feed {
    src: &'static [u8],
    pos: usize,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.src[self.pos..];
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Feed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The tungstenite side: one `WebSocket` whose stream is rewound every iteration.
struct TungsteniteReader {
    ws: tungstenite::WebSocket<Feed>,
}

impl TungsteniteReader {
    fn new(src: &'static [u8]) -> Self {
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(2 << 20))
            .max_frame_size(Some(2 << 20));
        TungsteniteReader {
            ws: tungstenite::WebSocket::from_raw_socket(
                Feed { src, pos: 0 },
                TRole::Server,
                Some(cfg),
            ),
        }
    }

    fn run(&mut self) -> (u64, u64) {
        self.ws.get_mut().pos = 0;
        let (mut msgs, mut bytes) = (0u64, 0u64);
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    msgs += 1;
                    bytes += black_box(t).len() as u64;
                }
                Ok(tungstenite::Message::Binary(b)) => {
                    msgs += 1;
                    bytes += black_box(b).len() as u64;
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                other => panic!("tungstenite: unexpected {other:?}"),
            }
        }
        (msgs, bytes)
    }
}

fn frames_case(c: &mut Criterion, name: &str, count: usize, size: usize, text: bool) {
    let src: &'static [u8] = Vec::leak(stream(count, size, text));
    let mut ours = UstackReader::new();
    let mut ours_one = UstackReader::new();
    let mut theirs = TungsteniteReader::new(src);
    // Both decode every message, with the same payload bytes.
    let want = (count as u64, (count * size) as u64);
    assert_eq!(ours.run(src), want, "ustack decoded a different count");
    assert_eq!(
        ours_one.run_one_copy(src),
        want,
        "ustack decoded a different count"
    );
    assert_eq!(theirs.run(), want, "tungstenite decoded a different count");
    println!(
        "frames/{name}: {count} messages × {size} B, {} B of frames",
        src.len()
    );

    let n = if size > 4096 { 20 } else { 50 };
    report_allocs(&format!("frames/{name}/ustack"), n, || {
        black_box(ours.run(src));
    });
    report_allocs(&format!("frames/{name}/ustack-one-copy"), n, || {
        black_box(ours_one.run_one_copy(src));
    });
    report_allocs(&format!("frames/{name}/tungstenite"), n, || {
        black_box(theirs.run());
    });

    let mut g = c.benchmark_group(format!("frames/{name}"));
    g.throughput(Throughput::Bytes((count * size) as u64));
    if size > 4096 {
        g.sample_size(20);
    } else {
        g.sample_size(30);
    }
    g.bench_function("ustack", |b| b.iter(|| ours.run(src)));
    g.bench_function("tungstenite", |b| b.iter(|| theirs.run()));
    g.bench_function("ustack-one-copy", |b| b.iter(|| ours_one.run_one_copy(src)));
    // The copy both include, alone: the floor under either.
    let mut scratch = vec![0u8; src.len()];
    g.bench_function("memcpy-only", |b| {
        b.iter(|| {
            scratch.copy_from_slice(black_box(src));
            black_box(scratch.as_ptr());
        })
    });
    g.finish();
}

fn frames(c: &mut Criterion) {
    frames_case(c, "small-100k-x20B-text", 100_000, 20, true);
    frames_case(c, "large-64-x1MiB-binary", 64, 1 << 20, false);
}

criterion_group!(benches, upgrade, frames);
criterion_main!(benches);
