//! The WebSocket steps: three clients on the client's session engine (alice and bob in the
//! `/chat` room, `echo` on `/ws`) upgrade, chat, echo, close, and see the server shut down.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;
use ustack::session::{Backoff, ClientOptions, EndpointId, Reject, SessionError};
use ustack::smoltcp::time::Duration;
use ustack::smoltcp::wire::IpEndpoint;
use ustack::ws::close::CloseCode;
use ustack::ws::conn::Message;
use ustack::ws::deflate::DeflateConfig;
use ustack::ws::handshake::ClientConfig;
use ustack::ws::{WsClient, WsListener, WsOptions, WsSession};

use super::{pattern, same, say, World, FLUSH_TICKS, HOST};
use crate::demo::HTTP_PORT;

/// What one WebSocket client saw.
#[derive(Default, Debug)]
struct PeerLog {
    local: Option<IpEndpoint>,
    texts: Vec<String>,
    /// The text messages that are JSON, parsed once on arrival.
    docs: Vec<Value>,
    binaries: Vec<Vec<u8>>,
    /// `Some(code)` once the session is over; the code of the server's close frame.
    closed: Option<Option<u16>>,
    errors: Vec<String>,
}

type Log = Rc<RefCell<PeerLog>>;

/// The listener of one client: it writes what happens into the client's log.
struct Peer(Log);

impl WsListener for Peer {
    fn on_open(&mut self, s: &mut WsSession<'_>) -> Result<(), Reject> {
        self.0.borrow_mut().local = Some(s.local_addr());
        Ok(())
    }

    fn on_message(&mut self, _: &mut WsSession<'_>, msg: Message<'_>) {
        let mut log = self.0.borrow_mut();
        match msg {
            Message::Text(t) => {
                if let Ok(v) = serde_json::from_str(t) {
                    log.docs.push(v);
                }
                log.texts.push(t.to_string());
            }
            Message::Binary(b) => log.binaries.push(b.to_vec()),
        }
    }

    fn on_error(&mut self, _: &mut WsSession<'_>, e: &SessionError) {
        self.0.borrow_mut().errors.push(e.to_string());
    }

    fn on_close(&mut self, _: &mut WsSession<'_>, peer: Option<CloseCode>) {
        self.0.borrow_mut().closed = Some(peer.map(|c| c.0));
    }
}

/// One WebSocket client: its name in the transcript, its endpoint on the client's engine,
/// and what it saw.
struct Client {
    name: &'static str,
    id: EndpointId,
    log: Log,
}

impl Client {
    /// Starts a client that upgrades to `path` (with permessage-deflate offered), once.
    fn connect(
        w: &mut World<'_>,
        name: &'static str,
        path: &'static str,
    ) -> Result<Client, String> {
        let log = Log::default();
        let cfg = ClientConfig {
            deflate: Some(DeflateConfig::default()),
            ..ClientConfig::new(HOST, path)
        };
        let client = WsClient::new(Peer(log.clone()), cfg, WsOptions::default());
        // One connection, no reconnecting: a session that ends stays ended.
        let opts = ClientOptions {
            max_attempts: Some(1),
            backoff: Backoff {
                initial: Duration::from_secs(3600),
                max: Duration::from_secs(3600),
            },
            ..ClientOptions::default()
        };
        let id =
            w.ce.tcp_client(w.server_ep(HTTP_PORT), opts, client, w.now)
                .map_err(|e| format!("ws client for {path}: {e}"))?;
        Ok(Client { name, id, log })
    }

    /// Runs `f` on the client's open WebSocket session.
    fn with(
        &self,
        w: &mut World<'_>,
        mut f: impl FnMut(&mut WsSession<'_>) -> Result<(), SessionError>,
    ) -> Result<(), String> {
        let mut result = Err(format!("{} has no open WebSocket session", self.name));
        w.ce.each_session(&mut w.client, self.id, w.now, |ctx| {
            if let Some(mut ws) = WsSession::from_ctx(ctx) {
                result = f(&mut ws).map_err(|e| format!("{}: {e}", self.name));
            }
        });
        result
    }

    /// The server's JSON messages of type `ty`.
    fn json(&self, ty: &str) -> Vec<Value> {
        let log = self.log.borrow();
        log.docs
            .iter()
            .filter(|v| v["type"] == ty)
            .cloned()
            .collect()
    }

    /// The first message of type `ty` that `pick` accepts.
    fn find(&self, ty: &str, pick: impl Fn(&Value) -> bool) -> Option<Value> {
        self.json(ty).into_iter().find(pick)
    }

    fn closed(&self) -> Option<Option<u16>> {
        self.log.borrow().closed
    }

    /// Has the upgrade to /chat brought the welcome, or has the session ended?
    fn welcomed(&self) -> bool {
        !self.json("welcome").is_empty() || self.closed().is_some()
    }

    /// The first welcome from /chat, or what the client saw instead of one.
    fn welcome(&self) -> Result<Value, String> {
        let first = self.json("welcome").into_iter().next();
        first.ok_or_else(|| {
            format!(
                "{}'s upgrade to /chat failed: {:?}",
                self.name,
                self.log.borrow()
            )
        })
    }

    fn addr(&self) -> String {
        let local = self.log.borrow().local;
        local.map_or_else(|| "?".into(), |a| a.to_string())
    }

    /// The transcript line of a done upgrade to `path`, ending in `tail`.
    fn upgraded(&self, path: &str, tail: &str) -> Result<(), String> {
        say(
            "ws upgrade",
            format!(
                "{:<5} {} -> ws://{HOST}{path:<6} 101 Switching Protocols{tail}",
                self.name,
                self.addr()
            ),
        )
    }
}

/// The three WebSocket clients.
pub(super) struct Ws {
    alice: Client,
    bob: Client,
    echo: Client,
}

pub(super) fn upgrade(w: &mut World<'_>) -> Result<Ws, String> {
    w.begin("websocket upgrades");
    let alice = Client::connect(w, "alice", "/chat")?;
    w.until(
        |_| alice.welcomed(),
        |_| "alice's upgrade to /chat and the welcome".into(),
    )?;
    let hello = alice.welcome()?;
    if hello["members"] != 1 || hello["you"] != alice.addr() {
        return Err(format!("alice's welcome is wrong: {hello}"));
    }
    alice.upgraded("/chat", &format!("; {hello}"))?;
    let bob = Client::connect(w, "bob", "/chat")?;
    w.until(
        |_| bob.welcomed() && alice.json("join").len() >= 2,
        |_| "bob's upgrade to /chat, his welcome and alice seeing him join".into(),
    )?;
    let hello = bob.welcome()?;
    if hello["members"] != 2 {
        return Err(format!("bob's welcome is wrong: {hello}"));
    }
    bob.upgraded("/chat", &format!("; {hello}"))?;
    let join = alice.json("join")[1].clone();
    if join["who"] != bob.addr() || join["members"] != 2 {
        return Err(format!("alice saw a wrong join notice: {join}"));
    }
    say("ws upgrade", format!("alice got {join}"))?;
    let echo = Client::connect(w, "echo", "/ws")?;
    w.until(
        |_| echo.log.borrow().local.is_some() || echo.closed().is_some(),
        |_| "the upgrade to /ws".into(),
    )?;
    if echo.log.borrow().local.is_none() {
        return Err(format!(
            "the upgrade to /ws failed: {:?}",
            echo.log.borrow()
        ));
    }
    echo.upgraded("/ws", "")?;
    w.pass();
    Ok(Ws { alice, bob, echo })
}

pub(super) fn chat(w: &mut World<'_>, ws: &Ws) -> Result<(), String> {
    w.begin("chat");
    let line = "hello from alice, over ustack";
    ws.alice.with(w, |s| s.send_text(line))?;
    let said = |c: &Client| c.find("chat", |v| v["text"] == line);
    w.until(
        |_| said(&ws.alice).is_some() && said(&ws.bob).is_some(),
        |_| format!("the chat line {line:?} at alice and bob"),
    )?;
    say("chat", format!("alice sends {line:?}"))?;
    for c in [&ws.alice, &ws.bob] {
        let Some(m) = said(c) else {
            return Err(format!("{} did not get the chat line", c.name));
        };
        if m["from"] != ws.alice.addr() || m["seq"] != 1 {
            return Err(format!("{} got a wrong chat message: {m}", c.name));
        }
        say("chat", format!("{:<5} got {m}", c.name))?;
    }
    // Every second each member gets the counters that /stats serves.
    w.until(
        |_| !ws.bob.json("stats").is_empty(),
        |_| "bob's first stats push (one comes every second)".into(),
    )?;
    let push = ws.bob.json("stats")[0]["stats"].clone();
    let chat_lines = push.pointer("/messages/chat").and_then(Value::as_u64);
    if chat_lines != Some(1) || push["sessions"]["by_service"]["chat"] != 2 {
        return Err(format!("bob's stats push is wrong: {push}"));
    }
    say(
        "chat",
        format!(
            "bob   got a stats push: uptime {} s, {} chat member(s), {} chat line(s), frames in {} / out {}",
            push["uptime_s"],
            push["sessions"]["by_service"]["chat"],
            push["messages"]["chat"],
            push["frames"]["in"],
            push["frames"]["out"]
        ),
    )?;
    w.pass();
    Ok(())
}

pub(super) fn echo(w: &mut World<'_>, ws: &Ws) -> Result<(), String> {
    w.begin("websocket echo on /ws");
    let text = "echo this, κόσμε";
    let bin = pattern(64 * 1024, 3);
    ws.echo.with(w, |s| {
        s.send_text(text)?;
        s.send_binary(&bin)
    })?;
    let log = &ws.echo.log;
    w.until(
        |_| {
            let l = log.borrow();
            (!l.texts.is_empty() && !l.binaries.is_empty()) || l.closed.is_some()
        },
        |_| "a text and a binary message back from /ws".into(),
    )?;
    let l = log.borrow();
    if l.texts.first().map(String::as_str) != Some(text) {
        return Err(format!("/ws echo: sent text {text:?}, got {:?}", l.texts));
    }
    same(&bin, l.binaries.first().map_or(&[][..], |b| b))
        .map_err(|e| format!("/ws binary echo: {e}"))?;
    say(
        "ws echo",
        format!(
            "echo  text {} B back as text, identical; binary {} B back as binary, identical",
            text.len(),
            bin.len()
        ),
    )?;
    w.pass();
    Ok(())
}

pub(super) fn close(w: &mut World<'_>, ws: &Ws) -> Result<(), String> {
    w.begin("websocket close");
    let alice_addr = ws.alice.addr();
    ws.alice
        .with(w, |s| s.close_with(CloseCode::NORMAL, "bye"))?;
    let left = || ws.bob.find("leave", |v| v["who"] == alice_addr.as_str());
    w.until(
        |_| ws.alice.closed().is_some() && left().is_some(),
        |_| "alice's close handshake and bob seeing her leave".into(),
    )?;
    w.ce.close_endpoint(&mut w.client, ws.alice.id, w.now);
    let code = ws.alice.closed().flatten();
    if code != Some(1000) {
        return Err(format!(
            "alice sent close 1000 but the server answered {code:?}"
        ));
    }
    say(
        "ws close",
        "alice sends close 1000 \"bye\"; the server answers close 1000",
    )?;
    let leave = left().unwrap_or_default();
    if leave["members"] != 1 {
        return Err(format!("bob got a wrong leave notice: {leave}"));
    }
    say("ws close", format!("bob   got {leave}"))?;
    w.pass();
    Ok(())
}

pub(super) fn shutdown(w: &mut World<'_>, ws: &Ws) -> Result<(), String> {
    w.begin("server shutdown");
    let open = w.demo.open_sessions(&w.se);
    say(
        "shutdown",
        format!("the server stops with {open} session(s) open: WebSockets get close 1001"),
    )?;
    let now = w.now;
    w.demo.begin_shutdown(&mut w.server, &mut w.se, now);
    w.until(
        |w| {
            ws.bob.closed().is_some()
                && ws.echo.closed().is_some()
                && w.demo.open_sessions(&w.se) == 0
        },
        |w| {
            format!(
                "close 1001 at bob ({:?}) and echo ({:?}), and no server session left ({} open)",
                ws.bob.closed(),
                ws.echo.closed(),
                w.demo.open_sessions(&w.se)
            )
        },
    )?;
    for c in [&ws.bob, &ws.echo] {
        let code = c.closed().flatten();
        if code != Some(1001) {
            return Err(format!(
                "{} should get close 1001 at shutdown, got {code:?}",
                c.name
            ));
        }
        say(
            "shutdown",
            format!("{:<5} got close 1001 (going away)", c.name),
        )?;
    }
    for c in [&ws.bob, &ws.echo] {
        w.ce.close_endpoint(&mut w.client, c.id, w.now);
    }
    let now = w.now;
    w.demo.finish(&mut w.server, &mut w.se, now);
    for _ in 0..FLUSH_TICKS {
        w.tick();
    }
    let errors: Vec<String> = [&ws.alice, &ws.bob, &ws.echo]
        .iter()
        .flat_map(|c| c.log.borrow().errors.clone())
        .collect();
    if !errors.is_empty() {
        return Err(format!(
            "websocket clients saw errors: {}",
            errors.join("; ")
        ));
    }
    say("shutdown", "every session closed")?;
    w.pass();
    Ok(())
}
