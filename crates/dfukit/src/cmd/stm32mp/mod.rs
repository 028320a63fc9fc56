//! `dfukit stm32mp ...`: STM32MP1 flashlayouts, STM32 images, SD-card images.

use crate::util::diag::read_input;
mod flash;

use crate::util::diag::Diag;
use crate::util::num;
use crate::util::output::{write_output_with, Output, OutputCodes};
use crate::util::stm32mp::{load, LayoutArgs};
use clap::{Args, Subcommand};
use dfukit_stm32mp::layout::{IpKind, Layout, Offset, PartType};
use dfukit_stm32mp::{image, sdcard};
use std::path::{Path, PathBuf};

/// `dfukit stm32mp ...`
#[derive(Subcommand)]
pub enum Stm32mpCommand {
    /// Check a TSV flashlayout with U-Boot stm32prog's rules.
    Check(LayoutArgs),
    /// Decode and check an STM32 image header (TF-A, FIP wrappers, ...).
    ImageInfo {
        /// The image (.stm32).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a raw SD-card image from a flashlayout, as ST's
    /// create_sdcard_from_flashlayout.sh does.
    Sdcard(SdcardArgs),
    /// Program a board from a flashlayout, as STM32CubeProgrammer does:
    /// ROM code, TF-A, then U-Boot's stm32prog, partition by partition.
    Flash(flash::FlashArgs),
}

/// Options of `sdcard`.
#[derive(Args)]
pub struct SdcardArgs {
    /// The flashlayout; its mmc0 rows make the card.
    #[command(flatten)]
    layout: LayoutArgs,
    /// The image to write (sparse). It is written to a temporary file
    /// beside it and renamed when complete.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Card size in MiB.
    #[arg(long, default_value_t = 5120, value_parser = num::mebibytes)]
    size_mib: u64,
}

/// Runs a `stm32mp` subcommand.
pub fn run(cmd: Stm32mpCommand) -> miette::Result<()> {
    match cmd {
        Stm32mpCommand::Check(a) => Ok(check(&a).map(|_| ())?),
        Stm32mpCommand::ImageInfo { file, json } => Ok(image_info(&file, json)?),
        Stm32mpCommand::Sdcard(a) => Ok(sd(&a)?),
        Stm32mpCommand::Flash(a) => Ok(flash::run(&a)?),
    }
}

fn check(a: &LayoutArgs) -> Result<Layout, Diag> {
    let l = load(a)?;
    println!(
        "{}: {} partitions, valid",
        a.layout.display(),
        l.partitions.len()
    );
    println!(
        "{:<5} {:<5} {:<16} {:<11} {:<8} {:>12}  binary",
        "opt", "id", "name", "type", "ip", "offset"
    );
    for p in &l.partitions {
        let opt = if p.opt.skip {
            "-".to_string()
        } else {
            format!(
                "{}{}{}",
                if p.opt.program { "P" } else { "" },
                if p.opt.empty { "E" } else { "" },
                if p.opt.delete { "D" } else { "" }
            )
        };
        println!(
            "{:<5} {:<#5x} {:<16} {:<11} {:<8} {:>12}  {}",
            opt,
            p.id,
            p.name,
            p.kind.to_string(),
            p.ip.to_string(),
            p.offset.to_string(),
            p.binary
                .as_ref()
                .map_or("none".to_string(), |b| b.display().to_string())
        );
    }
    Ok(l)
}

fn image_info(path: &Path, json: bool) -> Result<(), Diag> {
    let bytes = read_input(path, "dfukit::stm32mp::image", "check the path")?;
    let info = image::inspect(&bytes).map_err(|e| {
        Diag::new(
            "dfukit::stm32mp::image",
            format!("{}: {e}", path.display()),
            "this is not an STM32 image: FSBL images need the STM32 header (made by TF-A's stm32image tool or `mkimage -T stm32image`)",
        )
    })?;
    if json {
        println!("{}", info.to_json_string());
    } else {
        println!("{}: {info}", path.display());
    }
    if !info.checksum_ok() {
        return Err(Diag::new(
            "dfukit::stm32mp::image_checksum",
            format!(
                "{}: the payload does not match the header checksum",
                path.display()
            ),
            "the image is damaged or was modified after signing: rebuild it; the ROM refuses it",
        ));
    }
    Ok(())
}

fn sd(a: &SdcardArgs) -> Result<(), Diag> {
    let l = load(&a.layout)?;
    let tsv = a.layout.layout.as_path();
    let mut parts = Vec::new();
    for p in &l.partitions {
        let on_sd =
            p.ip.kind == IpKind::Mmc && p.ip.instance == 0 && (p.opt.program || p.opt.empty);
        if !on_sd {
            continue;
        }
        let Offset::Bytes(offset) = p.offset else {
            continue;
        };
        let kind = match p.kind {
            PartType::Binary { .. } => sdcard::SdKind::Binary,
            PartType::System => sdcard::SdKind::System,
            PartType::FileSystem => sdcard::SdKind::FileSystem,
            PartType::Fip => sdcard::SdKind::Fip,
            PartType::FwuMdata => sdcard::SdKind::FwuMdata,
            PartType::Env => sdcard::SdKind::Env,
            PartType::Esp => sdcard::SdKind::Esp,
            PartType::RawImage => {
                return Err(Diag::new(
                    "dfukit::stm32mp::sdcard",
                    format!("{}:{}: a RawImage row covers the whole card; it cannot share it with partitions", tsv.display(), p.line),
                    "write a raw image with dd instead, or remove the RawImage row",
                ))
            }
        };
        parts.push(sdcard::SdPartition {
            name: p.name.clone(),
            kind,
            offset,
            program: p.opt.downloads(),
            binary: p.binary.clone(),
            bootable_legacy: sdcard::st_bootable_legacy(&p.name),
            partuuid: sdcard::st_default_partuuid(&p.name),
        });
    }
    if parts.is_empty() {
        return Err(Diag::new(
            "dfukit::stm32mp::sdcard",
            format!("{} has no selected mmc0 rows", tsv.display()),
            "an SD-card layout puts its partitions on mmc0 with P, E, PD or PED options",
        ));
    }
    let opts = sdcard::SdImageOptions {
        size_bytes: a.size_mib * 1024 * 1024,
        ..Default::default()
    };
    let mut inputs: Vec<&Path> = vec![tsv];
    inputs.extend(l.partitions.iter().filter_map(|p| p.binary.as_deref()));
    let out = Output::replacing(&OutputCodes::STM32MP, inputs);
    let summary = write_output_with(&a.output, &out, |tmp| {
        sdcard::build(&parts, &opts, tmp).map_err(|e| {
            Diag::new(
                "dfukit::stm32mp::sdcard",
                format!("{}: {e}", a.output.display()),
                "check the layout's mmc0 offsets and binaries, and the card size (--size-mib); nothing was written",
            )
        })
    })?;
    println!(
        "{}: {} MiB, {} partitions",
        a.output.display(),
        a.size_mib,
        summary.partitions.len()
    );
    for s in &summary.partitions {
        println!(
            "  {:>2} {:<16} LBA {:>9}..{:<9} {:>10} bytes written",
            s.number, s.name, s.start_lba, s.end_lba, s.bytes_written
        );
    }
    Ok(())
}
