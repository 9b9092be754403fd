//! The session layer ustack↔ustack over the in-memory pipe: both ends are engines, driven
//! by one simulated clock, so timing tests are exact.

use std::cell::RefCell;
use std::rc::Rc;

use ustack::session::codec::LengthPrefixed;
use ustack::session::{
    ClientOptions, EndpointStatus, Engine, EventListener, Limits, ProtocolRef, Reject,
    ServerOptions, Service, Session, SessionError,
};
use ustack::smoltcp::time::{Duration, Instant};
use ustack::{Config, Stack};
use ustack_drivers::{PipeDevice, PipeLink};

type Dev<'a> = PipeDevice<'a, 64, 1514>;
type Lp = LengthPrefixed;

fn stack<'a>(dev: Dev<'a>, last: u8) -> Stack<'a, Dev<'a>> {
    let config = Config::new(
        [2, 0, 0, 0, 0, last],
        format!("10.9.0.{last}/24").parse().unwrap(),
    )
    .seed(last.into());
    Stack::new(config, dev, Instant::ZERO).unwrap()
}

/// What a test listener saw, in order.
#[derive(Default, Debug)]
struct Log {
    events: Vec<String>,
    msgs: Vec<Vec<u8>>,
}

type Shared = Rc<RefCell<Log>>;

struct Echo(Shared);
impl EventListener<Lp> for Echo {
    fn on_open(&mut self, s: &mut Session<'_, Lp>) -> Result<(), Reject> {
        self.0
            .borrow_mut()
            .events
            .push(format!("open {}", s.id().0));
        Ok(())
    }
    fn on_message(&mut self, s: &mut Session<'_, Lp>, pkg: &[u8]) {
        self.0.borrow_mut().msgs.push(pkg.to_vec());
        s.write_pkg(&pkg).unwrap();
    }
    fn on_error(&mut self, _: &mut Session<'_, Lp>, e: &SessionError) {
        self.0.borrow_mut().events.push(format!("error {e:?}"));
    }
    fn on_close(&mut self, s: &mut Session<'_, Lp>) {
        self.0
            .borrow_mut()
            .events
            .push(format!("close {}", s.id().0));
    }
}

/// A client that sends `n` messages of growing size on open and records the echoes.
struct Sender {
    log: Shared,
    sizes: Vec<usize>,
}
impl EventListener<Lp> for Sender {
    fn on_open(&mut self, s: &mut Session<'_, Lp>) -> Result<(), Reject> {
        for (k, &n) in self.sizes.iter().enumerate() {
            let body: Vec<u8> = (0..n).map(|i| (i * 7 + k) as u8).collect();
            s.write_pkg(&&body[..]).unwrap();
        }
        Ok(())
    }
    fn on_message(&mut self, _: &mut Session<'_, Lp>, pkg: &[u8]) {
        self.log.borrow_mut().msgs.push(pkg.to_vec());
    }
    fn on_close(&mut self, _: &mut Session<'_, Lp>) {
        self.log.borrow_mut().events.push("client close".into());
    }
}

/// Polls both sides with 1 ms steps until `done` or `limit` passes.
fn run(
    a: (&mut Stack<'_, Dev<'_>>, &mut Engine<'_>),
    b: (&mut Stack<'_, Dev<'_>>, &mut Engine<'_>),
    now: &mut Instant,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let end = *now + limit;
    while *now < end {
        a.1.poll(a.0, *now);
        b.1.poll(b.0, *now);
        if done() {
            return true;
        }
        *now += Duration::from_millis(1);
    }
    false
}

/// How a [`sender_echo`] run ended.
struct EchoRun<'e, 'a> {
    /// Every echo came back within the limit.
    done: bool,
    /// The simulated time it ended at (from zero).
    now: Instant,
    server: &'e Engine<'a>,
    client: &'e Engine<'a>,
    client_id: ustack::session::EndpointId,
    server_log: Shared,
    client_log: Shared,
}

/// An echo server (stack A, port 9000, accepted connections with `tcp`) and a [`Sender`]
/// client (stack B) that sends packages of `sizes`; runs until every echo is back or
/// `limit` passes, then hands the outcome to `check`.
fn sender_echo<R>(
    tcp: ustack::TcpOptions,
    sizes: &[usize],
    limit: Duration,
    check: impl FnOnce(EchoRun<'_, '_>) -> R,
) -> R {
    let link = PipeLink::<64, 1514>::new();
    let (da, db) = link.split();
    let (mut sa, mut sb) = (stack(da, 1), stack(db, 2));
    let mut now = Instant::ZERO;
    let (mut ea, mut eb) = (Engine::new(&sa, now), Engine::new(&sb, now));
    let (server_log, client_log) = (Shared::default(), Shared::default());
    let opts = ServerOptions {
        tcp,
        ..ServerOptions::default()
    };
    let echo = Service::new(Lp::U32_BE, Echo(server_log.clone()));
    ea.tcp_server(&mut sa, 9000, opts, echo).unwrap();
    let sender = Sender {
        log: client_log.clone(),
        sizes: sizes.to_vec(),
    };
    let client_id = eb
        .tcp_client(
            "10.9.0.1:9000".parse().unwrap(),
            ClientOptions::default(),
            Service::new(Lp::U32_BE, sender),
            now,
        )
        .unwrap();
    let done = run(
        (&mut sa, &mut ea),
        (&mut sb, &mut eb),
        &mut now,
        limit,
        || client_log.borrow().msgs.len() == sizes.len(),
    );
    check(EchoRun {
        done,
        now,
        server: &ea,
        client: &eb,
        client_id,
        server_log,
        client_log,
    })
}

#[test]
fn length_prefixed_echo_round_trips_small_and_oversized_packages_in_order() {
    // 100 KiB is larger than the 64 KiB socket buffers: it is assembled in a pool buffer.
    let sizes = [1, 0, 1000, 70_000, 3, 65_532, 100 * 1024, 5];
    let tcp = ServerOptions::default().tcp;
    sender_echo(tcp, &sizes, Duration::from_secs(20), |r| {
        let got = r.client_log.borrow();
        let lens: Vec<usize> = got.msgs.iter().map(Vec::len).collect();
        assert!(r.done, "echoes: {lens:?}");
        for (k, (m, &n)) in got.msgs.iter().zip(&sizes).enumerate() {
            let want: Vec<u8> = (0..n).map(|i| (i * 7 + k) as u8).collect();
            assert_eq!(m, &want, "message {k}");
        }
        assert_eq!(r.client.sessions(r.client_id), 1);
        assert_eq!(
            r.server.held_bytes(),
            0,
            "no session holds a buffer once idle"
        );
        assert_eq!(r.client.held_bytes(), 0);
        assert_eq!(r.server_log.borrow().events, vec!["open 1".to_string()]);
    });
}

/// Records every package and every callback with the time it ran.
struct Recorder {
    log: Shared,
    times: Rc<RefCell<Vec<(String, Instant)>>>,
    limits: Limits,
}

impl Recorder {
    fn note(&self, what: String, at: Instant) {
        self.times.borrow_mut().push((what, at));
    }
}

impl EventListener<Lp> for Recorder {
    fn on_open(&mut self, s: &mut Session<'_, Lp>) -> Result<(), Reject> {
        let l = self.limits;
        s.set_cron_period(l.cron_period);
        s.set_idle_timeout(l.idle_timeout);
        s.set_read_timeout(l.read_timeout);
        s.set_write_timeout(l.write_timeout);
        s.set_max_msg_len(l.max_msg_len);
        self.note("open".into(), s.now());
        Ok(())
    }
    fn on_message(&mut self, s: &mut Session<'_, Lp>, pkg: &[u8]) {
        self.log.borrow_mut().msgs.push(pkg.to_vec());
        self.note("message".into(), s.now());
    }
    fn on_cron(&mut self, s: &mut Session<'_, Lp>) {
        self.note("cron".into(), s.now());
    }
    fn on_error(&mut self, s: &mut Session<'_, Lp>, e: &SessionError) {
        self.note(format!("error {e:?}"), s.now());
    }
    fn on_close(&mut self, s: &mut Session<'_, Lp>) {
        self.note("close".into(), s.now());
    }
}

type Times = Rc<RefCell<Vec<(String, Instant)>>>;

/// A server engine on stack A (port 9000) running `proto`, and a plain socket client on
/// stack B; `script` drives the client once connected, until `until` or `limit`.
fn server_with_raw_client<'p>(
    proto: impl Into<ProtocolRef<'p>>,
    limit: Duration,
    mut script: impl FnMut(&mut Stack<'_, Dev<'_>>, ustack::TcpHandle, Instant),
    mut until: impl FnMut() -> bool,
) -> Engine<'p> {
    let link = PipeLink::<64, 1514>::new();
    let (da, db) = link.split();
    let (mut sa, mut sb) = (stack(da, 1), stack(db, 2));
    let mut now = Instant::ZERO;
    let mut ea = Engine::new(&sa, now);
    ea.tcp_server(&mut sa, 9000, ServerOptions::default(), proto)
        .unwrap();
    let c = sb.connect("10.9.0.1:9000".parse().unwrap()).unwrap();
    let end = now + limit;
    while now < end {
        ea.poll(&mut sa, now);
        sb.poll(now);
        while sb.next_event().is_some() {}
        if sb.tcp_connected(c) == Ok(true) {
            script(&mut sb, c, now);
        }
        if until() {
            break;
        }
        now += Duration::from_millis(1);
    }
    ea
}

/// [`server_with_raw_client`] with a [`Recorder`] that applies `limits` in `on_open`.
fn recorded(
    limits: Limits,
    limit: Duration,
    script: impl FnMut(&mut Stack<'_, Dev<'_>>, ustack::TcpHandle, Instant),
    mut until: impl FnMut(&Shared, &Times) -> bool,
) -> (Shared, Times) {
    let (log, times) = (Shared::default(), Times::default());
    let rec = Recorder {
        log: log.clone(),
        times: times.clone(),
        limits,
    };
    let (l, t) = (log.clone(), times.clone());
    server_with_raw_client(Service::new(Lp::U32_BE, rec), limit, script, || {
        until(&l, &t)
    });
    (log, times)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn has(times: &Times, what: &str) -> bool {
    times.borrow().iter().any(|(w, _)| w == what)
}

#[test]
fn packages_split_at_every_byte_or_merged_decode_to_the_same_sequence() {
    let bodies: Vec<Vec<u8>> = [0usize, 1, 2, 3, 4, 5, 300, 1500, 4000]
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| (i + k * 31) as u8).collect())
        .collect();
    // One byte per segment puts a segment boundary at every byte (on the short packages,
    // to keep one-byte round trips few); one write merges all packages into as few
    // segments as fit; 7-byte and 1000-byte writes cut everywhere in between.
    for (chunk, n) in [(1usize, 7), (7, 9), (1000, 9), (usize::MAX, 9)] {
        let want = &bodies[..n];
        let stream: Vec<u8> = want.iter().flat_map(|b| frame(b)).collect();
        let mut sent = 0;
        let (log, _) = recorded(
            Limits::default(),
            Duration::from_secs(30),
            |s, c, _| {
                if sent < stream.len() && s.tcp_send_queue(c) == Ok(0) {
                    let end = sent.saturating_add(chunk).min(stream.len());
                    sent += s.tcp_write(c, &stream[sent..end]).unwrap();
                }
            },
            |log, _| log.borrow().msgs.len() == n,
        );
        let got = &log.borrow().msgs;
        let lens = |v: &[Vec<u8>]| v.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(lens(got), lens(want), "chunks of {chunk} bytes");
        assert!(got == want, "chunks of {chunk} bytes: contents differ");
    }
}

#[test]
fn cron_runs_every_period_within_one_tick() {
    let limits = Limits {
        cron_period: Some(Duration::from_millis(100)),
        ..Limits::default()
    };
    let (_, times) = recorded(
        limits,
        Duration::from_secs(5),
        |_, _, _| {},
        |_, t| t.borrow().iter().filter(|(w, _)| w == "cron").count() >= 10,
    );
    let t = times.borrow();
    let open = t.iter().find(|(w, _)| w == "open").expect("opened").1;
    let crons: Vec<Instant> = t.iter().filter(|(w, _)| w == "cron").map(|x| x.1).collect();
    assert_eq!(crons.len(), 10);
    let tick = ustack::session::timer::DEFAULT_TICK;
    for (k, at) in crons.iter().enumerate() {
        let due = open + Duration::from_millis(100 * (k as u64 + 1));
        // The simulated clock steps 1 ms, so "at most one tick late" is exact here.
        assert!(
            *at >= due && *at <= due + tick,
            "cron {k} at {at}, due {due}"
        );
    }
}

/// Starts with a 10 s cron and switches to 100 ms on the first package.
struct Retimer(Times);

impl EventListener<Lp> for Retimer {
    fn on_open(&mut self, s: &mut Session<'_, Lp>) -> Result<(), Reject> {
        s.set_cron_period(Some(Duration::from_secs(10)));
        Ok(())
    }
    fn on_message(&mut self, s: &mut Session<'_, Lp>, _: &[u8]) {
        s.set_cron_period(Some(Duration::from_millis(100)));
        self.0.borrow_mut().push(("message".into(), s.now()));
    }
    fn on_cron(&mut self, s: &mut Session<'_, Lp>) {
        self.0.borrow_mut().push(("cron".into(), s.now()));
    }
}

#[test]
fn a_new_cron_period_counts_from_when_it_was_set_not_from_the_old_deadline() {
    // The session's timer is armed with the 10 s period at open; the package at 500 ms
    // shortens it. The first cron is due 100 ms later, not at open + 10 s (a WebSocket
    // session's upgrade deadline used to linger this way, delaying its first heartbeat).
    let times = Times::default();
    let mut sent = false;
    let t = times.clone();
    server_with_raw_client(
        Service::new(Lp::U32_BE, Retimer(times.clone())),
        Duration::from_secs(3),
        |s, c, now| {
            if !sent && now >= Instant::from_millis(500) {
                sent = s.tcp_write(c, &frame(b"go")).unwrap() == 6;
            }
        },
        || t.borrow().iter().filter(|(w, _)| w == "cron").count() >= 3,
    );
    let t = times.borrow();
    assert_eq!(t.len(), 4, "{t:?}");
    assert_eq!(t[0].0, "message");
    let tick = ustack::session::timer::DEFAULT_TICK;
    for (k, (what, at)) in t[1..].iter().enumerate() {
        let due = t[0].1 + Duration::from_millis(100 * (k as u64 + 1));
        assert_eq!(what, "cron");
        assert!(
            *at >= due && *at <= due + tick,
            "cron {k} at {at}, due {due}"
        );
    }
}

#[test]
fn idle_timeout_closes_a_silent_session_with_idle_timeout() {
    let limits = Limits {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let (_, times) = recorded(
        limits,
        Duration::from_secs(5),
        |_, _, _| {},
        |_, t| has(t, "close"),
    );
    let t = times.borrow();
    let names: Vec<&str> = t.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(names, ["open", "error IdleTimeout", "close"]);
    let idle = t[1].1 - t[0].1;
    assert!(
        idle >= Duration::from_millis(300) && idle <= Duration::from_millis(311),
        "{idle}"
    );
}

#[test]
fn read_timeout_closes_a_sender_that_stalls_mid_package_but_not_one_between_packages() {
    let limits = Limits {
        read_timeout: Some(Duration::from_millis(200)),
        ..Limits::default()
    };
    // A whole package, then half of the next one, then silence.
    let mut bytes = frame(b"whole");
    bytes.extend_from_slice(&frame(&[7u8; 100])[..50]);
    let mut sent = false;
    let mut first_send = None;
    let (log, times) = recorded(
        limits,
        Duration::from_secs(5),
        |s, c, now| {
            if !sent {
                assert_eq!(s.tcp_write(c, &bytes).unwrap(), bytes.len());
                sent = true;
                first_send = Some(now);
            }
        },
        |_, t| has(t, "close"),
    );
    assert_eq!(log.borrow().msgs, vec![b"whole".to_vec()]);
    let t = times.borrow();
    let names: Vec<&str> = t.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(names, ["open", "message", "error ReadTimeout", "close"]);
    let stalled = t[2].1 - t[1].1;
    assert!(
        stalled >= Duration::from_millis(200) && stalled <= Duration::from_millis(211),
        "{stalled}"
    );
}

#[test]
fn write_timeout_closes_a_session_whose_peer_stops_reading() {
    struct Flood(Times);
    impl EventListener<Lp> for Flood {
        fn on_open(&mut self, s: &mut Session<'_, Lp>) -> Result<(), Reject> {
            s.set_write_timeout(Some(Duration::from_millis(250)));
            // 512 KiB: more than the peer's receive buffer plus our transmit buffer.
            let body = [0x55u8; 1024];
            for _ in 0..512 {
                s.write_pkg(&&body[..])
                    .expect("queued within max_write_queue");
            }
            Ok(())
        }
        fn on_message(&mut self, _: &mut Session<'_, Lp>, _: &[u8]) {}
        fn on_error(&mut self, s: &mut Session<'_, Lp>, e: &SessionError) {
            self.0.borrow_mut().push((format!("error {e:?}"), s.now()));
        }
        fn on_close(&mut self, s: &mut Session<'_, Lp>) {
            self.0.borrow_mut().push(("close".into(), s.now()));
        }
    }
    let times = Times::default();
    // The client never reads: its window closes and the server's output stops draining.
    let ea = server_with_raw_client(
        Service::new(Lp::U32_BE, Flood(times.clone())),
        Duration::from_secs(10),
        |_, _, _| {},
        || has(&times, "close"),
    );
    let t = times.borrow();
    let names: Vec<&str> = t.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(names, ["error WriteTimeout", "close"]);
    assert_eq!(ea.held_bytes(), 0, "the queued output was given back");
}

#[test]
fn close_callbacks_and_attributes_run_and_drop_in_order() {
    struct Attrs(Rc<RefCell<Vec<String>>>);
    impl EventListener<Lp> for Attrs {
        fn on_open(&mut self, s: &mut Session<'_, Lp>) -> Result<(), Reject> {
            assert_eq!(s.set_attr(7u32), None);
            assert_eq!(s.set_attr(8u32), Some(7));
            assert_eq!(s.set_attr(String::from("name")), None);
            *s.attr_mut::<u32>().unwrap() += 1;
            let (a, b) = (self.0.clone(), self.0.clone());
            s.add_close_callback(move |i| a.borrow_mut().push(format!("cb1 {}", i.id.0)));
            s.add_close_callback(move |i| b.borrow_mut().push(format!("cb2 {}", i.stats.pkgs_in)));
            Ok(())
        }
        fn on_message(&mut self, s: &mut Session<'_, Lp>, pkg: &[u8]) {
            assert_eq!(s.attr::<u32>(), Some(&9));
            assert_eq!(s.attr::<String>().map(String::as_str), Some("name"));
            assert_eq!(s.attr::<u64>(), None);
            if pkg == b"bye" {
                s.write_pkg(&&b"late"[..]).unwrap();
                s.close();
                assert!(s.is_closing());
                assert_eq!(
                    s.write_pkg(&&b"too late"[..]),
                    Err(SessionError::Socket(ustack::Error::Closed)),
                    "nothing is written after close()"
                );
            }
        }
        fn on_close(&mut self, s: &mut Session<'_, Lp>) {
            assert_eq!(s.remove_attr::<String>().as_deref(), Some("name"));
            self.0.borrow_mut().push("on_close".into());
        }
    }
    let events = Rc::new(RefCell::new(Vec::new()));
    let (mut sent, mut got) = (false, Vec::new());
    let eof_seen = Rc::new(RefCell::new(false));
    let seen = eof_seen.clone();
    server_with_raw_client(
        Service::new(Lp::U32_BE, Attrs(events.clone())),
        Duration::from_secs(5),
        |s, c, _| {
            if !sent {
                let mut b = frame(b"hi");
                b.extend(frame(b"bye"));
                s.tcp_write(c, &b).unwrap();
                sent = true;
            }
            let mut buf = [0u8; 64];
            match s.tcp_read(c, &mut buf) {
                Ok(0) => *seen.borrow_mut() = true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        },
        || *eof_seen.borrow(),
    );
    assert!(*eof_seen.borrow(), "the client sees the server's FIN");
    assert_eq!(
        got,
        frame(b"late"),
        "output queued before close() is delivered"
    );
    assert_eq!(*events.borrow(), ["on_close", "cb1 1", "cb2 2"]);
}

/// Polls both engines in 1 ms steps until `done` or the limit.
fn drive(
    a: &mut (Stack<'_, Dev<'_>>, Engine<'_>),
    b: &mut (Stack<'_, Dev<'_>>, Engine<'_>),
    now: &mut Instant,
    limit: Duration,
    mut done: impl FnMut(&Engine<'_>, &Engine<'_>) -> bool,
) -> bool {
    let end = *now + limit;
    while *now < end {
        a.1.poll(&mut a.0, *now);
        b.1.poll(&mut b.0, *now);
        if done(&a.1, &b.1) {
            return true;
        }
        *now += Duration::from_millis(1);
    }
    false
}

fn sessions_of(e: &Engine<'_>, id: ustack::session::EndpointId) -> usize {
    match e.status(id) {
        EndpointStatus::Client { sessions, .. } => sessions,
        s => panic!("not a client: {s:?}"),
    }
}

#[test]
fn client_reconnects_within_the_backoff_bound_after_the_server_restarts() {
    let link = PipeLink::<64, 1514>::new();
    let (da, db) = link.split();
    let mut now = Instant::ZERO;
    let sa = stack(da, 1);
    let ea = Engine::new(&sa, now);
    let mut a = (sa, ea);
    let sb = stack(db, 2);
    let eb = Engine::new(&sb, now);
    let mut b = (sb, eb);
    let server_log = Shared::default();
    let echo = || Service::new(Lp::U32_BE, Echo(server_log.clone()));
    let server =
        a.1.tcp_server(&mut a.0, 9000, ServerOptions::default(), echo())
            .unwrap();
    let backoff = ustack::session::Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(800),
    };
    let opts = ClientOptions {
        connections: 2,
        backoff,
        ..ClientOptions::default()
    };
    let client_log = Shared::default();
    let sender = Sender {
        log: client_log.clone(),
        sizes: vec![3],
    };
    let client =
        b.1.tcp_client(
            "10.9.0.1:9000".parse().unwrap(),
            opts,
            Service::new(Lp::U32_BE, sender),
            now,
        )
        .unwrap();
    assert!(drive(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(2),
        |_, e| { sessions_of(e, client) == 2 && client_log.borrow().msgs.len() == 2 }
    ));
    // The server goes away: both sessions end, and every retry meets a reset.
    a.1.close_endpoint(&mut a.0, server, now);
    assert!(drive(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(1),
        |_, e| sessions_of(e, client) == 0
    ));
    drive(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_millis(2500),
        |_, _| false,
    );
    let EndpointStatus::Client {
        attempts, retry_at, ..
    } = b.1.status(client)
    else {
        panic!("client status")
    };
    // Delays 100, 200, 400, 800, 800 ms: at least four failed rounds in 2.5 s.
    assert!(
        attempts >= 4,
        "only {attempts} failed attempts while the server was down"
    );
    let retry = retry_at.expect("a retry is scheduled");
    assert!(
        retry <= now + backoff.max,
        "next retry at {retry}, now {now}"
    );
    // Back up: both sessions return within one maximal backoff step (plus a handshake).
    let restart = now;
    a.1.tcp_server(&mut a.0, 9000, ServerOptions::default(), echo())
        .unwrap();
    assert!(drive(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(3),
        |_, e| sessions_of(e, client) == 2
    ));
    let took = now - restart;
    assert!(
        took <= backoff.max + Duration::from_millis(50),
        "reconnected after {took}"
    );
    assert!(matches!(
        b.1.status(client),
        EndpointStatus::Client { attempts: 0, .. }
    ));
    // Each of the four sessions (two before, two after) sent one package and got it back.
    assert!(drive(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(1),
        |_, _| client_log.borrow().msgs.len() == 4
    ));
    assert!(client_log.borrow().msgs.iter().all(|m| m == &[0u8, 7, 14]));
}

#[test]
fn client_gives_up_after_max_attempts_and_on_open_refusal_backs_off_too() {
    struct Refuse;
    impl EventListener<Lp> for Refuse {
        fn on_open(&mut self, _: &mut Session<'_, Lp>) -> Result<(), Reject> {
            Err(Reject("not today"))
        }
        fn on_message(&mut self, _: &mut Session<'_, Lp>, _: &[u8]) {}
    }
    let link = PipeLink::<64, 1514>::new();
    let (da, db) = link.split();
    let mut now = Instant::ZERO;
    let sa = stack(da, 1);
    let ea = Engine::new(&sa, now);
    let mut a = (sa, ea);
    let sb = stack(db, 2);
    let eb = Engine::new(&sb, now);
    let mut b = (sb, eb);
    a.1.tcp_server(
        &mut a.0,
        9000,
        ServerOptions::default(),
        Service::new(Lp::U32_BE, Echo(Shared::default())),
    )
    .unwrap();
    let opts = ClientOptions {
        max_attempts: Some(3),
        backoff: ustack::session::Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        },
        ..ClientOptions::default()
    };
    // Nothing listens on 9001: three resets, then the client stops and says why.
    let refused =
        b.1.tcp_client(
            "10.9.0.1:9001".parse().unwrap(),
            opts,
            Service::new(Lp::U32_BE, Refuse),
            now,
        )
        .unwrap();
    // A server that accepts, but the client's own on_open refuses: no hot loop (Getty #121).
    let picky =
        b.1.tcp_client(
            "10.9.0.1:9000".parse().unwrap(),
            opts,
            Service::new(Lp::U32_BE, Refuse),
            now,
        )
        .unwrap();
    let gave_up = |e: &Engine<'_>, id| matches!(e.status(id), EndpointStatus::GaveUp { .. });
    assert!(drive(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(5),
        |_, e| gave_up(e, refused) && gave_up(e, picky)
    ));
    assert_eq!(
        b.1.status(refused),
        EndpointStatus::GaveUp {
            attempts: 3,
            last_error: ustack::Error::ConnectionRefused
        }
    );
    assert_eq!(
        b.1.status(picky),
        EndpointStatus::GaveUp {
            attempts: 3,
            last_error: ustack::Error::InvalidInput("on_open refused the session")
        }
    );
    assert_eq!(b.1.stats().rejected, 3);
    // Stopped means stopped: no more attempts.
    drive(&mut a, &mut b, &mut now, Duration::from_secs(3), |_, _| {
        false
    });
    assert_eq!(b.1.stats().rejected, 3);
    assert_eq!(
        a.1.stats().opened,
        3,
        "the server saw exactly the three refused attempts"
    );
}

/// What [`caller_storage_echo`] saw.
struct StorageRun {
    sent: Vec<u8>,
    got: Vec<u8>,
    log: Shared,
    held_bytes: usize,
    /// The client read the end of the stream, or the connection failed.
    ended: bool,
}

/// A length-prefixed (u16 LE) echo on an engine over caller storage only: 2 TCP sockets
/// with 2 KiB buffers, pools cut into 2 KiB chunks. A heap client sends a package of each
/// size in `sizes`; runs until all came back, the connection ended, or 10 s passed.
fn caller_storage_echo(sizes: &[usize]) -> StorageRun {
    use ustack::session::timer::TimerEntry;
    use ustack::session::{EngineStorage, Protocol, SessionSlot};
    use ustack::StaticStorage;

    // Declared first: the engine borrows the protocol for its whole life.
    let log = Shared::default();
    let mut echo = Service::new(Lp::U16_LE, Echo(log.clone()));
    let link = PipeLink::<64, 1514>::new();
    let (da, db) = link.split();
    let mut now = Instant::ZERO;
    let mut storage: StaticStorage<'_, 4> = StaticStorage::new();
    let config = Config::new([2, 0, 0, 0, 0, 1], "10.9.0.1/24".parse().unwrap());
    let mut sa = Stack::with_storage(config, da, storage.storage(), now).unwrap();
    let mut bufs = [[0u8; 2048]; 4];
    let [b0, b1, b2, b3] = &mut bufs;
    sa.add_tcp_socket(b0, b1).unwrap();
    sa.add_tcp_socket(b2, b3).unwrap();
    let mut sessions = [SessionSlot::EMPTY; 4];
    let mut timers = [TimerEntry::EMPTY; 4];
    let (mut rx, mut tx) = ([0u8; 2048], [0u8; 2048]);
    let (mut assembly, mut pending) = ([0u8; 4096], [0u8; 4096]);
    let mut ea = Engine::with_storage(
        &sa,
        EngineStorage {
            sessions: &mut sessions,
            timers: &mut timers,
            rx: &mut rx,
            tx: &mut tx,
            assembly: &mut assembly,
            pending: &mut pending,
            chunk: 2048,
        },
        now,
    )
    .unwrap();
    let proto: &mut dyn Protocol = &mut echo;
    ea.tcp_server(
        &mut sa,
        7,
        ServerOptions {
            backlog: 1,
            ..ServerOptions::default()
        },
        proto,
    )
    .unwrap();
    let mut sb = stack(db, 2);
    let c = sb.connect("10.9.0.1:7".parse().unwrap()).unwrap();
    let mut out = Vec::new();
    for &n in sizes {
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend((0..n).map(|i| i as u8));
    }
    let (mut sent, mut got, mut ended) = (0, Vec::new(), false);
    let end = now + Duration::from_secs(10);
    while now < end && got.len() < out.len() && !ended {
        ea.poll(&mut sa, now);
        sb.poll(now);
        while sb.next_event().is_some() {}
        if sb.tcp_connected(c) == Ok(true) && sent < out.len() {
            sent += sb.tcp_write(c, &out[sent..]).unwrap_or(0);
        }
        let mut buf = [0u8; 4096];
        match sb.tcp_read(c, &mut buf) {
            Ok(0) => ended = true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(ustack::Error::WouldBlock) => {}
            Err(_) => ended = true,
        }
        now += Duration::from_millis(1);
    }
    StorageRun {
        sent: out,
        got,
        log,
        held_bytes: ea.held_bytes(),
        ended,
    }
}

#[test]
fn an_engine_over_caller_storage_echoes_without_a_heap_of_its_own() {
    // 1000 bytes decode in place (under half the 2 KiB buffer); 1500 are assembled in a
    // pool chunk.
    let run = caller_storage_echo(&[5, 1000, 1500]);
    assert!(
        run.got == run.sent,
        "echoed {} of {} bytes",
        run.got.len(),
        run.sent.len()
    );
    assert_eq!(
        run.log
            .borrow()
            .msgs
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        [5, 1000, 1500]
    );
    assert_eq!(run.held_bytes, 0);
}

#[test]
fn a_package_no_pool_chunk_can_hold_ends_the_session_instead_of_stalling_it() {
    // 3,000 bytes plus the header: more than the socket buffer, so it must be assembled,
    // and more than a 2 KiB chunk, so it never can be.
    let run = caller_storage_echo(&[5, 3000]);
    assert!(run.ended, "the client never saw the session end");
    // The first package was served; the session then ends like any oversize one (with a
    // reset, so its echo may or may not have left).
    assert_eq!(run.log.borrow().msgs, [vec![0u8, 1, 2, 3, 4]]);
    let events = run.log.borrow().events.clone();
    assert_eq!(
        events,
        [
            "open 1".to_string(),
            "error MessageTooLarge { len: 3002, max: 2048 }".to_string(),
            "close 1".to_string()
        ]
    );
    assert_eq!(run.held_bytes, 0);
}

#[test]
fn a_peer_that_closes_mid_package_ends_the_session_with_unexpected_eof() {
    let mut sent = false;
    let (log, times) = recorded(
        Limits::default(),
        Duration::from_secs(5),
        |s, c, _| {
            if !sent {
                let mut b = frame(b"whole");
                b.extend_from_slice(&frame(b"abcdefg")[..5]);
                s.tcp_write(c, &b).unwrap();
                s.tcp_shutdown_write(c).unwrap();
                sent = true;
            }
        },
        |_, t| has(t, "close"),
    );
    assert_eq!(log.borrow().msgs, vec![b"whole".to_vec()]);
    let names: Vec<String> = times.borrow().iter().map(|(w, _)| w.clone()).collect();
    assert_eq!(
        names,
        [
            "open",
            "message",
            "error UnexpectedEof { buffered: 5 }",
            "close"
        ]
    );
}

#[test]
fn a_line_longer_than_half_the_receive_buffer_is_assembled_whatever_the_chunking() {
    use ustack::session::codec::Lines;
    struct Collect(Shared);
    impl EventListener<Lines> for Collect {
        fn on_message(&mut self, _: &mut Session<'_, Lines>, line: &[u8]) {
            self.0.borrow_mut().msgs.push(line.to_vec());
        }
        fn on_error(&mut self, _: &mut Session<'_, Lines>, e: &SessionError) {
            self.0.borrow_mut().events.push(format!("error {e:?}"));
        }
    }
    // 50,000 bytes: over half of the 64 KiB receive buffer, under max_msg_len.
    let long: Vec<u8> = (0..50_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut stream = b"short\n".to_vec();
    stream.extend_from_slice(&long);
    stream.extend_from_slice(b"\r\nlast\n");
    for chunk in [1000usize, usize::MAX] {
        let log = Shared::default();
        let mut sent = 0;
        let l = log.clone();
        server_with_raw_client(
            Service::new(Lines::new(), Collect(log.clone())),
            Duration::from_secs(20),
            |s, c, _| {
                if sent < stream.len() {
                    let end = sent.saturating_add(chunk).min(stream.len());
                    sent += s.tcp_write(c, &stream[sent..end]).unwrap_or(0);
                }
            },
            || l.borrow().msgs.len() == 3,
        );
        let got = log.borrow();
        assert_eq!(got.events, Vec::<String>::new(), "chunks of {chunk}");
        assert_eq!(got.msgs.len(), 3, "chunks of {chunk}");
        assert!(got.msgs[0] == b"short" && got.msgs[1] == long && got.msgs[2] == b"last");
    }
}

/// Milliseconds of simulated time until a client's `size`-byte package comes back from an
/// echo server with `tcp` options (handshake included).
fn echo_time(tcp: ustack::TcpOptions, size: usize) -> u64 {
    sender_echo(tcp, &[size], Duration::from_secs(2), |r| {
        assert!(r.done, "no echo of {size} bytes in 2 s");
        r.now.total_millis() as u64
    })
}

/// A 1,500-byte package comes back as one full segment and a short one. With Nagle the
/// short one waits until the full one is acknowledged, and the client delays that ACK
/// (smoltcp: 10 ms; Linux: up to 40 ms). Sessions turn Nagle off by default, so the reply
/// takes no longer than a one-segment one. The clock is simulated, so the times are exact.
#[test]
fn replies_do_not_wait_for_delayed_acks_with_the_default_options() {
    let default = ServerOptions::default().tcp;
    let nagle = ustack::TcpOptions {
        nodelay: false,
        ..default
    };
    let one_segment = echo_time(default, 100);
    for size in [1500, 2000] {
        assert_eq!(echo_time(default, size), one_segment, "{size} bytes");
        let held = echo_time(nagle, size);
        assert!(
            held >= one_segment + 10,
            "{size} bytes with Nagle: {held} ms; the test no longer sees the delayed ACK"
        );
    }
}
