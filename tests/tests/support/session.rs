//! What the session-over-TAP tests share: a session [`Engine`] polled on its own thread
//! (built there, since an engine is not `Send`) that publishes its counters after every
//! poll, and a recording [`EventListener`] whose log the test thread reads.
//!
//! Included with `#[path = "support/session.rs"]` next to `mod support;` (it uses
//! `support::config`).

#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use ustack::runtime::{self, PollMode};
use ustack::session::codec::{LengthPrefixed, Lines};
use ustack::session::{
    EndpointId, EndpointStatus, Engine, EngineStats, EventListener, Reject, Session, SessionError,
};
use ustack::smoltcp::time::Instant;
use ustack::Stack;
use ustack_drivers::TapDevice;

use crate::support::config;

/// What the engine thread publishes after every poll.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `engine.stats()`.
    pub stats: EngineStats,
    /// `engine.status(id)` of each endpoint `setup` returned, in its order.
    pub status: Vec<EndpointStatus>,
    /// `engine.sessions(id)` of the same endpoints.
    pub sessions: Vec<usize>,
    /// `engine.held_bytes()`: assembly plus pending-output buffers.
    pub held_bytes: usize,
    /// The most `held_bytes` was after any poll so far.
    pub max_held_bytes: usize,
}

/// A ustack stack on a TAP device plus a session engine, polled on their own thread the way
/// `runtime::run_engine` does, until stopped.
pub struct EngineThread {
    stop: Arc<AtomicBool>,
    view: Arc<Mutex<Snapshot>>,
    thread: Option<JoinHandle<Snapshot>>,
}

impl EngineThread {
    /// Builds the stack and engine on a new thread, runs `setup` there, and returns once the
    /// endpoints exist (so a client connecting next finds the listener).
    ///
    /// The loop is `runtime::run_engine`'s (poll, `poll_delay`, `runtime::wait` on the
    /// device and the engine's wake fd) plus a snapshot after each poll: `run_engine` itself
    /// gives no way to look at the engine while it runs.
    pub fn start(
        device: TapDevice,
        setup: impl FnOnce(&mut Stack<'static, TapDevice>, &mut Engine<'static>, Instant) -> Vec<EndpointId>
            + Send
            + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let view = Arc::new(Mutex::new(Snapshot::default()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (flag, out) = (stop.clone(), view.clone());
        let thread = std::thread::spawn(move || {
            let mut stack = Stack::new(config(), device, runtime::now()).expect("stack");
            let mut engine = Engine::new(&stack, runtime::now());
            let ids = setup(&mut stack, &mut engine, runtime::now());
            let mut max_held = 0;
            let mut snap = |engine: &Engine<'_>| {
                max_held = max_held.max(engine.held_bytes());
                Snapshot {
                    stats: engine.stats(),
                    status: ids.iter().map(|&id| engine.status(id)).collect(),
                    sessions: ids.iter().map(|&id| engine.sessions(id)).collect(),
                    held_bytes: engine.held_bytes(),
                    max_held_bytes: max_held,
                }
            };
            *out.lock().unwrap() = snap(&engine);
            let _ = ready_tx.send(());
            let fd = stack.device().as_raw_fd();
            while !flag.load(Ordering::Relaxed) {
                engine.poll(&mut stack, runtime::now());
                *out.lock().unwrap() = snap(&engine);
                let delay = engine.poll_delay(&mut stack, runtime::now());
                runtime::wait(fd, engine.wake_fd(), delay, PollMode::Block).expect("wait");
            }
            snap(&engine)
        });
        let mut me = EngineThread {
            stop,
            view,
            thread: Some(thread),
        };
        if ready_rx.recv().is_err() {
            // The thread died in setup: show its panic.
            me.join();
        }
        me
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.view.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for a snapshot, at most `limit`; panics with `what` and the
    /// last snapshot if it does not (or with the engine thread's panic if it died).
    pub fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        let end = StdInstant::now() + limit;
        loop {
            let s = self.snapshot();
            if pred(&s) {
                return s;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                self.join();
                panic!("engine thread ended while waiting for {what}");
            }
            assert!(
                StdInstant::now() < end,
                "no {what} within {limit:?}; last snapshot: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the loop and returns the final snapshot.
    pub fn stop(mut self) -> Snapshot {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    fn join(&mut self) -> Snapshot {
        self.stop.store(true, Ordering::Relaxed);
        match self
            .thread
            .take()
            .expect("engine thread joined twice")
            .join()
        {
            Ok(s) => s,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Not while unwinding from a failed assertion: a second panic would abort.
            let _ = t.join();
        }
    }
}

/// One callback as a [`Rec`] saw it. Session ids are `SessionId::0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// `on_open` accepted the session; the peer's port.
    Open(u64, u16),
    /// `on_open` refused it; the peer's port.
    Rejected(u64, u16),
    /// `on_message` (logged only with [`Rec::log_msgs`]).
    Msg(u64, Vec<u8>),
    /// A reply or greeting could not be written.
    WriteFailed(u64, SessionError),
    /// `on_error`.
    Error(u64, SessionError),
    /// `on_close`.
    Close(u64),
}

/// What a [`Rec`] shares with the test thread.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Every callback, in order.
    pub events: Arc<Mutex<Vec<Ev>>>,
    /// Sessions between `on_open` (accepted) and `on_close`.
    pub live: Arc<AtomicUsize>,
    /// The most `live` ever was, checked inside `on_open`.
    pub max_live: Arc<AtomicUsize>,
    /// `on_open` calls that accepted.
    pub opens: Arc<AtomicUsize>,
    /// `on_close` calls.
    pub closes: Arc<AtomicUsize>,
    /// `on_message` calls.
    pub msgs: Arc<AtomicUsize>,
}

impl Shared {
    /// A copy of the log.
    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }

    /// The log of one session, in order.
    pub fn of(&self, id: u64) -> Vec<Ev> {
        self.events()
            .into_iter()
            .filter(|e| match e {
                Ev::Open(i, _)
                | Ev::Rejected(i, _)
                | Ev::Msg(i, _)
                | Ev::WriteFailed(i, _)
                | Ev::Error(i, _)
                | Ev::Close(i) => *i == id,
            })
            .collect()
    }

    /// The id of the session whose peer used local port `port` (accepted or rejected).
    pub fn id_of_port(&self, port: u16) -> Option<u64> {
        self.events().iter().find_map(|e| match e {
            Ev::Open(i, p) | Ev::Rejected(i, p) if *p == port => Some(*i),
            _ => None,
        })
    }

    fn push(&self, e: Ev) {
        self.events.lock().unwrap().push(e);
    }
}

/// How a [`Rec`] answers a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Not at all.
    None,
    /// With the same package.
    Echo,
    /// With the package in ASCII upper case.
    Upper,
}

/// A listener that logs its callbacks into [`Shared`] and answers as configured.
pub struct Rec {
    pub shared: Shared,
    pub reply: Reply,
    /// Refuse every n-th `on_open` (counting refused ones too).
    pub reject_every: Option<usize>,
    /// `close()` the session after answering a package.
    pub close_after_reply: bool,
    /// Log packages' bytes ([`Ev::Msg`]); off for bulk traffic.
    pub log_msgs: bool,
    /// Write this package from `on_open`.
    pub greet: Option<&'static [u8]>,
    seen: usize,
}

impl Rec {
    /// Logs open, error and close and every package, and answers with `reply`.
    pub fn new(shared: &Shared, reply: Reply) -> Self {
        Rec {
            shared: shared.clone(),
            reply,
            reject_every: None,
            close_after_reply: false,
            log_msgs: true,
            greet: None,
            seen: 0,
        }
    }

    fn open(&mut self, id: u64, peer: u16) -> Result<(), Reject> {
        self.seen += 1;
        if self
            .reject_every
            .is_some_and(|n| self.seen.is_multiple_of(n))
        {
            self.shared.push(Ev::Rejected(id, peer));
            return Err(Reject("every second connection is turned away"));
        }
        let live = self.shared.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.max_live.fetch_max(live, Ordering::SeqCst);
        self.shared.opens.fetch_add(1, Ordering::SeqCst);
        self.shared.push(Ev::Open(id, peer));
        Ok(())
    }

    /// Logs a package; returns the answer to write, if any.
    fn message(&mut self, id: u64, pkg: &[u8]) -> Option<Vec<u8>> {
        self.shared.msgs.fetch_add(1, Ordering::SeqCst);
        if self.log_msgs {
            self.shared.push(Ev::Msg(id, pkg.to_vec()));
        }
        match self.reply {
            Reply::None => None,
            Reply::Echo => Some(pkg.to_vec()),
            Reply::Upper => Some(pkg.to_ascii_uppercase()),
        }
    }

    fn close(&mut self, id: u64) {
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
        self.shared.closes.fetch_add(1, Ordering::SeqCst);
        self.shared.push(Ev::Close(id));
    }
}

/// `Rec` for codecs whose package is a byte slice.
macro_rules! rec_for {
    ($codec:ty) => {
        impl EventListener<$codec> for Rec {
            fn on_open(&mut self, s: &mut Session<'_, $codec>) -> Result<(), Reject> {
                self.open(s.id().0, s.peer_addr().port)?;
                if let Some(g) = self.greet {
                    if let Err(e) = s.write_pkg(&g) {
                        self.shared.push(Ev::WriteFailed(s.id().0, e));
                    }
                }
                Ok(())
            }
            fn on_message(&mut self, s: &mut Session<'_, $codec>, pkg: &[u8]) {
                if let Some(out) = self.message(s.id().0, pkg) {
                    if let Err(e) = s.write_pkg(&&out[..]) {
                        self.shared.push(Ev::WriteFailed(s.id().0, e));
                    }
                    if self.close_after_reply {
                        s.close();
                    }
                }
            }
            fn on_error(&mut self, s: &mut Session<'_, $codec>, e: &SessionError) {
                self.shared.push(Ev::Error(s.id().0, *e));
            }
            fn on_close(&mut self, s: &mut Session<'_, $codec>) {
                self.close(s.id().0);
            }
        }
    };
}

rec_for!(LengthPrefixed);
rec_for!(Lines);

/// `body` with a u32 big-endian length prefix.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Reads one u32-BE length-prefixed package.
pub fn read_frame(s: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h)?;
    let mut body = vec![0u8; u32::from_be_bytes(h) as usize];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// Sends `body` framed and returns the framed answer.
pub fn echo_once(s: &mut TcpStream, body: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(&frame(body))?;
    read_frame(s)
}

/// How a kernel connection ended when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `read` returned 0: the peer's FIN.
    Eof,
    /// ECONNRESET: the peer's RST.
    Reset,
}

/// Reads until the connection ends; `Err` with what came instead (data, a timeout, another
/// error).
pub fn read_end(s: &mut TcpStream) -> Result<End, String> {
    let mut buf = [0u8; 4096];
    loop {
        return match s.read(&mut buf) {
            Ok(0) => Ok(End::Eof),
            Ok(n) => Err(format!("{n} unexpected bytes: {:?}", &buf[..n.min(64)])),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(End::Reset),
            // A signal (another test's child process) cut the wait short.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => Err(format!("read failed: {e}")),
        };
    }
}
