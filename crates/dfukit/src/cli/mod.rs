//! Command-line front ends over the libraries.

pub mod bench;
pub mod bench_ble;
pub mod bench_stm32mp;
#[cfg(feature = "ble")]
pub mod ble;
pub mod ble_sim;
pub mod demo;
pub mod dfu;
pub mod diag;
pub mod nordic_pkg;
pub mod progress;
pub mod sim;
pub mod stm32mp;
pub mod stm32mp_flash;
pub mod usb;

use clap::Subcommand;

/// `dfukit nordic ...`
#[derive(Subcommand)]
pub enum NordicCommand {
    /// Signing keys: generate, display (nrfutil-compatible).
    Keys {
        #[command(subcommand)]
        command: nordic_pkg::KeysCommand,
    },
    /// Update packages: generate, display (nrfutil-compatible).
    Pkg {
        #[command(subcommand)]
        command: nordic_pkg::PkgCommand,
    },
    /// Bootloader settings page: generate (nrfutil-compatible).
    Settings {
        #[command(subcommand)]
        command: nordic_pkg::SettingsCommand,
    },
    /// Perform an update.
    Dfu {
        #[command(subcommand)]
        command: dfu::DfuCommand,
    },
}

/// Runs a `nordic` subcommand.
pub fn run_nordic(cmd: NordicCommand) -> miette::Result<()> {
    match cmd {
        NordicCommand::Keys { command } => nordic_pkg::run_keys(command),
        NordicCommand::Pkg { command } => nordic_pkg::run_pkg(command),
        NordicCommand::Settings { command } => nordic_pkg::run_settings(command),
        NordicCommand::Dfu { command } => dfu::run(command),
    }
}
