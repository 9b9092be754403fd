//! The `virtio_net_hdr` in front of every frame of a TAP opened with `IFF_VNET_HDR`.
//!
//! Receive: the kernel may leave a TCP/UDP checksum partial (`NEEDS_CSUM`: the field holds
//! the pseudo-header sum, to be completed over `csum_start..`) and may hand over a whole TCP
//! super-segment of up to 64 KiB (`gso_type` TCPV4/TCPV6) that it did not cut into MSS-sized
//! frames. The device completes the checksum and gives the super-segment to the stack as one
//! large segment. Transmit: the device asks the kernel to fill in TCP/UDP checksums, and to
//! cut the TCP super-frames it merged (`gso`) back into segments.
//!
//! The header is in the host's byte order: legacy virtio, which TAP speaks unless told
//! otherwise with `TUNSETVNETBE`/`TUNSETVNETLE`.

use crate::csum;

/// Length of `struct virtio_net_hdr` (without `num_buffers`).
pub(crate) const LEN: usize = 10;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
/// Set on top of the GSO type when the segment carries ECN's CWR.
const GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr` from `<linux/virtio_net.h>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Header {
    /// Reads a header from the first [`LEN`] bytes; `None` if `buf` is shorter.
    pub(crate) fn parse(buf: &[u8]) -> Option<Header> {
        let b = buf.get(..LEN)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(Header {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first [`LEN`] bytes of `out` (nothing if it is shorter).
    pub(crate) fn write(&self, out: &mut [u8]) {
        let Some(b) = out.get_mut(..LEN) else {
            return;
        };
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

/// What receive did with one frame, for the device's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Received {
    /// The frame is a TCP super-segment the kernel did not cut up.
    pub gso: bool,
    /// A partial checksum was completed.
    pub completed: bool,
    /// The header asked for something the frame does not allow; the frame is unchanged.
    pub malformed: bool,
}

/// Applies a received frame's header to the frame that follows it.
pub(crate) fn on_receive(hdr: &Header, frame: &mut [u8]) -> Received {
    let mut out = Received::default();
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {}
        // smoltcp takes a segment of any length; ustack's ingress check admits frames up to
        // the device's reported maximum, which is 64 KiB in offload mode.
        GSO_TCPV4 | GSO_TCPV6 => out.gso = true,
        // Not enabled with TUNSETOFFLOAD (UDP fragmentation/segmentation), so never sent.
        _ => out.malformed = true,
    }
    if hdr.flags & F_NEEDS_CSUM != 0 {
        let (start, offset) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
        if csum::complete_at(frame, start, offset) {
            out.completed = true;
        } else {
            out.malformed = true;
        }
    }
    out
}

/// Prepares a frame for transmission: for TCP and UDP, puts the pseudo-header sum in the
/// checksum field and returns a header asking the kernel to complete it; any other frame gets
/// an empty header and leaves as it is. The second value says whether the checksum was
/// offloaded.
pub(crate) fn on_transmit(frame: &mut [u8]) -> (Header, bool) {
    let Some(l4) = csum::set_partial(frame) else {
        return (Header::default(), false);
    };
    let (Ok(start), Ok(offset)) = (u16::try_from(l4.start), u16::try_from(l4.csum_offset)) else {
        return (Header::default(), false);
    };
    let hdr = Header {
        flags: F_NEEDS_CSUM,
        csum_start: start,
        csum_offset: offset,
        ..Header::default()
    };
    (hdr, true)
}

/// Like [`on_transmit`] for a TCP super-frame of several segments of `gso_size` payload
/// bytes: asks the kernel to cut it up (TCPV4/TCPV6) after `hdr_len` bytes of headers and to
/// fill in each segment's checksum. `None` if the frame is not TCP.
pub(crate) fn on_transmit_gso(
    frame: &mut [u8],
    v6: bool,
    gso_size: u16,
    hdr_len: u16,
) -> Option<Header> {
    let (hdr, offloaded) = on_transmit(frame);
    if !offloaded || usize::from(hdr.csum_offset) != csum::TCP_CSUM_OFFSET {
        return None;
    }
    Some(Header {
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        gso_size,
        hdr_len,
        ..hdr
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_in_host_order() {
        let h = Header {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut buf = [0u8; LEN + 3];
        h.write(&mut buf);
        assert_eq!(Header::parse(&buf), Some(h));
        assert_eq!(buf[0], 1);
        assert_eq!(&buf[4..6], &1448u16.to_ne_bytes());
        assert_eq!(Header::parse(&buf[..LEN - 1]), None);
        h.write(&mut [0u8; 3]);
    }

    #[test]
    fn receive_flags_bad_positions_and_unknown_gso_without_touching_the_frame() {
        let frame = vec![0xabu8; 60];
        let mut f = frame.clone();
        let bad = Header {
            flags: F_NEEDS_CSUM,
            csum_start: 59,
            csum_offset: 16,
            ..Header::default()
        };
        let got = on_receive(&bad, &mut f);
        assert!(got.malformed && !got.completed && !got.gso);
        assert_eq!(f, frame);
        let udp_gso = Header {
            gso_type: 5,
            ..Header::default()
        };
        assert!(on_receive(&udp_gso, &mut f).malformed);
        let tcp6 = Header {
            gso_type: GSO_TCPV6,
            gso_size: 1440,
            ..Header::default()
        };
        let got = on_receive(&tcp6, &mut f);
        assert!(got.gso && !got.malformed);
        assert_eq!(f, frame);
    }

    #[test]
    fn transmit_offloads_only_tcp_and_udp() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(on_transmit(&mut arp), (Header::default(), false));
        assert_eq!(on_transmit(&mut []), (Header::default(), false));
    }
}
