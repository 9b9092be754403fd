//! What the input makes `PS` and `ST`'s application do.

use ustack::smoltcp::wire::{IpAddress, IpEndpoint};
use ustack::ws::close::CloseCode;
use ustack::ws::WsSession;

use super::setup::Harness;
use super::{pattern, ws_message, ST_IP, ST_PORT, ST_UDP_CONN, WS_MAX};

impl Harness<'_> {
    pub(super) fn peer(&mut self, what: u8, n: usize) {
        let now = self.now;
        match what {
            0 => {
                let len = 8 * n + 1;
                let start = self.report.ps_written;
                let data: Vec<u8> = (0..len as u64)
                    .map(|j| pattern((start + j) as u32))
                    .collect();
                if let Ok(k) = self.ps.tcp_write(self.ps_tcp, &data) {
                    self.report.ps_written += k as u64;
                }
            }
            1 => {
                let msg = ws_message(self.ws_sent.len(), (16 * n).min(WS_MAX));
                let mut ok = false;
                self.pe
                    .each_session(&mut self.ps, self.ws_client, now, |ctx| {
                        if let Some(mut ws) = WsSession::from_ctx(ctx) {
                            ok = ws.send_binary(&msg).is_ok();
                        }
                    });
                if ok {
                    self.ws_sent.push(msg);
                }
            }
            2 | 3 => {
                let port = if what == 2 { ST_PORT } else { ST_UDP_CONN };
                let data = vec![0x55; n];
                let to = IpEndpoint::new(IpAddress::Ipv4(ST_IP), port);
                let _ = self.ps.udp_send_to(self.ps_udp, &data, to);
            }
            4 => {
                let _ = self.ps.tcp_close(self.ps_tcp);
            }
            _ => {
                self.pe
                    .each_session(&mut self.ps, self.ws_client, now, |ctx| {
                        if let Some(mut ws) = WsSession::from_ctx(ctx) {
                            let _ = ws.close_with(CloseCode::NORMAL, "bye");
                        }
                    });
            }
        }
    }

    pub(super) fn app(&mut self, what: u8) {
        let now = self.now;
        match what {
            0 => self.reading = !self.reading,
            1..=3 => {
                if let Some(h) = self.est {
                    let _ = match what {
                        1 => self.st.tcp_write(h, &[0xAB; 64]).map(|_| ()),
                        2 => self.st.tcp_shutdown_write(h),
                        _ => {
                            self.est = None;
                            self.st.tcp_abort(h)
                        }
                    };
                }
            }
            4 => {
                let _ = self.st.udp_send(self.st_udp_conn, b"from ST");
            }
            5 => {
                if let Some(to) = self.last_sender {
                    let _ = self.st.udp_send_to(self.st_udp, b"reply", to);
                }
            }
            6 | 7 => {
                self.se
                    .each_session(&mut self.st, self.ws_server, now, |ctx| {
                        if let Some(mut ws) = WsSession::from_ctx(ctx) {
                            let _ = if what == 6 {
                                ws.send_text("from ST")
                            } else {
                                ws.close_with(CloseCode::NORMAL, "done")
                            };
                        }
                    });
            }
            _ => {}
        }
    }
}
