//! `dfukit bench`: figures measured against the peer tools in the same run.
//!
//! Wall time on these machines is noisy; what is reported is therefore a
//! ratio against the peer measured in the same run on the same kind of
//! board, plus the board's own CPU time per MiB received.

mod ble;
mod fixtures;
mod link_faults;
mod power_cuts;
mod serial;
mod stm32mp;
mod tamper;
mod usb;

use clap::{Args, Subcommand};

/// Options of `bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Secure DFU over a pty: dfukit's host vs nrfutil's, flash timing off.
    Serial(serial::SerialBench),
    /// DfuSe download + read-back over USB/IP: dfukit vs dfu-util through the shim.
    Usb(usb::UsbBench),
    /// DfuSe download with the STM32F4 flash timing on, in virtual time:
    /// achieved time against the flash model's bound.
    UsbFlash(usb::UsbFlashBench),
    /// STM32MP programming (ROM code, TF-A, U-Boot) of an eMMC layout with a
    /// large rootfs, in virtual time with USB high-speed and eMMC models:
    /// each phase against the models' bound.
    Stm32mp(stm32mp::Stm32mpBench),
    /// Secure DFU of the user report's image over the BLE link model (15 ms
    /// and 7.5 ms) and UART (115200, 1000000 baud) in virtual time: dfukit
    /// against the link's bound and against the phone-library baseline.
    Ble(ble::BleBench),
    /// Power cuts before and part-way through every flash operation of an
    /// update, with nested cuts during recovery, on every family's
    /// simulated board: trials, recovered, bricked, wrong image.
    PowerCuts(power_cuts::PowerCutsBench),
    /// Seeded link faults (drop, corrupt, duplicate, delay, disconnect,
    /// device reset) between dfukit's host and each transport's simulated
    /// board: completed, clean errors, silent corruption, false success.
    LinkFaults(link_faults::LinkFaultsBench),
    /// Damaged and policy-breaking updates (every bit flip of an init
    /// packet, sampled image damage, downgrades, wrong keys ...) against
    /// every family's simulated board: cases, rejected, accepted.
    Tamper(tamper::TamperBench),
}

/// Runs a benchmark.
pub fn run(a: BenchArgs) -> miette::Result<()> {
    match a.what {
        BenchWhat::Serial(s) => Ok(serial::run(s)?),
        BenchWhat::Usb(u) => Ok(usb::run(u)?),
        BenchWhat::UsbFlash(u) => Ok(usb::run_flash(u)?),
        BenchWhat::Stm32mp(m) => Ok(stm32mp::run(&m)?),
        BenchWhat::Ble(b) => Ok(ble::run(&b)?),
        BenchWhat::PowerCuts(p) => Ok(power_cuts::run(p)?),
        BenchWhat::LinkFaults(l) => Ok(link_faults::run(l)?),
        BenchWhat::Tamper(t) => Ok(tamper::run(t)?),
    }
}
