//! `dfukit bench`: figures measured against the peer tools in the same run.
//!
//! Wall time on these machines is noisy; what is reported is therefore a
//! ratio against the peer measured in the same run on the same kind of
//! board, plus the board's own CPU time per MiB received.

use super::diag::Diag;
use clap::{Args, Subcommand};
use dfukit_nordic::package::{self, firmware};
use dfukit_sim::nrf52840::{Bank1, BoardConfig, Nrf52840};
use dfukit_sim::pty::ServedBoard;
use dfukit_sim::Storage;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Options of `bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Secure DFU over a pty: dfukit's host vs nrfutil's, flash timing off.
    Serial(SerialBench),
    /// DfuSe download + read-back over USB/IP: dfukit vs dfu-util through the shim.
    Usb(UsbBench),
    /// DfuSe download with the STM32F4 flash timing on, in virtual time:
    /// achieved time against the flash model's bound.
    UsbFlash(UsbFlashBench),
    /// STM32MP programming (ROM code, TF-A, U-Boot) of an eMMC layout with a
    /// large rootfs, in virtual time with USB high-speed and eMMC models:
    /// each phase against the models' bound.
    Stm32mp(super::bench_stm32mp::Stm32mpBench),
    /// Secure DFU of the user report's image over the BLE link model (15 ms
    /// and 7.5 ms) and UART (115200, 1000000 baud) in virtual time: dfukit
    /// against the link's bound and against the phone-library baseline.
    Ble(super::bench_ble::BleBench),
}

#[derive(Args)]
struct UsbFlashBench {
    /// Image size in KiB.
    #[arg(long, default_value_t = 1024)]
    size_kib: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct UsbFlashResult {
    image_bytes: usize,
    transfer_s: f64,
    bound_s: f64,
    ratio: f64,
}

#[derive(Args)]
struct UsbBench {
    /// Image size in KiB.
    #[arg(long, default_value_t = 1024)]
    size_kib: usize,
    /// Repetitions of each host (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct UsbResult {
    image_bytes: usize,
    runs: usize,
    dfukit_s: f64,
    dfu_util_s: f64,
    ratio: f64,
}

#[derive(Args)]
struct SerialBench {
    /// Application size in KiB.
    #[arg(long, default_value_t = 512)]
    size_kib: usize,
    /// Repetitions of each host (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The nrfutil executable (default: $DFUKIT_NRFUTIL, else target/peers/nrfutil-venv/bin/nrfutil).
    #[arg(long)]
    nrfutil: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct SerialResult {
    image_bytes: usize,
    runs: usize,
    dfukit_s: f64,
    nrfutil_s: Option<f64>,
    nrfutil_fixed_wait_s: f64,
    ratio: Option<f64>,
    dfukit_kb_s: f64,
    board_cpu_ms_per_mib: f64,
}

/// Runs a benchmark.
pub fn run(a: BenchArgs) -> miette::Result<()> {
    match a.what {
        BenchWhat::Serial(s) => Ok(serial(s)?),
        BenchWhat::Usb(u) => Ok(usb(u)?),
        BenchWhat::UsbFlash(u) => Ok(usb_flash(u)?),
        BenchWhat::Stm32mp(m) => Ok(super::bench_stm32mp::run(&m)?),
        BenchWhat::Ble(b) => Ok(super::bench_ble::run(&b)?),
    }
}

fn diag(e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::bench::setup",
        e.to_string(),
        "the benchmark needs a writable temporary directory and /dev/ptmx",
    )
}

fn board() -> Result<ServedBoard, Diag> {
    let cfg = BoardConfig {
        bank1: Bank1::Qspi,
        flash_timing: false,
        // Unsigned packages: both hosts send the same bytes, no key needed.
        public_key: None,
        ..BoardConfig::default()
    };
    let b = Nrf52840::new(
        cfg,
        Storage::in_memory(1 << 20),
        Storage::in_memory(8 << 20),
    )
    .map_err(diag)?;
    let s = ServedBoard::spawn(b).map_err(diag)?;
    std::thread::sleep(Duration::from_millis(20));
    Ok(s)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn nrfutil_path(arg: Option<PathBuf>) -> Option<PathBuf> {
    arg.or_else(|| std::env::var_os("DFUKIT_NRFUTIL").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("target/peers/nrfutil-venv/bin/nrfutil")))
        .filter(|p| p.exists())
}

/// nrfutil polls for a USB device behind the port for `-t` seconds before
/// opening it (`__ensure_bootloader`); on a pty it never finds one. With
/// `-t 1` that is about 1 s of every run, reported separately.
const NRFUTIL_PORT_WAIT_S: f64 = 1.0;

/// An unsigned application package (`DIR/app.zip`) of `len` synthetic
/// bytes from `seed`, for hardware version 52 and S140 (0x0100), linked at
/// 0x27000: what the nRF52840 benchmarks send.
pub(super) fn app_package(dir: &Path, len: usize, seed: u32) -> Result<PathBuf, Diag> {
    let fw = dfukit_sim::synthetic::firmware(len, seed);
    let hex = dir.join("app.hex");
    std::fs::write(&hex, firmware::to_intel_hex(&[(0x27000, &fw)])).map_err(diag)?;
    let pkg = dir.join("app.zip");
    package::generate_to_file(
        &package::PackageOptions {
            application: Some(hex),
            application_version: Some(1),
            hw_version: Some(52),
            sd_req: Some(vec![0x0100]),
            ..Default::default()
        },
        &pkg,
    )
    .map_err(diag)?;
    Ok(pkg)
}

fn serial(a: SerialBench) -> Result<(), Diag> {
    let dir = tempfile::tempdir().map_err(diag)?;
    let len = a.size_kib * 1024;
    let pkg = app_package(dir.path(), len, 0x1234_5678)?;

    // Both hosts run as processes, timed from spawn to exit, so that start-up
    // and package loading count for both.
    let me = std::env::current_exe().map_err(diag)?;
    let mut ours = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..a.runs {
        let b = board()?;
        let mut cmd = Command::new(&me);
        cmd.args(["nordic", "dfu", "serial", "--package"])
            .arg(&pkg)
            .arg("--port")
            .arg(b.path());
        ours.push(timed(cmd, "dfukit")?);
        let (board, board_cpu) = b.stop().map_err(diag)?;
        check_installed(&board_state(board), len)?;
        cpu.push(board_cpu.as_secs_f64() * 1000.0 / (len as f64 / (1 << 20) as f64));
    }
    let nrfutil = nrfutil_path(a.nrfutil);
    let theirs = match &nrfutil {
        Some(path) => {
            let mut v = Vec::new();
            for _ in 0..a.runs {
                let b = board()?;
                v.push(run_nrfutil(path, &pkg, b.path())?);
                let (board, _) = b.stop().map_err(diag)?;
                check_installed(&board_state(board), len)?;
            }
            Some(median(v))
        }
        None => {
            if std::env::var("DFUKIT_REQUIRE_PEERS").as_deref() == Ok("1") {
                return Err(Diag::new(
                    "dfukit::bench::peer_missing",
                    "nrfutil not found",
                    "run scripts/install-peers or pass --nrfutil",
                ));
            }
            None
        }
    };
    let d = median(ours);
    let r = SerialResult {
        image_bytes: len,
        runs: a.runs,
        dfukit_s: d,
        nrfutil_s: theirs,
        nrfutil_fixed_wait_s: NRFUTIL_PORT_WAIT_S,
        ratio: theirs.map(|t| t / d),
        dfukit_kb_s: len as f64 / 1000.0 / d,
        board_cpu_ms_per_mib: median(cpu),
    };
    if a.json {
        println!("{}", serde_json::to_string(&r).expect("serializes"));
    } else {
        println!(
            "Secure DFU over a pty, {} KiB application, flash timing off, median of {} runs",
            a.size_kib, a.runs
        );
        println!(
            "  dfukit host:  {:.3} s ({:.0} kB/s)",
            r.dfukit_s, r.dfukit_kb_s
        );
        match (r.nrfutil_s, r.ratio) {
            (Some(t), Some(ratio)) => {
                println!("  nrfutil host: {t:.3} s (of which ~{NRFUTIL_PORT_WAIT_S:.1} s is its USB-device poll before opening the port)");
                println!(
                    "  ratio nrfutil/dfukit: {ratio:.1}x (excluding nrfutil's port poll: {:.1}x)",
                    (t - NRFUTIL_PORT_WAIT_S).max(0.0) / r.dfukit_s
                );
            }
            _ => println!("  nrfutil: not found (pass --nrfutil)"),
        }
        println!(
            "  simulated board CPU: {:.1} ms per MiB received",
            r.board_cpu_ms_per_mib
        );
    }
    Ok(())
}

fn board_state(mut b: Nrf52840) -> dfukit_sim::nrf52840::Inspection {
    b.inspect()
}

fn check_installed(ins: &dfukit_sim::nrf52840::Inspection, len: usize) -> Result<(), Diag> {
    if ins.app_valid && ins.app_size as usize == len {
        Ok(())
    } else {
        Err(Diag::new(
            "dfukit::bench::failed",
            format!("the board does not hold the benchmark image: {ins:?}"),
            "a benchmark run failed; rerun with fewer runs to see the error",
        ))
    }
}

fn run_nrfutil(nrfutil: &Path, pkg: &Path, port: &Path) -> Result<f64, Diag> {
    let mut cmd = Command::new(nrfutil);
    cmd.args(["dfu", "serial", "-pkg"])
        .arg(pkg)
        .arg("-p")
        .arg(port)
        .args(["-t", "1", "-fc", "0"]);
    timed(cmd, "nrfutil")
}

/// Runs a host process to completion and returns its wall time.
fn timed(mut cmd: Command, who: &str) -> Result<f64, Diag> {
    let start = Instant::now();
    let out = cmd.output().map_err(|e| {
        Diag::new(
            "dfukit::bench::peer",
            format!("cannot run {who}: {e}"),
            "run scripts/install-peers, or pass --nrfutil",
        )
    })?;
    let t = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(Diag::new(
            "dfukit::bench::failed",
            format!(
                "{who} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            "a host could not flash the simulated board",
        ));
    }
    Ok(t)
}

/// A fresh simulated STM32F4 (flash timing off) exported on a loopback port.
fn usb_board() -> Result<
    (
        dfukit_usbip::Server,
        std::sync::Arc<std::sync::Mutex<dfukit_sim::stm32f4::Stm32f4>>,
    ),
    Diag,
> {
    use dfukit_sim::stm32f4::{Stm32f4, Stm32f4Config};
    let board = std::sync::Arc::new(std::sync::Mutex::new(Stm32f4::in_memory(Stm32f4Config {
        flash_timing: false,
        ..Stm32f4Config::default()
    })));
    let server = super::sim::serve_usbip("127.0.0.1:0", board.clone())?;
    Ok((server, board))
}

fn usb(a: UsbBench) -> Result<(), Diag> {
    let dir = tempfile::tempdir().map_err(diag)?;
    let len = a.size_kib * 1024;
    if len > 1 << 20 {
        return Err(Diag::new(
            "dfukit::bench::size",
            "the STM32F4 has 1024 KiB of flash",
            "use --size-kib 1024 or less",
        ));
    }
    let fw = dfukit_sim::synthetic::firmware(len, 0x5EED);
    let bin = dir.path().join("fw.bin");
    std::fs::write(&bin, &fw).map_err(diag)?;
    let up = dir.path().join("up.bin");
    let me = std::env::current_exe().map_err(diag)?;
    let shim = super::usb::shim_dir()?;
    let addr = format!("0x08000000:{len}");
    let check = |board: &std::sync::Arc<std::sync::Mutex<dfukit_sim::stm32f4::Stm32f4>>,
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
    if a.json {
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

fn usb_flash(a: UsbFlashBench) -> Result<(), Diag> {
    use dfukit_sim::stm32f4::{Stm32f4, Stm32f4Config};
    use dfukit_sim::usb_link::{SimUsb, UsbLinkModel};
    use dfukit_stm32mp::connect::Connector;
    use dfukit_usbdfu::dfuse::MemoryLayout;
    use dfukit_usbdfu::host::{DfuHost, Options};
    let len = a.size_kib * 1024;
    if len > 1 << 20 {
        return Err(Diag::new(
            "dfukit::bench::size",
            "the STM32F4 has 1024 KiB of flash",
            "use --size-kib 1024 or less",
        ));
    }
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
    let mut host = DfuHost::new(t, 0, cfg.descriptor(), Options::default());
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
    if a.json {
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
