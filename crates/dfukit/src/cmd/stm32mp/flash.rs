//! `dfukit stm32mp flash`: the STM32CubeProgrammer TSV flashing job over
//! USB/IP or local USB, with progress, a summary table and, when the board
//! stops answering, a bounded diagnosis.

use crate::util::diag::Diag;
use crate::util::num;
use crate::util::stm32mp::{bus_report, flash, LayoutArgs};
use clap::Args;
use dfukit_stm32mp::program::ProgramOptions;
use dfukit_transport::stm32mp::UsbConnector;
use std::time::Duration;

/// Options of `stm32mp flash`.
#[derive(Args)]
pub struct FlashArgs {
    /// The flashlayout; binaries are found relative to it.
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// USB/IP server HOST[:PORT] the board is exported on (a simulated
    /// board from `dfukit sim stm32mp1`, or usbipd); without it, local USB.
    #[arg(long, env = "DFUKIT_USBIP")]
    pub usbip: Option<String>,
    /// Serial number of the board, when several are connected.
    #[arg(short = 'S', long)]
    pub serial: Option<String>,
    /// Seconds to wait for the board to appear at the start.
    #[arg(long, default_value = "5", value_parser = num::seconds)]
    pub connect_timeout: Duration,
    /// Seconds one control transfer may take.
    #[arg(long, default_value = "2", value_parser = num::seconds)]
    pub transfer_timeout: Duration,
    /// Seconds TF-A may take to answer after the ROM code starts it.
    #[arg(long, default_value = "10", value_parser = num::seconds)]
    pub tfa_timeout: Duration,
    /// Seconds U-Boot may take to come back on USB after a DETACH.
    #[arg(long, default_value = "15", value_parser = num::seconds)]
    pub reenumerate_timeout: Duration,
}

/// Runs `stm32mp flash`.
pub fn run(a: &FlashArgs) -> Result<(), Diag> {
    let opts = ProgramOptions {
        connect_timeout: a.connect_timeout,
        transfer_timeout: a.transfer_timeout,
        tfa_timeout: a.tfa_timeout,
        reenumerate_timeout: a.reenumerate_timeout,
    };
    let mut conn = UsbConnector::new(a.usbip.clone(), a.serial.clone());
    flash(&mut conn, &a.layout, &opts)
        .map(|_| ())
        .map_err(|d| with_bus(d, a.usbip.as_deref()))
}

/// Without the board, says what is there instead (another DFU device, an
/// empty bus) before the causes: boot pins, cable, reset, then
/// permissions. A bus that cannot even be listed is not a permission
/// problem on the board: that gets its own code and help.
fn with_bus(mut d: Diag, usbip: Option<&str>) -> Diag {
    let no_board = d.code == "dfukit::stm32mp::no_device";
    if !no_board && d.code != "dfukit::stm32mp::connect" {
        return d;
    }
    match bus_report(usbip) {
        Ok(seen) => {
            d.message.push('\n');
            d.message.push_str(&seen);
        }
        Err(_) if no_board => {}
        Err(_) => {
            d.code = "dfukit::stm32mp::no_bus";
            d.help = Some(match usbip {
                Some(_) => "start the USB/IP server (`dfukit sim stm32mp1 --usbip HOST:PORT`, or usbipd with the board bound), or fix --usbip / DFUKIT_USBIP".into(),
                None => "this machine's USB is not visible here (no /sys/bus/usb: a container without the USB bus passed through?): run on the host, or export the board over USB/IP and give --usbip".into(),
            });
        }
    }
    d
}
