//! `dfukit usb ...`: USB DFU 1.1 and ST DfuSe, with dfu-util's options. The commands on
//! files alone (`pack`, `info`, `suffix`) are in [`files`].

mod files;

use crate::util::diag::Diag;
use crate::util::num::u32_number;
use crate::util::output::{write_output, Output, OutputCodes};
use crate::util::shim::shim_dir;
use crate::util::usb::{
    bad_address, download, host_error, list, one_device, open_alt, AltArgs, DeviceArgs,
    DownloadArgs,
};
use clap::{Args, Subcommand};
use dfukit_usbdfu::host::{DfuEvent, DfuHost, DfuOptions};
use std::path::PathBuf;

/// `dfukit usb ...`
#[derive(Subcommand)]
pub enum UsbCommand {
    /// List DFU devices (as `dfu-util -l`).
    List(DeviceArgs),
    /// Write a file to a device (as `dfu-util -D`).
    Download(DownloadArgs),
    /// Read memory from a device into a file (as `dfu-util -U`).
    Upload(Upload),
    /// Ask a device to leave DFU mode (DETACH).
    Detach(DeviceArgs),
    /// Build a DfuSe `.dfu` file from binaries at addresses and HEX or ELF files (as
    /// `dfuse-pack`).
    Pack(files::Pack),
    /// Show a DFU file's suffix and, for a DfuSe `.dfu`, its targets and elements.
    Info {
        /// The `.dfu` (or suffixed DFU 1.1) file.
        file: PathBuf,
    },
    /// Add, check or remove a DFU suffix (as `dfu-suffix`).
    Suffix {
        #[command(subcommand)]
        command: files::SuffixCommand,
    },
    /// Print a directory holding dfukit's libusb-1.0 replacement as
    /// `libusb-1.0.so.0`: put it on LD_LIBRARY_PATH, set DFUKIT_USBIP=HOST:PORT,
    /// and unmodified libusb programs (dfu-util) reach USB/IP devices.
    ShimDir,
}

/// Options of `upload`.
#[derive(Args)]
pub struct Upload {
    #[command(flatten)]
    pub dfu: AltArgs,
    /// DfuSe: ADDRESS[:LENGTH] to read; without a length, to the end of
    /// the memory segment (as dfu-util).
    #[arg(short = 's', long = "dfuse-address")]
    pub dfuse_address: Option<String>,
    /// Where to write what was read.
    #[arg(short = 'U', long = "upload")]
    pub file: PathBuf,
}

/// Runs a `usb` subcommand.
pub fn run(cmd: UsbCommand) -> miette::Result<()> {
    match cmd {
        UsbCommand::List(t) => Ok(list(&t)?),
        UsbCommand::Download(d) => Ok(download(&d)?),
        UsbCommand::Upload(u) => Ok(upload(&u)?),
        UsbCommand::Detach(t) => Ok(detach(&t)?),
        UsbCommand::Pack(p) => Ok(files::pack(&p)?),
        UsbCommand::Info { file } => Ok(files::info(&file)?),
        UsbCommand::Suffix { command } => Ok(files::suffix(command)?),
        UsbCommand::ShimDir => {
            println!("{}", shim_dir()?.display());
            Ok(())
        }
    }
}

fn upload(a: &Upload) -> Result<(), Diag> {
    let (mut host, _dfu, _alt, layout) = open_alt(&a.dfu, None)?;
    let mut task = crate::util::progress::Task::start("upload", 0);
    let mut events = |e: DfuEvent| crate::util::usb::report(&mut task, e);
    let data = match &a.dfuse_address {
        Some(spec) => {
            // ADDRESS:LENGTH, or ADDRESS alone (with or without the colon).
            let (addr, len) = match spec.split_once(':') {
                Some((a, "")) => (u32_number(a).ok(), Some(None)),
                Some((a, l)) => (u32_number(a).ok(), u32_number(l).ok().map(Some)),
                None => (u32_number(spec).ok(), Some(None)),
            };
            let (Some(addr), Some(len)) = (addr, len) else {
                return Err(bad_address(spec));
            };
            let layout = layout.ok_or_else(|| {
                Diag::new(
                    "dfukit::usb::layout",
                    "the alternate setting's name is not a DfuSe memory layout",
                    "choose the alt that names the memory (see `dfukit usb list`)",
                )
            })?;
            // Without a length, dfu-util's -U reads to the end of the memory
            // segment holding the address.
            let len = match len {
                Some(l) => l as usize,
                None => layout
                    .segment_at(addr)
                    .map(|s| (s.end() - u64::from(addr)) as usize)
                    .ok_or_else(|| {
                        Diag::new(
                            "dfukit::usb::not_readable",
                            format!("{addr:#010x} is in no memory segment of the alternate setting"),
                            "check the address against the memory layout (`dfukit usb list`), or give ADDRESS:LENGTH",
                        )
                    })?,
            };
            host.dfuse_upload(&layout, addr, len, &mut events)
                .map_err(host_error)?
        }
        None if _dfu.functional.is_dfuse() => {
            // Block 0 of a DfuSe upload is Get Commands, not memory.
            return Err(Diag::new(
                "dfukit::usb::dfuse_address",
                "an upload from a DfuSe device needs ADDRESS:LENGTH",
                "add -s, for example -s 0x08000000:65536",
            ));
        }
        None => host.upload(None, &mut events).map_err(host_error)?,
    };
    // Whole or not at all: a failed upload leaves what was there.
    let out = Output::replacing(&OutputCodes::USB, Vec::new());
    write_output(&a.file, &data, &out)?;
    task.finish(
        &format!("{}: {} bytes read", a.file.display(), data.len()),
        serde_json::json!({"file": a.file, "bytes": data.len()}),
    );
    Ok(())
}

fn detach(t: &DeviceArgs) -> Result<(), Diag> {
    let d = one_device(t)?;
    let mut host = DfuHost::new(
        d.transfer,
        u16::from(d.dfu.interface),
        d.dfu.functional,
        DfuOptions::default(),
    );
    let out = host.detach().map_err(host_error)?;
    eprintln!(
        "detached{}",
        if out.disconnected {
            ": the device left the bus"
        } else {
            ""
        }
    );
    Ok(())
}
