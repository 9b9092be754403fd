//! Kernel-side peers, run on threads inside the peer namespace: a windowed UDP echo client,
//! a UDP flood, and concurrent TCP echo clients.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use ustack_tests::random_bytes;

use crate::support::echo_connect;
use crate::topo::{echo_addr, PEER_IP};

/// Liveness bound for kernel sockets: far above any correct run, only there to avoid hangs.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Datagram `seq` of the UDP echo: 1..=1400 bytes (consecutive `seq`s walk through every
/// size, as 7919 is coprime to 1400), starting with as many bytes of the big-endian `seq`
/// as fit, the rest reproducible random bytes.
pub fn datagram(seq: u32) -> Vec<u8> {
    let len = 1 + (seq as usize * 7919) % 1400;
    let mut d = random_bytes(u64::from(seq), len);
    let k = len.min(4);
    d[..k].copy_from_slice(&seq.to_be_bytes()[..k]);
    d
}

/// Sends [`datagram`]`(0..count)` to ustack's UDP echo with at most `window` unanswered, and
/// checks that every one comes back byte-exact. Datagrams may come back in any order (the
/// kernel can reorder between CPUs), so each reply is matched against the multiset of those
/// outstanding. Returns the number echoed; a datagram that never comes back is an error.
pub fn udp_echo(count: u32, window: u32) -> io::Result<u32> {
    let sock = UdpSocket::bind((PEER_IP, 0))?;
    sock.connect(echo_addr())?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    let mut outstanding: HashMap<Vec<u8>, u32> = HashMap::new();
    let (mut next, mut echoed, mut in_flight) = (0u32, 0u32, 0u32);
    let mut buf = vec![0u8; 2048];
    while echoed < count {
        // One at a time until the first echo: while the kernel resolves ustack's MAC it
        // holds only a few frames.
        let limit = if echoed == 0 { 1 } else { window };
        while next < count && in_flight < limit {
            let d = datagram(next);
            sock.send(&d)?;
            *outstanding.entry(d).or_default() += 1;
            next += 1;
            in_flight += 1;
        }
        let n = sock.recv(&mut buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("no echo: {echoed} of {count} came back, {in_flight} outstanding: {e}"),
            )
        })?;
        match outstanding.get_mut(&buf[..n]) {
            Some(left) if *left > 1 => *left -= 1,
            Some(_) => drop(outstanding.remove(&buf[..n])),
            None => {
                return Err(io::Error::other(format!(
                    "echo #{echoed} ({n} bytes) matches no datagram that was sent"
                )))
            }
        }
        in_flight -= 1;
        echoed += 1;
    }
    Ok(echoed)
}

/// Flood datagram `seq`: `len` bytes, the big-endian `seq` first, then random bytes.
pub fn flood_datagram(seq: u32, len: usize) -> Vec<u8> {
    let mut d = random_bytes(u64::from(seq), len.max(4));
    d[..4].copy_from_slice(&seq.to_be_bytes());
    d
}

/// Sends `seqs` as [`flood_datagram`]s to `to` as fast as the kernel takes them, and returns
/// how many `send` calls the kernel refused with `ENOBUFS` (none are expected: a veth drop
/// is not reported to UDP senders).
pub fn flood(to: SocketAddr, seqs: std::ops::Range<u32>, len: usize) -> io::Result<u32> {
    let sock = UdpSocket::bind((PEER_IP, 0))?;
    sock.connect(to)?;
    let mut refused = 0;
    for seq in seqs {
        match sock.send(&flood_datagram(seq, len)) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => refused += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

/// Bytes client `i` of [`tcp_clients`] echoes: a few KiB, different for each client.
pub fn client_data(i: usize) -> Vec<u8> {
    random_bytes(0xc1 + i as u64, 4096 + 997 * i)
}

/// `n` concurrent kernel TCP clients (each its own connection, so its own source port), each
/// echoing [`client_data`] through ustack. Returns, per client, whether its echo was
/// byte-exact, or its error.
pub fn tcp_clients(n: usize) -> Vec<io::Result<bool>> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let data = client_data(i);
                barrier.wait();
                Ok(echo_connect(echo_addr(), &data, TIMEOUT)? == data)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}
