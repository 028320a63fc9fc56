//! The USB commands that work on files, not devices: `usb pack` (as `dfuse-pack`), `usb info`
//! and `usb suffix` (as `dfu-suffix`).

use crate::util::diag::Diag;
use crate::util::num::u32_number;
use crate::util::output::{write_output, Output, OutputCodes};
use crate::util::progress;
use crate::util::usb::read_file;
use clap::{Args, Subcommand};
use dfukit_usbdfu::files::{self, DfuseFile, Suffix, BCD_DFUSE};
use dfukit_usbdfu::pack::{pack as pack_pieces, Piece};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Options of `pack`.
#[derive(Args)]
pub struct Pack {
    /// A raw binary placed at an address: ADDRESS[@ALT]:FILE (as dfuse-pack -b).
    /// Repeat for several.
    #[arg(short = 'b', long = "build", value_name = "ADDRESS[@ALT]:FILE")]
    pub binaries: Vec<String>,
    /// An Intel HEX or ELF file: each contiguous segment becomes one element (as
    /// dfuse-pack -i). Repeat for several.
    #[arg(short = 'i', long = "build-ihex", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// The alternate setting of -i inputs and of -b inputs without @ALT.
    #[arg(short = 'a', long = "alt-intf", default_value_t = 0)]
    pub alt: u8,
    /// VENDOR:PRODUCT written in the DFU suffix (dfu-util refuses a file whose IDs are not
    /// the device's; 0xffff matches any).
    #[arg(short = 'D', long = "device", default_value = "0x0483:0xdf11")]
    pub device: String,
    /// bcdDevice written in the DFU suffix.
    #[arg(long = "bcd-device", default_value = "0")]
    pub bcd_device: String,
    /// The name of every target (DfuSe Demo and STM32CubeProgrammer show it).
    #[arg(long, default_value = "ST...")]
    pub name: String,
    /// The `.dfu` file to write (replaced if it exists; never one of the inputs).
    pub output: PathBuf,
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

fn pack_diag(message: String, help: &str) -> Diag {
    Diag::new("dfukit::usb::pack", message, help)
}

/// One `-b ADDRESS[@ALT]:FILE`.
fn parse_binary_spec(spec: &str, default_alt: u8) -> Result<(u32, u8, PathBuf), Diag> {
    let bad = |what: &str| {
        pack_diag(
            format!("-b {spec:?}: {what}"),
            "write -b ADDRESS[@ALT]:FILE, for example -b 0x08000000:app.bin or -b 0x1fffc000@1:opt.bin",
        )
    };
    let (at, file) = spec
        .split_once(':')
        .ok_or_else(|| bad("no ':' between the address and the file"))?;
    let (address, alt) = match at.split_once('@') {
        Some((a, alt)) => (
            a,
            alt.parse::<u8>()
                .map_err(|_| bad("the alt is not 0..=255"))?,
        ),
        None => (at, default_alt),
    };
    let address = u32_number(address).map_err(|e| bad(&e))?;
    if file.is_empty() {
        return Err(bad("no file after ':'"));
    }
    Ok((address, alt, PathBuf::from(file)))
}

/// The bytes of a `-b` input, refused when they are not a plain binary: a file that already
/// has a DFU suffix (dfuse-pack refuses it too; the suffix would be flashed as code), an
/// Intel HEX or an ELF (their text or headers would be flashed, not the firmware in them).
fn read_binary(path: &Path) -> Result<Vec<u8>, Diag> {
    let bytes = read_file(path)?;
    if files::check_suffix(&bytes).is_ok() {
        return Err(pack_diag(
            format!("{} already has a DFU suffix", path.display()),
            "give the binary without it (`dfukit usb suffix remove FILE`), or download that file as it is",
        ));
    }
    let kind = dfukit_firmware::detect_kind(path, &bytes);
    let looks_hex = bytes.first() == Some(&b':') && path.extension().is_some_and(|e| e != "bin");
    if kind == dfukit_firmware::FileKind::Elf || looks_hex {
        return Err(pack_diag(
            format!(
                "{} is {} file, not a raw binary",
                path.display(),
                if looks_hex { "an Intel HEX" } else { "an ELF" }
            ),
            "give it with -i FILE: its own addresses are used",
        ));
    }
    Ok(bytes)
}

/// The segments of a `-i` input, each one piece.
fn read_image(path: &Path, alt: u8) -> Result<Vec<Piece>, Diag> {
    let bytes = read_file(path)?;
    if dfukit_firmware::detect_kind(path, &bytes) == dfukit_firmware::FileKind::Bin {
        return Err(pack_diag(
            format!("{} is a raw binary: it carries no address", path.display()),
            "give it with -b ADDRESS:FILE",
        ));
    }
    let segments = dfukit_firmware::segments(path, &bytes)
        .map_err(|e| Diag::new(e.code(), e.to_string(), e.help()))?;
    let several = segments.len() > 1;
    Ok(segments
        .into_iter()
        .enumerate()
        .map(|(i, (address, data))| Piece {
            alt,
            address,
            data,
            input: if several {
                format!("{} segment {i}", path.display())
            } else {
                path.display().to_string()
            },
        })
        .collect())
}

fn parse_ids(device: &str, bcd_device: &str) -> Result<Suffix, Diag> {
    let bad = || {
        pack_diag(
            format!("-D {device:?} --bcd-device {bcd_device:?}: not 16-bit numbers"),
            "write -D VENDOR:PRODUCT, for example -D 0x0483:0xdf11",
        )
    };
    let n16 = |s: &str| u32_number(s).ok().and_then(|v| u16::try_from(v).ok());
    let (v, p) = device.split_once(':').ok_or_else(bad)?;
    Ok(Suffix {
        bcd_device: n16(bcd_device).ok_or_else(bad)?,
        id_product: n16(p).ok_or_else(bad)?,
        id_vendor: n16(v).ok_or_else(bad)?,
        bcd_dfu: BCD_DFUSE,
    })
}

/// `usb pack`: every input is read and checked, and the file is built and encoded, before
/// the output is written (atomically).
pub fn pack(a: &Pack) -> Result<(), Diag> {
    let suffix = parse_ids(&a.device, &a.bcd_device)?;
    let mut pieces = Vec::new();
    let mut inputs = Vec::new();
    for spec in &a.binaries {
        let (address, alt, path) = parse_binary_spec(spec, a.alt)?;
        let data = read_binary(&path)?;
        pieces.push(Piece {
            alt,
            address,
            data,
            input: path.display().to_string(),
        });
        inputs.push(path);
    }
    for path in &a.images {
        pieces.extend(read_image(path, a.alt)?);
        inputs.push(path.clone());
    }
    let (file, bytes) = pack_pieces(pieces, Some(&a.name), suffix).map_err(|e| {
        pack_diag(
            e.to_string(),
            "check the addresses: every element must lie apart from the others of its alt",
        )
    })?;
    let out = Output::replacing(
        &OutputCodes::USB,
        inputs.iter().map(PathBuf::as_path).collect(),
    );
    write_output(&a.output, &bytes, &out)?;
    let elements: usize = file.targets.iter().map(|t| t.elements.len()).sum();
    progress::result(
        "packed",
        &format!(
            "{}: {} target(s), {elements} element(s), {} bytes",
            a.output.display(),
            file.targets.len(),
            bytes.len()
        ),
        json!({"file": a.output, "targets": file.targets.len(), "elements": elements, "bytes": bytes.len()}),
    );
    Ok(())
}

/// `usb info FILE`: the suffix and, for a DfuSe file, every target and element.
pub fn info(path: &Path) -> Result<(), Diag> {
    let bytes = read_file(path)?;
    let s = files::check_suffix(&bytes).map_err(|e| {
        Diag::new(
            "dfukit::usb::info",
            format!("{}: {e}", path.display()),
            "this is not a DFU file: make one with `dfukit usb pack` (DfuSe) or `dfukit usb suffix add` (DFU 1.1)",
        )
    })?;
    let suffix = s.suffix;
    let mut text = format!(
        "{}: {} bytes\nsuffix: idVendor {:#06x}, idProduct {:#06x}, bcdDevice {:#06x}, bcdDFU {:#06x}, CRC {:#010x} (matches)",
        path.display(),
        bytes.len(),
        suffix.id_vendor,
        suffix.id_product,
        suffix.bcd_device,
        suffix.bcd_dfu,
        s.crc
    );
    let mut fields = json!({
        "file": path,
        "bytes": bytes.len(),
        "suffix": {
            "id_vendor": suffix.id_vendor, "id_product": suffix.id_product,
            "bcd_device": suffix.bcd_device, "bcd_dfu": suffix.bcd_dfu, "crc": s.crc,
        },
    });
    if suffix.bcd_dfu != BCD_DFUSE {
        text += &format!("\nDFU 1.1 file: {} bytes of firmware", s.payload.len());
        fields["firmware_bytes"] = json!(s.payload.len());
        if let Some(k) = files::probe_prefix(s.payload) {
            text += &format!(" (after a {k:?} prefix of {} bytes)", k.len());
            fields["prefix"] = json!({"kind": format!("{k:?}"), "bytes": k.len()});
        }
        progress::result("dfu_file", &text, fields);
        return Ok(());
    }
    let file = DfuseFile::parse(&bytes).map_err(|e| {
        Diag::new(
            "dfukit::usb::dfu_file",
            format!("{}: {e}", path.display()),
            "the .dfu file is damaged: rebuild it (`dfukit usb pack`)",
        )
    })?;
    let mut targets = Vec::new();
    for (i, t) in file.targets.iter().enumerate() {
        let size: usize = t.elements.iter().map(|e| e.data.len()).sum();
        text += &format!(
            "\ntarget {i}: alt {}, name {:?}, {} element(s), {size} bytes",
            t.alt,
            t.name.as_deref().unwrap_or(""),
            t.elements.len()
        );
        let mut elements = Vec::new();
        for (j, e) in t.elements.iter().enumerate() {
            let end = u64::from(e.address) + e.data.len() as u64;
            let crc = crc32fast::hash(&e.data);
            text += &format!(
                "\n  element {j}: {:#010x}..{end:#010x}, {} bytes, CRC-32 {crc:#010x}",
                e.address,
                e.data.len()
            );
            elements.push(json!({"address": e.address, "bytes": e.data.len(), "crc32": crc}));
        }
        targets.push(json!({"alt": t.alt, "name": t.name, "bytes": size, "elements": elements}));
    }
    fields["targets"] = json!(targets);
    progress::result("dfu_file", &text, fields);
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

/// Replaces `file` with `bytes` atomically: a failed write leaves the old file.
fn rewrite(file: &Path, bytes: &[u8]) -> Result<(), Diag> {
    let out = Output::replacing(&OutputCodes::USB, Vec::new());
    write_output(file, bytes, &out)
}

/// `usb suffix ...`
pub fn suffix(cmd: SuffixCommand) -> Result<(), Diag> {
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
                bcd_dfu: if dfuse { BCD_DFUSE } else { files::BCD_DFU_1_0 },
            };
            rewrite(&file, &files::add_suffix(&bytes, &s))?;
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
            rewrite(&file, s.payload)?;
            eprintln!("suffix removed from {}", file.display());
        }
    }
    Ok(())
}
