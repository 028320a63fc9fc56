//! Operation durations from the parts' datasheets.

use dfukit_core::FlashOp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which datasheet column to model durations with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TimingCorner {
    /// Typical figures: what a benchmark should expect.
    #[default]
    Typical,
    /// Maximum figures: what a timeout must allow for.
    Max,
}

/// How long operations take on a part, from its datasheet.
///
/// An erase costs the per-unit figure for every `erase_unit` it covers; a
/// program costs the per-unit figure for every started `program_unit`
/// (a 4-byte program on a 256-byte-page part pays for a whole page: the
/// datasheets give the page figure only, and erring slow keeps timeouts
/// honest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlashTiming {
    /// Bytes covered by one erase figure.
    pub erase_unit: u32,
    /// Typical time to erase one `erase_unit`.
    pub erase_typ: Duration,
    /// Maximum time to erase one `erase_unit`.
    pub erase_max: Duration,
    /// Bytes covered by one program figure.
    pub program_unit: u32,
    /// Typical time to program one `program_unit`.
    pub program_typ: Duration,
    /// Maximum time to program one `program_unit`.
    pub program_max: Duration,
    /// The column [`duration`](Self::duration) uses.
    pub corner: TimingCorner,
}

impl FlashTiming {
    /// nRF52840 NVMC, from the nRF52840 Product Specification (v1.x),
    /// NVMC "Electrical specification":
    /// `tWRITE` (time to write one 32-bit word) = 41 µs and
    /// `tERASEPAGE` (time to erase one 4 KiB page) = 85 ms.
    /// The specification gives these as maxima only, with no typical value,
    /// so both columns hold the maximum.
    pub fn nrf52840_internal() -> Self {
        FlashTiming {
            erase_unit: 4096,
            erase_typ: Duration::from_millis(85),
            erase_max: Duration::from_millis(85),
            program_unit: 4,
            program_typ: Duration::from_micros(41),
            program_max: Duration::from_micros(41),
            corner: TimingCorner::Typical,
        }
    }

    /// Macronix MX25R6435F in high-performance mode, from its datasheet,
    /// "Erase and Programming Performance": page program (256 B) `tPP`
    /// 0.85 ms typical, 4 ms maximum; 4 KiB sector erase `tSE` 40 ms typical,
    /// 240 ms maximum. (The part's own SFDP table, as copied into Zephyr's
    /// nRF52840/nRF5340 DK device trees, rounds these up to 896 µs and 48 ms
    /// typical, in its coarser encoding.) Low-power mode, the power-on
    /// default, is slower; the nRF QSPI drivers switch to high-performance.
    pub fn mx25r6435f() -> Self {
        FlashTiming {
            erase_unit: 4096,
            erase_typ: Duration::from_millis(40),
            erase_max: Duration::from_millis(240),
            program_unit: 256,
            program_typ: Duration::from_micros(850),
            program_max: Duration::from_millis(4),
            corner: TimingCorner::Typical,
        }
    }

    /// Every operation takes no time ("timing off"): for tests that only
    /// care about contents and order.
    pub fn instant() -> Self {
        FlashTiming {
            erase_unit: 1,
            erase_typ: Duration::ZERO,
            erase_max: Duration::ZERO,
            program_unit: 1,
            program_typ: Duration::ZERO,
            program_max: Duration::ZERO,
            corner: TimingCorner::Typical,
        }
    }

    /// The same figures, reporting the other column.
    pub fn with_corner(mut self, corner: TimingCorner) -> Self {
        self.corner = corner;
        self
    }

    /// Modelled duration of `op` in the configured column.
    pub fn duration(&self, op: &FlashOp<'_>) -> Duration {
        self.duration_at(op, self.corner)
    }

    /// Modelled duration of `op` in the given column.
    pub fn duration_at(&self, op: &FlashOp<'_>, corner: TimingCorner) -> Duration {
        let (per, unit) = match (op, corner) {
            (FlashOp::Erase { .. }, TimingCorner::Typical) => (self.erase_typ, self.erase_unit),
            (FlashOp::Erase { .. }, TimingCorner::Max) => (self.erase_max, self.erase_unit),
            (FlashOp::Program { .. }, TimingCorner::Typical) => {
                (self.program_typ, self.program_unit)
            }
            (FlashOp::Program { .. }, TimingCorner::Max) => (self.program_max, self.program_unit),
        };
        let units = op.len().div_ceil(unit.max(1));
        per.saturating_mul(units)
    }
}
