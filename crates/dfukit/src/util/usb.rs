//! The command-line side of USB DFU devices, shared by `usb` and `demo`:
//! which device (`-d`, `-S`, `-p`, `--usbip`), finding and opening it with
//! a diagnostic when that fails, and the DfuSe download as `usb download`
//! runs it.

use super::diag::read_input;
use super::diag::Diag;
use super::num::u32_number;
use super::progress::Task;
use clap::Args;
use dfukit_transport::usb::{
    find_dfu_devices, DeviceFilter, FindError, FoundDevice, SkipReason, UsbTransfer,
};
use dfukit_usbdfu::dfuse::MemoryLayout;
use dfukit_usbdfu::files::{self, DfuseFile};
use dfukit_usbdfu::host::probe::DfuInterface;
use dfukit_usbdfu::host::{
    DfuEvent, DfuHost, DfuHostError, DfuOptions, DfuseDownload, DfuseImage, TransferError,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Which device, and how to reach it.
#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// USB/IP server HOST[:PORT] to reach devices through (a simulated
    /// board, or usbipd on another machine; port 3240 if not given).
    /// Without it, devices on this machine's USB.
    #[arg(long, env = "DFUKIT_USBIP")]
    pub usbip: Option<String>,
    /// VID:PID of the device (hex), as dfu-util's -d.
    #[arg(short = 'd', long = "device")]
    pub device: Option<String>,
    /// Serial number, as dfu-util's -S.
    #[arg(short = 'S', long)]
    pub serial: Option<String>,
    /// Bus path (USB/IP busid, e.g. 1-1), as dfu-util's -p.
    #[arg(short = 'p', long)]
    pub path: Option<String>,
}

impl DeviceArgs {
    fn filter(&self) -> DeviceFilter {
        DeviceFilter {
            usbip: self.usbip.clone(),
            vid_pid: self.device.clone(),
            serial: self.serial.clone(),
            path: self.path.clone(),
        }
    }
}

/// Which device and which of its alternate settings (`-a`), as `download`
/// and `upload` take them.
#[derive(Args, Clone)]
pub struct AltArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Alternate setting, by number or name.
    #[arg(short = 'a', long, default_value = "0")]
    pub alt: String,
}

/// Options of `download`.
#[derive(Args)]
pub struct DownloadArgs {
    #[command(flatten)]
    pub dfu: AltArgs,
    /// DfuSe: ADDRESS[:leave][:mass-erase][:force] for a raw file.
    #[arg(short = 's', long = "dfuse-address")]
    pub dfuse_address: Option<String>,
    /// The file: raw binary (a DFU suffix is checked and removed) or a DfuSe .dfu file.
    #[arg(short = 'D', long = "download")]
    pub file: PathBuf,
    /// Read the written range back and compare.
    #[arg(long)]
    pub verify: bool,
    /// Bytes per USB transfer (default: the device's wTransferSize).
    #[arg(short = 't', long = "transfer-size")]
    pub transfer_size: Option<u16>,
    /// Reset the device's USB port when done (as dfu-util's -R).
    #[arg(short = 'R', long)]
    pub reset: bool,
}

/// The DFU devices that match `t`, with a diagnostic when they cannot be
/// looked for; a matching device that was skipped (busy, failed import or
/// probe) beside usable ones is a warning line on stderr.
pub fn find(t: &DeviceArgs) -> Result<Vec<FoundDevice>, Diag> {
    let found = find_dfu_devices(&t.filter()).map_err(|e| {
        let (code, help) = match &e {
            FindError::NoServer { .. } => (
                "dfukit::usb::usbip",
                "start it (`dfukit sim stm32f4 --usbip ADDR` for a simulated board, or usbipd on the machine with the device) and check the address",
            ),
            FindError::Deadline { .. } => (
                "dfukit::usb::usbip_deadline",
                "the server is up but answers too slowly or not at all: check the network and that it is a USB/IP server (usbipd, or `dfukit sim ... --usbip`)",
            ),
            FindError::Unusable { skipped, .. }
                if skipped.iter().any(|s| s.reason == SkipReason::Busy) =>
            (
                "dfukit::usb::usbip_busy",
                "detach the other client (`usbip detach -p N` on the machine that attached it, see `usbip port`) or stop the other dfukit, then try again",
            ),
            FindError::Unusable { .. } => (
                "dfukit::usb::usbip_import",
                "check the device works on the server (`usbip list -r HOST`) and that it is a DFU device",
            ),
            FindError::CannotList(_) => (
                "dfukit::usb::local",
                "this machine may have no USB support (a VM or container without /sys/bus/usb); reach devices over USB/IP with --usbip",
            ),
            FindError::Refused(_) => (
                "dfukit::usb::permission",
                "run as a user with access to the device (a udev rule for its VID:PID, or the plugdev group)",
            ),
        };
        Diag::new(code, e.to_string(), help)
    })?;
    for s in &found.skipped {
        eprintln!("warning: skipped {s}");
    }
    Ok(found.devices)
}

/// The one DFU device that matches `t`, or why there is not exactly one.
pub fn one_device(t: &DeviceArgs) -> Result<FoundDevice, Diag> {
    let mut v = find(t)?;
    match v.len() {
        1 => Ok(v.remove(0)),
        0 => Err(Diag::new(
            "dfukit::usb::no_device",
            format!("no DFU device matches on {}", t.usbip.as_deref().unwrap_or("local USB")),
            "check the device is in DFU mode and exported (`dfukit usb list`), and the -d/-S/-p filters",
        )),
        n => Err(Diag::new(
            "dfukit::usb::ambiguous",
            format!("{n} DFU devices match on {}", t.usbip.as_deref().unwrap_or("local USB")),
            "choose one with -d VID:PID, -S SERIAL or -p BUSID (see `dfukit usb list`)",
        )),
    }
}

/// Prints the matching DFU devices as `dfu-util -l` does.
pub fn list(t: &DeviceArgs) -> Result<(), Diag> {
    for d in find(t)? {
        let f = &d.dfu;
        for (alt, name) in &f.alts {
            println!(
                "Found DFU: [{:04x}:{:04x}] ver={:04x}, devnum={}, cfg=1, intf={}, path=\"{}\", alt={}, name=\"{}\", serial=\"{}\"",
                f.vendor_id, f.product_id, f.bcd_device, d.devnum, f.interface, d.busid, alt, name, f.serial
            );
        }
    }
    Ok(())
}

pub fn host_error(e: dfukit_usbdfu::host::DfuHostError) -> Diag {
    Diag::new(e.code(), e.to_string(), e.help())
}

/// Opens the device and selects the alt setting; returns the host, the
/// interface, the alt and its layout.
pub fn open_alt(
    at: &AltArgs,
    transfer_size: Option<u16>,
) -> Result<(DfuHost<UsbTransfer>, DfuInterface, u8, Option<MemoryLayout>), Diag> {
    let which = &at.alt;
    let d = one_device(&at.device)?;
    let (alt, name) = d.dfu.find_alt(which).ok_or_else(|| {
        Diag::new(
            "dfukit::usb::no_alt",
            format!("the device has no alternate setting {which:?}"),
            format!(
                "its alternate settings are: {}",
                d.dfu
                    .alts
                    .iter()
                    .map(|(a, n)| format!("{a} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let layout = MemoryLayout::parse(name).ok();
    let opts = DfuOptions {
        transfer_size,
        ..DfuOptions::default()
    };
    let mut host = DfuHost::new(
        d.transfer,
        u16::from(d.dfu.interface),
        d.dfu.functional,
        opts,
    );
    host.set_alt(alt).map_err(host_error)?;
    Ok((host, d.dfu, alt, layout))
}

pub fn bad_address(s: &str) -> Diag {
    Diag::new(
        "dfukit::usb::dfuse_address",
        format!("cannot read the DfuSe address string {s:?}"),
        "use ADDRESS[:leave][:mass-erase:force] for downloads or ADDRESS:LENGTH for uploads, numbers in hex (0x...) or decimal",
    )
}

pub fn read_file(p: &Path) -> Result<Vec<u8>, Diag> {
    read_input(p, "dfukit::usb::file", "check the path")
}

/// The options of a DfuSe address string: `[ADDRESS][:leave][:mass-erase][:force]`.
struct DfuseOptions {
    address: Option<u32>,
    leave: bool,
    mass_erase: bool,
    force: bool,
}

fn dfuse_options(spec: &str) -> Result<DfuseOptions, Diag> {
    let mut parts = spec.split(':');
    let first = parts.next().unwrap_or("");
    let address = if first.is_empty() {
        None
    } else {
        Some(u32_number(first).map_err(|_| bad_address(spec))?)
    };
    let mut o = DfuseOptions {
        address,
        leave: false,
        mass_erase: false,
        force: false,
    };
    for p in parts {
        match p {
            "leave" => o.leave = true,
            "mass-erase" => o.mass_erase = true,
            "force" => o.force = true,
            _ => return Err(bad_address(spec)),
        }
    }
    if o.mass_erase && !o.force {
        return Err(Diag::new(
            "dfukit::usb::mass_erase",
            "mass erase needs `:force`",
            "add :force to the -s string if you mean to erase the whole device",
        ));
    }
    Ok(o)
}

/// Downloads `a.file` to the device, as `dfu-util -D` does. The DfuSe
/// policy (check every element, plan the erases for all of them, erase,
/// write, verify after the last write, leave) is the library's
/// [`DfuHost::dfuse_download_job`]: this function only reads the input and
/// reports.
pub fn download(a: &DownloadArgs) -> Result<(), Diag> {
    let bytes = read_file(&a.file)?;
    // Options first: they apply to raw and .dfu files alike.
    let opts = a.dfuse_address.as_deref().map(dfuse_options).transpose()?;
    let address = opts.as_ref().and_then(|o| o.address);
    let mass_erase = opts.as_ref().is_some_and(|o| o.mass_erase);
    let leave = opts.as_ref().is_some_and(|o| o.leave);
    // An empty raw file (or a suffix alone) writes nothing: refused before the
    // device is opened, as anything else would report success for nothing
    // (`:leave` would even start whatever was in flash). A mass erase alone
    // is a meaningful request, so it may come with an empty file.
    let no_payload =
        bytes.is_empty() || files::check_suffix(&bytes).is_ok_and(|s| s.payload.is_empty());
    if no_payload && !mass_erase {
        return Err(Diag::new(
            "dfukit::usb::empty_file",
            format!("{} is empty: nothing to write", a.file.display()),
            "check that the build produced the file; to erase the device alone give the flash address with mass erase, e.g. -s 0x08000000:mass-erase:force",
        ));
    }
    let (mut host, dfu, alt, layout) = open_alt(&a.dfu, a.transfer_size)?;
    let mut task = Task::start("download", 0);
    let mut events = |e: DfuEvent| report(&mut task, e);
    let layout_for = |alt: u8| {
        dfu.alts
            .iter()
            .find(|(a, _)| *a == alt)
            .and_then(|(_, n)| MemoryLayout::parse(n).ok())
    };
    let job = |image| DfuseDownload {
        image,
        mass_erase,
        verify: a.verify,
        leave,
    };
    let left_to = if bytes.starts_with(b"DfuSe") {
        if address.is_some() {
            return Err(Diag::new(
                "dfukit::usb::dfuse_address",
                "a .dfu file carries its own addresses",
                "drop the address from -s (keep :leave or :mass-erase:force)",
            ));
        }
        let file = DfuseFile::parse(&bytes).map_err(|e| {
            Diag::new(
                "dfukit::usb::dfu_file",
                format!("{}: {e}", a.file.display()),
                "the .dfu file is damaged: rebuild it",
            )
        })?;
        host.dfuse_download_job(&job(DfuseImage::File(&file)), &layout_for, &mut events)
            .map_err(host_error)?;
        super::progress::event(
            "done",
            &format!(
                "{}: downloaded {} target(s){}",
                a.file.display(),
                file.targets.len(),
                if a.verify { ", verified" } else { "" }
            ),
            json!({"file": a.file, "targets": file.targets.len(), "verified": a.verify}),
        );
        // The library leaves to the first element of the first target.
        file.targets
            .first()
            .and_then(|t| t.elements.iter().find(|e| !e.data.is_empty()))
            .map(|e| e.address)
    } else {
        // A raw file may carry a DFU suffix: check it and send the payload only.
        let payload = match files::check_suffix(&bytes) {
            Ok(s) => s.payload.to_vec(),
            // A suffix signature with a wrong CRC: the file is damaged, and
            // sending it would write the suffix into flash as code.
            Err(e @ files::SuffixError::CrcMismatch { .. }) => {
                return Err(Diag::new(
                    "dfukit::usb::suffix",
                    format!("{}: {e}", a.file.display()),
                    "the file is damaged: rebuild it, or check it with `dfukit usb suffix check`",
                ));
            }
            Err(_) => bytes,
        };
        match address {
            None if dfu.functional.is_dfuse() => {
                return Err(Diag::new(
                    "dfukit::usb::dfuse_address",
                    "a raw file to a DfuSe device needs a target address",
                    "add -s ADDRESS (for example -s 0x08000000:leave)",
                ));
            }
            None => {
                plain_download(&mut host, &dfu, a, &payload, mass_erase, leave, &mut events)?;
                None
            }
            Some(addr) => {
                // dfu-util writes a DfuSe raw file without a dfu-prefix
                // prefix (that is for the Stellaris and LPC bootloaders).
                let payload = match files::probe_prefix(&payload) {
                    Some(k) => {
                        eprintln!(
                            "{}: skipping a {k:?} prefix of {} bytes",
                            a.file.display(),
                            k.len()
                        );
                        &payload[k.len()..]
                    }
                    None => &payload[..],
                };
                if layout.is_none() {
                    return Err(Diag::new(
                        "dfukit::usb::layout",
                        "the alternate setting's name is not a DfuSe memory layout",
                        "choose the alt that names the memory (see `dfukit usb list`)",
                    ));
                }
                let raw = DfuseImage::Raw {
                    alt,
                    address: addr,
                    data: payload,
                };
                host.dfuse_download_job(&job(raw), &layout_for, &mut events)
                    .map_err(host_error)?;
                super::progress::event(
                    "done",
                    &format!(
                        "{}: {} bytes written at {addr:#010x}{}",
                        a.file.display(),
                        payload.len(),
                        if a.verify { ", verified" } else { "" }
                    ),
                    json!({"file": a.file, "bytes": payload.len(), "address": addr, "verified": a.verify}),
                );
                Some(addr)
            }
        }
    };
    if leave {
        match left_to {
            Some(addr) => super::progress::event(
                "left",
                &format!("left DFU mode: jump to {addr:#010x}"),
                json!({"address": addr}),
            ),
            None => super::progress::event("left", "left DFU mode", json!({})),
        }
    } else if a.reset {
        match host.transport().reset() {
            // A device that re-enumerates after the reset is gone from this
            // connection: that is the reset working.
            Ok(()) | Err(TransferError::Disconnected) => {
                super::progress::event("reset", "device reset", json!({}))
            }
            Err(e) => {
                return Err(Diag::new(
                    "dfukit::usb::reset",
                    format!("the download is complete, but resetting the device failed: {e}"),
                    "power-cycle or reset the device by hand to start the new firmware",
                ))
            }
        }
    }
    Ok(())
}

/// A raw file to a plain DFU 1.1 device: the whole payload from block 0,
/// then the USB reset a device that is not manifestation tolerant waits
/// for. `:mass-erase` and `:leave` are DfuSe requests: dfu-util sends them
/// to any device given `-s`, where a plain DFU device takes the
/// zero-length DNLOAD or the command byte as part of a firmware image;
/// dfukit refuses them before sending anything.
fn plain_download(
    host: &mut DfuHost<UsbTransfer>,
    dfu: &DfuInterface,
    a: &DownloadArgs,
    payload: &[u8],
    mass_erase: bool,
    leave: bool,
    events: &mut dyn FnMut(DfuEvent),
) -> Result<(), Diag> {
    if mass_erase || leave {
        let request = if mass_erase { ":mass-erase" } else { ":leave" };
        return Err(host_error(DfuHostError::NotDfuse { request }));
    }
    host.download(payload, events).map_err(host_error)?;
    super::progress::event(
        "done",
        &format!("{}: {} bytes downloaded", a.file.display(), payload.len()),
        json!({"file": a.file, "bytes": payload.len()}),
    );
    // A device that is not manifestation tolerant waits for a USB reset to
    // run the new firmware (dfu-util resets it too).
    if !dfu.functional.manifestation_tolerant() && !a.reset {
        match host.transport().reset() {
            Ok(()) | Err(TransferError::Disconnected) => {
                eprintln!("device reset to finish manifestation")
            }
            Err(e) => eprintln!(
                "warning: the device needs a USB reset to run the new firmware, and resetting it failed: {e}"
            ),
        }
    }
    Ok(())
}

/// One DFU event as a progress step, a phase, or a line of its own (see
/// [`super::progress`]).
pub fn report(task: &mut Task, e: DfuEvent) {
    match e {
        DfuEvent::Erase { addr, len } => task.phase(&format!("erase {addr:#010x}+{len}")),
        DfuEvent::MassErase => task.phase("mass erase"),
        DfuEvent::Download { done, total } | DfuEvent::Verify { done, total } => {
            task.progress(done, total)
        }
        DfuEvent::Upload { done, total } => task.progress(done, total.unwrap_or(0)),
        DfuEvent::Manifesting => task.phase("manifesting"),
        DfuEvent::Manifested => task.phase("manifested"),
        DfuEvent::Target { alt, name } => task.event(
            "target",
            &format!(
                "target alt {alt} ({})",
                name.as_deref().unwrap_or("unnamed")
            ),
            json!({"alt": alt, "name": name}),
        ),
        #[allow(unreachable_patterns)]
        _ => {}
    }
}
