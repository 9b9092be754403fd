//! A capture of a TCP echo run, read back from disk with pcap-file.

mod support;

use std::time::Duration;

use support::{assert_clean_close, echo_addr, echo_connect, EchoServer};
use ustack_drivers::PcapRecorder;
use ustack_tests::{privileged, random_bytes, unique_name, TapLink};

#[test]
fn pcap_of_an_echo_run_holds_the_handshake_and_fins_and_every_frame() {
    if !privileged() {
        return;
    }
    let path = std::env::temp_dir().join(format!("{}.pcap", unique_name("ucap")));
    let mut link = TapLink::new();
    let recorder = PcapRecorder::create(link.take_device(), &path).unwrap();
    let server = EchoServer::start(recorder, 4);
    let data = random_bytes(6, 256 * 1024);
    let echoed = link
        .ns
        .run(|| echo_connect(echo_addr(), &data, Duration::from_secs(10)));
    assert!(echoed.unwrap() == data);
    std::thread::sleep(Duration::from_millis(200));
    let (stack, _) = server.stop();
    let recorder = stack.into_device();
    let recorded = recorder.frames_recorded();
    let tap = recorder.inner().stats();
    assert_eq!(recorder.record_errors(), 0);
    drop(recorder); // flushes the file
    let file = std::fs::File::open(&path).unwrap();
    let frames = assert_clean_close(std::io::BufReader::new(file));
    let _ = std::fs::remove_file(&path);
    assert_eq!(frames as u64, recorded);
    assert_eq!(
        frames as u64,
        tap.rx_frames + tap.tx_frames,
        "pcap frames vs frames the TAP moved"
    );
}
