//! Nordic updates as several commands run them (`nordic dfu serial` and
//! `ble`, the demo, the serial benchmark): opening a package and a serial
//! port with diagnostics, and sending a package's images through the host
//! with a progress bar per image.

use super::diag::Diag;
use super::progress::{self, Task};
use dfukit_nordic::host::serial::SlipLink;
use dfukit_nordic::host::{self, SecureDfuLink, UpdateEvent, UpdateOptions};
use dfukit_nordic::package::{ImageKind, Package, PackageError};
use dfukit_transport::serial::SerialPort;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An update of the device on a serial port, with `dfu serial`'s options.
#[derive(Debug, Clone)]
pub struct SerialUpdate {
    /// The update package (.zip).
    pub package: PathBuf,
    /// The serial port.
    pub port: PathBuf,
    /// Packet receipt notification interval (0: CRC checked once per object).
    pub prn: u16,
    /// Baud rate (ignored by USB CDC and ptys).
    pub baud: u32,
    /// How long to wait for each response.
    pub timeout: Duration,
    /// RTS/CTS hardware flow control (nrfutil's `-fc 1`).
    pub rts_cts: bool,
    /// How long to wait after opening the port before the first request
    /// (nrfutil's `-cd`: a USB CDC bootloader may need a moment).
    pub connect_delay: Duration,
}

impl SerialUpdate {
    /// `package` to `port` with the defaults of the command line.
    pub fn new(package: &Path, port: &Path) -> Self {
        SerialUpdate {
            package: package.to_path_buf(),
            port: port.to_path_buf(),
            prn: 0,
            baud: 115_200,
            timeout: Duration::from_secs(5),
            rts_cts: false,
            connect_delay: Duration::ZERO,
        }
    }
}

/// Opens `path` as a serial port, or says why it cannot be one.
pub fn open_port(path: &Path, baud: u32, rts_cts: bool) -> Result<SerialPort, Diag> {
    dfukit_transport::serial::open_port(path, baud, rts_cts).map_err(|e| {
            Diag::new(
                "dfukit::nordic::dfu::port",
                format!("cannot open {} as a serial port: {e}", path.display()),
                "check the path (ls /dev/ttyACM* /dev/ttyUSB*), that it is a serial device, and that no other program holds it; for a simulated board use the pty path it printed",
            )
        })
}

/// Opens a package with a diagnostic on failure.
pub fn open_package(path: &Path) -> Result<Package, Diag> {
    Package::open(path).map_err(open_diag)
}

/// A package that could not be opened, as a diagnostic with its own code and help.
pub fn open_diag(e: PackageError) -> Diag {
    let (code, help) = match &e {
        PackageError::Io { .. } => ("dfukit::nordic::pkg::io", "check the file exists and is readable"),
        PackageError::NotZip { .. } | PackageError::CorruptMember { .. } => (
            "dfukit::nordic::pkg::corrupt_zip",
            "the file is damaged or not a package: download or regenerate it",
        ),
        PackageError::MissingManifest { .. } | PackageError::BadManifest { .. } | PackageError::EmptyManifest { .. } => (
            "dfukit::nordic::pkg::manifest",
            "this is not a Nordic DFU package; generate one with `dfukit nordic pkg generate`",
        ),
        PackageError::MemberTooLarge { .. } | PackageError::MemberLongerThanDeclared { .. } => (
            "dfukit::nordic::pkg::too_large",
            "no Nordic device holds an image this large: the archive is damaged or crafted; download or regenerate the package",
        ),
        PackageError::SlotTypeMismatch { .. } => (
            "dfukit::nordic::pkg::slot_type_mismatch",
            "the manifest puts the image in the wrong slot (the bootloader would activate it as that type): regenerate the package with the image in its own option (--application, --bootloader, --softdevice)",
        ),
        PackageError::MissingFile { .. } => {
            ("dfukit::nordic::pkg::missing_file", "the package is incomplete: regenerate it")
        }
        PackageError::InitPacket { .. } => (
            "dfukit::nordic::pkg::init_packet",
            "the init packet is corrupt or not a dfu-cc.proto packet: regenerate the package",
        ),
        PackageError::SizeMismatch { .. } | PackageError::HashMismatch { .. } => (
            "dfukit::nordic::pkg::image_mismatch",
            "the firmware does not match its init packet (modified after packaging?): regenerate the package",
        ),
    };
    Diag::new(code, e.to_string(), help)
}

/// What an update did, for summaries.
pub struct UpdateSummary {
    /// Time of the transfers, by the link's clock.
    pub elapsed: Duration,
}

/// Updates the device on `a.port` with every image of `a.package`.
pub fn update_serial(a: &SerialUpdate) -> Result<UpdateSummary, Diag> {
    let pkg = open_package(&a.package)?;
    let port = open_port(&a.port, a.baud, a.rts_cts)?;
    std::thread::sleep(a.connect_delay);
    let mut link = SlipLink::new(port);
    let opts = UpdateOptions {
        prn: a.prn,
        response_timeout: a.timeout,
        ..UpdateOptions::default()
    };
    update_package(&mut link, &opts, &pkg, &a.package)
}

/// How long the bootloader may take to come back after activating a
/// SoftDevice or bootloader (the MBR's copy and a reset; nrfutil waits
/// seconds too) before the next image of a package.
pub const RECONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Sends every image of `pkg` over `link`, with a progress bar per image;
/// after an image whose activation resets the device, waits for the
/// bootloader to come back before the next.
pub fn update_package(
    link: &mut impl SecureDfuLink,
    opts: &UpdateOptions,
    pkg: &Package,
    path: &Path,
) -> Result<UpdateSummary, Diag> {
    // The link's clock, as the host's own waits use it.
    let start = link.now();
    let count = pkg.images.len();
    for (i, img) in pkg.images.iter().enumerate() {
        let label = image_label(img.kind, i, count);
        send_image(link, opts, img, path, &label, (i, count))?;
        if resets_device(img.kind) && i + 1 < count {
            let waited = host::wait_for_bootloader(link, opts, RECONNECT_DEADLINE)
                .map_err(|e| did_not_come_back(img.kind, &e))?;
            reconnected(waited);
        }
    }
    Ok(UpdateSummary {
        elapsed: link.since(start),
    })
}

/// The words for an image kind in progress lines.
fn kind_words(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::SoftdeviceBootloader => "softdevice+bootloader",
        other => other.display_name(),
    }
}

/// An image's name in progress lines: "softdevice+bootloader (1 of 2)" in a package of
/// several images, the kind alone ("application") in a package of one.
pub fn image_label(kind: ImageKind, index: usize, count: usize) -> String {
    if count > 1 {
        format!("{} ({} of {count})", kind_words(kind), index + 1)
    } else {
        kind_words(kind).to_string()
    }
}

/// Whether activating an image of `kind` resets the device into its
/// (possibly new) bootloader before anything else can be sent.
pub fn resets_device(kind: ImageKind) -> bool {
    kind != ImageKind::Application
}

/// The event line for a bootloader that answered again after `waited`.
pub fn reconnected(waited: Duration) {
    progress::event(
        "reconnected",
        &format!("reconnected after reset ({:.1} s)", waited.as_secs_f64()),
        json!({"seconds": waited.as_secs_f64()}),
    );
}

/// The bootloader did not answer again after activating an image of `kind`.
pub fn did_not_come_back(kind: ImageKind, e: &host::UpdateError) -> Diag {
    Diag::new(
        "dfukit::nordic::dfu::no_reconnect",
        format!(
            "the device did not come back after activating the {} ({e}); the next image was not sent",
            kind_words(kind).replace("softdevice", "SoftDevice")
        ),
        "check that the device is powered and on the same port (a USB CDC bootloader may re-enumerate under another name), then run the same command again: the images already activated are skipped by the bootloader's version checks or sent again",
    )
}

/// The firmware of a package image, or why there is none to send.
pub fn firmware_of<'a>(
    img: &'a dfukit_nordic::package::PackageImage,
    path: &Path,
) -> Result<&'a [u8], Diag> {
    img.firmware.as_deref().ok_or_else(|| {
        Diag::new(
            "dfukit::nordic::pkg::no_firmware",
            format!(
                "{} holds only an init packet ({})",
                path.display(),
                img.dat_file
            ),
            "updates need a .zip package with the firmware image",
        )
    })
}

/// Sends one image, image `at.0` of `at.1`, under the progress label `label`.
pub fn send_image(
    link: &mut impl SecureDfuLink,
    opts: &UpdateOptions,
    img: &dfukit_nordic::package::PackageImage,
    path: &Path,
    label: &str,
    at: (usize, usize),
) -> Result<(), Diag> {
    let fw = firmware_of(img, path)?;
    let mut task = Task::start(label, fw.len() as u64);
    let result = host::update(link, opts, &img.init_packet, fw, &mut |e| {
        report(&mut task, e)
    });
    if let Err(e) = result {
        task.fail();
        return Err(e.into());
    }
    task.finish(
        &format!("{} bytes sent and accepted", fw.len()),
        json!({"bytes": fw.len(), "image": at.0 + 1, "count": at.1}),
    );
    Ok(())
}

/// One update event as a progress step or a line of its own (see
/// [`super::progress`]): resumes, recoveries and retries are always shown.
pub fn report(task: &mut Task, e: UpdateEvent) {
    match e {
        UpdateEvent::Connected { mtu, chunk } => task.event(
            "connected",
            &format!("connected: MTU {mtu}, {chunk}-byte writes"),
            json!({"mtu": mtu, "chunk": chunk}),
        ),
        UpdateEvent::InitPacketSent { resumed } => task.event(
            "init_packet",
            if resumed {
                "init packet already on the device"
            } else {
                "init packet sent"
            },
            json!({"resumed": resumed}),
        ),
        UpdateEvent::Resumed { offset } => task.event(
            "resumed",
            &format!("resuming at byte {offset}: the device already holds the first part"),
            json!({"offset": offset}),
        ),
        UpdateEvent::Progress { done, total } => task.progress(u64::from(done), u64::from(total)),
        UpdateEvent::Recovered { object, offset, lost } => task.event(
            "recovered",
            &match object {
                Some(o) => format!("object {o}: the device dropped {lost} bytes; sending again from byte {offset}"),
                None => format!("init packet: the device dropped {lost} bytes; sending again from byte {offset}"),
            },
            json!({"object": object, "offset": offset, "lost": lost}),
        ),
        UpdateEvent::Retry { object, reason } => task.event(
            "retry",
            &format!("retrying object {object}: {reason}"),
            json!({"object": object, "reason": reason}),
        ),
        UpdateEvent::Reconnect { attempt, reason } => task.event(
            "reconnect",
            &format!("starting again (retry {attempt}) after: {reason}"),
            json!({"attempt": attempt, "reason": reason}),
        ),
        UpdateEvent::Done => {}
    }
}
