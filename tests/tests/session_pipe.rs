//! The session layer ustack↔ustack over the in-memory pipe: both ends are engines, driven
//! by one simulated clock, so timing tests are exact.

use std::cell::RefCell;
use std::rc::Rc;

use ustack::session::codec::{LengthPrefixed, Lines};
use ustack::session::{
    ClientOptions, Engine, EndpointStatus, EventListener, Limits, Reject, ServerOptions, Service,
    Session, SessionError,
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
        self.0.borrow_mut().events.push(format!("open {}", s.id().0));
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
        self.0.borrow_mut().events.push(format!("close {}", s.id().0));
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

#[test]
fn length_prefixed_echo_round_trips_small_and_oversized_packages_in_order() {
    let link = PipeLink::<64, 1514>::new();
    let (da, db) = link.split();
    let (mut sa, mut sb) = (stack(da, 1), stack(db, 2));
    let mut now = Instant::ZERO;
    let (mut ea, mut eb) = (Engine::new(&sa, now), Engine::new(&sb, now));
    let server_log = Shared::default();
    let client_log = Shared::default();
    ea.tcp_server(
        &mut sa,
        9000,
        ServerOptions::default(),
        Service::new(Lp::U32_BE, Echo(server_log.clone())),
    )
    .unwrap();
    // 100 KiB is larger than the 64 KiB socket buffers: it is assembled in a pool buffer.
    let sizes = vec![1, 0, 1000, 70_000, 3, 65_532, 100 * 1024, 5];
    let client = eb
        .tcp_client(
            "10.9.0.1:9000".parse().unwrap(),
            ClientOptions::default(),
            Service::new(
                Lp::U32_BE,
                Sender {
                    log: client_log.clone(),
                    sizes: sizes.clone(),
                },
            ),
            now,
        )
        .unwrap();
    let ok = run((&mut sa, &mut ea), (&mut sb, &mut eb), &mut now, Duration::from_secs(20), || {
        client_log.borrow().msgs.len() == sizes.len()
    });
    assert!(ok, "echoes: {:?}", client_log.borrow().msgs.iter().map(Vec::len).collect::<Vec<_>>());
    let got = client_log.borrow();
    for (k, (m, &n)) in got.msgs.iter().zip(&sizes).enumerate() {
        let want: Vec<u8> = (0..n).map(|i| (i * 7 + k) as u8).collect();
        assert_eq!(m, &want, "message {k}");
    }
    assert_eq!(eb.sessions(client), 1);
    assert_eq!(ea.held_bytes(), 0, "no session holds a buffer once idle");
    assert_eq!(eb.held_bytes(), 0);
    assert_eq!(server_log.borrow().events, vec!["open 1".to_string()]);
}
