//! `dfukit nordic dfu serial`: update a device over a serial port.

use crate::util::diag::Diag;
use crate::util::keys::public_key_hex;
use crate::util::nordic::{open_package, update_serial, SerialUpdate};
use crate::util::num;
use clap::{Args, Subcommand};
use dfukit_nordic::host::UpdateOptions;
use dfukit_nordic::package::Package;
use std::path::PathBuf;
use std::time::Duration;

/// `dfukit nordic dfu ...`
#[derive(Subcommand)]
pub enum DfuCommand {
    /// Update over a serial port (UART, USB CDC, or a simulated board's pty).
    Serial(SerialArgs),
    /// Update over Bluetooth LE: a real device through this machine's
    /// adapter (BlueZ), or `--sim` a simulated nRF52840 over the BLE link
    /// model in virtual time.
    Ble(BleArgs),
}

/// Options of `dfu ble`.
#[derive(Args, Clone)]
pub struct BleArgs {
    /// The update package (.zip).
    #[arg(long = "package", short = 'p', visible_alias = "pkg")]
    pub package: PathBuf,
    /// The device's Bluetooth address (AA:BB:CC:DD:EE:FF): the bootloader,
    /// or with --buttonless the application.
    #[arg(long, short = 'a', required_unless_present = "sim")]
    pub address: Option<String>,
    /// Enter the bootloader through the buttonless service (8EC90003)
    /// first; the bootloader is then looked for at the same address and at
    /// address + 1 (unbonded buttonless DFU).
    #[arg(long)]
    pub buttonless: bool,
    /// Packet receipt notification interval (the flow-control window).
    #[arg(long, default_value_t = 12)]
    pub prn: u16,
    /// ATT MTU to size Packet writes by (BlueZ negotiates it; the nRF5
    /// SDK's bootloader accepts 247).
    #[arg(long, default_value_t = 247)]
    pub mtu: u16,
    /// Seconds to scan for the device.
    #[arg(long, default_value = "10", value_parser = num::seconds)]
    pub scan: Duration,
    /// Seconds to wait for each response.
    #[arg(long, default_value = "5", value_parser = num::seconds)]
    pub timeout: Duration,
    /// Run against a simulated nRF52840 (bank 1 on QSPI) over the BLE link
    /// model, in virtual time, instead of a radio.
    #[arg(long, conflicts_with_all = ["address", "buttonless"])]
    pub sim: bool,
    /// With --sim: the key the simulated bootloader trusts (private or
    /// public PEM); without it, it accepts unsigned packages.
    #[arg(long, requires = "sim")]
    pub public_key: Option<PathBuf>,
}

/// Options of `dfu serial`. nrfutil 6's spellings work too: `-pkg FILE`, `-p PORT`,
/// `-b BAUD`, `-fc 0|1`, `-prn N`, `-t SECONDS` and their long forms (see
/// [`nrfutil_argv`] for the single-dash ones).
#[derive(Args, Clone, Debug)]
pub struct SerialArgs {
    /// The update package (.zip from `dfukit nordic pkg generate` or nrfutil); nrfutil's
    /// `-pkg` is taken too.
    #[arg(long = "package", visible_alias = "pkg")]
    pub package: PathBuf,
    /// The serial port, e.g. /dev/ttyACM0 or the pty a simulated board printed.
    #[arg(
        long,
        short = 'p',
        visible_alias = "port-name",
        required_unless_present = "serial_number"
    )]
    pub port: Option<PathBuf>,
    /// Find the port by its USB serial number (nrfutil's `-snr`) instead of --port.
    #[arg(long, conflicts_with = "port")]
    pub serial_number: Option<String>,
    /// Seconds to wait after opening the port before the first request
    /// (nrfutil's `-cd`).
    #[arg(long, value_parser = num::seconds)]
    pub connect_delay: Option<Duration>,
    /// Packet receipt notification interval (0: CRC checked once per object).
    #[arg(
        long,
        visible_alias = "packet-receipt-notification",
        default_value_t = 0
    )]
    pub prn: u16,
    /// Baud rate (ignored by USB CDC and ptys).
    #[arg(
        long,
        short = 'b',
        visible_alias = "baud-rate",
        default_value = "115200",
        value_parser = num::baud
    )]
    pub baud: u32,
    /// RTS/CTS hardware flow control, as nrfutil's `-fc`: 0 (the default) or 1
    /// (a UART bootloader built with NRF_DFU_SERIAL_UART_USES_HWFC=1).
    #[arg(long, value_parser = parse_click_bool, default_value = "0", action = clap::ArgAction::Set)]
    pub flow_control: bool,
    /// Seconds to wait for each response.
    #[arg(long, short = 't', default_value = "5", value_parser = num::seconds)]
    pub timeout: Duration,
}

/// A boolean as nrfutil's click options take it (`-fc 1`, `-fc false`, ...).
fn parse_click_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Ok(false),
        _ => Err(format!("{s} is not a boolean (use 0 or 1)")),
    }
}

/// nrfutil 6's single-dash long options of `dfu serial` and the long options they mean.
const NRFUTIL_SERIAL_OPTIONS: [(&str, &str); 5] = [
    ("-pkg", "--package"),
    ("-fc", "--flow-control"),
    ("-prn", "--prn"),
    ("-cd", "--connect-delay"),
    ("-snr", "--serial-number"),
];

/// Rewrites nrfutil 6's single-dash long options (`-pkg`, `-fc`, `-prn`, `-cd`, `-snr`) after
/// `nordic dfu serial` into their long forms, so `nrfutil dfu serial` command lines
/// run unchanged. clap has no multi-letter short options, and reads `-pkg` as `-p kg`;
/// this runs before clap parses, touches only the arguments of that subcommand, and
/// stops at `--`. An option's value (`-p -pkg`) is not an option and is left alone.
pub fn nrfutil_argv(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(at) = args
        .windows(3)
        .position(|w| w[0] == "nordic" && w[1] == "dfu" && w[2] == "serial")
    else {
        return args;
    };
    let mut out = args;
    let mut value_next = false;
    for arg in &mut out[at + 3..] {
        if arg == "--" {
            break;
        }
        if value_next {
            value_next = false;
            continue;
        }
        if let Some((_, long)) = NRFUTIL_SERIAL_OPTIONS.iter().find(|(n, _)| arg == *n) {
            *arg = (*long).into();
            value_next = true;
        } else {
            // Every option of `dfu serial` but --help takes a value.
            let s = arg.to_string_lossy();
            value_next =
                s.starts_with('-') && s.len() > 1 && !s.contains('=') && s != "--help" && s != "-h";
        }
    }
    out
}

impl SerialArgs {
    fn to_update(&self, port: PathBuf) -> SerialUpdate {
        SerialUpdate {
            package: self.package.clone(),
            port,
            prn: self.prn,
            baud: self.baud,
            timeout: self.timeout,
            rts_cts: self.flow_control,
            connect_delay: self.connect_delay.unwrap_or_default(),
        }
    }

    /// The port given, or the one whose USB serial number was given.
    fn port(&self) -> Result<PathBuf, Diag> {
        let Some(snr) = &self.serial_number else {
            return Ok(self
                .port
                .clone()
                .expect("clap requires --port without --serial-number"));
        };
        let ports = dfukit_transport::serial::ports();
        by_serial_number(snr, &ports)
    }
}

/// The port among `ports` (path, USB serial number) whose serial number is
/// `snr`; nrfutil's `-snr` compares without case and ignores leading zeros
/// (J-Link numbers print as 000683...).
fn by_serial_number(snr: &str, ports: &[(String, Option<String>)]) -> Result<PathBuf, Diag> {
    let norm = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
    if let Some((path, _)) = ports
        .iter()
        .find(|(_, n)| n.as_deref().is_some_and(|n| norm(n) == norm(snr)))
    {
        return Ok(path.into());
    }
    let seen: Vec<String> = ports
        .iter()
        .map(|(p, n)| format!("{p} (serial number {})", n.as_deref().unwrap_or("none")))
        .collect();
    Err(Diag::new(
        "dfukit::nordic::dfu::serial_number",
        format!(
            "no serial port has USB serial number {snr}; ports seen: {}",
            if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
        ),
        "check the number (nrfutil device list, or `udevadm info /dev/ttyACM0 | grep SERIAL`), or give the port with --port",
    ))
}

/// Runs a `dfu` subcommand.
pub fn run(cmd: DfuCommand) -> miette::Result<()> {
    match cmd {
        DfuCommand::Serial(a) => Ok(serial(&a)?),
        DfuCommand::Ble(a) => Ok(ble(&a)?),
    }
}

/// Runs `dfu serial`: the package is checked and its warnings printed before the
/// port is opened.
pub fn serial(a: &SerialArgs) -> Result<(), Diag> {
    let pkg = open_package(&a.package)?;
    super::print_warnings(&pkg.warnings());
    let port = a.port()?;
    update_serial(&a.to_update(port)).map(|_| ())
}

/// Runs `dfu ble`.
pub fn ble(a: &BleArgs) -> Result<(), Diag> {
    let pkg = open_package(&a.package)?;
    super::print_warnings(&pkg.warnings());
    let opts = UpdateOptions {
        prn: a.prn,
        response_timeout: a.timeout,
        ..UpdateOptions::default()
    };
    if a.sim {
        let key = a.public_key.as_deref().map(public_key_hex).transpose()?;
        return super::ble_sim::run(&pkg, &a.package, &opts, key);
    }
    let address = a.address.as_deref().unwrap_or_default();
    ble_radio(a, address, &pkg, &opts)
}

#[cfg(feature = "ble")]
fn ble_radio(a: &BleArgs, address: &str, pkg: &Package, opts: &UpdateOptions) -> Result<(), Diag> {
    use crate::util::nordic::{image_label, reconnected, resets_device, send_image};
    use dfukit_transport::ble::{next_address, BleError, BleLink};
    let scan = a.scan;
    let diag = |e: BleError| {
        let help = match &e {
            BleError::NoAdapter(_) => "this machine needs a Bluetooth adapter and BlueZ (bluetoothd) running; check `bluetoothctl show`",
            BleError::BadAddress(_) => "give the address as six hex bytes separated by colons, e.g. C0:11:22:33:44:55",
            BleError::NotFound { .. } => "check that the device advertises (in the bootloader, or its application with --buttonless) and is in range; `bluetoothctl scan on` lists what the adapter sees",
            BleError::NoDfu { .. } => "the device does not run a Secure DFU bootloader (service 0xFE59); with an application running, use --buttonless",
            BleError::Refused { .. } => "the application's buttonless service refused (it may require a bond); put the device into its bootloader another way and run without --buttonless",
            BleError::Ble(_) | BleError::Runtime(_) => "check the adapter and BlueZ, then run again",
        };
        Diag::new("dfukit::nordic::dfu::ble", e.to_string(), help)
    };
    if a.buttonless {
        BleLink::enter_bootloader(address, scan).map_err(diag)?;
    }
    // An unbonded buttonless bootloader advertises at address + 1, a bonded
    // one (or one entered otherwise) at the address itself.
    let next = next_address(address).map_err(diag)?;
    let candidates: Vec<&str> = if a.buttonless {
        vec![next.as_str(), address]
    } else {
        vec![address, next.as_str()]
    };
    let open = || -> Result<BleLink, Diag> {
        let mut last = None;
        for addr in &candidates {
            match BleLink::connect(addr, scan, a.mtu) {
                Ok(l) => return Ok(l),
                Err(e @ BleError::NotFound { .. }) => last = Some(e),
                Err(e) => return Err(diag(e)),
            }
        }
        Err(diag(last.expect("at least one address")))
    };
    // The device resets after each image (SoftDevice and bootloader, then
    // the app): every image gets a new connection.
    let count = pkg.images.len();
    for (i, img) in pkg.images.iter().enumerate() {
        let reset_at = std::time::Instant::now();
        let mut link = open()?;
        if i > 0 && resets_device(pkg.images[i - 1].kind) {
            reconnected(reset_at.elapsed());
        }
        let label = image_label(img.kind, i, count);
        send_image(&mut link, opts, img, &a.package, &label, (i, count))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        nordic: Top,
    }

    #[derive(Subcommand)]
    enum Top {
        Nordic {
            #[command(subcommand)]
            dfu: Dfu,
        },
    }

    #[derive(Subcommand)]
    enum Dfu {
        Dfu {
            #[command(subcommand)]
            command: DfuCommand,
        },
    }

    fn parse(line: &str) -> SerialArgs {
        let argv = nrfutil_argv(line.split(' ').map(Into::into).collect());
        let Top::Nordic {
            dfu: Dfu::Dfu { command },
        } = Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .nordic;
        match command {
            DfuCommand::Serial(a) => a,
            DfuCommand::Ble(_) => panic!("{line}"),
        }
    }

    /// nrfutil's spellings and dfukit's parse to the same options.
    #[test]
    fn nrfutil_spellings_parse_to_the_same_options() {
        let lines = [
            "t nordic dfu serial --package a.zip --port /dev/ttyACM0 --baud 1000000 --prn 8 --flow-control 0 --timeout 1",
            "t nordic dfu serial -pkg a.zip -p /dev/ttyACM0 -b 1000000 -prn 8 -fc 0 -t 1",
            "t nordic dfu serial --pkg a.zip --port-name /dev/ttyACM0 --baud-rate 1000000 --packet-receipt-notification 8 -t 1",
            "t nordic dfu serial -fc false -prn 8 -b 1000000 -t 1 -pkg a.zip --port=/dev/ttyACM0 -cd 1",
            "t nordic dfu serial -pkg a.zip -p /dev/ttyACM0 -b 1000000 -prn 8 -fc 0 -t 1 --connect-delay 1",
        ];
        for line in lines {
            let a = parse(line);
            let got = (
                a.package,
                a.port.unwrap(),
                a.baud,
                a.prn,
                a.flow_control,
                a.timeout,
            );
            let want = (
                "a.zip".into(),
                "/dev/ttyACM0".into(),
                1_000_000,
                8,
                false,
                std::time::Duration::from_secs(1),
            );
            assert_eq!(got, want, "{line}");
        }
        assert!(parse("t nordic dfu serial -pkg a.zip -p x -fc 1").flow_control);
        let a = parse("t nordic dfu serial -pkg a.zip -snr 683123456 -cd 1.5");
        assert_eq!(a.serial_number.as_deref(), Some("683123456"));
        assert_eq!(a.port, None);
        assert_eq!(
            a.connect_delay,
            Some(std::time::Duration::from_millis(1500))
        );
        let argv = nrfutil_argv(
            "t nordic dfu serial -pkg a.zip -snr 1 -p x"
                .split(' ')
                .map(Into::into)
                .collect(),
        );
        assert!(Cli::try_parse_from(argv).is_err(), "-snr with -p");
        // A value that looks like an nrfutil option is a value; other commands are untouched.
        let argv = |l: &str| -> Vec<std::ffi::OsString> { l.split(' ').map(Into::into).collect() };
        for line in [
            "t nordic dfu serial -t -snr",
            "t nordic dfu serial -t -pkg",
            "t nordic pkg display -pkg",
            "t nordic dfu serial -- -pkg",
        ] {
            assert_eq!(nrfutil_argv(argv(line)), argv(line), "{line}");
        }
    }

    /// -snr finds the port with that USB serial number (leading zeros and
    /// case aside), and names the ports seen when none has it.
    #[test]
    fn serial_number_finds_the_port_or_lists_the_ports_seen() {
        let ports = vec![
            ("/dev/ttyS0".to_string(), None),
            ("/dev/ttyACM1".to_string(), Some("000683ABC".to_string())),
        ];
        let got = by_serial_number("683abc", &ports).unwrap();
        assert_eq!(got, PathBuf::from("/dev/ttyACM1"));
        let e = by_serial_number("999", &ports).unwrap_err().to_string();
        for needle in [
            "999",
            "/dev/ttyS0 (serial number none)",
            "/dev/ttyACM1 (serial number 000683ABC)",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}

#[cfg(not(feature = "ble"))]
fn ble_radio(_: &BleArgs, _: &str, _: &Package, _: &UpdateOptions) -> Result<(), Diag> {
    Err(Diag::new(
        "dfukit::nordic::dfu::ble",
        "this dfukit was built without Bluetooth support",
        "build with the default features (`cargo build --release`), which include `ble`",
    ))
}
