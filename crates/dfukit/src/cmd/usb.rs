//! `dfukit usb ...`: USB DFU 1.1 and ST DfuSe, with dfu-util's options.

use crate::util::diag::Diag;
use crate::util::num::u32_number;
use crate::util::output::{write_output, Output, OutputCodes};
use crate::util::shim::shim_dir;
use crate::util::usb::{
    bad_address, download, host_error, list, one_device, open_alt, read_file, AltArgs, DeviceArgs,
    DownloadArgs,
};
use clap::{Args, Subcommand};
use dfukit_usbdfu::files::{self, Suffix};
use dfukit_usbdfu::host::{DfuEvent, DfuHost, DfuOptions};
use std::path::{Path, PathBuf};

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
    /// Add, check or remove a DFU suffix (as `dfu-suffix`).
    Suffix {
        #[command(subcommand)]
        command: SuffixCommand,
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

/// `usb suffix ...`
#[derive(Subcommand)]
pub enum SuffixCommand {
    /// Append a DFU suffix.
    Add {
        /// The file, changed in place.
        file: PathBuf,
        /// idVendor (hex).
        #[arg(short = 'v', long, default_value = "ffff")]
        vid: String,
        /// idProduct (hex).
        #[arg(short = 'p', long, default_value = "ffff")]
        pid: String,
        /// bcdDevice (hex).
        #[arg(short = 'd', long, default_value = "ffff")]
        did: String,
        /// Write a DfuSe (bcdDFU 0x011A) suffix.
        #[arg(long)]
        dfuse: bool,
    },
    /// Check and show a file's suffix.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Remove a file's suffix (checked first).
    Remove {
        /// The file, changed in place.
        file: PathBuf,
    },
}

/// Runs a `usb` subcommand.
pub fn run(cmd: UsbCommand) -> miette::Result<()> {
    match cmd {
        UsbCommand::List(t) => Ok(list(&t)?),
        UsbCommand::Download(d) => Ok(download(&d)?),
        UsbCommand::Upload(u) => Ok(upload(&u)?),
        UsbCommand::Detach(t) => Ok(detach(&t)?),
        UsbCommand::Suffix { command } => Ok(suffix(command)?),
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
    let out = Output {
        codes: &OutputCodes::USB,
        inputs: Vec::new(),
        overwrite: true,
        private: false,
    };
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

fn hex16(s: &str) -> Result<u16, Diag> {
    u16::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| {
        Diag::new(
            "dfukit::usb::suffix",
            format!("{s:?} is not a 16-bit hex number"),
            "use hex such as 0483",
        )
    })
}

fn suffix(cmd: SuffixCommand) -> Result<(), Diag> {
    let suffix_diag = |p: &Path, e: &dyn std::fmt::Display| {
        Diag::new(
            "dfukit::usb::suffix",
            format!("{}: {e}", p.display()),
            "the file has no valid DFU suffix (add one with `dfukit usb suffix add`)",
        )
    };
    match cmd {
        SuffixCommand::Add {
            file,
            vid,
            pid,
            did,
            dfuse,
        } => {
            let bytes = read_file(&file)?;
            if files::check_suffix(&bytes).is_ok() {
                return Err(Diag::new(
                    "dfukit::usb::suffix",
                    format!("{} already has a DFU suffix", file.display()),
                    "remove it first with `dfukit usb suffix remove`",
                ));
            }
            let s = Suffix {
                bcd_device: hex16(&did)?,
                id_product: hex16(&pid)?,
                id_vendor: hex16(&vid)?,
                bcd_dfu: if dfuse { 0x011A } else { 0x0100 },
            };
            let out = files::add_suffix(&bytes, &s);
            std::fs::write(&file, out).map_err(|e| suffix_diag(&file, &e))?;
            eprintln!("suffix added to {}", file.display());
        }
        SuffixCommand::Check { file } => {
            let bytes = read_file(&file)?;
            let s = files::check_suffix(&bytes).map_err(|e| suffix_diag(&file, &e))?;
            println!(
                "The file {} contains a DFU suffix with the following properties:\nBCD device:\t0x{:04X}\nProduct ID:\t0x{:04X}\nVendor ID:\t0x{:04X}\nBCD DFU:\t0x{:04X}\nLength:\t\t{}\nCRC:\t\t0x{:08X}",
                file.display(), s.suffix.bcd_device, s.suffix.id_product, s.suffix.id_vendor, s.suffix.bcd_dfu, s.length, s.crc
            );
            if let Some(k) = files::probe_prefix(s.payload) {
                println!("Prefix:\t\t{k:?}, {} bytes", k.len());
            }
        }
        SuffixCommand::Remove { file } => {
            let bytes = read_file(&file)?;
            let s = files::check_suffix(&bytes).map_err(|e| suffix_diag(&file, &e))?;
            let payload = s.payload.to_vec();
            std::fs::write(&file, payload).map_err(|e| suffix_diag(&file, &e))?;
            eprintln!("suffix removed from {}", file.display());
        }
    }
    Ok(())
}
