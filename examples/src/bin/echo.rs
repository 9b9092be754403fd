//! TCP and UDP echo on port 7, served by ustack over a TAP interface.
//!
//! `sudo cargo run --release -p ustack-examples --bin echo`, then `nc 10.7.0.2 7`.

use std::os::fd::AsRawFd;
use std::process::ExitCode;

use log::{error, info};
use ustack::runtime::{self, PollMode};
use ustack::smoltcp::phy::Device;
use ustack::{Config, Stack};
use ustack_drivers::{PcapRecorder, TapDevice};
use ustack_examples::cli::TapArgs;
use ustack_examples::echo::Echo;
use ustack_examples::signal::stop_flag;

const STACK_MAC: [u8; 6] = [0x02, 0x00, 0x75, 0x73, 0x74, 0x6b];

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match TapArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &TapArgs) -> Result<(), String> {
    let tap = TapDevice::builder(&args.tap)
        .host_addr(&args.host_cidr)
        .ipv6_autoconf(false)
        .create()
        .map_err(|e| format!("cannot set up TAP {}: {e}", args.tap))?;
    info!(
        "TAP {} up, host side {} (mtu {})",
        tap.name(),
        args.host_cidr,
        tap.mtu()
    );
    let config = Config::new(STACK_MAC, args.stack_cidr()).seed_from_os();
    match &args.pcap {
        Some(path) => {
            let dev = PcapRecorder::create(tap, path)
                .map_err(|e| format!("cannot create pcap {path}: {e}"))?;
            info!("recording frames to {path}");
            serve(config, dev, args)
        }
        None => serve(config, tap, args),
    }
}

fn serve<D: Device + AsRawFd>(config: Config, device: D, args: &TapArgs) -> Result<(), String> {
    let mut stack = Stack::new(config, device, runtime::now()).map_err(|e| e.to_string())?;
    let mut echo = Echo::bind(&mut stack, 7, 64).map_err(|e| format!("cannot bind port 7: {e}"))?;
    info!("ustack at {}: TCP and UDP echo on port 7", args.stack_ip);
    info!(
        "try: nc {} 7    (Ctrl-C to stop; the TAP interface is removed on exit)",
        args.stack_ip
    );
    let stop = stop_flag();
    runtime::run(&mut stack, PollMode::Block, stop, |s, ev| {
        echo.on_event(s, ev)
    })
    .map_err(|e| format!("poll loop failed: {e}"))?;
    let s = stack.stats();
    info!(
        "stopping: {} connections served, {} bytes and {} datagrams echoed; {} frames in, {} out, {} dropped",
        echo.stats().accepted,
        echo.stats().tcp_bytes,
        echo.stats().udp_datagrams,
        s.rx_frames,
        s.tx_frames,
        s.rx_dropped()
    );
    Ok(())
}
