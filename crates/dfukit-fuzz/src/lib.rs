//! The bodies of dfukit's fuzz targets: one function per input format a user or a device
//! can hand dfukit, each taking arbitrary bytes.
//!
//! cargo-fuzz (`fuzz/`, nightly) calls them under libFuzzer; the stable test suite replays
//! every file of `fuzz/seeds/<target>/`, `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through them
//! (`tests/corpora.rs`), so a finding fixed once stays fixed without nightly.
//!
//! A body does more than "must not panic" where the format allows: what parses is encoded
//! again and must parse to the same value (`.dfu` files, SLIP frames, Intel HEX), and what a
//! parser accepts must be usable by the code that consumes it (a package's display, an
//! image's info, a layout's lookups). A broken invariant panics, which libFuzzer reports as a
//! crash and the replay test as a failure.
#![warn(missing_docs)]

pub mod dfuse_device;
mod libusb_descriptors;
mod script;
pub mod secure_dfu_device;
pub mod stm32prog_device;

pub use dfuse_device::dfuse_device;
pub use libusb_descriptors::libusb_descriptors;
pub use secure_dfu_device::secure_dfu_device;
use std::path::Path;
pub use stm32prog_device::stm32prog_device;

/// A fuzz target: its name (of its seed, corpus and regression directories and of its cargo-fuzz binary) and its
/// body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    ("flashlayout_tsv", flashlayout_tsv),
    ("stm32_image", stm32_image),
    ("init_packet", init_packet),
    ("nordic_package", nordic_package),
    ("slip", slip),
    ("secure_dfu_messages", secure_dfu_messages),
    ("dfu_file", dfu_file),
    ("firmware_hex", firmware_hex),
    ("firmware_elf", firmware_elf),
    ("usbip_messages", usbip_messages),
    ("libusb_descriptors", libusb_descriptors),
    ("dfuse_device", dfuse_device),
    ("secure_dfu_device", secure_dfu_device),
    ("stm32prog_device", stm32prog_device),
];

/// A flashlayout as STM32CubeProgrammer users write it, through both readers: the host's
/// checker (`stm32mp check`, `flash`, `sdcard`) and U-Boot's rules in the stm32prog device
/// core. They disagree on purpose for some inputs (see `dfukit_stm32mp::stm32prog`); neither
/// may panic, and what the host accepts must stay usable.
pub fn flashlayout_tsv(data: &[u8]) {
    let path = Path::new("FlashLayout.tsv");
    if let Ok(layout) = dfukit_stm32mp::layout::parse_bytes(data, path) {
        let _ = format!("{layout:?}");
    }
    let _ = dfukit_stm32mp::stm32prog::flashlayout::parse_flash_layout(data);
}

/// An STM32 image header (FSBL, FIP wrapper) as `stm32mp image-info` and the ROM model read
/// it: whatever parses can be shown as text and JSON.
pub fn stm32_image(data: &[u8]) {
    if let Ok(info) = dfukit_stm32mp::image::inspect(data) {
        let _ = info.to_string();
        let _ = info.to_json_string();
    }
    let _ = dfukit_stm32mp::image::parse(data);
}

/// A Secure DFU init packet (`.dat`), as the device core decodes it.
pub fn init_packet(data: &[u8]) {
    let _ = dfukit_nordic::init_packet::decode(data);
}

/// An nrfutil package zip: manifest, init packets and images, as `pkg display` and
/// `nordic dfu` read it. A package that opens can be displayed and listed.
pub fn nordic_package(data: &[u8]) {
    if let Ok(pkg) = dfukit_nordic::package::Package::from_zip_bytes(Path::new("fuzz.zip"), data) {
        let _ = pkg.display();
        let _ = pkg.to_json();
        let _ = pkg.warnings();
    }
}

/// SLIP bytes from a serial port: every frame the decoder gives, encoded again and decoded,
/// is the same frame.
pub fn slip(data: &[u8]) {
    use dfukit_nordic::slip::{encode, Decoded, Decoder};
    let mut rx: Decoder<2056> = Decoder::new();
    for &b in data {
        if let Decoded::Frame(n) = rx.push(b) {
            let frame = rx.frame(n).to_vec();
            let mut wire = Vec::new();
            encode(&frame, &mut |c| wire.extend_from_slice(c));
            let mut again: Decoder<2056> = Decoder::new();
            let back: Vec<Vec<u8>> = wire
                .iter()
                .filter_map(|&c| match again.push(c) {
                    Decoded::Frame(m) => Some(again.frame(m).to_vec()),
                    _ => None,
                })
                .collect();
            assert_eq!(back, [frame], "SLIP frame does not survive a round trip");
        }
    }
}

/// Secure DFU control-point messages: a request as the bootloader parses it, and the same
/// bytes as a response to each request the host can be waiting on.
pub fn secure_dfu_messages(data: &[u8]) {
    use dfukit_nordic::proto::{Opcode, Response, SecureDfuRequest};
    if let Ok(req) = SecureDfuRequest::parse(data) {
        let mut out = Vec::new();
        req.encode(&mut |b| out.extend_from_slice(b));
        let again = SecureDfuRequest::parse(&out).expect("an encoded request parses");
        assert_eq!(again.opcode(), req.opcode());
    }
    for op in (0..=0xFFu8).filter_map(Opcode::from_u8) {
        let _ = Response::parse(data, op);
    }
}

/// A `.dfu` file or a suffixed binary, as `usb download`, `usb info` and the simulated boards
/// read it: a DfuSe file that parses is written again byte-compatible and parses to the same
/// targets.
pub fn dfu_file(data: &[u8]) {
    use dfukit_usbdfu::files::{check_suffix, probe_prefix, DfuseFile};
    if let Ok(s) = check_suffix(data) {
        let _ = probe_prefix(s.payload);
    }
    if let Ok(file) = DfuseFile::parse(data) {
        let bytes = file.to_bytes().expect("a parsed file can be written");
        let again = DfuseFile::parse(&bytes).expect("a written file parses");
        assert_eq!(again, file, ".dfu does not survive a round trip");
    }
}

/// An Intel HEX file: the segments it gives, written as HEX again, read back the same.
pub fn firmware_hex(data: &[u8]) {
    let path = Path::new("fuzz.hex");
    if let Ok(segments) = dfukit_firmware::segments(path, data) {
        let refs: Vec<(u32, &[u8])> = segments.iter().map(|(a, d)| (*a, d.as_slice())).collect();
        let text = dfukit_firmware::to_intel_hex(&refs);
        let again = dfukit_firmware::segments(path, text.as_bytes()).expect("written HEX parses");
        assert_eq!(again, segments, "HEX does not survive a round trip");
        let _ = dfukit_firmware::flatten(path, &refs);
    }
}

/// An ELF file, as `usb pack -i` and `pkg generate` read it.
pub fn firmware_elf(data: &[u8]) {
    let _ = dfukit_firmware::segments(Path::new("fuzz.elf"), data);
}

/// USB/IP messages as the server reads a client's and the client reads a server's: every
/// decoder, and a message that decodes is encoded again to the same value.
pub fn usbip_messages(data: &[u8]) {
    use dfukit_usbip::wire::*;
    let _ = OpHeader::decode(data);
    let _ = OpReqDevlist::decode(data);
    let _ = OpRepDevlist::decode(data);
    if let Ok(req) = OpReqImport::decode(data) {
        let bytes = req.encode().expect("a decoded import request encodes");
        assert_eq!(OpReqImport::decode(&bytes).ok(), Some(req));
    }
    let _ = OpRepImport::decode(data);
    let _ = DeviceRecord::decode(data);
    let _ = InterfaceRecord::decode(data);
    if let Ok(cmd) = CmdSubmit::decode(data) {
        assert_eq!(CmdSubmit::decode(&cmd.encode()).ok(), Some(cmd));
    }
    let _ = RetSubmit::decode(data, Direction::In);
    let _ = RetSubmit::decode(data, Direction::Out);
    let _ = CmdUnlink::decode(data);
    let _ = RetUnlink::decode(data);
}
