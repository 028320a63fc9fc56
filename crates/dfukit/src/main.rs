//! dfukit: get firmware onto devices without bricking them.

mod cli;

use clap::{Parser, Subcommand};

/// Firmware update toolkit: Nordic Secure DFU host, simulated boards, diagnostics.
#[derive(Parser)]
#[command(name = "dfukit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main workflows on built-in simulated boards and print a summary.
    Demo(cli::demo::DemoArgs),
    /// Measure dfukit against the peer tools on simulated boards.
    Bench(cli::bench::BenchArgs),
    /// Nordic nRF5 Secure DFU: keys, packages, settings, updates.
    Nordic {
        #[command(subcommand)]
        command: cli::NordicCommand,
    },
    /// STM32MP1: flashlayouts, STM32 image headers, SD-card images.
    Stm32mp {
        #[command(subcommand)]
        command: cli::stm32mp::Stm32mpCommand,
    },
    /// USB DFU 1.1 and ST DfuSe.
    Usb {
        #[command(subcommand)]
        command: cli::usb::UsbCommand,
    },
    /// Simulated boards.
    Sim {
        #[command(subcommand)]
        command: cli::sim::SimCommand,
    },
}

fn main() -> miette::Result<()> {
    let cli = Cli::parse();
    // Output piped into `head` ends quietly, as with other Unix tools,
    // instead of panicking on a broken pipe. Not for the simulated boards:
    // they are servers, and must outlive whoever stopped reading their
    // stdout after the first line.
    if !matches!(cli.command, Command::Sim { .. }) {
        // SAFETY: restoring the default action of a signal before any thread starts.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    match cli.command {
        Command::Demo(a) => cli::demo::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Nordic { command } => cli::run_nordic(command),
        Command::Sim { command } => cli::sim::run(command),
        Command::Usb { command } => cli::usb::run(command),
        Command::Stm32mp { command } => cli::stm32mp::run(command),
    }
}
