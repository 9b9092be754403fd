//! Plain sockets and sessions in one loop (`Engine::poll_with`), against kernel clients over
//! a TAP link in a private namespace. The engine serves a length-prefixed echo on 9000; the
//! callback runs `ustack_examples::echo::Echo` on port 7. Every event about the echo's
//! sockets must reach the callback and none about a session may, and both services stay
//! byte-exact while they run side by side.

#[path = "support/session.rs"]
mod session_support;
mod support;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use session_support::{echo_once, Rec, Reply, Shared};
use support::{config, echo_addr, echo_connect};
use ustack::runtime::{self, PollMode};
use ustack::session::codec::LengthPrefixed;
use ustack::session::{Engine, EngineStats, ServerOptions, Service};
use ustack::{Event, Stack, Token};
use ustack_examples::echo::{Echo, EchoStats};
use ustack_tests::{privileged, random_bytes, TapLink, STACK_IP};

const SESSION_PORT: u16 = 9000;
const CLIENTS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the callback was handed.
#[derive(Debug, Default)]
struct Seen {
    listener_events: usize,
    /// Connections the callback got events for.
    conns: HashSet<ustack::TcpHandle>,
    /// Local ports of those connections' events: all must be the echo's.
    ports: HashSet<u16>,
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(&SocketAddr::from((STACK_IP, port)), TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to ustack port {port}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

#[test]
fn poll_with_hands_the_callback_its_own_sockets_events_and_no_sessions() {
    if !privileged() {
        return;
    }
    let mut link = TapLink::new();
    let device = link.take_device();
    let shared = Shared::default();
    let rec = Rec::new(&shared, Reply::Echo);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = std::thread::spawn(move || -> (Seen, EchoStats, EngineStats) {
        let mut stack = Stack::new(config(), device, runtime::now()).expect("stack");
        let mut engine = Engine::new(&stack, runtime::now());
        let service = Service::new(LengthPrefixed::U32_BE, rec);
        engine
            .tcp_server(&mut stack, SESSION_PORT, ServerOptions::default(), service)
            .expect("tcp_server");
        let mut echo = Echo::bind(&mut stack, 7, 16).expect("echo");
        let mut seen = Seen::default();
        ready_tx.send(()).unwrap();
        let fd = stack.device().as_raw_fd();
        while !flag.load(Ordering::Relaxed) {
            engine.poll_with(&mut stack, runtime::now(), |s, ev: Event| {
                match ev.token {
                    Token::Listener(_) => seen.listener_events += 1,
                    Token::Tcp(h) => {
                        seen.conns.insert(h);
                        if let Ok(local) = s.tcp_local_addr(h) {
                            seen.ports.insert(local.port);
                        }
                    }
                    Token::Udp(_) => {}
                }
                echo.on_event(s, ev);
            });
            let delay = engine.poll_delay(&mut stack, runtime::now());
            runtime::wait(fd, engine.wake_fd(), delay, PollMode::Block).expect("wait");
        }
        (seen, echo.stats(), engine.stats())
    });
    ready_rx.recv().expect("the server thread died in setup");

    link.ns.run(|| {
        std::thread::scope(|scope| {
            for c in 0..CLIENTS {
                scope.spawn(move || {
                    let data = random_bytes(c as u64, 64 * 1024 + c);
                    let got = echo_connect(echo_addr(), &data, TIMEOUT).expect("raw echo");
                    assert!(
                        got == data,
                        "raw echo {c} differs ({} bytes back)",
                        got.len()
                    );
                });
                scope.spawn(move || {
                    let mut s = connect(SESSION_PORT);
                    for (k, len) in [0usize, 1, 1000, 20_000].into_iter().enumerate() {
                        let body = random_bytes(100 * c as u64 + k as u64, len);
                        let back = echo_once(&mut s, &body).expect("session echo");
                        assert!(back == body, "session {c}: package of {len} bytes differs");
                    }
                });
            }
        });
    });
    stop.store(true, Ordering::Relaxed);
    let (seen, echo, engine) = server.join().expect("server thread");

    assert!(seen.listener_events >= 1, "{seen:?}");
    assert_eq!(seen.conns.len(), CLIENTS, "{seen:?}");
    assert_eq!(
        seen.ports,
        HashSet::from([7]),
        "only the echo's sockets: {seen:?}"
    );
    assert_eq!(echo.accepted, CLIENTS as u64);
    assert_eq!(
        echo.tcp_bytes,
        (0..CLIENTS).map(|c| (64 * 1024 + c) as u64).sum::<u64>()
    );
    assert_eq!(engine.opened, CLIENTS as u64, "{engine:?}");
    assert_eq!(shared.msgs.load(Ordering::SeqCst), 4 * CLIENTS);
}
