//! TCP and UDP checksums of Ethernet frames whose checksum the kernel left to the other side.
//!
//! Devices with checksum offload meet two cases: a frame whose checksum field holds only the
//! pseudo-header sum (the kernel's `CHECKSUM_PARTIAL`: the TAP's `VIRTIO_NET_HDR_F_NEEDS_CSUM`,
//! AF_PACKET's `TP_STATUS_CSUM_NOT_READY`), which must be completed before ustack's ingress
//! check verifies it, and an outgoing frame that should carry such a partial value so the
//! kernel finishes it. Headers are parsed with `smoltcp::wire`; a frame that is not a
//! well-formed, unfragmented TCP or UDP packet is reported and left alone, never a panic.

use smoltcp::wire::{
    checksum, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket, UdpPacket,
};

/// Offset of the checksum field in a TCP header.
pub(crate) const TCP_CSUM_OFFSET: usize = 16;
/// Offset of the checksum field in a UDP header.
pub(crate) const UDP_CSUM_OFFSET: usize = 6;

/// Where an Ethernet frame's TCP or UDP header sits, and what its checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct L4 {
    /// Offset of the TCP/UDP header in the frame (the checksum's start).
    pub start: usize,
    /// End of the bytes the checksum covers (the IP payload's end; padding excluded).
    pub end: usize,
    /// Offset of the checksum field from `start`.
    pub csum_offset: usize,
    /// The pseudo-header sum (folded, not complemented), as a partial checksum field holds it.
    pub pseudo: u16,
}

/// Finds the TCP or UDP header of an Ethernet frame carrying IPv4 or IPv6 (without extension
/// headers); `None` for anything else, for fragments, and for malformed or truncated headers.
pub(crate) fn locate_l4(frame: &[u8]) -> Option<L4> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip_start = EthernetFrame::<&[u8]>::header_len();
    let (src, dst, proto, l4_start, l4) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let start = ip_start + usize::from(ip.header_len());
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            (
                IpAddress::Ipv4(src),
                IpAddress::Ipv4(dst),
                ip.next_header(),
                start,
                ip.payload(),
            )
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let start = ip_start + ip.header_len();
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            (
                IpAddress::Ipv6(src),
                IpAddress::Ipv6(dst),
                ip.next_header(),
                start,
                ip.payload(),
            )
        }
        _ => return None,
    };
    let (len, csum_offset) = match proto {
        IpProtocol::Tcp => {
            TcpPacket::new_checked(l4).ok()?;
            (l4.len(), TCP_CSUM_OFFSET)
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(l4).ok()?;
            (usize::from(udp.len()), UDP_CSUM_OFFSET)
        }
        _ => return None,
    };
    // The pseudo-header's length field has 16 bits; longer payloads (IPv6 jumbograms) cannot
    // be described.
    let len32 = u32::try_from(len).ok().filter(|&l| l <= 0xffff)?;
    Some(L4 {
        start: l4_start,
        end: l4_start + len,
        csum_offset,
        pseudo: checksum::pseudo_header(&src, &dst, proto, len32),
    })
}

/// Recomputes the whole TCP or UDP checksum of an Ethernet frame (IPv4 or IPv6), whatever the
/// field held. `false`, with the frame untouched, if it is not TCP/UDP or is malformed.
///
/// For devices whose kernel side may hand over frames with a checksum left to the receiver
/// (AF_PACKET's `TP_STATUS_CSUM_NOT_READY` when the field's content is not to be trusted).
// The TAP driver completes partial checksums instead; the AF_PACKET driver calls this.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn fill_l4_checksum(frame: &mut [u8]) -> bool {
    let Some(l4) = locate_l4(frame) else {
        return false;
    };
    write_field(frame, &l4, 0);
    complete(frame, l4.start, l4.end, l4.csum_offset, l4.pseudo)
}

/// Completes a partial TCP or UDP checksum whose field holds the pseudo-header sum, as the
/// kernel leaves it for `CHECKSUM_PARTIAL` frames, locating the header itself. `false`, with
/// the frame untouched, if it is not TCP/UDP or is malformed.
// AF_PACKET reports partial frames without their checksum position; the TAP's virtio header
// carries it, and uses `complete_at`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn fill_partial_l4_checksum(frame: &mut [u8]) -> bool {
    let Some(l4) = locate_l4(frame) else {
        return false;
    };
    complete(frame, l4.start, l4.end, l4.csum_offset, 0)
}

/// Completes a partial checksum at a known position: sums `frame[start..]` (the field, which
/// holds the pseudo-header sum, included) and stores the complement at `start + offset`, the
/// way `virtio_net_hdr`'s `csum_start`/`csum_offset` describe it. `false`, with the frame
/// untouched, if the position lies outside the frame.
pub(crate) fn complete_at(frame: &mut [u8], start: usize, offset: usize) -> bool {
    complete(frame, start, frame.len(), offset, 0)
}

/// Writes the pseudo-header sum into the TCP/UDP checksum field, so that a device that
/// completes partial checksums (the kernel behind a TAP with `VIRTIO_NET_HDR_F_NEEDS_CSUM`)
/// produces the right checksum. Returns where the header and field are, or `None`, with the
/// frame untouched, if it is not TCP/UDP or is malformed.
pub(crate) fn set_partial(frame: &mut [u8]) -> Option<L4> {
    let l4 = locate_l4(frame)?;
    write_field(frame, &l4, l4.pseudo);
    Some(l4)
}

/// Adds `extra` (a folded sum) to the sum of `frame[start..end]` and stores the complement in
/// the field at `start + offset`.
fn complete(frame: &mut [u8], start: usize, end: usize, offset: usize, extra: u16) -> bool {
    let fits = |f: &usize| {
        start <= end && end <= frame.len() && f.checked_add(2).is_some_and(|e| e <= end)
    };
    let Some(field) = start.checked_add(offset).filter(fits) else {
        return false;
    };
    let Some(covered) = frame.get(start..end) else {
        return false;
    };
    let sum = checksum::combine(&[extra, checksum::data(covered)]);
    // Both zeros are the same sum; UDP reserves 0x0000 for "no checksum", so use all ones.
    let value = match !sum {
        0 => 0xffff,
        v => v,
    };
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    true
}

fn write_field(frame: &mut [u8], l4: &L4, value: u16) {
    let at = l4.start + l4.csum_offset;
    if let Some(field) = frame.get_mut(at..at + 2) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Ipv4Repr, Ipv6Repr};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC4: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 1);
    const DST4: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 2);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, 1);
    const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 7, 0, 0, 0, 0, 0, 2);

    /// A TCP (20-byte header) or UDP segment carrying `payload`, checksum field zero.
    fn l4(proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let mut seg = match proto {
            IpProtocol::Tcp => {
                let mut h = vec![0u8; 20];
                h[..4].copy_from_slice(&[0x1f, 0x90, 0xc0, 0x01]);
                h[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = 0x18; // PSH, ACK
                h[14..16].copy_from_slice(&512u16.to_be_bytes());
                h
            }
            _ => {
                let mut h = vec![0u8; 8];
                h[..4].copy_from_slice(&[0x00, 0x07, 0xc0, 0x02]);
                h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                h
            }
        };
        seg.extend_from_slice(payload);
        seg
    }

    /// An Ethernet frame around `seg`, over IPv4 or IPv6.
    fn frame(v6: bool, proto: IpProtocol, seg: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let ip_len;
        if v6 {
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            let repr = Ipv6Repr {
                src_addr: SRC6,
                dst_addr: DST6,
                next_header: proto,
                payload_len: seg.len(),
                hop_limit: 64,
            };
            ip_len = repr.buffer_len();
            f.resize(14 + ip_len, 0);
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut f[14..]));
        } else {
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            let repr = Ipv4Repr {
                src_addr: SRC4,
                dst_addr: DST4,
                next_header: proto,
                payload_len: seg.len(),
                hop_limit: 64,
            };
            ip_len = repr.buffer_len();
            f.resize(14 + ip_len, 0);
            repr.emit(
                &mut Ipv4Packet::new_unchecked(&mut f[14..]),
                &ChecksumCapabilities::default(),
            );
        }
        f.extend_from_slice(seg);
        f
    }

    fn addrs(v6: bool) -> (IpAddress, IpAddress) {
        if v6 {
            (IpAddress::Ipv6(SRC6), IpAddress::Ipv6(DST6))
        } else {
            (IpAddress::Ipv4(SRC4), IpAddress::Ipv4(DST4))
        }
    }

    fn l4_bytes(f: &[u8], v6: bool) -> &[u8] {
        &f[if v6 { 54 } else { 34 }..]
    }

    /// Whether smoltcp accepts the frame's TCP/UDP checksum.
    fn verifies(f: &[u8], v6: bool, proto: IpProtocol) -> bool {
        let (src, dst) = addrs(v6);
        match proto {
            IpProtocol::Tcp => TcpPacket::new_checked(l4_bytes(f, v6))
                .unwrap()
                .verify_checksum(&src, &dst),
            _ => {
                let udp = UdpPacket::new_checked(l4_bytes(f, v6)).unwrap();
                udp.checksum() != 0 && udp.verify_checksum(&src, &dst)
            }
        }
    }

    /// The checksum smoltcp itself computes for the frame.
    fn smoltcp_checksum(f: &[u8], v6: bool, proto: IpProtocol) -> u16 {
        let mut f = f.to_vec();
        let (src, dst) = addrs(v6);
        let at = if v6 { 54 } else { 34 };
        match proto {
            IpProtocol::Tcp => {
                let mut p = TcpPacket::new_unchecked(&mut f[at..]);
                p.fill_checksum(&src, &dst);
                p.checksum()
            }
            _ => {
                let mut p = UdpPacket::new_unchecked(&mut f[at..]);
                p.fill_checksum(&src, &dst);
                p.checksum()
            }
        }
    }

    fn field(f: &[u8], v6: bool, proto: IpProtocol) -> u16 {
        let at = if v6 { 54 } else { 34 }
            + if proto == IpProtocol::Tcp {
                TCP_CSUM_OFFSET
            } else {
                UDP_CSUM_OFFSET
            };
        u16::from_be_bytes([f[at], f[at + 1]])
    }

    fn cases() -> Vec<(bool, IpProtocol, Vec<u8>)> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            for proto in [IpProtocol::Tcp, IpProtocol::Udp] {
                for len in [0usize, 1, 7, 1400, 1461] {
                    let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
                    out.push((v6, proto, frame(v6, proto, &l4(proto, &payload))));
                }
            }
        }
        out
    }

    #[test]
    fn fill_l4_checksum_matches_smoltcp_for_tcp_and_udp_over_both_ip_versions() {
        for (v6, proto, mut f) in cases() {
            let want = smoltcp_checksum(&f, v6, proto);
            assert!(!verifies(&f, v6, proto));
            assert!(fill_l4_checksum(&mut f), "v6 {v6} {proto}");
            assert!(verifies(&f, v6, proto), "v6 {v6} {proto} len {}", f.len());
            assert_eq!(field(&f, v6, proto), want);
            // A stale, wrong value in the field is replaced, not added to.
            let at = f.len() - 1;
            f[at] ^= 0x5a;
            assert!(fill_l4_checksum(&mut f));
            assert!(verifies(&f, v6, proto));
        }
    }

    #[test]
    fn partial_checksums_complete_like_the_kernel_does() {
        for (v6, proto, f) in cases() {
            let want = smoltcp_checksum(&f, v6, proto);
            // Transmit side: the field holds the pseudo-header sum...
            let mut partial = f.clone();
            let l4 = set_partial(&mut partial).expect("TCP/UDP frame");
            assert_eq!(l4.start, if v6 { 54 } else { 34 });
            assert_eq!(l4.end, f.len());
            assert_eq!(field(&partial, v6, proto), l4.pseudo);
            // ... and completing it at csum_start/csum_offset, as the kernel would, is right.
            let mut done = partial.clone();
            assert!(complete_at(&mut done, l4.start, l4.csum_offset));
            assert!(verifies(&done, v6, proto), "v6 {v6} {proto}");
            assert_eq!(field(&done, v6, proto), want);
            // Without the position, the header is found by parsing.
            let mut found = partial.clone();
            assert!(fill_partial_l4_checksum(&mut found));
            assert_eq!(found, done);
        }
    }

    #[test]
    fn a_gso_sized_tcp_segment_gets_a_valid_checksum() {
        for v6 in [false, true] {
            let payload: Vec<u8> = (0..65_000u32).map(|i| (i % 251) as u8).collect();
            let f = frame(v6, IpProtocol::Tcp, &l4(IpProtocol::Tcp, &payload));
            let mut partial = f.clone();
            let l4 = set_partial(&mut partial).unwrap();
            assert!(complete_at(&mut partial, l4.start, l4.csum_offset));
            assert!(verifies(&partial, v6, IpProtocol::Tcp));
        }
    }

    #[test]
    fn a_udp_checksum_of_zero_is_sent_as_all_ones() {
        for v6 in [false, true] {
            let mut payload = vec![0x11u8, 0x22, 0, 0];
            let f = frame(v6, IpProtocol::Udp, &l4(IpProtocol::Udp, &payload));
            let l4info = locate_l4(&f).unwrap();
            // Choose the last word so that everything sums to 0xffff: the checksum is then 0.
            let sum = checksum::combine(&[l4info.pseudo, checksum::data(&f[l4info.start..])]);
            payload[2..4].copy_from_slice(&(!sum).to_be_bytes());
            let mut f = frame(v6, IpProtocol::Udp, &l4(IpProtocol::Udp, &payload));
            assert!(fill_l4_checksum(&mut f));
            assert_eq!(field(&f, v6, IpProtocol::Udp), 0xffff);
            assert!(verifies(&f, v6, IpProtocol::Udp));
        }
    }

    #[test]
    fn other_protocols_fragments_and_broken_frames_are_left_alone() {
        let mut arp = vec![0xffu8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let icmp = frame(false, IpProtocol::Icmp, &[8, 0, 0, 0, 0, 1, 0, 1]);
        let mut frag = frame(false, IpProtocol::Udp, &l4(IpProtocol::Udp, b"part"));
        frag[14 + 6] = 0x20; // more fragments
        let mut broken_tcp = frame(false, IpProtocol::Tcp, &l4(IpProtocol::Tcp, b"x"));
        broken_tcp[34 + 12] = 15 << 4; // data offset beyond the segment
        let mut long_udp = frame(true, IpProtocol::Udp, &l4(IpProtocol::Udp, b"xy"));
        long_udp[54 + 5] = 200; // UDP length beyond the packet
        for f in [arp, icmp, frag, broken_tcp, long_udp] {
            let mut g = f.clone();
            assert!(!fill_l4_checksum(&mut g));
            assert!(!fill_partial_l4_checksum(&mut g));
            assert!(set_partial(&mut g).is_none());
            assert_eq!(g, f);
        }
    }

    #[test]
    fn truncated_and_random_frames_never_panic() {
        let mut rng = 0x1234_5678_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for (_, _, f) in cases() {
            for cut in 0..f.len().min(80) {
                let mut g = f[..cut].to_vec();
                let _ = fill_l4_checksum(&mut g);
                let _ = set_partial(&mut g);
                let _ = fill_partial_l4_checksum(&mut g);
                assert_eq!(g, &f[..cut], "a frame cut at {cut} must stay untouched");
            }
        }
        for _ in 0..2000 {
            let len = (next() % 120) as usize;
            let mut g: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 14 && next() % 2 == 0 {
                g[12..14].copy_from_slice(if next() % 2 == 0 {
                    &[8, 0]
                } else {
                    &[0x86, 0xdd]
                });
            }
            let _ = fill_l4_checksum(&mut g);
            let _ = set_partial(&mut g);
            let (a, b) = ((next() % 200) as usize, (next() % 200) as usize);
            let _ = complete_at(&mut g, a, b);
        }
        let mut tiny = [0u8; 4];
        assert!(!complete_at(&mut tiny, 0, 3));
        assert!(!complete_at(&mut tiny, 5, 0));
        assert!(!complete_at(&mut tiny, usize::MAX, 2));
        assert!(complete_at(&mut tiny, 0, 2));
        assert!(!complete_at(&mut tiny, 1, usize::MAX));
    }
}
