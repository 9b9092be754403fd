//! Replays a stack_ingress input outside the fuzzer, printing each record and what the
//! stack sent back: `cargo run --example replay -- <file> [--fix-checksums]`.
use ustack::smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket, UdpPacket,
};
use ustack_fuzz::{frames::parse_tcp, records, Harness, Record};

/// Recomputes IPv4/TCP/UDP/ICMPv4 checksums, so that an input found under cfg(fuzzing)
/// (where checksums are not verified) replays in a normal build.
fn fix_checksums(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut frame[..]) else {
        return;
    };
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
                return;
            };
            ip.fill_checksum();
            let (src, dst, proto) = (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                ip.next_header(),
            );
            if ip.more_frags() || ip.frag_offset() != 0 {
                return;
            }
            let p = ip.payload_mut();
            fix_l4(p, proto, src, dst);
        }
        EthernetProtocol::Ipv6 => {
            let Ok(mut ip) = Ipv6Packet::new_checked(eth.payload_mut()) else {
                return;
            };
            let (src, dst, proto) = (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip.next_header(),
            );
            fix_l4(ip.payload_mut(), proto, src, dst);
        }
        _ => {}
    }
}

fn fix_l4(p: &mut [u8], proto: IpProtocol, src: IpAddress, dst: IpAddress) {
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut t) = TcpPacket::new_checked(p) {
                t.fill_checksum(&src, &dst)
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut u) = UdpPacket::new_checked(p) {
                if u.checksum() != 0 {
                    u.fill_checksum(&src, &dst)
                }
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut i) = Icmpv4Packet::new_checked(p) {
                i.fill_checksum()
            }
        }
        _ => {}
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("read input");
    let fix = args.iter().any(|a| a == "--fix-checksums");
    let mut h = Harness::new(true);
    let show = |h: &mut Harness| {
        for f in h.stack.device_mut().sent.drain(..) {
            match parse_tcp(&f) {
                Some(s) => println!("    <- {s:?}"),
                None => println!("    <- {} bytes {:02x?}", f.len(), &f[12..f.len().min(24)]),
            }
        }
    };
    show(&mut h);
    for (i, rec) in records(&data).enumerate() {
        let mut frame = rec.frame.to_vec();
        if fix {
            fix_checksums(&mut frame);
        }
        let tcp = EthernetFrame::new_checked(&frame[..])
            .ok()
            .and_then(|_| parse_tcp_in(&frame));
        println!(
            "#{i} ctl={:#04x} len={} t={} {}",
            rec.ctl,
            frame.len(),
            h.now.total_millis(),
            tcp.map_or(
                format!("{:02x?}", &frame[..frame.len().min(16)]),
                |s| format!("-> {s:?}")
            )
        );
        h.step(Record {
            ctl: rec.ctl,
            frame: &frame,
        });
        show(&mut h);
    }
    h.poll();
    show(&mut h);
    println!("{:?}", h.stack.stats());
}

fn parse_tcp_in(f: &[u8]) -> Option<ustack_fuzz::frames::Sent> {
    parse_tcp(f)
}
