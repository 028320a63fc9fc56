//! `bench usb` (dfukit against dfu-util through the libusb shim) and `bench
//! usb-flash` (a DfuSe download against the STM32F4 flash model's bound).

use super::fixtures::{diag, median, timed};
use crate::util::diag::Diag;
use crate::util::serve::serve_usbip;
use crate::util::shim::shim_dir;
use clap::Args;
use dfukit_core::Clock;
use serde::Serialize;
use std::process::Command;
use std::time::Duration;

#[derive(Args)]
pub struct UsbFlashBench {
    /// Image size in KiB.
    #[arg(long, default_value_t = 1024)]
    size_kib: usize,
}

#[derive(Serialize)]
struct UsbFlashResult {
    image_bytes: usize,
    transfer_s: f64,
    bound_s: f64,
    ratio: f64,
}

#[derive(Args)]
pub struct UsbBench {
    /// Image size in KiB.
    #[arg(long, default_value_t = 1024)]
    size_kib: usize,
    /// Repetitions of each host (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Serialize)]
struct UsbResult {
    image_bytes: usize,
    runs: usize,
    dfukit_s: f64,
    dfu_util_s: f64,
    ratio: f64,
}

/// A fresh simulated STM32F4 (flash timing off) exported on a loopback port.
fn usb_board() -> Result<
    (
        dfukit_usbip::Server,
        std::sync::Arc<std::sync::Mutex<dfukit_sim::boards::stm32f4::Stm32f4>>,
    ),
    Diag,
> {
    use dfukit_sim::boards::stm32f4::{Stm32f4, Stm32f4Config};
    let board = std::sync::Arc::new(std::sync::Mutex::new(Stm32f4::in_memory(Stm32f4Config {
        flash_timing: false,
        ..Stm32f4Config::default()
    })));
    let server = serve_usbip("127.0.0.1:0", board.clone())?;
    Ok((server, board))
}

/// Runs `bench usb`.
pub fn run(a: UsbBench) -> Result<(), Diag> {
    let dir = tempfile::tempdir().map_err(diag)?;
    let len = stm32f4_image_len(a.size_kib)?;
    let fw = dfukit_sim::synthetic::firmware(len, 0x5EED);
    let bin = dir.path().join("fw.bin");
    std::fs::write(&bin, &fw).map_err(diag)?;
    let up = dir.path().join("up.bin");
    let me = std::env::current_exe().map_err(diag)?;
    let shim = shim_dir()?;
    let addr = format!("0x08000000:{len}");
    let check = |board: &std::sync::Arc<std::sync::Mutex<dfukit_sim::boards::stm32f4::Stm32f4>>,
                 read: &[u8]| {
        let b = board.lock().unwrap_or_else(|p| p.into_inner());
        if b.flash()[..len] != fw[..] || read != &fw[..] {
            return Err(Diag::new(
                "dfukit::bench::failed",
                "the board or the read-back does not hold the image",
                "a benchmark run failed",
            ));
        }
        Ok(())
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..a.runs {
        let (server, board) = usb_board()?;
        let mut cmd = Command::new(&me);
        cmd.args([
            "usb",
            "download",
            "-a",
            "0",
            "-s",
            "0x08000000",
            "--verify",
            "-D",
        ])
        .arg(&bin)
        .env("DFUKIT_USBIP", server.local_addr().to_string());
        ours.push(timed(cmd, "dfukit")?);
        check(&board, &fw)?;
        server.stop();

        let (server, board) = usb_board()?;
        let dfu_util = |args: &[&str]| {
            let mut c = Command::new("dfu-util");
            c.args(args)
                .env("LD_LIBRARY_PATH", &shim)
                .env("DFUKIT_USBIP", server.local_addr().to_string());
            c
        };
        let t1 = timed(
            dfu_util(&["-a", "0", "-s", "0x08000000", "-D", &bin.to_string_lossy()]),
            "dfu-util",
        )?;
        let t2 = timed(
            dfu_util(&["-a", "0", "-s", &addr, "-U", &up.to_string_lossy()]),
            "dfu-util",
        )?;
        check(&board, &std::fs::read(&up).map_err(diag)?)?;
        let _ = std::fs::remove_file(&up);
        theirs.push(t1 + t2);
        server.stop();
    }
    let r = UsbResult {
        image_bytes: len,
        runs: a.runs,
        dfukit_s: median(ours),
        dfu_util_s: median(theirs),
        ratio: 0.0,
    };
    let r = UsbResult {
        ratio: r.dfu_util_s / r.dfukit_s,
        ..r
    };
    if crate::util::progress::json() {
        println!("{}", serde_json::to_string(&r).expect("serializes"));
    } else {
        println!("DfuSe download + read-back over USB/IP, {} KiB, simulated STM32F4, flash timing off, median of {} runs", a.size_kib, a.runs);
        println!(
            "  dfukit (download --verify):           {:.3} s",
            r.dfukit_s
        );
        println!(
            "  dfu-util 0.11 via the shim (-D, -U):  {:.3} s",
            r.dfu_util_s
        );
        println!("  ratio dfu-util/dfukit: {:.2}x", r.ratio);
    }
    Ok(())
}

/// Runs `bench usb-flash`.
pub fn run_flash(a: UsbFlashBench) -> Result<(), Diag> {
    use dfukit_sim::boards::stm32f4::{Stm32f4, Stm32f4Config};
    use dfukit_sim::links::usb::{SimUsb, UsbLinkModel};
    use dfukit_stm32mp::connect::Connector;
    use dfukit_usbdfu::dfuse::MemoryLayout;
    use dfukit_usbdfu::host::{DfuHost, DfuOptions};
    let len = stm32f4_image_len(a.size_kib)?;
    let fw = dfukit_sim::synthetic::firmware(len, 0xF1A5);
    let mut board = Stm32f4::in_memory(Stm32f4Config::default());
    board.use_virtual_time(dfukit_core::Instant::ZERO);
    let cfg = dfukit_usbdfu::device::DeviceConfig::stm32f4_rom();
    let layout = MemoryLayout::parse(cfg.alts[0].name).map_err(|e| diag(format!("{e:?}")))?;
    // The bound: every sector the image touches erased once, every word
    // programmed once, at the datasheet's typical times (the flash model).
    let sectors = board.flash_chip().sectors().unwrap_or(&[]).to_vec();
    let touched = sectors
        .iter()
        .filter(|s| s.start < 0x0800_0000 + len as u32);
    let erase: Duration = touched.map(|s| s.erase_typ).sum();
    let program = Duration::from_micros(16) * (len as u32).div_ceil(4);
    let bound = erase + program;
    // No USB link time: this figure isolates the flash (the bound).
    let mut usb = SimUsb::new(board, UsbLinkModel::instant());
    let t = usb
        .connect(Duration::ZERO)
        .map_err(|e| diag(e.to_string()))?;
    let mut host = DfuHost::new(t, 0, cfg.descriptor(), DfuOptions::default());
    host.set_alt(0).map_err(|e| diag(e.to_string()))?;
    host.dfuse_download(&layout, 0x0800_0000, &fw, false, &mut |_| {})
        .map_err(|e| diag(e.to_string()))?;
    let board = usb.device();
    if board.lock().map_err(|e| diag(e.to_string()))?.flash()[..len] != fw[..] {
        return Err(Diag::new(
            "dfukit::bench::failed",
            "the board does not hold the image",
            "a benchmark run failed",
        ));
    }
    let transfer = Duration::from_micros(usb.now().as_micros());
    let r = UsbFlashResult {
        image_bytes: len,
        transfer_s: transfer.as_secs_f64(),
        bound_s: bound.as_secs_f64(),
        ratio: bound.as_secs_f64() / transfer.as_secs_f64(),
    };
    if crate::util::progress::json() {
        println!("{}", serde_json::to_string(&r).expect("serializes"));
    } else {
        println!(
            "DfuSe download, {} KiB, simulated STM32F405 with datasheet flash timing, virtual time",
            a.size_kib
        );
        println!("  transfer: {:.3} s", r.transfer_s);
        println!(
            "  flash bound (sum of sector erases + 16 us per word): {:.3} s",
            r.bound_s
        );
        println!("  ratio bound/transfer: {:.1}%", r.ratio * 100.0);
    }
    Ok(())
}

/// `size_kib` in bytes, if it fits the STM32F405's 1 MiB of flash.
fn stm32f4_image_len(size_kib: usize) -> Result<usize, Diag> {
    let len = size_kib * 1024;
    if len > 1 << 20 {
        return Err(Diag::new(
            "dfukit::bench::size",
            "the STM32F4 has 1024 KiB of flash",
            "use --size-kib 1024 or less",
        ));
    }
    Ok(len)
}
