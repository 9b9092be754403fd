//! The steps over the client's raw TCP connections ([`Conn`]): the echo on port 7, the
//! length-prefixed echo on port 9000, and plain HTTP GETs on port 8080.

use serde_json::Value;
use ustack::smoltcp::phy::Device;
use ustack::smoltcp::wire::IpEndpoint;
use ustack::{Error, Stack, TcpHandle};

use super::{pattern, route, same, say, World, HOST};
use crate::demo::{web, ECHO_PORT, HTTP_PORT, LP_PORT};

/// A raw TCP connection of the client: what is left to write, what came back.
struct Conn {
    h: TcpHandle,
    local: IpEndpoint,
    remote: IpEndpoint,
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
    eof: bool,
}

impl Conn {
    /// Connects to `remote` and waits for the handshake.
    fn open(w: &mut World<'_>, remote: IpEndpoint) -> Result<Conn, String> {
        let h = w
            .client
            .connect(remote)
            .map_err(|e| format!("connect to {remote}: {e}"))?;
        w.wait(
            |w| match w.client.tcp_connected(h) {
                Ok(up) => Ok(up.then_some(())),
                Err(e) => Err(format!("connect to {remote} failed: {e:?}")),
            },
            |_| format!("the TCP handshake with {remote}"),
        )?;
        let local = w
            .client
            .tcp_local_addr(h)
            .map_err(|e| format!("local address: {e}"))?;
        Ok(Conn {
            h,
            local,
            remote,
            out: Vec::new(),
            sent: 0,
            got: Vec::new(),
            eof: false,
        })
    }

    fn route(&self) -> String {
        route(self.local, self.remote)
    }

    /// Writes what fits, reads what arrived.
    fn pump<D: Device>(&mut self, s: &mut Stack<'_, D>) -> Result<(), String> {
        while self.sent < self.out.len() {
            match s.tcp_write(self.h, &self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(format!("{}: write failed: {e}", self.route())),
            }
        }
        let mut buf = [0u8; 16 * 1024];
        while !self.eof {
            match s.tcp_read(self.h, &mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(format!("{}: read failed: {e}", self.route())),
            }
        }
        Ok(())
    }

    /// Pumps until `done` holds; `expected` says what for, should it never hold.
    fn pump_until(
        &mut self,
        w: &mut World<'_>,
        done: impl Fn(&Conn) -> bool,
        expected: impl FnOnce() -> String,
    ) -> Result<(), String> {
        w.wait(
            |w| {
                self.pump(&mut w.client)?;
                Ok(done(self).then_some(()))
            },
            |_| expected(),
        )
    }

    /// Sends `bytes` and waits until at least `want` bytes came back in all.
    fn exchange(&mut self, w: &mut World<'_>, bytes: &[u8], want: usize) -> Result<(), String> {
        self.out.extend_from_slice(bytes);
        let remote = self.remote;
        self.pump_until(
            w,
            |c| c.got.len() >= want || c.eof,
            || format!("{want} B back from {remote}"),
        )?;
        if self.got.len() < want {
            return Err(format!(
                "{remote} closed the connection after {} of {want} B",
                self.got.len()
            ));
        }
        Ok(())
    }

    /// Half-closes, reads to the peer's FIN, and closes.
    fn finish(mut self, w: &mut World<'_>) -> Result<Vec<u8>, String> {
        w.client
            .tcp_shutdown_write(self.h)
            .map_err(|e| format!("shutdown: {e}"))?;
        self.read_to_end(w)?;
        let _ = w.client.tcp_close(self.h);
        Ok(self.got)
    }

    fn read_to_end(&mut self, w: &mut World<'_>) -> Result<(), String> {
        let remote = self.remote;
        self.pump_until(w, |c| c.eof, || format!("{remote} to close its side (FIN)"))
    }
}

pub(super) fn echo(w: &mut World<'_>) -> Result<(), String> {
    w.begin("tcp echo on port 7");
    let mut c = Conn::open(w, w.server_ep(ECHO_PORT))?;
    let line = b"hello ustack, this is the pipe client\n";
    c.exchange(w, line, line.len())?;
    same(line, &c.got).map_err(|e| format!("tcp echo line: {e}"))?;
    say(
        "tcp echo",
        format!("{}  line of {} B back, identical", c.route(), line.len()),
    )?;
    let big = pattern(64 * 1024, 7);
    c.exchange(w, &big, line.len() + big.len())?;
    same(&big, &c.got[line.len()..]).map_err(|e| format!("tcp echo: {e}"))?;
    let route = c.route();
    let got = c.finish(w)?;
    if got.len() != line.len() + big.len() {
        return Err(format!(
            "tcp echo: {} extra bytes after the echo",
            got.len() - line.len() - big.len()
        ));
    }
    say(
        "tcp echo",
        format!(
            "{route}  sent {} B, got {} B back, identical",
            big.len(),
            big.len()
        ),
    )?;
    w.pass();
    Ok(())
}

/// One length-prefixed package: 4-byte big-endian length, then the body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

pub(super) fn lp_echo(w: &mut World<'_>) -> Result<(), String> {
    w.begin("length-prefixed echo on port 9000");
    let bodies = [
        Vec::new(),
        b"ping".to_vec(),
        pattern(1460, 1),
        pattern(256 * 1024, 2),
    ];
    let wire: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    let mut c = Conn::open(w, w.server_ep(LP_PORT))?;
    c.exchange(w, &wire, wire.len())?;
    let route = c.route();
    let got = c.finish(w)?;
    // Cut what came back into packages again, and compare them one by one.
    let mut rest = &got[..];
    let mut back = Vec::new();
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + n {
            break;
        }
        back.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    if !rest.is_empty() || back.len() != bodies.len() {
        return Err(format!(
            "length-prefixed echo: sent {} packages ({} B), got {} whole packages and {} B left over",
            bodies.len(),
            wire.len(),
            back.len(),
            rest.len()
        ));
    }
    for (i, (sent, got)) in bodies.iter().zip(&back).enumerate() {
        same(sent, got).map_err(|e| format!("length-prefixed echo, package {i}: {e}"))?;
    }
    let sizes: Vec<String> = bodies.iter().map(|b| b.len().to_string()).collect();
    say(
        "lp echo",
        format!(
            "{route}  {} packages ({} B) back, same framing, identical",
            bodies.len(),
            sizes.join(", ")
        ),
    )?;
    w.pass();
    Ok(())
}

/// A response to a plain GET.
struct Reply {
    route: String,
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

fn http_get(w: &mut World<'_>, path: &str) -> Result<Reply, String> {
    let mut c = Conn::open(w, w.server_ep(HTTP_PORT))?;
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: ustack-demo-pipe\r\n\r\n");
    c.out.extend_from_slice(req.as_bytes());
    // Every plain GET response closes the connection: read to the FIN.
    c.read_to_end(w)?;
    let _ = w.client.tcp_close(c.h);
    let raw = &c.got;
    let end = raw
        .windows(4)
        .position(|x| x == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no end of headers in {} B", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| format!("GET {path}: headers are not UTF-8"))?;
    let body = raw[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line {status_line:?}"))?;
    let mut content_type = String::new();
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            return Err(format!("GET {path}: bad header line {l:?}"));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-type") {
            content_type = v.to_string();
        }
        if k.eq_ignore_ascii_case("content-length") && v.parse::<usize>().ok() != Some(body.len()) {
            return Err(format!(
                "GET {path}: Content-Length {v} but the body has {} B",
                body.len()
            ));
        }
    }
    Ok(Reply {
        route: c.route(),
        status,
        content_type,
        body,
    })
}

pub(super) fn http(w: &mut World<'_>) -> Result<(), String> {
    w.begin("http on port 8080");
    let page = http_get(w, "/")?;
    if page.status != 200 || page.body != web::PAGE {
        return Err(format!(
            "GET /: expected 200 and page.html ({} B), got {} with {} B",
            web::PAGE.len(),
            page.status,
            page.body.len()
        ));
    }
    say(
        "http GET",
        format!(
            "{}  /        {} {}, {} B, identical to page.html",
            page.route,
            page.status,
            page.content_type,
            page.body.len()
        ),
    )?;
    let stats = http_get(w, "/stats")?;
    if stats.status != 200 || stats.content_type != "application/json" {
        return Err(format!(
            "GET /stats: expected 200 application/json, got {} {:?}",
            stats.status, stats.content_type
        ));
    }
    let doc: Value = serde_json::from_slice(&stats.body)
        .map_err(|e| format!("GET /stats: the body is not JSON: {e}"))?;
    let num = |ptr: &str| {
        doc.pointer(ptr)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("GET /stats: no number at {ptr}"))
    };
    // What the steps so far sent: one line and 64 KiB; a datagram, the dial's probe and a
    // datagram on the dialed socket; four packages.
    let expect = [
        ("/messages/tcp_echo_bytes", 38 + 64 * 1024),
        ("/messages/udp_echo_datagrams", 3),
        ("/messages/lp_echo_packages", 4),
    ];
    for (ptr, want) in expect {
        let got = num(ptr)?;
        if got != want {
            return Err(format!("GET /stats: {ptr} is {got}, expected {want}"));
        }
    }
    if doc.pointer("/stack_ip").and_then(Value::as_str) != Some("10.7.0.2") {
        return Err(format!("GET /stats: stack_ip is {}", doc["stack_ip"]));
    }
    say(
        "http GET",
        format!(
            "{}  /stats   {} {}, {} B of valid JSON: frames in {} / out {}, \
             {} sessions opened, echoed {} B TCP, {} UDP datagrams, {} packages",
            stats.route,
            stats.status,
            stats.content_type,
            stats.body.len(),
            num("/frames/in")?,
            num("/frames/out")?,
            num("/sessions/opened")?,
            num("/messages/tcp_echo_bytes")?,
            num("/messages/udp_echo_datagrams")?,
            num("/messages/lp_echo_packages")?,
        ),
    )?;
    let missing = http_get(w, "/nope")?;
    if missing.status != 404 {
        return Err(format!("GET /nope: expected 404, got {}", missing.status));
    }
    say(
        "http GET",
        format!("{}  /nope    {}", missing.route, missing.status),
    )?;
    w.pass();
    Ok(())
}
