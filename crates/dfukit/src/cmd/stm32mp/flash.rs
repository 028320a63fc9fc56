//! `dfukit stm32mp flash`: the STM32CubeProgrammer TSV flashing job over
//! USB/IP or local USB, with progress, a summary table and, when the board
//! stops answering, a bounded diagnosis.

use crate::util::diag::Diag;
use crate::util::num;
use crate::util::stm32mp::flash;
use clap::Args;
use dfukit_stm32mp::program::ProgramOptions;
use dfukit_transport::stm32mp::UsbConnector;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `stm32mp flash`.
#[derive(Args)]
pub struct FlashArgs {
    /// The flashlayout (.tsv); binaries are found relative to it.
    pub layout: PathBuf,
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
    flash(&mut conn, &a.layout, &opts).map(|_| ())
}
