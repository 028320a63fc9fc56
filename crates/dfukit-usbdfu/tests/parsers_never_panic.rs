//! Parsers never panic on arbitrary input.

use dfukit_usbdfu::dfuse::{Command, MemoryLayout};
use dfukit_usbdfu::files::{check_suffix, DfuseFile};
use dfukit_usbdfu::wire::{FunctionalDescriptor, GetStatus, SetupPacket};
use proptest::prelude::*;

proptest! {
    #[test]
    fn layout_strings(s in ".{0,80}") {
        if let Ok(l) = MemoryLayout::parse(&s) {
            // Lookups on whatever parsed stay panic-free too.
            let a = l.start();
            let _ = l.sector_at(a);
            let _ = l.first_denied(a, u32::MAX, dfukit_usbdfu::dfuse::Access::Write);
            let _ = l.sectors_in(a, 1 << 20).take(64).count();
            let _ = l.to_string();
        }
    }

    #[test]
    fn layout_like_strings(s in "@[A-Za-z ]{1,8}(/0x[0-9A-Fa-f]{1,9}/([0-9 ]{1,4}\\*[0-9]{1,6}[BKMabcdefg ]?[a-g,/ ]{0,2}){1,3}){1,3}") {
        let _ = MemoryLayout::parse(&s);
    }

    #[test]
    fn binary_parsers(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = check_suffix(&b);
        let _ = DfuseFile::parse(&b);
        let _ = GetStatus::from_bytes(&b);
        let _ = FunctionalDescriptor::from_bytes(&b);
        let _ = SetupPacket::from_slice(&b);
        let _ = Command::parse(&b);
    }

    #[test]
    fn dfuse_files_with_valid_suffix(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        // Give random bodies a valid DfuSe prefix and suffix so parsing goes deep.
        let mut body = b"DfuSe\x01".to_vec();
        body.extend_from_slice(&b);
        let f = dfukit_usbdfu::files::add_suffix(&body, &dfukit_usbdfu::files::Suffix {
            bcd_dfu: 0x011A,
            ..Default::default()
        });
        let _ = DfuseFile::parse(&f);
    }
}
