//! `dfukit sim ...`: simulated boards reachable the way hardware is.

use crate::util::diag::Diag;
use crate::util::keys::public_key_hex;
use crate::util::serve::serve_usbip;
use clap::{Args, Subcommand, ValueEnum};
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Fault, Nrf52840};
use dfukit_sim::links::pty::{serve, Pty};
use dfukit_sim::StateDir;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `dfukit sim ...`
#[derive(Subcommand)]
pub enum SimCommand {
    /// Run a virtual nRF52840 with the Secure DFU bootloader, served on a pseudo-terminal.
    Nrf52840(Nrf52840Args),
    /// Run a virtual STM32F405 in its ROM DFU bootloader (DfuSe), exported over USB/IP.
    Stm32f4(Stm32f4Args),
    /// Run a virtual STM32MP157 in USB serial boot (ROM code, TF-A, U-Boot
    /// stm32prog), exported over USB/IP; its eMMC, SD card, NAND and NOR are
    /// image files in the state directory.
    Stm32mp1(Stm32mp1Args),
    /// Show a board's flash as its bootloader would see it.
    Inspect(InspectArgs),
}

/// Where bank 1 lives.
#[derive(Clone, Copy, ValueEnum)]
pub enum Bank1Arg {
    /// Internal flash (dual bank, single-bank fallback).
    Internal,
    /// External QSPI NOR (MX25R6435F).
    Qspi,
}

/// Options of `sim nrf52840`.
#[derive(Args)]
pub struct Nrf52840Args {
    /// Serve Secure DFU over SLIP on a new pseudo-terminal (its path is the first line of output).
    #[arg(long)]
    pub pty: bool,
    /// Directory holding the board's flash images and configuration (kept across runs).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Where bank 1 lives.
    #[arg(long, value_enum)]
    pub bank1: Option<Bank1Arg>,
    /// Key the bootloader verifies init packets with (a private or public key PEM).
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// The bootloader's hardware version.
    #[arg(long)]
    pub hw_version: Option<u32>,
    /// Complete flash operations at once instead of after their datasheet times.
    #[arg(long)]
    pub no_flash_timing: bool,
    /// Reproduce a field failure: `qspi-completions-stop=N` (the QSPI driver stops
    /// reporting completions after N operations).
    #[arg(long, value_parser = parse_fault)]
    pub fault: Option<Fault>,
    /// Seed for everything random in the board.
    #[arg(long)]
    pub seed: Option<u64>,
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    parse_named_fault(
        s,
        &[],
        &[("qspi-completions-stop", "operations", |after| {
            Fault::QspiCompletionsStop { after }
        })],
    )
}

/// A fault spelt `NAME=N`: its name, what N counts, and the fault for N.
type CountedFault<N, F> = (&'static str, &'static str, fn(N) -> F);

/// A `--fault` value: one of the `bare` names, or `NAME=N` for one of the
/// `counted` faults. An unknown value is answered with every known spelling.
fn parse_named_fault<F: Copy, N: std::str::FromStr>(
    s: &str,
    bare: &[(&str, F)],
    counted: &[CountedFault<N, F>],
) -> Result<F, String>
where
    N::Err: std::fmt::Display,
{
    match s.split_once('=') {
        None => {
            if let Some(&(_, fault)) = bare.iter().find(|(name, _)| *name == s) {
                return Ok(fault);
            }
        }
        Some((name, n)) => {
            if let Some((_, what, make)) = counted.iter().find(|(c, ..)| *c == name) {
                return n
                    .parse()
                    .map(make)
                    .map_err(|e| format!("{name} needs a number of {what}: {e}"));
            }
        }
    }
    let known: Vec<String> = bare
        .iter()
        .map(|(name, _)| name.to_string())
        .chain(counted.iter().map(|(name, ..)| format!("{name}=N")))
        .collect();
    Err(format!("unknown fault {s:?}; known: {}", known.join(", ")))
}

/// Where `sim stm32f4` and `sim stm32mp1` export their board.
#[derive(Args)]
pub struct ExportArgs {
    /// Address to export the board on (USB/IP server; the first line of
    /// output is `usbip: HOST:PORT`). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3240")]
    pub usbip: String,
}

/// Options of `sim stm32f4`.
#[derive(Args)]
pub struct Stm32f4Args {
    #[command(flatten)]
    pub export: ExportArgs,
    /// Directory holding the flash image (`flash.bin`) and option bytes (kept across runs).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Complete erases and programs at once instead of after their datasheet times.
    #[arg(long)]
    pub no_flash_timing: bool,
    /// Reproduce a field failure: `stall-after-blocks=N` or `vanish-after-blocks=N`
    /// (the device stalls, or drops off the bus, after N download blocks).
    #[arg(long, value_parser = parse_usb_fault)]
    pub fault: Option<dfukit_sim::boards::stm32f4::UsbFault>,
}

fn parse_usb_fault(s: &str) -> Result<dfukit_sim::boards::stm32f4::UsbFault, String> {
    use dfukit_sim::boards::stm32f4::UsbFault;
    let (kind, n) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KIND=N, got {s:?}"))?;
    let blocks: u32 = n
        .parse()
        .map_err(|e| format!("{kind} needs a number of blocks: {e}"))?;
    match kind {
        "stall-after-blocks" => Ok(UsbFault::StallAfterBlocks { blocks }),
        "vanish-after-blocks" => Ok(UsbFault::VanishAfterBlocks { blocks }),
        _ => Err(format!(
            "unknown fault {kind:?}; known: stall-after-blocks=N, vanish-after-blocks=N"
        )),
    }
}

/// Options of `sim stm32mp1`.
#[derive(Args)]
pub struct Stm32mp1Args {
    #[command(flatten)]
    pub export: ExportArgs,
    /// Directory holding the storage images (emmc-user.img, sdcard.img,
    /// nand.img, ...) and board.json (kept across runs).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Complete storage writes and erases at once instead of after their
    /// modelled times.
    #[arg(long)]
    pub no_flash_timing: bool,
    /// eMMC user-area size in MiB (a board with a smaller part than the
    /// layout expects).
    #[arg(long, value_parser = crate::util::stm32mp::parse_mib)]
    pub emmc_size_mib: Option<u64>,
    /// NAND blocks marked bad at the factory, e.g. `3,17`.
    #[arg(long, value_delimiter = ',')]
    pub nand_bad_blocks: Vec<u64>,
    /// Reproduce a field failure: `tfa-no-usb` (TF-A never answers USB after
    /// the ROM code starts it), `uboot-no-reconnect` (U-Boot does not come
    /// back after the flashlayout), `nand-erase-failure=N` (NAND erases fail
    /// after the first N).
    #[arg(long, value_parser = parse_mp1_fault)]
    pub fault: Option<dfukit_sim::boards::stm32mp1::Stm32mp1Fault>,
}

fn parse_mp1_fault(s: &str) -> Result<dfukit_sim::boards::stm32mp1::Stm32mp1Fault, String> {
    use dfukit_sim::boards::stm32mp1::Stm32mp1Fault;
    parse_named_fault(
        s,
        &[
            ("tfa-no-usb", Stm32mp1Fault::TfaNoUsb),
            ("uboot-no-reconnect", Stm32mp1Fault::UbootNoReconnect),
        ],
        &[("nand-erase-failure", "erases", |after| {
            Stm32mp1Fault::NandEraseFailure { after }
        })],
    )
}

/// Options of `sim inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The board's state directory.
    #[arg(long)]
    pub state: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `sim` subcommand.
pub fn run(cmd: SimCommand) -> miette::Result<()> {
    match cmd {
        SimCommand::Nrf52840(a) => Ok(nrf52840(a)?),
        SimCommand::Stm32f4(a) => Ok(stm32f4(a)?),
        SimCommand::Stm32mp1(a) => Ok(stm32mp1(a)?),
        SimCommand::Inspect(a) => Ok(inspect(a)?),
    }
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::sim::state",
        format!("board state {}: {e}", path.display()),
        "use a directory this user can write; a flash image of the wrong size means the directory belongs to another board kind: give a fresh --state",
    )
}

/// The board's state directory (`--state`, or a new temporary one kept
/// after exit) with its stored configuration, or the default.
fn open_state<C: serde::de::DeserializeOwned + Default>(
    state: Option<&Path>,
    prefix: &str,
) -> Result<(PathBuf, StateDir, C), Diag> {
    let dir = match state {
        Some(d) => d.to_path_buf(),
        None => tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| state_error(Path::new("/tmp"), e))?
            .keep(),
    };
    let st = StateDir::open(&dir).map_err(|e| state_error(&dir, e))?;
    let cfg = st
        .load_config()
        .map_err(|e| state_error(&dir, e))?
        .unwrap_or_default();
    Ok((dir, st, cfg))
}

fn nrf52840(a: Nrf52840Args) -> Result<(), Diag> {
    if !a.pty {
        return Err(Diag::new(
            "dfukit::sim::transport",
            "no transport chosen for the simulated board",
            "add --pty to serve it on a pseudo-terminal",
        ));
    }
    let (dir, state, mut cfg) = open_state::<BoardConfig>(a.state.as_deref(), "dfukit-nrf52840-")?;
    if let Some(b) = a.bank1 {
        cfg.bank1 = match b {
            Bank1Arg::Internal => Bank1::Internal,
            Bank1Arg::Qspi => Bank1::Qspi,
        };
    }
    if let Some(k) = &a.public_key {
        cfg.public_key = Some(public_key_hex(k)?);
    }
    if let Some(h) = a.hw_version {
        cfg.hw_version = h;
    }
    if a.no_flash_timing {
        cfg.flash_timing = false;
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    cfg.fault = a.fault.or(cfg.fault);
    let mut board = Nrf52840::open(&state, Some(cfg)).map_err(|e| state_error(&dir, e))?;
    let pty = Pty::open().map_err(|e| {
        Diag::new(
            "dfukit::sim::pty",
            format!("cannot open a pseudo-terminal: {e}"),
            "the machine needs /dev/ptmx and devpts mounted",
        )
    })?;
    let mut out = std::io::stdout().lock();
    // The first line is the contract: tools and tests read the path from it.
    let _ = writeln!(out, "pty: {}", pty.path().display());
    let _ = writeln!(out, "state: {}", dir.display());
    let _ = out.flush();
    drop(out);
    serve(&mut board, &pty, |_| false).map_err(|e| {
        Diag::new(
            "dfukit::sim::pty",
            format!("serving the pty failed: {e}"),
            "the board's state is kept in the state directory; start it again",
        )
    })
}

fn stm32f4(a: Stm32f4Args) -> Result<(), Diag> {
    use dfukit_sim::boards::stm32f4::{Stm32f4, Stm32f4Config};
    use std::sync::{Arc, Mutex};
    let (dir, state, mut cfg) = open_state::<Stm32f4Config>(a.state.as_deref(), "dfukit-stm32f4-")?;
    if a.no_flash_timing {
        cfg.flash_timing = false;
    }
    cfg.fault = a.fault.or(cfg.fault);
    let board = Stm32f4::open(&state, Some(cfg)).map_err(|e| state_error(&dir, e))?;
    let board = Arc::new(Mutex::new(board));
    let _server = export_usbip(&a.export.usbip, board.clone(), &dir)?;
    // After `:leave` the ROM jumps to the application and drops off the bus;
    // the board comes back as if reset with BOOT0 held, so that a host can
    // check what it wrote and a test can go on.
    let mut left_since: Option<std::time::Instant> = None;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut b = board.lock().unwrap_or_else(|p| p.into_inner());
        match (b.left_to(), left_since) {
            (Some(_), None) => left_since = Some(std::time::Instant::now()),
            (Some(_), Some(t)) if t.elapsed() > std::time::Duration::from_millis(300) => {
                b.reattach();
                left_since = None;
            }
            _ => {}
        }
    }
}

/// Exports `board` on `addr` and prints the contract lines (`usbip:
/// HOST:PORT`, `state: DIR`).
fn export_usbip<D: dfukit_usbip::UsbDevice + 'static>(
    addr: &str,
    board: std::sync::Arc<std::sync::Mutex<D>>,
    dir: &Path,
) -> Result<dfukit_usbip::Server, Diag> {
    let server = serve_usbip(addr, board)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "usbip: {}", server.local_addr());
    let _ = writeln!(out, "state: {}", dir.display());
    let _ = out.flush();
    Ok(server)
}

fn stm32mp1(a: Stm32mp1Args) -> Result<(), Diag> {
    use dfukit_sim::boards::stm32mp1::{Stm32mp1, Stm32mp1Config};
    use std::sync::{Arc, Mutex};
    let (dir, state, mut cfg) =
        open_state::<Stm32mp1Config>(a.state.as_deref(), "dfukit-stm32mp1-")?;
    if a.no_flash_timing {
        cfg.flash_timing = false;
    }
    if let (Some(mib), Some(emmc)) = (a.emmc_size_mib, cfg.emmc.as_mut()) {
        emmc.size = mib << 20;
    }
    if let (false, Some(nand)) = (a.nand_bad_blocks.is_empty(), cfg.nand.as_mut()) {
        nand.factory_bad_blocks = a.nand_bad_blocks.clone();
    }
    cfg.fault = a.fault.or(cfg.fault);
    let board = Stm32mp1::open(&state, Some(cfg)).map_err(|e| {
        Diag::new(
            "dfukit::sim::state",
            format!("cannot build the board in {}: {e}", dir.display()),
            "check the directory is writable and board.json is valid (or start with a new --state)",
        )
    })?;
    let board = Arc::new(Mutex::new(board));
    let _server = export_usbip(&a.export.usbip, board, &dir)?;
    // The board changes personality by itself (ROM → TF-A → U-Boot) on its
    // own clock; the server thread serves it until the process is killed.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn inspect(a: InspectArgs) -> Result<(), Diag> {
    if !a.state.join(dfukit_sim::state::CONFIG_FILE).exists() {
        return Err(Diag::new(
            "dfukit::sim::state",
            format!(
                "{} holds no simulated board (no board.json)",
                a.state.display()
            ),
            "pass the --state directory a `dfukit sim nrf52840 --state DIR` run used",
        ));
    }
    let state = StateDir::open(&a.state).map_err(|e| state_error(&a.state, e))?;
    let (cfg, ins) = dfukit_sim::boards::nrf52840::inspect_state(&state)
        .map_err(|e| state_error(&a.state, e))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&ins).expect("inspection serializes")
        );
    } else {
        print!("{}", dfukit_sim::boards::nrf52840::describe(&cfg, &ins));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfukit_sim::boards::stm32mp1::Stm32mp1Fault;

    /// The messages are the ones each parser wrote on its own before they
    /// shared `parse_named_fault`.
    #[test]
    fn fault_values_parse_or_name_every_known_spelling() {
        assert_eq!(
            parse_fault("qspi-completions-stop=7"),
            Ok(Fault::QspiCompletionsStop { after: 7 })
        );
        for (value, fault) in [
            ("tfa-no-usb", Stm32mp1Fault::TfaNoUsb),
            ("uboot-no-reconnect", Stm32mp1Fault::UbootNoReconnect),
            (
                "nand-erase-failure=3",
                Stm32mp1Fault::NandEraseFailure { after: 3 },
            ),
        ] {
            assert_eq!(parse_mp1_fault(value), Ok(fault));
        }
        let errors = [
            parse_fault("qspi-completions-stop=x").unwrap_err(),
            parse_fault("qspi-completions-stop").unwrap_err(),
            parse_mp1_fault("nand-erase-failure=-1").unwrap_err(),
            parse_mp1_fault("tfa-no-usb=1").unwrap_err(),
        ];
        let expected = [
            "qspi-completions-stop needs a number of operations: ",
            "unknown fault \"qspi-completions-stop\"; known: qspi-completions-stop=N",
            "nand-erase-failure needs a number of erases: ",
            "unknown fault \"tfa-no-usb=1\"; known: tfa-no-usb, uboot-no-reconnect, nand-erase-failure=N",
        ];
        for (error, start) in errors.iter().zip(expected) {
            assert!(error.starts_with(start), "{error:?}");
        }
    }
}
