//! `dfukit nordic dfu serial`: update a device over a serial port.

use crate::util::diag::Diag;
use crate::util::keys::public_key_hex;
use crate::util::nordic::{open_package, update_image, update_serial, SerialUpdate};
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

/// Options of `dfu serial`.
#[derive(Args, Clone)]
pub struct SerialArgs {
    /// The update package (.zip from `dfukit nordic pkg generate` or nrfutil).
    #[arg(long = "package", short = 'p', visible_alias = "pkg")]
    pub package: PathBuf,
    /// The serial port, e.g. /dev/ttyACM0 or the pty a simulated board printed.
    #[arg(long, visible_alias = "port-name")]
    pub port: PathBuf,
    /// Packet receipt notification interval (0: CRC checked once per object).
    #[arg(long, default_value_t = 0)]
    pub prn: u16,
    /// Baud rate (ignored by USB CDC and ptys).
    #[arg(long, short = 'b', default_value = "115200", value_parser = num::baud)]
    pub baud: u32,
    /// Seconds to wait for each response.
    #[arg(long, default_value = "5", value_parser = num::seconds)]
    pub timeout: Duration,
}

impl SerialArgs {
    fn to_update(&self) -> SerialUpdate {
        SerialUpdate {
            package: self.package.clone(),
            port: self.port.clone(),
            prn: self.prn,
            baud: self.baud,
            timeout: self.timeout,
        }
    }
}

/// Runs a `dfu` subcommand.
pub fn run(cmd: DfuCommand) -> miette::Result<()> {
    match cmd {
        DfuCommand::Serial(a) => Ok(update_serial(&a.to_update()).map(|_| ())?),
        DfuCommand::Ble(a) => Ok(ble(&a)?),
    }
}

/// Runs `dfu ble`.
pub fn ble(a: &BleArgs) -> Result<(), Diag> {
    let pkg = open_package(&a.package)?;
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
    for img in &pkg.images {
        let mut link = open()?;
        update_image(&mut link, opts, img, &a.package)?;
    }
    Ok(())
}

#[cfg(not(feature = "ble"))]
fn ble_radio(_: &BleArgs, _: &str, _: &Package, _: &UpdateOptions) -> Result<(), Diag> {
    Err(Diag::new(
        "dfukit::nordic::dfu::ble",
        "this dfukit was built without Bluetooth support",
        "build with the default features (`cargo build --release`), which include `ble`",
    ))
}
