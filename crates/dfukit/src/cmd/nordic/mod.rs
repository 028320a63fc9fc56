//! `dfukit nordic ...`: keys, packages, settings pages and updates for
//! nRF5 Secure DFU.

mod ble_sim;
mod dfu;
mod pkg;

use clap::Subcommand;
pub use dfu::nrfutil_argv;

/// `dfukit nordic ...`
#[derive(Subcommand)]
pub enum NordicCommand {
    /// Signing keys: generate, display (nrfutil-compatible).
    Keys {
        #[command(subcommand)]
        command: pkg::KeysCommand,
    },
    /// Update packages: generate, display (nrfutil-compatible).
    Pkg {
        #[command(subcommand)]
        command: pkg::PkgCommand,
    },
    /// Bootloader settings page: generate (nrfutil-compatible).
    Settings {
        #[command(subcommand)]
        command: pkg::SettingsCommand,
    },
    /// Perform an update.
    Dfu {
        #[command(subcommand)]
        command: dfu::DfuCommand,
    },
}

/// Prints a package's warnings (`Package::warnings`), one line each, on stderr.
fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Runs a `nordic` subcommand.
pub fn run(cmd: NordicCommand) -> miette::Result<()> {
    match cmd {
        NordicCommand::Keys { command } => pkg::run_keys(command),
        NordicCommand::Pkg { command } => pkg::run_pkg(command),
        NordicCommand::Settings { command } => pkg::run_settings(command),
        NordicCommand::Dfu { command } => dfu::run(command),
    }
}
