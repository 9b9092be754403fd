//! Port 8080: the page, `/stats`, the `/ws` echo and the `/chat` room, all on one
//! `WsServer`. The upgrade hooks route by path and tag each session with its route
//! (`UpgradeHooks::session_data`), and one listener dispatches on that tag.

use log::debug;
use serde_json::json;
use ustack::session::Reject;
use ustack::smoltcp::time::Duration;
use ustack::ws::close::CloseCode;
use ustack::ws::conn::Message;
use ustack::ws::handshake::{Rejection, Request, Response, UpgradeHooks};
use ustack::ws::{WsListener, WsSession};

use super::SharedSnap;

/// The page, served at `/`.
pub const PAGE: &[u8] = include_bytes!("page.html");

/// The longest chat line, in bytes.
pub const MAX_CHAT_LINE: usize = 4096;

/// How often chat members get the counters.
pub const STATS_PERIOD: Duration = Duration::from_secs(1);

/// What a request (and then its session) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Route {
    /// `GET /`.
    Page = 1,
    /// `GET /stats`.
    Stats = 2,
    /// `/ws`: echo.
    Echo = 3,
    /// `/chat`: the room.
    Chat = 4,
}

impl Route {
    fn of_path(target: &[u8]) -> Option<Route> {
        let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
        match path {
            b"/" | b"/index.html" => Some(Route::Page),
            b"/stats" => Some(Route::Stats),
            b"/ws" => Some(Route::Echo),
            b"/chat" => Some(Route::Chat),
            _ => None,
        }
    }

    fn of_session(s: &WsSession<'_>) -> Option<Route> {
        [Route::Echo, Route::Chat]
            .into_iter()
            .find(|r| *r as u64 == s.user_data())
    }
}

/// The upgrade hooks: routing, the page and `/stats`.
pub struct Routes {
    pub(super) snap: SharedSnap,
    pub(super) route: Option<Route>,
    pub(super) body: Vec<u8>,
}

impl UpgradeHooks for Routes {
    fn on_request(&mut self, path: &[u8]) -> Result<(), Rejection> {
        self.route = Route::of_path(path);
        match self.route {
            Some(_) => Ok(()),
            None => Err(Rejection::new(404)),
        }
    }

    fn on_before_upgrade(&mut self, _: &Request<'_, '_>) -> Result<(), Rejection> {
        match self.route {
            Some(Route::Echo | Route::Chat) => Ok(()),
            // The page and the counters are not WebSocket endpoints.
            _ => Err(Rejection::new(404)),
        }
    }

    fn session_data(&mut self) -> u64 {
        self.route.map_or(0, |r| r as u64)
    }

    fn on_get(&mut self, _: &Request<'_, '_>) -> Option<Response<'_>> {
        match self.route? {
            Route::Page => Some(Response {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: PAGE,
            }),
            Route::Stats => {
                self.body.clear();
                let doc = self.snap.borrow().json();
                // Writing a JSON value to a Vec cannot fail.
                let _ = serde_json::to_writer_pretty(&mut self.body, &doc);
                self.body.push(b'\n');
                Some(Response {
                    status: 200,
                    content_type: "application/json",
                    body: &self.body,
                })
            }
            // A plain GET to a WebSocket path: 426 Upgrade Required.
            Route::Echo | Route::Chat => None,
        }
    }
}

/// The chat room's members and what is waiting to be broadcast.
#[derive(Debug, Default)]
pub struct Room {
    /// Messages for every member, sent after the poll that produced them.
    pub outbox: Vec<String>,
    /// Chat lines so far.
    pub seq: u64,
}

/// The WebSocket side of port 8080.
pub struct Web {
    pub(super) snap: SharedSnap,
}

impl Web {
    fn send(&self, s: &mut WsSession<'_>, text: &str) {
        match s.send_text(text) {
            Ok(()) => self.snap.borrow_mut().counters.ws_out += 1,
            Err(e) => debug!("session {}: send failed: {e}", s.id().0),
        }
    }

    fn broadcast(&self, doc: serde_json::Value) {
        self.snap.borrow_mut().room.outbox.push(doc.to_string());
    }

    fn chat_line(&self, s: &mut WsSession<'_>, msg: Message<'_>) {
        let text = match msg {
            Message::Text(t) if t.len() <= MAX_CHAT_LINE => t,
            Message::Text(_) => {
                let e = format!("chat lines are limited to {MAX_CHAT_LINE} bytes");
                return self.send(s, &json!({"type": "error", "text": e}).to_string());
            }
            Message::Binary(_) => {
                let e = "the chat takes text messages only";
                return self.send(s, &json!({"type": "error", "text": e}).to_string());
            }
        };
        let seq = {
            let mut snap = self.snap.borrow_mut();
            snap.counters.chat += 1;
            snap.room.seq += 1;
            snap.room.seq
        };
        let from = s.peer_addr().to_string();
        self.broadcast(json!({"type": "chat", "from": from, "text": text, "seq": seq}));
    }
}

impl WsListener for Web {
    fn on_open(&mut self, s: &mut WsSession<'_>) -> Result<(), Reject> {
        let route = Route::of_session(s).ok_or(Reject("no route for this session"))?;
        let who = s.peer_addr().to_string();
        let members = {
            let mut snap = self.snap.borrow_mut();
            let c = &mut snap.counters;
            match route {
                Route::Echo => {
                    c.opened_ws_echo += 1;
                    c.ws_echo_open += 1;
                }
                _ => {
                    c.opened_chat += 1;
                    c.chat_open += 1;
                }
            }
            c.chat_open
        };
        if route == Route::Chat {
            s.set_cron_period(Some(STATS_PERIOD));
            let hello = json!({"type": "welcome", "you": who, "members": members});
            self.send(s, &hello.to_string());
            self.broadcast(json!({"type": "join", "who": who, "members": members}));
        }
        debug!("session {}: {who} opened {route:?}", s.id().0);
        Ok(())
    }

    fn on_message(&mut self, s: &mut WsSession<'_>, msg: Message<'_>) {
        self.snap.borrow_mut().counters.ws_in += 1;
        match Route::of_session(s) {
            Some(Route::Echo) => match s.send(msg) {
                Ok(()) => self.snap.borrow_mut().counters.ws_out += 1,
                Err(e) => {
                    debug!("session {}: echo failed: {e}", s.id().0);
                    let _ = s.close_with(CloseCode(1013), "echo queue full");
                }
            },
            Some(Route::Chat) => self.chat_line(s, msg),
            _ => {}
        }
    }

    fn on_cron(&mut self, s: &mut WsSession<'_>) {
        if Route::of_session(s) == Some(Route::Chat) {
            let doc = json!({"type": "stats", "stats": self.snap.borrow().json()});
            self.send(s, &doc.to_string());
        }
    }

    fn on_close(&mut self, s: &mut WsSession<'_>, peer: Option<CloseCode>) {
        debug!("session {}: closed (peer said {peer:?})", s.id().0);
        let route = Route::of_session(s);
        let members = {
            let mut snap = self.snap.borrow_mut();
            let c = &mut snap.counters;
            match route {
                Some(Route::Echo) => c.ws_echo_open -= 1,
                Some(Route::Chat) => c.chat_open -= 1,
                _ => {}
            }
            c.chat_open
        };
        if route == Some(Route::Chat) {
            let who = s.peer_addr().to_string();
            self.broadcast(json!({"type": "leave", "who": who, "members": members}));
        }
    }
}
