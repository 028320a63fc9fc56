//! Command-line front ends over the libraries.

pub mod bench;
pub mod demo;
pub mod dfu;
pub mod diag;
pub mod sim;

use clap::Subcommand;

/// `dfukit nordic ...`
#[derive(Subcommand)]
pub enum NordicCommand {
    /// Perform an update.
    Dfu {
        #[command(subcommand)]
        command: dfu::DfuCommand,
    },
}

/// Runs a `nordic` subcommand.
pub fn run_nordic(cmd: NordicCommand) -> miette::Result<()> {
    match cmd {
        NordicCommand::Dfu { command } => dfu::run(command),
    }
}
