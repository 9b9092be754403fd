//! The steps over the client's UDP sockets: the echo on port 7 (unconnected), then
//! connected dials to the echo and to a port nothing listens on.

use ustack::smoltcp::wire::IpEndpoint;
use ustack::{DialOptions, DialStatus, Error, UdpHandle};

use super::{route, same, say, World, CLOSED_PORT};
use crate::demo::ECHO_PORT;

/// Waits for one datagram on `h`.
fn recv(
    w: &mut World<'_>,
    h: UdpHandle,
    from: IpEndpoint,
) -> Result<(Vec<u8>, IpEndpoint), String> {
    let mut buf = vec![0u8; 2048];
    w.wait(
        |w| match w.client.udp_recv_from(h, &mut buf) {
            Ok((n, meta)) => Ok(Some((buf[..n].to_vec(), meta.remote))),
            Err(Error::WouldBlock) => Ok(None),
            Err(e) => Err(format!("udp receive from {from}: {e:?}: {e}")),
        },
        |_| format!("a datagram back from {from}"),
    )
}

pub(super) fn echo(w: &mut World<'_>) -> Result<(), String> {
    w.begin("udp echo on port 7");
    let to = w.server_ep(ECHO_PORT);
    let h = w.client.udp_bind(0).map_err(|e| format!("udp bind: {e}"))?;
    let local = w.client.udp_local_port(h).map_err(|e| e.to_string())?;
    let msg = b"hello over udp";
    w.client
        .udp_send_to(h, msg, to)
        .map_err(|e| format!("udp send to {to}: {e}"))?;
    let (back, from) = recv(w, h, to)?;
    same(msg, &back).map_err(|e| format!("udp echo: {e}"))?;
    if from != to {
        return Err(format!("udp echo: the answer came from {from}, not {to}"));
    }
    let _ = w.client.udp_close(h);
    say(
        "udp echo",
        format!(
            "{}  sent {} B, got {} B back from {from}, identical",
            route(w.client_ep(local), to),
            msg.len(),
            back.len()
        ),
    )?;
    w.pass();
    Ok(())
}

/// A dial's local address and verdict: `Ok((handle, answered))` where `answered` says
/// whether a reply (rather than the timeout) decided.
type Dialed = (IpEndpoint, Result<(UdpHandle, bool), Error>);

/// Dials `to` and waits for the verdict.
fn dial(w: &mut World<'_>, to: IpEndpoint) -> Result<Dialed, String> {
    let d = w
        .client
        .udp_dial(to, DialOptions::default(), w.now)
        .map_err(|e| format!("udp_dial {to}: {e}"))?;
    // The check closes the socket on an error: take its port now.
    let local = w
        .client
        .udp_local_port(d.handle())
        .map_err(|e| format!("udp_dial {to}: {e}"))?;
    let verdict = w.wait(
        |w| match w.client.udp_dial_check(&d, w.now) {
            Ok(DialStatus::Pending { .. }) => Ok(None),
            Ok(DialStatus::Reachable(h)) => Ok(Some(Ok((h, w.now < d.deadline())))),
            Err(e) => Ok(Some(Err(e))),
        },
        |_| format!("a verdict on the dial to {to}"),
    )?;
    Ok((w.client_ep(local), verdict))
}

pub(super) fn dial_open(w: &mut World<'_>) -> Result<(), String> {
    w.begin("connected udp dial to port 7");
    let to = w.server_ep(ECHO_PORT);
    let (local, verdict) = dial(w, to)?;
    let (h, answered) = match verdict {
        Ok(v) => v,
        Err(e) => return Err(format!("udp_dial to the open port {to} failed: {e:?}: {e}")),
    };
    if !answered {
        return Err(format!(
            "udp_dial to {to}: the echo never answered the probe (the dial passed on silence)"
        ));
    }
    let msg = b"hello over connected udp";
    w.client
        .udp_send(h, msg)
        .map_err(|e| format!("udp send on the dialed socket: {e}"))?;
    let (back, from) = recv(w, h, to)?;
    same(msg, &back).map_err(|e| format!("connected udp echo: {e}"))?;
    let _ = w.client.udp_close(h);
    say(
        "udp dial",
        format!(
            "{}  reachable: the echo answered the probe; \
             sent {} B, got {} B back from {from}",
            route(local, to),
            msg.len(),
            back.len()
        ),
    )?;
    w.pass();
    Ok(())
}

pub(super) fn dial_closed(w: &mut World<'_>) -> Result<(), String> {
    w.begin("connected udp dial to a closed port");
    let to = w.server_ep(CLOSED_PORT);
    let before = w.client.stats();
    let (local, verdict) = dial(w, to)?;
    match verdict {
        Err(e @ Error::ConnectionRefused) => {
            let icmp = w.client.stats().udp_icmp_errors - before.udp_icmp_errors;
            say(
                "udp dial",
                format!(
                    "{}  refused: Error::{e:?} ({icmp} ICMP port unreachable came back)",
                    route(local, to),
                ),
            )?;
        }
        Err(e) => {
            return Err(format!(
                "udp_dial to the closed port {to}: expected ConnectionRefused, got {e:?}: {e}"
            ))
        }
        Ok((_, answered)) => {
            return Err(format!(
                "udp_dial to the closed port {to} was not refused (reachable, {})",
                if answered {
                    "a reply came"
                } else {
                    "silence until the timeout"
                }
            ))
        }
    }
    w.pass();
    Ok(())
}
