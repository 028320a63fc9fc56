//! Shell completions and man pages, generated from the same clap
//! definitions that parse the command line, so they never drift from it.

use crate::util::diag::Diag;
use clap::Args;
use clap_complete::Shell;
use std::path::PathBuf;

/// Options of `completions`.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// Options of `man`.
#[derive(Args)]
pub struct ManArgs {
    /// Write one page per command (`dfukit.1`, `dfukit-usb-download.1`, ...)
    /// into this directory instead of printing the top page.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Prints the completion script for `a.shell` on stdout
/// (`dfukit completions bash > /etc/bash_completion.d/dfukit`).
pub fn completions(a: CompletionsArgs, mut cli: clap::Command) -> miette::Result<()> {
    clap_complete::generate(a.shell, &mut cli, "dfukit", &mut std::io::stdout());
    Ok(())
}

/// Prints the top man page, or writes every page into `--out-dir`.
pub fn man(a: ManArgs, cli: clap::Command) -> miette::Result<()> {
    match a.out_dir {
        None => clap_mangen::Man::new(cli)
            .render(&mut std::io::stdout())
            .map_err(|e| {
                Diag::new(
                    "dfukit::man::write",
                    format!("cannot write the man page: {e}"),
                    "check stdout",
                )
                .into()
            }),
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Diag::new(
                    "dfukit::man::write",
                    format!("cannot create {}: {e}", dir.display()),
                    "choose a writeable directory",
                )
            })?;
            clap_mangen::generate_to(cli, &dir).map_err(|e| {
                Diag::new(
                    "dfukit::man::write",
                    format!("cannot write the man pages into {}: {e}", dir.display()),
                    "choose a writeable directory",
                )
            })?;
            eprintln!("man pages written to {}", dir.display());
            Ok(())
        }
    }
}
