//! `dfukit usb ...`: USB DFU 1.1 and ST DfuSe, with dfu-util's options.

use super::diag::Diag;
use clap::{Args, Subcommand};
use dfukit_usbdfu::dfuse::MemoryLayout;
use dfukit_usbdfu::files::{self, DfuseFile, Suffix};
use dfukit_usbdfu::host::probe::{probe, DfuInterface};
use dfukit_usbdfu::host::{ControlTransfer, DfuHost, Event, Options, TransferError};
use dfukit_usbdfu::wire::SetupPacket;
use dfukit_usbip::{Client, ControlError, Imported};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `dfukit usb ...`
#[derive(Subcommand)]
pub enum UsbCommand {
    /// List DFU devices (as `dfu-util -l`).
    List(Target),
    /// Write a file to a device (as `dfu-util -D`).
    Download(Download),
    /// Read memory from a device into a file (as `dfu-util -U`).
    Upload(Upload),
    /// Ask a device to leave DFU mode (DETACH).
    Detach(Target),
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

/// Which device, and how to reach it.
#[derive(Args, Clone)]
pub struct Target {
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

/// Options of `download`.
#[derive(Args)]
pub struct Download {
    #[command(flatten)]
    pub target: Target,
    /// Alternate setting, by number or name.
    #[arg(short = 'a', long, default_value = "0")]
    pub alt: String,
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

/// Options of `upload`.
#[derive(Args)]
pub struct Upload {
    #[command(flatten)]
    pub target: Target,
    /// Alternate setting, by number or name.
    #[arg(short = 'a', long, default_value = "0")]
    pub alt: String,
    /// DfuSe: ADDRESS:LENGTH to read.
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

/// Control transfers to a device imported over USB/IP.
pub struct UsbipTransfer(pub Imported);

fn map_err(e: ControlError) -> TransferError {
    match e {
        ControlError::Stall => TransferError::Stall,
        ControlError::Timeout => TransferError::Timeout,
        ControlError::Disconnected => TransferError::Disconnected,
        other => TransferError::Io(other.to_string()),
    }
}

impl ControlTransfer for UsbipTransfer {
    fn control_in(
        &mut self,
        s: SetupPacket,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransferError> {
        let data = self.0.control(s, &[], timeout).map_err(map_err)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    fn control_out(
        &mut self,
        s: SetupPacket,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, TransferError> {
        self.0.control(s, data, timeout).map_err(map_err)?;
        Ok(data.len())
    }
}

/// Control transfers to a device on this machine's USB (nusb: usbfs on
/// Linux, no libusb).
pub struct NusbTransfer {
    device: nusb::Device,
    interface: Option<nusb::Interface>,
}

fn nusb_err(e: nusb::transfer::TransferError) -> TransferError {
    use nusb::transfer::TransferError as E;
    match e {
        E::Stall => TransferError::Stall,
        E::Cancelled => TransferError::Timeout,
        E::Disconnected => TransferError::Disconnected,
        other => TransferError::Io(other.to_string()),
    }
}

fn nusb_kind(s: &SetupPacket) -> (nusb::transfer::ControlType, nusb::transfer::Recipient) {
    use nusb::transfer::{ControlType, Recipient};
    let kind = match s.kind() {
        0x00 => ControlType::Standard,
        0x20 => ControlType::Class,
        _ => ControlType::Vendor,
    };
    let recipient = match s.recipient() {
        0 => Recipient::Device,
        1 => Recipient::Interface,
        2 => Recipient::Endpoint,
        _ => Recipient::Other,
    };
    (kind, recipient)
}

impl NusbTransfer {
    /// Claims `interface` (detaching a kernel driver if one holds it), so
    /// that class requests and alternate-setting changes go through it.
    fn claim(&mut self, interface: u8) -> Result<(), TransferError> {
        use nusb::MaybeFuture;
        if self.interface.is_none() {
            let i = self
                .device
                .detach_and_claim_interface(interface)
                .wait()
                .map_err(|e| {
                    TransferError::Io(format!("cannot claim interface {interface}: {e}"))
                })?;
            self.interface = Some(i);
        }
        Ok(())
    }
}

impl ControlTransfer for NusbTransfer {
    fn control_in(
        &mut self,
        s: SetupPacket,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransferError> {
        use nusb::MaybeFuture;
        let (control_type, recipient) = nusb_kind(&s);
        let req = nusb::transfer::ControlIn {
            control_type,
            recipient,
            request: s.request,
            value: s.value,
            index: s.index,
            length: s.length,
        };
        let data = match &self.interface {
            Some(i) => i.control_in(req, timeout).wait(),
            None => self.device.control_in(req, timeout).wait(),
        }
        .map_err(nusb_err)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    fn control_out(
        &mut self,
        s: SetupPacket,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, TransferError> {
        use nusb::MaybeFuture;
        if s.kind() == 0 && s.recipient() == 1 && s.request == dfukit_core::usb::SET_INTERFACE {
            // The OS owns SET_INTERFACE: ask it, through the claimed interface.
            self.claim(s.index as u8)?;
            let i = self.interface.as_ref().expect("claimed above");
            i.set_alt_setting(s.value as u8)
                .wait()
                .map_err(|e| TransferError::Io(format!("SET_INTERFACE {}: {e}", s.value)))?;
            return Ok(0);
        }
        let (control_type, recipient) = nusb_kind(&s);
        let req = nusb::transfer::ControlOut {
            control_type,
            recipient,
            request: s.request,
            value: s.value,
            index: s.index,
            data,
        };
        match &self.interface {
            Some(i) => i.control_out(req, timeout).wait(),
            None => self.device.control_out(req, timeout).wait(),
        }
        .map_err(nusb_err)?;
        Ok(data.len())
    }
}

impl AnyTransfer {
    /// A USB bus reset of the device's port.
    pub fn reset(&mut self) -> Result<(), TransferError> {
        use nusb::MaybeFuture;
        match self {
            AnyTransfer::Usbip(u) => u.0.port_reset(Duration::from_secs(5)).map_err(map_err),
            AnyTransfer::Local(l) => l
                .device
                .reset()
                .wait()
                .map_err(|e| TransferError::Io(format!("USB reset: {e}"))),
        }
    }
}

/// A device reached over USB/IP or on local USB.
pub enum AnyTransfer {
    /// Over USB/IP.
    Usbip(UsbipTransfer),
    /// On this machine's USB.
    Local(NusbTransfer),
}

impl ControlTransfer for AnyTransfer {
    fn control_in(
        &mut self,
        s: SetupPacket,
        buf: &mut [u8],
        t: Duration,
    ) -> Result<usize, TransferError> {
        match self {
            AnyTransfer::Usbip(u) => u.control_in(s, buf, t),
            AnyTransfer::Local(l) => l.control_in(s, buf, t),
        }
    }

    fn control_out(
        &mut self,
        s: SetupPacket,
        data: &[u8],
        t: Duration,
    ) -> Result<usize, TransferError> {
        match self {
            AnyTransfer::Usbip(u) => u.control_out(s, data, t),
            AnyTransfer::Local(l) => l.control_out(s, data, t),
        }
    }
}

fn no_server(addr: &str, e: impl std::fmt::Display) -> Diag {
    Diag::new(
        "dfukit::usb::usbip",
        format!("cannot reach the USB/IP server at {addr}: {e}"),
        "start it (`dfukit sim stm32f4 --usbip ADDR` for a simulated board, or usbipd on the machine with the device) and check the address",
    )
}

/// A selected device, imported and probed.
pub(crate) struct Opened {
    pub(crate) busid: String,
    pub(crate) devnum: u32,
    pub(crate) dfu: DfuInterface,
    pub(crate) transfer: AnyTransfer,
}

/// `HOST[:PORT]` with the USB/IP port filled in.
fn with_default_port(addr: &str) -> String {
    let has_port = match addr.rsplit_once(':') {
        // "[::1]:3240" or "host:3240"; a bare IPv6 address has colons but no port.
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        addr.to_string()
    } else {
        format!("{addr}:3240")
    }
}

/// Whether a probed device passes the -d and -S filters.
fn wanted(t: &Target, dfu: &DfuInterface) -> bool {
    let id_ok = t.device.as_ref().is_none_or(|want| {
        format!("{:04x}:{:04x}", dfu.vendor_id, dfu.product_id) == want.to_lowercase()
    });
    id_ok && t.serial.as_deref().is_none_or(|s| s == dfu.serial)
}

/// The DFU devices that match `t`, over USB/IP or on local USB.
pub(crate) fn dfu_devices(t: &Target) -> Result<Vec<Opened>, Diag> {
    let Some(addr) = &t.usbip else {
        return local_dfu_devices(t);
    };
    // HOST alone means the USB/IP port, 3240, as the usbip tools assume.
    let addr = &with_default_port(addr);
    let devices = Client::list(addr.as_str()).map_err(|e| no_server(addr, e))?;
    let mut found = Vec::new();
    for d in devices {
        if t.path.as_deref().is_some_and(|p| p != d.device.busid) {
            continue;
        }
        let Ok(imported) = Client::import(addr.as_str(), &d.device.busid) else {
            continue;
        };
        let mut transfer = UsbipTransfer(imported);
        let Ok(dfu) = probe(&mut transfer) else {
            continue;
        };
        if !wanted(t, &dfu) {
            continue;
        }
        found.push(Opened {
            busid: d.device.busid.clone(),
            devnum: d.device.devnum,
            dfu,
            transfer: AnyTransfer::Usbip(transfer),
        });
    }
    Ok(found)
}

/// DFU devices on this machine's USB. A device that cannot be opened (no
/// permission) is reported if nothing else matches.
fn local_dfu_devices(t: &Target) -> Result<Vec<Opened>, Diag> {
    use nusb::MaybeFuture;
    let list = nusb::list_devices().wait().map_err(|e| {
        Diag::new(
            "dfukit::usb::local",
            format!("cannot list USB devices: {e}"),
            "this machine may have no USB support (a VM or container without /sys/bus/usb); reach devices over USB/IP with --usbip",
        )
    })?;
    let mut found = Vec::new();
    let mut refused = Vec::new();
    for info in list {
        let path = format!(
            "{}-{}",
            info.bus_id(),
            info.port_chain()
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(".")
        );
        if t.path.as_deref().is_some_and(|p| p != path) {
            continue;
        }
        // Filter on the IDs before opening: devices the user may not open
        // (hubs, other people's gadgets) must not turn into an error.
        let ids = format!("{:04x}:{:04x}", info.vendor_id(), info.product_id());
        if t.device
            .as_ref()
            .is_some_and(|want| want.to_lowercase() != ids)
        {
            continue;
        }
        let device = match info.open().wait() {
            Ok(d) => d,
            Err(e) => {
                refused.push(format!(
                    "{path} ({:04x}:{:04x}): {e}",
                    info.vendor_id(),
                    info.product_id()
                ));
                continue;
            }
        };
        let mut transfer = NusbTransfer {
            device,
            interface: None,
        };
        let Ok(dfu) = probe(&mut transfer) else {
            continue;
        };
        if !wanted(t, &dfu) {
            continue;
        }
        if let Err(e) = transfer.claim(dfu.interface) {
            refused.push(format!("{path}: {e}"));
            continue;
        }
        found.push(Opened {
            busid: path,
            devnum: u32::from(info.device_address()),
            dfu,
            transfer: AnyTransfer::Local(transfer),
        });
    }
    if found.is_empty() && !refused.is_empty() {
        return Err(Diag::new(
            "dfukit::usb::permission",
            format!("no DFU device could be used; these could not be opened: {}", refused.join("; ")),
            "run as a user with access to the device (a udev rule for its VID:PID, or the plugdev group)",
        ));
    }
    Ok(found)
}

fn one_device(t: &Target) -> Result<Opened, Diag> {
    let mut v = dfu_devices(t)?;
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

/// Runs `usb list`.
pub fn list(t: &Target) -> Result<(), Diag> {
    for d in dfu_devices(t)? {
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

fn host_error(e: dfukit_usbdfu::host::HostError) -> Diag {
    Diag::new(e.code(), e.to_string(), e.help())
}

/// Opens the device and selects the alt setting; returns the host and the alt's layout.
fn open_alt(
    t: &Target,
    which: &str,
    transfer_size: Option<u16>,
) -> Result<(DfuHost<AnyTransfer>, DfuInterface, Option<MemoryLayout>), Diag> {
    let d = one_device(t)?;
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
    let opts = Options {
        transfer_size,
        ..Options::default()
    };
    let mut host = DfuHost::new(
        d.transfer,
        u16::from(d.dfu.interface),
        d.dfu.functional,
        opts,
    );
    host.set_alt(alt).map_err(host_error)?;
    Ok((host, d.dfu, layout))
}

fn parse_num(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn bad_address(s: &str) -> Diag {
    Diag::new(
        "dfukit::usb::dfuse_address",
        format!("cannot read the DfuSe address string {s:?}"),
        "use ADDRESS[:leave][:mass-erase:force] for downloads or ADDRESS:LENGTH for uploads, numbers in hex (0x...) or decimal",
    )
}

fn read_file(p: &Path) -> Result<Vec<u8>, Diag> {
    std::fs::read(p).map_err(|e| {
        Diag::new(
            "dfukit::usb::file",
            format!("cannot read {}: {e}", p.display()),
            "check the path",
        )
    })
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
        Some(parse_num(first).ok_or_else(|| bad_address(spec))?)
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

/// Runs `usb download`.
pub fn download(a: &Download) -> Result<(), Diag> {
    let bytes = read_file(&a.file)?;
    // Options first: they apply to raw and .dfu files alike.
    let opts = a.dfuse_address.as_deref().map(dfuse_options).transpose()?;
    let (mut host, dfu, layout) = open_alt(&a.target, &a.alt, a.transfer_size)?;
    let bar = super::progress::bar(0, "download");
    let mut events = |e: Event| match e {
        Event::Erase { addr, len } => bar.set_message(format!("erase {addr:#010x}+{len}")),
        Event::MassErase => bar.set_message("mass erase".to_string()),
        Event::Download { done, total } => {
            bar.set_message("download");
            bar.set_length(total);
            bar.set_position(done);
        }
        _ => {}
    };
    if opts.as_ref().is_some_and(|o| o.mass_erase) {
        host.dfuse_mass_erase(&mut events).map_err(host_error)?;
    }
    let leave_to = if bytes.starts_with(b"DfuSe") {
        if opts.as_ref().and_then(|o| o.address).is_some() {
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
        let layouts: Vec<(u8, String)> = dfu.alts.clone();
        let layout_for = |alt: u8| {
            layouts
                .iter()
                .find(|(a, _)| *a == alt)
                .and_then(|(_, n)| MemoryLayout::parse(n).ok())
        };
        host.dfuse_download_file(&file, &layout_for, a.verify, &mut events)
            .map_err(host_error)?;
        bar.finish_and_clear();
        eprintln!(
            "{}: downloaded {} target(s){}",
            a.file.display(),
            file.targets.len(),
            if a.verify { ", verified" } else { "" }
        );
        None
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
        match opts.as_ref().and_then(|o| o.address) {
            None if dfu.functional.is_dfuse() => {
                return Err(Diag::new(
                    "dfukit::usb::dfuse_address",
                    "a raw file to a DfuSe device needs a target address",
                    "add -s ADDRESS (for example -s 0x08000000:leave)",
                ));
            }
            None => {
                host.download(&payload, &mut events).map_err(host_error)?;
                bar.finish_and_clear();
                eprintln!("{}: {} bytes downloaded", a.file.display(), payload.len());
                // A device that is not manifestation tolerant waits for a USB
                // reset to run the new firmware (dfu-util resets it too).
                if !dfu.functional.manifestation_tolerant() && !a.reset {
                    match host.transport().reset() {
                        Ok(()) | Err(TransferError::Disconnected) => eprintln!("device reset to finish manifestation"),
                        Err(e) => eprintln!("warning: the device needs a USB reset to run the new firmware, and resetting it failed: {e}"),
                    }
                }
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
                        payload[k.len()..].to_vec()
                    }
                    None => payload,
                };
                let layout = layout.ok_or_else(|| {
                    Diag::new(
                        "dfukit::usb::layout",
                        "the alternate setting's name is not a DfuSe memory layout",
                        "choose the alt that names the memory (see `dfukit usb list`)",
                    )
                })?;
                host.dfuse_download(&layout, addr, &payload, a.verify, &mut events)
                    .map_err(host_error)?;
                bar.finish_and_clear();
                eprintln!(
                    "{}: {} bytes written at {addr:#010x}{}",
                    a.file.display(),
                    payload.len(),
                    if a.verify { ", verified" } else { "" }
                );
                Some(addr)
            }
        }
    };
    if opts.as_ref().is_some_and(|o| o.leave) {
        host.dfuse_leave(leave_to).map_err(host_error)?;
        match leave_to {
            Some(addr) => eprintln!("left DFU mode: jump to {addr:#010x}"),
            None => eprintln!("left DFU mode"),
        }
    } else if a.reset {
        match host.transport().reset() {
            // A device that re-enumerates after the reset is gone from this
            // connection: that is the reset working.
            Ok(()) | Err(TransferError::Disconnected) => eprintln!("device reset"),
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

fn upload(a: &Upload) -> Result<(), Diag> {
    let (mut host, _dfu, layout) = open_alt(&a.target, &a.alt, None)?;
    let bar = super::progress::bar(0, "upload");
    let mut events = |e: Event| {
        if let Event::Upload { done, total } = e {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
        }
    };
    let data = match &a.dfuse_address {
        Some(spec) => {
            let (addr, len) = spec
                .split_once(':')
                .and_then(|(a, l)| Some((parse_num(a)?, parse_num(l)?)))
                .ok_or_else(|| bad_address(spec))?;
            let layout = layout.ok_or_else(|| {
                Diag::new(
                    "dfukit::usb::layout",
                    "the alternate setting's name is not a DfuSe memory layout",
                    "choose the alt that names the memory (see `dfukit usb list`)",
                )
            })?;
            host.dfuse_upload(&layout, addr, len as usize, &mut events)
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
    bar.finish_and_clear();
    std::fs::write(&a.file, &data).map_err(|e| {
        Diag::new(
            "dfukit::usb::file",
            format!("cannot write {}: {e}", a.file.display()),
            "check the directory exists and is writable",
        )
    })?;
    eprintln!("{}: {} bytes read", a.file.display(), data.len());
    Ok(())
}

fn detach(t: &Target) -> Result<(), Diag> {
    let d = one_device(t)?;
    let mut host = DfuHost::new(
        d.transfer,
        u16::from(d.dfu.interface),
        d.dfu.functional,
        Options::default(),
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

/// Finds the shim built next to this executable (`cargo build --release`
/// builds both) and returns a directory where it is `libusb-1.0.so.0`.
pub fn shim_dir() -> Result<PathBuf, Diag> {
    let missing = |what: String| {
        Diag::new(
            "dfukit::usb::shim_missing",
            what,
            "build it: `cargo build --release` (or `cargo build -p dfukit-libusb`) builds libdfukit_libusb.so next to the dfukit binary",
        )
    };
    let exe = std::env::current_exe()
        .map_err(|e| missing(format!("cannot locate dfukit itself: {e}")))?;
    let bin_dir = exe
        .parent()
        .ok_or_else(|| missing("dfukit has no parent directory".into()))?;
    // Test binaries live in target/<profile>/deps; the library may be in either.
    let candidates = [
        bin_dir.to_path_buf(),
        bin_dir.join(".."),
        bin_dir.join("deps"),
    ];
    let lib = candidates
        .iter()
        .map(|d| d.join("libdfukit_libusb.so"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            missing(format!(
                "libdfukit_libusb.so not found next to {}",
                exe.display()
            ))
        })?;
    let dir = bin_dir.join("libusb-shim");
    std::fs::create_dir_all(&dir)
        .map_err(|e| missing(format!("cannot create {}: {e}", dir.display())))?;
    let link = dir.join("libusb-1.0.so.0");
    let target =
        std::fs::canonicalize(&lib).map_err(|e| missing(format!("{}: {e}", lib.display())))?;
    if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| missing(format!("cannot link {}: {e}", link.display())))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::with_default_port;

    #[test]
    fn usbip_address_gets_the_default_port() {
        assert_eq!(with_default_port("127.0.0.1"), "127.0.0.1:3240");
        assert_eq!(with_default_port("127.0.0.1:4000"), "127.0.0.1:4000");
        assert_eq!(with_default_port("localhost"), "localhost:3240");
        assert_eq!(with_default_port("[::1]:5000"), "[::1]:5000");
    }
}
