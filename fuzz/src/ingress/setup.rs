//! The two stacks, their WebSocket endpoints, and the deterministic setup of every
//! connection before the input is read.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use ustack::session::{Backoff, ClientOptions, EndpointId, Engine, Reject, ServerOptions};
use ustack::smoltcp::time::{Duration, Instant};
use ustack::smoltcp::wire::{EthernetAddress, IpEndpoint};
use ustack::ws::close::CloseCode;
use ustack::ws::conn::Message;
use ustack::ws::handshake::{ClientConfig, NoHooks, ServerConfig};
use ustack::ws::{WsClient, WsListener, WsOptions, WsServer, WsSession};
use ustack::{Config, Stack, TcpHandle, TcpListener, UdpHandle};
use ustack_drivers::PipeLink;

use super::checks::Report;
use super::segment::Tuple;
use super::wire::WireAct;
use super::{
    Dev, FRAMES, MTU, PS_IP, PS_MAC, PS_UDP, ST_IP, ST_MAC, ST_PORT, ST_UDP_CONN, WS_MAX, WS_PORT,
};

/// What `ST`'s WebSocket server saw.
#[derive(Default, Debug)]
pub struct WsLog {
    /// Sessions opened.
    pub opened: usize,
    /// Messages received, in order.
    pub msgs: Vec<Vec<u8>>,
    /// Errors that ended a session.
    pub errors: Vec<String>,
    /// `Some(peer close code)` once a session closed.
    pub closed: Option<Option<u16>>,
}

struct Server(Rc<RefCell<WsLog>>);

impl WsListener for Server {
    fn on_open(&mut self, _: &mut WsSession<'_>) -> Result<(), Reject> {
        self.0.borrow_mut().opened += 1;
        Ok(())
    }
    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        self.0.borrow_mut().msgs.push(msg.as_bytes().to_vec());
        // Echo, so ST's output path runs too.
        let _ = s.send(msg);
    }
    fn on_error(&mut self, _: &mut WsSession<'_>, e: &ustack::session::SessionError) {
        self.0.borrow_mut().errors.push(format!("{e:?}"));
    }
    fn on_close(&mut self, _: &mut WsSession<'_>, peer: Option<CloseCode>) {
        self.0.borrow_mut().closed = Some(peer.map(|c| c.0));
    }
}

/// `PS`'s client listener: only whether it is open.
struct Client(Rc<RefCell<(bool, usize, bool)>>);

impl WsListener for Client {
    fn on_open(&mut self, _: &mut WsSession<'_>) -> Result<(), Reject> {
        self.0.borrow_mut().0 = true;
        Ok(())
    }
    fn on_message(&mut self, _: &mut WsSession<'_>, _: Message<'_>) {
        self.0.borrow_mut().1 += 1;
    }
    fn on_close(&mut self, _: &mut WsSession<'_>, _: Option<CloseCode>) {
        let mut l = self.0.borrow_mut();
        l.0 = false;
        l.2 = true;
    }
}

/// Both links: `st` joins `ST` and the wire, `ps` joins `PS` and the wire.
pub struct Links {
    st: PipeLink<FRAMES, MTU>,
    ps: PipeLink<FRAMES, MTU>,
}

impl Links {
    /// Boxed: each link stores its queues inline.
    pub fn new() -> Box<Links> {
        Box::new(Links {
            st: PipeLink::new(),
            ps: PipeLink::new(),
        })
    }
}

fn config(mac: EthernetAddress, cidr: &str, seed: u64) -> Config {
    let c = Config::new(mac.0, cidr.parse().expect("cidr")).seed(seed);
    let mut c = crate::small_buffers(c);
    c.max_sockets = 24;
    c
}

/// The two stacks, their engines, and the wire between them.
pub struct Harness<'a> {
    /// The stack under test.
    pub st: Stack<'a, Dev<'a>>,
    pub(super) se: Engine<'a>,
    /// The peer stack.
    pub ps: Stack<'a, Dev<'a>>,
    pub(super) pe: Engine<'a>,
    pub(super) st_wire: Dev<'a>,
    pub(super) ps_wire: Dev<'a>,
    /// The clock of both.
    pub now: Instant,
    pub(super) listener: TcpListener,
    pub(super) est: Option<TcpHandle>,
    pub(super) extra: Vec<TcpHandle>,
    pub(super) reading: bool,
    pub(super) st_udp: UdpHandle,
    pub(super) st_udp_conn: UdpHandle,
    pub(super) last_sender: Option<IpEndpoint>,
    pub(super) ps_tcp: TcpHandle,
    pub(super) ps_udp: UdpHandle,
    pub(super) ws_client: EndpointId,
    pub(super) ws_server: EndpointId,
    pub(super) ws_log: Rc<RefCell<WsLog>>,
    pub(super) client_log: Rc<RefCell<(bool, usize, bool)>>,
    pub(super) ws_sent: Vec<Vec<u8>>,
    pub(super) client_done: bool,
    /// The established connection.
    pub est_t: Tuple,
    /// The WebSocket connection.
    pub ws_t: Tuple,
    /// The last connection the input opened to port 7 (its answers stop at the wire).
    pub new_t: Tuple,
    /// Every frame that crossed the wire, with its direction (0: to `ST`), when set.
    pub log: Option<Vec<(usize, Vec<u8>)>>,
    pub(super) ws_stream: Vec<u8>,
    pub(super) pending: [Option<WireAct>; 2],
    pub(super) held: [Vec<Vec<u8>>; 2],
    pub(super) icmp_seen: bool,
    /// Stream offsets of the FINs that reached `ST` on the established tuple.
    pub(super) est_fins: BTreeSet<u32>,
    pub(super) setup: bool,
    pub(super) buf: Vec<u8>,
    /// What happened.
    pub report: Report,
}

impl<'a> Harness<'a> {
    /// Builds both stacks and sets up every connection; panics if the setup does not
    /// finish (it is deterministic, so it always does or never does).
    pub fn new(links: &'a Links) -> Harness<'a> {
        let now = Instant::from_millis(1_000);
        let (st_dev, st_wire) = links.st.split();
        let (ps_dev, ps_wire) = links.ps.split();
        let mut st =
            Stack::new(config(ST_MAC, "10.0.0.1/24", 0x5eed_0001), st_dev, now).expect("ST");
        let mut ps =
            Stack::new(config(PS_MAC, "10.0.0.2/24", 0x5eed_0002), ps_dev, now).expect("PS");
        let mut se = Engine::new(&st, now);
        let mut pe = Engine::new(&ps, now);
        let ws_log = Rc::new(RefCell::new(WsLog::default()));
        let client_log = Rc::new(RefCell::new((false, 0, false)));
        let wsopts = WsOptions {
            seed: [7; 32],
            ping_on_cron: false,
            ..WsOptions::default()
        };
        let server = WsServer::with_options(
            Server(ws_log.clone()),
            NoHooks,
            ServerConfig::default(),
            wsopts,
        );
        let mut sopts = ServerOptions {
            backlog: 4,
            max_sessions: 4,
            ..ServerOptions::default()
        };
        sopts.limits.max_msg_len = WS_MAX + 16;
        let ws_server = se
            .tcp_server(&mut st, WS_PORT, sopts, server)
            .expect("ws server");
        let listener = st.listen(ST_PORT, 4).expect("listen");
        let st_udp = st.udp_bind(ST_PORT).expect("udp bind");
        let st_udp_conn = st.udp_bind(ST_UDP_CONN).expect("udp bind");
        st.udp_connect(st_udp_conn, IpEndpoint::new(PS_IP.into(), PS_UDP))
            .expect("udp connect");
        let ps_tcp = ps
            .connect(IpEndpoint::new(ST_IP.into(), ST_PORT))
            .expect("connect");
        let ps_udp = ps.udp_bind(PS_UDP).expect("ps udp");
        let client = WsClient::new(
            Client(client_log.clone()),
            ClientConfig::new("10.0.0.1:80", "/"),
            WsOptions {
                seed: [9; 32],
                ..wsopts
            },
        );
        // One session: the harness closes the endpoint when it ends, and the backoff keeps
        // it from reconnecting before that.
        let copts = ClientOptions {
            max_attempts: Some(1),
            backoff: Backoff {
                initial: Duration::from_secs(1 << 20),
                max: Duration::from_secs(1 << 20),
            },
            ..ClientOptions::default()
        };
        let ws_client = pe
            .tcp_client(IpEndpoint::new(ST_IP.into(), WS_PORT), copts, client, now)
            .expect("ws client");
        let mut h = Harness {
            st,
            se,
            ps,
            pe,
            st_wire,
            ps_wire,
            now,
            listener,
            est: None,
            extra: Vec::new(),
            reading: true,
            st_udp,
            st_udp_conn,
            last_sender: None,
            ps_tcp,
            ps_udp,
            ws_client,
            ws_server,
            ws_log,
            client_log,
            ws_sent: Vec::new(),
            client_done: false,
            est_t: Tuple {
                st_port: ST_PORT,
                ..Tuple::default()
            },
            ws_t: Tuple {
                st_port: WS_PORT,
                ..Tuple::default()
            },
            new_t: Tuple::default(),
            log: None,
            ws_stream: Vec::new(),
            pending: [None, None],
            held: [Vec::new(), Vec::new()],
            icmp_seen: false,
            est_fins: BTreeSet::new(),
            setup: true,
            buf: vec![0; 4096],
            report: Report::default(),
        };
        h.establish();
        h
    }

    fn establish(&mut self) {
        let mut udp_sent = false;
        for _ in 0..3000 {
            let moved = self.pump();
            let tcp_up = self.est.is_some() && self.ps.tcp_connected(self.ps_tcp) == Ok(true);
            let ws_up = self.ws_log.borrow().opened == 1 && self.client_log.borrow().0;
            if tcp_up && ws_up && !udp_sent {
                let to = IpEndpoint::new(ST_IP.into(), ST_PORT);
                self.ps
                    .udp_send_to(self.ps_udp, b"hello unconnected", to)
                    .expect("ps udp send");
                self.st
                    .udp_send(self.st_udp_conn, b"hello connected")
                    .expect("st udp send");
                udp_sent = true;
            }
            if udp_sent && self.report.udp_bound_rx == 1 && self.report.ps_udp_rx == 1 {
                assert!(self.est_t.known && self.ws_t.known, "SYNs not seen");
                self.setup = false;
                return;
            }
            if !moved {
                self.now += Duration::from_millis(1);
            }
        }
        panic!("setup did not finish: {:?}", self.report);
    }
}
