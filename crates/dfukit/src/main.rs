//! dfukit: get firmware onto devices without bricking them.

mod cmd;
mod util;

use clap::{CommandFactory, Parser, Subcommand};

/// Firmware update toolkit: Nordic Secure DFU host, simulated boards, diagnostics.
#[derive(Parser)]
#[command(name = "dfukit", version, about)]
struct Cli {
    /// Report as JSON lines on stdout (one object per event, progress every
    /// few seconds, the error last), for scripts and production lines.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main workflows on built-in simulated boards and print a summary.
    Demo(cmd::demo::DemoArgs),
    /// Measure dfukit against the peer tools on simulated boards.
    Bench(cmd::bench::BenchArgs),
    /// Nordic nRF5 Secure DFU: keys, packages, settings, updates.
    Nordic {
        #[command(subcommand)]
        command: cmd::nordic::NordicCommand,
    },
    /// STM32MP1: flashlayouts, STM32 image headers, SD-card images.
    Stm32mp {
        #[command(subcommand)]
        command: cmd::stm32mp::Stm32mpCommand,
    },
    /// USB DFU 1.1 and ST DfuSe.
    Usb {
        #[command(subcommand)]
        command: cmd::usb::UsbCommand,
    },
    /// Simulated boards.
    Sim {
        #[command(subcommand)]
        command: cmd::sim::SimCommand,
    },
    /// Print a shell completion script (`dfukit completions bash > ~/.local/share/bash-completion/completions/dfukit`).
    Completions(cmd::docs::CompletionsArgs),
    /// Print the man page, or write one page per command with --out-dir.
    Man(cmd::docs::ManArgs),
}

fn main() -> miette::Result<()> {
    let cli = Cli::parse_from(cmd::nordic::nrfutil_argv(std::env::args_os().collect()));
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
    util::progress::init(cli.json);
    // In a log or a pipe an error stays one line per sentence, so that grep
    // finds it; a terminal gets miette's wrapping to its width.
    let wrap = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(wrap).build())
    }));
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Nordic { command } => cmd::nordic::run(command),
        Command::Sim { command } => cmd::sim::run(command),
        Command::Usb { command } => cmd::usb::run(command),
        Command::Stm32mp { command } => cmd::stm32mp::run(command),
        Command::Completions(a) => cmd::docs::completions(a, Cli::command()),
        Command::Man(a) => cmd::docs::man(a, Cli::command()),
    };
    if let Err(report) = &result {
        let help = report.help().map(|h| h.to_string());
        let code = report.code().map(|c| c.to_string()).unwrap_or_default();
        util::progress::json_error(&code, &report.to_string(), help.as_deref());
    }
    result
}
