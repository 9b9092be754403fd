//! Stack behaviour over smoltcp's loopback device: one stack talking to itself.

use smoltcp::phy::{Loopback, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use crate::{Config, Error, Ready, Stack, Token};

const STEP: Duration = Duration::from_millis(5);
const IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);

fn stack() -> Stack<'static, Loopback> {
    let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap()
}

fn ep(port: u16) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(IP), port)
}

/// Polls until `cond` holds, collecting every event, with a bounded number of rounds.
fn run_until(
    s: &mut Stack<'static, Loopback>,
    t: &mut Instant,
    mut cond: impl FnMut(&mut Stack<'static, Loopback>) -> bool,
) -> Vec<crate::Event> {
    let mut events = Vec::new();
    for _ in 0..10_000 {
        s.poll(*t);
        while let Some(e) = s.next_event() {
            events.push(e);
        }
        if cond(s) {
            return events;
        }
        // The loopback queue does not show up in poll_delay, so never sleep long.
        *t += s
            .poll_delay(*t)
            .unwrap_or(STEP)
            .clamp(Duration::from_millis(1), STEP);
    }
    panic!("condition not reached; events so far: {events:?}");
}

#[test]
fn connect_accept_exchange_and_close() {
    let mut s = stack();
    let mut t = Instant::ZERO;
    let l = s.listen(7, 2).unwrap();
    let c = s.connect(ep(7)).unwrap();
    assert_eq!(s.tcp_write(c, b"x"), Err(Error::WouldBlock));
    let ev = run_until(&mut s, &mut t, |s| s.tcp_connected(c) == Ok(true));
    assert!(
        ev.iter()
            .any(|e| e.token == Token::Tcp(c) && e.ready.contains(Ready::CONNECTED)),
        "{ev:?}"
    );
    let mut got = None;
    run_until(&mut s, &mut t, |s| {
        got = s.accept(l).ok();
        got.is_some()
    });
    let a = got.unwrap();
    assert_eq!(s.stats().tcp_accepted, 1);
    assert_eq!(s.tcp_write(c, b"hello").unwrap(), 5);
    let mut buf = [0u8; 16];
    run_until(&mut s, &mut t, |s| s.tcp_recv_queue(a) == Ok(5));
    assert_eq!(s.tcp_read(a, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(s.tcp_read(a, &mut buf), Err(Error::WouldBlock));
    s.tcp_shutdown_write(c).unwrap();
    let ev = run_until(&mut s, &mut t, |s| s.tcp_read(a, &mut [0; 4]) == Ok(0));
    assert!(
        ev.iter()
            .any(|e| e.token == Token::Tcp(a) && e.ready.contains(Ready::READABLE)),
        "{ev:?}"
    );
    s.tcp_close(a).unwrap();
    assert_eq!(s.tcp_read(a, &mut buf), Err(Error::Closed));
    run_until(&mut s, &mut t, |s| {
        s.tcp_state(c) == Ok(smoltcp::socket::tcp::State::TimeWait)
    });
    // Both FINs crossed: the client reads end of stream.
    assert_eq!(s.tcp_read(c, &mut buf), Ok(0));
}

#[test]
fn refused_connect_reports_connection_refused() {
    let mut s = stack();
    let mut t = Instant::ZERO;
    let c = s.connect(ep(9)).unwrap();
    let ev = run_until(&mut s, &mut t, |s| s.tcp_connected(c).is_err());
    assert_eq!(s.tcp_connected(c), Err(Error::ConnectionRefused));
    assert_eq!(s.tcp_read(c, &mut [0; 4]), Err(Error::ConnectionRefused));
    let closed: Vec<_> = ev.iter().filter(|e| e.token == Token::Tcp(c)).collect();
    assert!(
        closed
            .iter()
            .any(|e| e.ready.contains(Ready::CLOSED | Ready::ERROR)),
        "{ev:?}"
    );
    s.tcp_close(c).unwrap();
}

#[test]
fn backlog_full_syn_is_held_then_reset_and_counted() {
    let mut s = stack();
    let mut t = Instant::ZERO;
    let l = s.listen(7, 1).unwrap();
    let a = s.connect(ep(7)).unwrap();
    let b = s.connect(ep(7)).unwrap();
    // Never accept: the first takes the backlog, the second waits out syn_hold, then is reset.
    run_until(&mut s, &mut t, |s| s.tcp_connected(b).is_err());
    assert_eq!(s.tcp_connected(a), Ok(true));
    assert_eq!(s.tcp_connected(b), Err(Error::ConnectionRefused));
    let st = s.stats();
    // The client retransmits its SYN while the first one is held, so both counters may exceed 1.
    assert!(
        st.tcp_syn_deferred >= 1 && st.tcp_syn_backlog_full >= 1,
        "{st:?}"
    );
    assert!(s.accept(l).is_ok());
    assert_eq!(s.accept(l), Err(Error::WouldBlock));
}

#[test]
fn held_syn_is_served_when_the_application_accepts_in_time() {
    let mut s = stack();
    let mut t = Instant::ZERO;
    let l = s.listen(7, 1).unwrap();
    let conns: Vec<_> = (0..5).map(|_| s.connect(ep(7)).unwrap()).collect();
    let mut accepted = Vec::new();
    run_until(&mut s, &mut t, |s| {
        while let Ok(h) = s.accept(l) {
            accepted.push(h);
        }
        accepted.len() == 5
    });
    for c in conns {
        assert_eq!(s.tcp_connected(c), Ok(true));
    }
    assert_eq!(s.stats().tcp_syn_backlog_full, 0);
    assert!(s.stats().tcp_syn_deferred >= 1);
}

#[test]
fn listen_twice_is_addr_in_use_and_bad_args_are_rejected() {
    let mut s = stack();
    s.listen(80, 4).unwrap();
    assert_eq!(s.listen(80, 4), Err(Error::AddrInUse));
    assert!(matches!(s.listen(0, 4), Err(Error::InvalidInput(_))));
    assert!(matches!(s.listen(81, 0), Err(Error::InvalidInput(_))));
    assert!(matches!(
        s.connect(IpEndpoint::new(
            IpAddress::Ipv4(Ipv4Address::new(192, 0, 2, 1)),
            1
        )),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn socket_table_full_is_no_buffer_space() {
    let mut config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    config.max_sockets = 3;
    let mut s = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    for _ in 0..3 {
        s.connect(ep(7)).unwrap();
    }
    assert_eq!(s.connect(ep(7)), Err(Error::NoBufferSpace));
    assert_eq!(s.udp_bind(5), Err(Error::NoBufferSpace));
}

#[test]
fn udp_round_trip_and_ephemeral_ports_do_not_collide() {
    let mut s = stack();
    let mut t = Instant::ZERO;
    let a = s.udp_bind(7).unwrap();
    let b = s.udp_bind(0).unwrap();
    assert_eq!(s.udp_bind(7), Err(Error::AddrInUse));
    let bport = s.udp_local_port(b).unwrap();
    assert!(bport >= 49152);
    s.udp_send_to(b, b"ping", ep(7)).unwrap();
    let mut buf = [0u8; 8];
    run_until(&mut s, &mut t, |s| s.udp_recv_from(a, &mut buf).is_ok());
    assert_eq!(&buf[..4], b"ping");
    s.udp_send_to(a, b"pong!", ep(bport)).unwrap();
    let mut got = None;
    run_until(&mut s, &mut t, |s| {
        got = s.udp_recv_from(b, &mut buf).ok();
        got.is_some()
    });
    let (n, meta) = got.unwrap();
    assert_eq!((&buf[..n], meta.remote), (&b"pong!"[..], ep(7)));
    s.udp_close(a).unwrap();
    assert_eq!(s.udp_send_to(a, b"x", ep(1)), Err(Error::Closed));
}

#[test]
fn abort_resets_the_peer() {
    let mut s = stack();
    let mut t = Instant::ZERO;
    let l = s.listen(7, 2).unwrap();
    let c = s.connect(ep(7)).unwrap();
    let mut a = None;
    run_until(&mut s, &mut t, |s| {
        a = s.accept(l).ok();
        a.is_some()
    });
    s.tcp_abort(a.unwrap()).unwrap();
    run_until(&mut s, &mut t, |s| s.tcp_connected(c).is_err());
    assert_eq!(s.tcp_read(c, &mut [0; 4]), Err(Error::ConnectionReset));
}

#[test]
fn caller_storage_without_heap_sockets_works_and_runs_out_cleanly() {
    let storage: &'static mut crate::StaticStorage<'static, 4> =
        Box::leak(Box::new(crate::StaticStorage::new()));
    let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    let mut s = Stack::with_storage(
        config,
        Loopback::new(Medium::Ethernet),
        storage.storage(),
        Instant::ZERO,
    )
    .unwrap();
    // No socket was lent yet: nothing can be opened.
    assert_eq!(s.listen(7, 1), Err(Error::NoBufferSpace));
    for _ in 0..2 {
        let rx: &'static mut [u8] = Box::leak(vec![0u8; 2048].into_boxed_slice());
        let tx: &'static mut [u8] = Box::leak(vec![0u8; 2048].into_boxed_slice());
        s.add_tcp_socket(rx, tx).unwrap();
    }
    let l = s.listen(7, 1).unwrap();
    let c = s.connect(ep(7)).unwrap();
    assert_eq!(s.connect(ep(7)), Err(Error::NoBufferSpace));
    let mut t = Instant::ZERO;
    let mut a = None;
    run_until(&mut s, &mut t, |s| {
        a = s.accept(l).ok();
        a.is_some()
    });
    assert_eq!(s.tcp_write(c, b"no heap").unwrap(), 7);
    let a = a.unwrap();
    let mut buf = [0u8; 16];
    run_until(&mut s, &mut t, |s| s.tcp_recv_queue(a) == Ok(7));
    assert_eq!(s.tcp_read(a, &mut buf), Ok(7));
    assert_eq!(&buf[..7], b"no heap");
    // The table holds three sockets; a fourth cannot be lent.
    let rx: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
    let tx: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
    s.add_tcp_socket(rx, tx).unwrap();
    let rx: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
    let tx: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
    assert_eq!(s.add_tcp_socket(rx, tx), Err(Error::NoBufferSpace));
}

/// A stack over caller storage with 7 sockets lent and `syn_room` held SYNs.
fn storage_stack(syn_room: usize) -> Stack<'static, Loopback> {
    let storage: &'static mut crate::StaticStorage<'static, 8> =
        Box::leak(Box::new(crate::StaticStorage::new()));
    let mut parts = storage.storage();
    parts.syn_hold = Box::leak(vec![crate::HeldSyn::EMPTY; syn_room].into_boxed_slice());
    let config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    let mut s = Stack::with_storage(
        config,
        Loopback::new(Medium::Ethernet),
        parts,
        Instant::ZERO,
    )
    .unwrap();
    for _ in 0..7 {
        let rx: &'static mut [u8] = Box::leak(vec![0u8; 2048].into_boxed_slice());
        let tx: &'static mut [u8] = Box::leak(vec![0u8; 2048].into_boxed_slice());
        s.add_tcp_socket(rx, tx).unwrap();
    }
    s
}

#[test]
fn the_syn_hold_has_the_room_the_caller_lends_and_no_more() {
    for room in [0, 2] {
        let mut s = storage_stack(room);
        let mut t = Instant::ZERO;
        let l = s.listen(7, 1).unwrap();
        let conns: Vec<_> = (0..3).map(|_| s.connect(ep(7)).unwrap()).collect();
        run_until(&mut s, &mut t, |s| {
            while s.accept(l).is_ok() {}
            conns.iter().all(|&c| s.tcp_connected(c) != Ok(false))
        });
        let connected = conns
            .iter()
            .filter(|&&c| s.tcp_connected(c) == Ok(true))
            .count();
        let st = s.stats();
        if room == 0 {
            // The backlog takes one; with no room to wait, the other two are reset at once.
            assert_eq!(connected, 1, "{st:?}");
            assert_eq!(st.tcp_syn_deferred, 0, "{st:?}");
            assert!(st.tcp_syn_backlog_full >= 2, "{st:?}");
        } else {
            // Both wait in the lent room until accepting re-arms the listener.
            assert_eq!(connected, 3, "{st:?}");
            assert!(st.tcp_syn_deferred >= 2, "{st:?}");
            assert_eq!(st.tcp_syn_backlog_full, 0, "{st:?}");
        }
    }
}

#[test]
fn closed_connections_are_recycled_so_a_small_table_serves_many() {
    let mut config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    config.max_sockets = 6;
    let mut s = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    let mut t = Instant::ZERO;
    let l = s.listen(7, 2).unwrap();
    for round in 0..40u8 {
        let c = s
            .connect(ep(7))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let mut a = None;
        run_until(&mut s, &mut t, |s| {
            a = a.or(s.accept(l).ok());
            a.is_some() && s.tcp_connected(c) == Ok(true)
        });
        let a = a.unwrap();
        s.tcp_write(c, &[round]).unwrap();
        s.tcp_close(c).unwrap();
        let mut b = [0u8; 4];
        run_until(&mut s, &mut t, |s| s.tcp_recv_queue(a) == Ok(1));
        assert_eq!(s.tcp_read(a, &mut b), Ok(1));
        assert_eq!(b[0], round);
        run_until(&mut s, &mut t, |s| s.tcp_read(a, &mut b) == Ok(0));
        s.tcp_close(a).unwrap();
        // Let both closes finish; the next round's connect needs the recycled sockets.
        run_until(&mut s, &mut t, |s| s.poll_delay(Instant::ZERO).is_none());
    }
    assert_eq!(s.stats().tcp_accepted, 40);
}

#[test]
fn connects_beyond_the_unsent_table_are_refused_and_leave_it_consistent() {
    let mut config = Config::new([2, 0, 0, 0, 0, 1], "10.0.0.1/24".parse().unwrap());
    config.max_sockets = crate::MAX_UNSENT_CONNECTS + 8;
    let mut s = Stack::new(config, Loopback::new(Medium::Ethernet), Instant::ZERO).unwrap();
    // Nothing polls, so no SYN leaves: every connect stays in the unsent table.
    let conns: Vec<_> = (0..crate::MAX_UNSENT_CONNECTS)
        .map(|_| s.connect(ep(7)).unwrap())
        .collect();
    assert_eq!(s.connect(ep(7)), Err(Error::NoBufferSpace));
    // Closing one frees its entry, so exactly one more connect fits.
    s.tcp_close(conns[0]).unwrap();
    s.poll(Instant::ZERO);
    s.connect(ep(7)).unwrap();
    assert_eq!(s.connect(ep(7)), Err(Error::NoBufferSpace));
}

#[test]
fn every_poll_ends_with_the_flush_hook_after_the_frames_went_out() {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static FLUSHES: AtomicUsize = AtomicUsize::new(0);
    static QUEUED_AT_FLUSH: AtomicUsize = AtomicUsize::new(0);
    fn flush(d: &mut Loopback) {
        FLUSHES.fetch_add(1, Ordering::SeqCst);
        // Loopback keeps what the poll transmitted; a batching device would send it now.
        let mut n = 0;
        while let Some((rx, _)) = smoltcp::phy::Device::receive(d, Instant::ZERO) {
            smoltcp::phy::RxToken::consume(rx, |_| n += 1);
        }
        QUEUED_AT_FLUSH.store(n, Ordering::SeqCst);
    }
    let mut s = stack();
    s.poll(Instant::ZERO);
    assert_eq!(FLUSHES.load(Ordering::SeqCst), 0, "no hook, no call");
    s.set_flush(flush);
    let sock = s.udp_bind(5000).unwrap();
    s.udp_send_to(sock, b"x", ep(6000)).unwrap();
    s.poll(Instant::from_millis(1));
    assert_eq!(FLUSHES.load(Ordering::SeqCst), 1);
    // The datagram to our own address was already on the device when the hook ran.
    assert!(QUEUED_AT_FLUSH.load(Ordering::SeqCst) >= 1);
    s.poll(Instant::from_millis(2));
    assert_eq!(FLUSHES.load(Ordering::SeqCst), 2);
}
