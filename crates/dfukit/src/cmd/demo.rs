//! `dfukit demo`: the main workflows on built-in simulated boards.
//!
//! Everything crosses the same boundaries as with hardware: packages are
//! zip files on disk, boards are served on pseudo-terminals and opened as
//! serial ports, board state lives in a directory and is read back after a
//! restart.

use crate::util::diag::Diag;
use crate::util::keys::public_key_hex;
use crate::util::nordic::{update_serial, SerialUpdate};
use crate::util::serve::serve_usbip;
use crate::util::stm32mp::{flash, LayoutArgs};
use crate::util::usb::{self, AltArgs, DeviceArgs, DownloadArgs};
use clap::Args;
use dfukit_firmware as firmware;
use dfukit_nordic::package::{self, keys};
use dfukit_sim::boards::nrf52840::describe;
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Fault, Nrf52840};
use dfukit_sim::links::pty::ServedBoard;
use dfukit_sim::StateDir;
use dfukit_stm32mp::program::ProgramOptions;
use dfukit_transport::stm32mp::UsbConnector;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Keep the work files (keys, packages, board state) in this directory.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// Where the application starts on an nRF52840 with S140 7.x.
const APP_START: u32 = 0x27000;

struct Row {
    board: String,
    step: String,
    bytes: usize,
    secs: f64,
    result: String,
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> miette::Result<()> {
    let tmp;
    let dir = match a.keep {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(|e| io_diag(&d, e))?;
            d
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| io_diag(Path::new("/tmp"), e))?;
            tmp.path().to_path_buf()
        }
    };
    println!("dfukit demo: Nordic Secure DFU over serial to simulated nRF52840 boards");
    println!("work directory: {}\n", dir.display());

    let key_path = dir.join("key.pem");
    let key = keys::generate(&key_path).map_err(|e| io_diag(&key_path, e))?;
    println!("1. generated a P-256 signing key: {}", key_path.display());
    let v1 = make_package(&dir, &key, "app_v1", 96 * 1024 + 12, 1)?;
    let v2 = make_package(&dir, &key, "app_v2", 200 * 1024 + 36, 2)?;
    println!(
        "2. built signed packages {} and {}",
        v1.0.display(),
        v2.0.display()
    );

    let mut rows = Vec::new();
    for (name, bank1) in [("qspi", Bank1::Qspi), ("internal", Bank1::Internal)] {
        let state = dir.join(format!("board-{name}"));
        let cfg = BoardConfig {
            bank1,
            public_key: Some(public_key_hex(&key_path)?),
            ..BoardConfig::default()
        };
        println!(
            "\n3. board with bank 1 on {name} flash (flash timing on), state in {}",
            state.display()
        );
        for (pkg, size, what) in [(&v1.0, v1.1, "install v1"), (&v2.0, v2.1, "update to v2")] {
            let served = serve(&state, Some(cfg.clone()))?;
            println!(
                "   served on {}; {what} with `dfukit nordic dfu serial`",
                served.path().display()
            );
            let s = update_serial(&SerialUpdate::new(pkg, served.path()))?;
            // The board resets and copies the image into bank 0; stopping
            // waits for that, then the board is "unplugged".
            served.stop().map_err(|e| io_diag(&state, e))?;
            rows.push(Row {
                board: format!("nRF52840, bank 1 {name}"),
                step: what.into(),
                bytes: size,
                secs: s.elapsed.as_secs_f64(),
                result: "accepted".into(),
            });
        }
        // Power the board up again from its state directory and look.
        let (cfg, ins) = dfukit_sim::boards::nrf52840::inspect_state(
            &StateDir::open(&state).map_err(|e| io_diag(&state, e))?,
        )
        .map_err(|e| io_diag(&state, e))?;
        print!(
            "   after a restart, `dfukit sim inspect --state {}`:\n{}",
            state.display(),
            indent(&describe(&cfg, &ins))
        );
        if !(ins.app_valid && ins.app_version == 2 && ins.app_size as usize == v2.1) {
            return Err(Diag::new(
                "dfukit::demo::failed",
                format!("board {name} does not run v2: {ins:?}"),
                "this is a dfukit bug: please report it with the work directory (--keep)",
            )
            .into());
        }
    }

    // The user report: a bootloader whose QSPI driver never reports completion.
    let state = dir.join("board-qspi-broken-callback");
    println!(
        "\n4. the nRF52 user report: bank 1 on QSPI, the driver stops reporting flash completions"
    );
    let cfg = BoardConfig {
        bank1: Bank1::Qspi,
        public_key: Some(public_key_hex(&key_path)?),
        ..BoardConfig::default()
    };
    let served = serve(&state, Some(cfg.clone()))?;
    update_serial(&SerialUpdate::new(&v1.0, served.path()))?;
    served.stop().map_err(|e| io_diag(&state, e))?;
    let broken = BoardConfig {
        fault: Some(Fault::QspiCompletionsStop { after: 5 }),
        ..cfg
    };
    let served = serve(&state, Some(broken))?;
    let started = std::time::Instant::now();
    let err = update_serial(&SerialUpdate::new(&v2.0, served.path()))
        .err()
        .ok_or_else(|| {
            Diag::new(
                "dfukit::demo::failed",
                "the broken board accepted the update",
                "this is a dfukit bug",
            )
        })?;
    let waited = started.elapsed();
    served.stop().map_err(|e| io_diag(&state, e))?;
    println!(
        "   dfukit stopped after {:.1} s and reported:\n     error[{}]: {}\n     help: {}",
        waited.as_secs_f64(),
        err.code,
        err.message,
        err.help.clone().unwrap_or_default()
    );
    let (_, ins) = dfukit_sim::boards::nrf52840::inspect_state(
        &StateDir::open(&state).map_err(|e| io_diag(&state, e))?,
    )
    .map_err(|e| io_diag(&state, e))?;
    println!(
        "   the board kept its application: valid={}, version {}",
        ins.app_valid, ins.app_version
    );
    rows.push(Row {
        board: "nRF52840, QSPI callback lost".into(),
        step: "update to v2".into(),
        bytes: v2.1,
        secs: waited.as_secs_f64(),
        result: format!(
            "refused: {}",
            if err.message.contains("flash write completion not received") {
                "flash write completion not received"
            } else {
                "error"
            }
        ),
    });

    // USB DFU: the STM32F405 ROM bootloader (DfuSe) over USB/IP.
    println!(
        "\n5. STM32F405 ROM bootloader (USB DFU, DfuSe) exported over USB/IP, flash timing on"
    );
    let (server, board) = {
        use dfukit_sim::boards::stm32f4::{Stm32f4, Stm32f4Config};
        let board = std::sync::Arc::new(std::sync::Mutex::new(Stm32f4::in_memory(
            Stm32f4Config::default(),
        )));
        let server = serve_usbip("127.0.0.1:0", board.clone())?;
        (server, board)
    };
    let target = DeviceArgs {
        usbip: Some(server.local_addr().to_string()),
        device: Some("0483:df11".into()),
        serial: None,
        path: None,
    };
    println!("   `dfukit usb list --usbip {}`:", server.local_addr());
    usb::list(&target)?;
    let stm_fw = dfukit_sim::synthetic::firmware(200 * 1024, 0xF4);
    let stm_bin = dir.join("stm32f4_app.bin");
    std::fs::write(&stm_bin, &stm_fw).map_err(|e| io_diag(&stm_bin, e))?;
    println!(
        "   `dfukit usb download -a 0 -s 0x08000000:leave --verify -D {}`",
        stm_bin.display()
    );
    let started = std::time::Instant::now();
    usb::download(&DownloadArgs {
        dfu: AltArgs {
            device: target,
            alt: "0".into(),
        },
        dfuse_address: Some("0x08000000:leave".into()),
        file: stm_bin.clone(),
        verify: true,
        transfer_size: None,
        reset: false,
    })?;
    let secs = started.elapsed().as_secs_f64();
    let mut b = board.lock().unwrap_or_else(|p| p.into_inner());
    if b.flash()[..stm_fw.len()] != stm_fw[..] || b.left_to() != Some(0x0800_0000) {
        return Err(Diag::new(
            "dfukit::demo::failed",
            "the STM32F4 board does not hold the image",
            "this is a dfukit bug: please report it",
        )
        .into());
    }
    let sectors = b.flash_chip().counters().erases;
    println!("   the board holds the image byte for byte ({sectors} sectors erased) and jumped to 0x08000000");
    // Back in the ROM, as a reset with BOOT0 held brings it.
    b.reattach();
    drop(b);
    rows.push(Row {
        board: "STM32F405 ROM, USB/IP".into(),
        step: "DfuSe download".into(),
        bytes: stm_fw.len(),
        secs,
        result: "accepted".into(),
    });
    rows.push(dfu_util_readback(
        &dir,
        &server.local_addr().to_string(),
        &stm_fw,
    )?);
    server.stop();

    stm32mp1(&dir, &mut rows)?;

    println!("\nsummary");
    println!(
        "{:<30} {:<15} {:>9} {:>8} {:>10}  result",
        "board", "step", "bytes", "seconds", "kB/s"
    );
    for r in &rows {
        let rate = if r.result == "accepted" {
            format!("{:.1}", r.bytes as f64 / 1000.0 / r.secs.max(1e-9))
        } else {
            "-".into()
        };
        println!(
            "{:<30} {:<15} {:>9} {:>8.2} {:>10}  {}",
            r.board, r.step, r.bytes, r.secs, rate, r.result
        );
    }
    Ok(())
}

/// Unmodified dfu-util reads the image back through dfukit's libusb shim
/// (`dfukit usb shim-dir`), as a user of dfu-util would reach a USB/IP
/// device. Without dfu-util on this machine the row says how to get it.
fn dfu_util_readback(dir: &Path, usbip: &str, image: &[u8]) -> Result<Row, Diag> {
    let readback = dir.join("stm32f4_readback.bin");
    let shim = crate::util::shim::shim_dir()?;
    println!(
        "   `LD_LIBRARY_PATH={} DFUKIT_USBIP={usbip} dfu-util -a 0 -s 0x08000000:{} -U {}`",
        shim.display(),
        image.len(),
        readback.display()
    );
    let mut row = Row {
        board: "STM32F405 ROM, USB/IP".into(),
        step: "dfu-util upload".into(),
        bytes: image.len(),
        secs: 0.0,
        result: String::new(),
    };
    let started = std::time::Instant::now();
    let out = std::process::Command::new("dfu-util")
        .args(["-d", "0483:df11", "-a", "0", "-s"])
        .arg(format!("0x08000000:{}", image.len()))
        .arg("-U")
        .arg(&readback)
        .env("LD_LIBRARY_PATH", &shim)
        .env("DFUKIT_USBIP", usbip)
        .output();
    row.secs = started.elapsed().as_secs_f64();
    row.result = match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("   dfu-util is not installed (apt-get install dfu-util): skipped");
            "skipped: no dfu-util".into()
        }
        Err(e) => return Err(io_diag(Path::new("dfu-util"), e)),
        Ok(o) if !o.status.success() => {
            return Err(Diag::new(
                "dfukit::demo::failed",
                format!(
                    "dfu-util through the libusb shim failed:\n{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                "this is a dfukit bug: please report it with the output above",
            ))
        }
        Ok(_) => {
            let back = std::fs::read(&readback).map_err(|e| io_diag(&readback, e))?;
            if back != image {
                return Err(Diag::new(
                    "dfukit::demo::failed",
                    "dfu-util read back something else than was written",
                    "this is a dfukit bug: please report it",
                ));
            }
            println!("   dfu-util read the image back byte for byte");
            "accepted".into()
        }
    };
    Ok(row)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("     {l}\n")).collect()
}

fn io_diag(path: &Path, e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::demo::io",
        format!("{}: {e}", path.display()),
        "the demo needs a writable temporary directory and /dev/ptmx",
    )
}

fn serve(state: &Path, cfg: Option<BoardConfig>) -> Result<ServedBoard, Diag> {
    let dir = StateDir::open(state).map_err(|e| io_diag(state, e))?;
    let board = Nrf52840::open(&dir, cfg).map_err(|e| io_diag(state, e))?;
    let served = ServedBoard::spawn(board).map_err(|e| io_diag(state, e))?;
    // Give the board's thread a moment to boot before the host pings.
    std::thread::sleep(Duration::from_millis(20));
    Ok(served)
}

/// Writes deterministic firmware of `len` bytes as Intel HEX at the app
/// start, and a signed package for it. Returns the package path and the
/// image size as sent (padded to 4 bytes).
fn make_package(
    dir: &Path,
    key: &p256::ecdsa::SigningKey,
    name: &str,
    len: usize,
    version: u32,
) -> Result<(PathBuf, usize), Diag> {
    let fw = dfukit_sim::synthetic::firmware(len, 0x9E37_79B9 ^ version);
    let hex = dir.join(format!("{name}.hex"));
    std::fs::write(&hex, firmware::to_intel_hex(&[(APP_START, &fw)]))
        .map_err(|e| io_diag(&hex, e))?;
    let out = dir.join(format!("{name}.zip"));
    let opts = package::PackageOptions {
        application: Some(hex),
        application_version: Some(version),
        hw_version: Some(52),
        sd_req: Some(vec![0x0100]),
        key: Some(key.clone()),
        ..Default::default()
    };
    package::generate_to_file(&opts, &out).map_err(|e| io_diag(&out, e))?;
    Ok((out, len.div_ceil(4) * 4))
}

/// Steps 6 and 7: STM32CubeProgrammer's TSV job against the simulated
/// STM32MP157 over USB/IP, first on a board whose TF-A never answers USB
/// (the ST community report), then on a good board.
fn stm32mp1(dir: &Path, rows: &mut Vec<Row>) -> Result<(), Diag> {
    use dfukit_sim::boards::stm32mp1::{sample, Stm32mp1, Stm32mp1Config, Stm32mp1Fault};
    let work = dir.join("stm32mp1");
    std::fs::create_dir_all(&work).map_err(|e| io_diag(&work, e))?;
    let (layout, _) =
        sample::write_emmc_layout(&work, 4 << 20, 8 << 20).map_err(|e| io_diag(&work, e))?;
    let export = |name: &str, fault: Option<Stm32mp1Fault>| -> Result<_, Diag> {
        let state_dir = work.join(name);
        let state = StateDir::open(&state_dir).map_err(|e| io_diag(&state_dir, e))?;
        let cfg = Stm32mp1Config {
            fault,
            ..Stm32mp1Config::default()
        };
        let board = Stm32mp1::open(&state, Some(cfg)).map_err(|e| io_diag(&state_dir, e))?;
        let board = std::sync::Arc::new(std::sync::Mutex::new(board));
        let server = serve_usbip("127.0.0.1:0", board)?;
        Ok((server, state_dir))
    };
    let opts = ProgramOptions {
        connect_timeout: Duration::from_secs(5),
        transfer_timeout: Duration::from_secs(1),
        tfa_timeout: Duration::from_secs(3),
        reenumerate_timeout: Duration::from_secs(15),
    };
    let connector = |server: &dfukit_usbip::Server| {
        UsbConnector::new(Some(server.local_addr().to_string()), None)
    };

    println!("\n6. STM32MP157 in USB boot whose TF-A never answers after the ROM code starts it");
    println!(
        "   (the ST community report: CubeProgrammer looped on errUNKNOWN/dfuERROR for 45 minutes)"
    );
    let (server, _) = export("stm32mp1-tfa-hung", Some(Stm32mp1Fault::TfaNoUsb))?;
    println!(
        "   `dfukit stm32mp flash {} --usbip {} --tfa-timeout 3`",
        layout.display(),
        server.local_addr()
    );
    let started = std::time::Instant::now();
    let err = flash(&mut connector(&server), &LayoutArgs::at(&layout), &opts)
        .err()
        .ok_or_else(|| {
            Diag::new(
                "dfukit::demo::failed",
                "the hung board was reported programmed",
                "this is a dfukit bug",
            )
        })?;
    let waited = started.elapsed();
    server.stop();
    println!(
        "   dfukit stopped after {:.1} s and reported:\n     error[{}]: {}\n{}",
        waited.as_secs_f64(),
        err.code,
        err.message,
        indent(&format!("help: {}", err.help.clone().unwrap_or_default()))
    );
    rows.push(Row {
        board: "STM32MP157, TF-A hung".into(),
        step: "TSV flashing".into(),
        bytes: 0,
        secs: waited.as_secs_f64(),
        result: "diagnosed: TF-A silent".into(),
    });

    println!("\n7. the same layout on a good STM32MP157 (eMMC timing on)");
    let (server, state_dir) = export("stm32mp1", None)?;
    println!(
        "   `dfukit stm32mp flash {} --usbip {}`",
        layout.display(),
        server.local_addr()
    );
    let started = std::time::Instant::now();
    flash(&mut connector(&server), &LayoutArgs::at(&layout), &opts)?;
    let secs = started.elapsed().as_secs_f64();
    server.stop();
    println!(
        "   the board's storage is image files: `sfdisk -l {}/emmc-user.img` shows the GPT U-Boot wrote (keep them with `dfukit demo --keep DIR`)",
        state_dir.display()
    );
    let bytes: usize = [
        "tf-a-usb.stm32",
        "fip.bin",
        "tf-a-emmc.stm32",
        "tf-a-emmc.stm32",
        "fip.bin",
        "bootfs.ext4",
        sample::ROOTFS_FILE,
    ]
    .iter()
    .map(|f| std::fs::metadata(work.join(f)).map_or(0, |m| m.len() as usize))
    .sum();
    rows.push(Row {
        board: "STM32MP157, USB/IP".into(),
        step: "TSV flashing".into(),
        bytes,
        secs,
        result: "accepted".into(),
    });
    Ok(())
}
