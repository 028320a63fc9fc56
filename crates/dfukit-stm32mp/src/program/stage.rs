//! The four programs a run talks to in turn, and how a device is
//! identified as one of them.

use super::error::FailureKind;
use crate::phase::{AltName, PhaseRecord, ID_FLASHLAYOUT, ID_FSBL, ID_SSBL};
use std::fmt;

/// Which program on the board the host is talking to.
///
/// Ordered as the flow runs: a run only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProgramStage {
    /// The ROM code, which receives the FSBL.
    Rom,
    /// TF-A (BL2), which receives the FIP; includes the hand-off from the
    /// ROM code.
    TfA,
    /// U-Boot's first enumeration, which receives the flashlayout.
    UBootLayout,
    /// U-Boot's programming enumeration, which receives the partitions.
    UBootProgram,
}

impl fmt::Display for ProgramStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgramStage::Rom => "ROM code (FSBL download)",
            ProgramStage::TfA => "TF-A (FIP download)",
            ProgramStage::UBootLayout => "U-Boot (flashlayout)",
            ProgramStage::UBootProgram => "U-Boot (partitions)",
        })
    }
}

/// Which stage a device is in, from its alternate settings and the first
/// phase record read from 0xF1:
///
/// - phase 0x01 with an alt of Id 0x01: the ROM code;
/// - phase 0x03: TF-A waiting for the FIP; phase 0x00 with the DETACH
///   request and no `@FlashLayout` alt: TF-A after the FIP;
/// - an `@FlashLayout/0x00` alt (phase 0x00, or 0xFF when U-Boot rejected
///   something): U-Boot's first enumeration;
/// - any other phase (a layout row, END, ERROR): U-Boot's programming
///   enumeration.
pub fn identify(alts: &[(u8, String)], record: &PhaseRecord) -> Result<ProgramStage, FailureKind> {
    let parsed: Vec<AltName> = alts.iter().filter_map(|(_, s)| AltName::parse(s)).collect();
    let has_id = |id: u8| parsed.iter().any(|a| a.id == id);
    let flashlayout = parsed
        .iter()
        .any(|a| a.id == ID_FLASHLAYOUT && a.name.eq_ignore_ascii_case("FlashLayout"));
    match record.phase {
        ID_FSBL if has_id(ID_FSBL) => Ok(ProgramStage::Rom),
        ID_FSBL => Err(FailureKind::Protocol {
            what: format!(
                "the device asks for the FSBL (phase 0x01) but offers no alternate setting with Id 0x01 (alts: {})",
                alt_list(alts)
            ),
        }),
        ID_SSBL => Ok(ProgramStage::TfA),
        ID_FLASHLAYOUT if record.detach_requested() && !flashlayout => Ok(ProgramStage::TfA),
        _ if flashlayout => Ok(ProgramStage::UBootLayout),
        ID_FLASHLAYOUT => Err(FailureKind::Protocol {
            what: format!(
                "the device reports phase 0x00 without a DETACH request and offers no `@FlashLayout/0x00` alternate setting (alts: {})",
                alt_list(alts)
            ),
        }),
        _ => Ok(ProgramStage::UBootProgram),
    }
}

/// `n: name` of each alternate setting, for messages.
pub(super) fn alt_list(alts: &[(u8, String)]) -> String {
    alts.iter()
        .map(|(n, s)| format!("{n}: {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phase::{NO_ADDRESS, PHASE_END, PHASE_ERROR};

    fn alts(names: &[&str]) -> Vec<(u8, String)> {
        names
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u8, s.to_string()))
            .collect()
    }

    fn rom_alts() -> Vec<(u8, String)> {
        alts(&crate::phase::ROM_ALTS)
    }

    fn uboot_program_alts() -> Vec<(u8, String)> {
        alts(&[
            "@fsbl1/0x04/1*256Ke",
            "@fip-a/0x08/1*4Me",
            "@rootfs/0x12/1*3072Me",
            "@virtual/0xf1/1*512Be",
        ])
    }

    #[test]
    fn identifies_rom_and_tf_a_on_the_same_alt_names() {
        let a = rom_alts();
        let rom = PhaseRecord::new(ID_FSBL, NO_ADDRESS, 0);
        assert_eq!(identify(&a, &rom), Ok(ProgramStage::Rom));
        let tfa = PhaseRecord::new(ID_SSBL, 0xC700_0000, 0);
        assert_eq!(identify(&a, &tfa), Ok(ProgramStage::TfA));
        // TF-A after the FIP: phase 0 with the DETACH byte.
        let mut detach = PhaseRecord::new(ID_FLASHLAYOUT, NO_ADDRESS, 0);
        detach.extra.push(1);
        assert_eq!(identify(&a, &detach), Ok(ProgramStage::TfA));
        // Phase 0 on TF-A's alts without the DETACH byte is nobody's state.
        let plain = PhaseRecord::new(ID_FLASHLAYOUT, NO_ADDRESS, 0);
        let e = identify(&a, &plain).unwrap_err();
        assert_eq!(e.code(), "dfukit::stm32mp::protocol");
    }

    #[test]
    fn identifies_u_boot_enumerations() {
        let first = alts(&["@FlashLayout/0x00/1*256Ke", "@virtual/0xf1/1*512Be"]);
        let mut rec = PhaseRecord::new(ID_FLASHLAYOUT, 0xC000_0000, 0);
        rec.extra.push(0);
        assert_eq!(identify(&first, &rec), Ok(ProgramStage::UBootLayout));
        // U-Boot's first enumeration reporting an error is still that stage,
        // so the error is attributed to the flashlayout.
        let e = PhaseRecord::error("Layout line 3: invalid part 'x'");
        assert_eq!(identify(&first, &e), Ok(ProgramStage::UBootLayout));
        // Even with the detach byte, the FlashLayout alt says U-Boot.
        let mut present = PhaseRecord::new(ID_FLASHLAYOUT, 0xC000_0000, 0);
        present.extra.push(1);
        assert_eq!(identify(&first, &present), Ok(ProgramStage::UBootLayout));

        let prog = uboot_program_alts();
        for phase in [0x04, 0x12, PHASE_END, PHASE_ERROR] {
            let r = PhaseRecord::new(phase, NO_ADDRESS, 0);
            assert_eq!(
                identify(&prog, &r),
                Ok(ProgramStage::UBootProgram),
                "{phase:#x}"
            );
        }
    }

    #[test]
    fn fsbl_phase_without_fsbl_alt_is_a_protocol_error() {
        let r = PhaseRecord::new(ID_FSBL, NO_ADDRESS, 0);
        let e = identify(&uboot_program_alts(), &r).unwrap_err();
        assert!(matches!(e, FailureKind::Protocol { .. }));
        assert!(e.to_string().contains("Id 0x01"), "{e}");
        assert!(e.to_string().contains("@fsbl1/0x04"), "{e}");
    }

    #[test]
    fn stages_are_ordered_and_named() {
        assert!(ProgramStage::Rom < ProgramStage::TfA);
        assert!(ProgramStage::TfA < ProgramStage::UBootLayout);
        assert!(ProgramStage::UBootLayout < ProgramStage::UBootProgram);
        assert_eq!(ProgramStage::Rom.to_string(), "ROM code (FSBL download)");
        assert_eq!(ProgramStage::TfA.to_string(), "TF-A (FIP download)");
        assert_eq!(
            ProgramStage::UBootLayout.to_string(),
            "U-Boot (flashlayout)"
        );
        assert_eq!(
            ProgramStage::UBootProgram.to_string(),
            "U-Boot (partitions)"
        );
    }
}
