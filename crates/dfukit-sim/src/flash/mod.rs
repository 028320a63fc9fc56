//! NOR flash chip models: geometry, timing, physics, power cuts.
//!
//! A [`FlashChip`] applies [`FlashOp`]s the way NOR flash behaves and tells
//! how long each would take on the real part:
//!
//! - erased bytes read [`ERASED`] (0xFF); erases cover whole erase units;
//! - programming can only clear bits (the new contents are `old & data`);
//!   in *strict* mode (the default) programming over a byte that is not
//!   erased is an error, like embassy-boot's `MemFlash` and MCUboot's
//!   `simflash`, so a core that forgets an erase fails its tests;
//! - programs are aligned to the write unit and never cross a program page;
//! - an operation can be applied only in part ([`FlashChip::apply_partial`])
//!   to model power lost part-way: a program leaves a prefix, an erase leaves
//!   earlier erase units erased and the one in progress with random bits set
//!   (seeded, so a trial replays exactly).
//!
//! Invalid operations are rejected before any byte changes.

use std::time::Duration;

use dfukit_core::{FlashOp, ReadError, ReadFlash};
use serde::{Deserialize, Serialize};

use crate::clock::SimRng;
use crate::storage::{Storage, StorageError, ERASED};

mod geometry;
mod timing;

pub use geometry::{stm32f4_sectors, EraseSector, FlashGeometry};
pub use timing::{FlashTiming, TimingCorner};

/// Which kind of operation an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// An erase.
    Erase,
    /// A program (write).
    Program,
}

impl OpKind {
    fn of(op: &FlashOp<'_>) -> Self {
        match op {
            FlashOp::Erase { .. } => OpKind::Erase,
            FlashOp::Program { .. } => OpKind::Program,
        }
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpKind::Erase => "erase",
            OpKind::Program => "program",
        })
    }
}

/// Why the model refused an operation or a read.
#[derive(Debug, thiserror::Error)]
pub enum FlashModelError {
    /// The range is not entirely on this chip.
    #[error(
        "{op} of {len} bytes at {addr:#010x} is outside the chip ({start:#010x}..{end:#010x})"
    )]
    OutOfBounds {
        /// What was attempted.
        op: OpKind,
        /// First address of the range.
        addr: u32,
        /// Length of the range.
        len: u32,
        /// The chip's first address.
        start: u32,
        /// One past the chip's last address (as u64: a chip may end at 4 GiB).
        end: u64,
    },
    /// Address or length is not a multiple of the unit the operation needs
    /// (the erase size for erases, the write unit for programs).
    #[error("{op} of {len} bytes at {addr:#010x} is not aligned to {align} bytes")]
    Unaligned {
        /// What was attempted.
        op: OpKind,
        /// First address of the range.
        addr: u32,
        /// Length of the range.
        len: u32,
        /// The required alignment in bytes.
        align: u32,
    },
    /// A program crosses a program-page boundary; a real QSPI NOR part would
    /// wrap around inside the page and corrupt its start.
    #[error("program of {len} bytes at {addr:#010x} crosses a {page}-byte program page boundary")]
    CrossesProgramPage {
        /// First address of the range.
        addr: u32,
        /// Length of the range.
        len: u32,
        /// The program page size.
        page: u32,
    },
    /// Strict mode: a byte in the range was not erased before programming.
    #[error("program over non-erased flash at {addr:#010x} (erase before write)")]
    ProgramOverNonErased {
        /// The first byte in the range that was not erased.
        addr: u32,
    },
    /// A read from an address that is not on this chip.
    #[error(
        "read of {len} bytes at {addr:#010x} is outside the chip ({start:#010x}..{end:#010x})"
    )]
    ReadOutOfBounds {
        /// First address of the range.
        addr: u32,
        /// Length of the range.
        len: u32,
        /// The chip's first address.
        start: u32,
        /// One past the chip's last address.
        end: u64,
    },
    /// The geometry does not describe a possible chip.
    #[error("invalid flash geometry: {reason}")]
    InvalidGeometry {
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The storage is not the size the geometry says.
    #[error("storage is {actual} bytes but the chip geometry needs {expected}")]
    StorageSize {
        /// The geometry's size.
        expected: u64,
        /// The storage's size.
        actual: u64,
    },
    /// The backing file could not be written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How far an interrupted operation got.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CutPoint {
    /// This fraction of the operation's bytes (0.0 ..= 1.0; clamped, NaN is 0).
    Fraction(f64),
    /// This many of the operation's bytes (clamped to its length).
    Bytes(u32),
}

impl CutPoint {
    /// How many of `len` bytes were reached before the cut.
    pub fn bytes_of(&self, len: u32) -> u32 {
        match *self {
            CutPoint::Bytes(n) => n.min(len),
            CutPoint::Fraction(f) if f.is_nan() || f <= 0.0 => 0,
            CutPoint::Fraction(f) if f >= 1.0 => len,
            CutPoint::Fraction(f) => (f64::from(len) * f).floor() as u32,
        }
    }
}

/// Running totals of what a chip did, for benchmarks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlashCounters {
    /// Erase operations applied (in full or in part).
    pub erases: u64,
    /// Program operations applied (in full or in part).
    pub programs: u64,
    /// Bytes that an erase reached (in part for an interrupted erase).
    pub bytes_erased: u64,
    /// Bytes programmed (the prefix only for an interrupted program).
    pub bytes_programmed: u64,
    /// Operations applied only in part.
    pub interrupted: u64,
    /// Sum of modelled durations.
    pub busy: Duration,
}

/// A NOR flash chip: geometry, timing, contents and counters.
#[derive(Debug)]
pub struct FlashChip {
    geometry: FlashGeometry,
    timing: FlashTiming,
    storage: Storage,
    strict: bool,
    counters: FlashCounters,
    rng: SimRng,
    /// Uneven erase sectors, if the part has them: erases must then cover
    /// whole sectors, and each costs its own datasheet time.
    sectors: Option<Vec<EraseSector>>,
}

/// Seed for the garbage of interrupted erases until [`FlashChip::set_rng`]
/// is called; fixed so that even a board that never seeds is reproducible.
const DEFAULT_GARBAGE_SEED: u64 = 0x6466_756b_6974; // "dfukit"

impl FlashChip {
    /// A chip over `storage`, which must be exactly `geometry.size` bytes.
    pub fn new(
        geometry: FlashGeometry,
        timing: FlashTiming,
        storage: Storage,
    ) -> Result<Self, FlashModelError> {
        geometry.validate()?;
        if storage.len() as u64 != u64::from(geometry.size) {
            return Err(FlashModelError::StorageSize {
                expected: u64::from(geometry.size),
                actual: storage.len() as u64,
            });
        }
        Ok(FlashChip {
            geometry,
            timing,
            storage,
            strict: true,
            counters: FlashCounters::default(),
            rng: SimRng::new(DEFAULT_GARBAGE_SEED),
            sectors: None,
        })
    }

    /// STM32F405/407 internal flash: 1 MiB at 0x0800_0000 with the sectors
    /// of [`stm32f4_sectors`]. Programs may be of any byte length at any
    /// address: the flash interface programs bytes, half-words or words
    /// (PSIZE, RM0090 "Flash program and erase operations"), and the ROM
    /// bootloader writes a DfuSe block's length as it comes. Times are
    /// those of x32 parallelism (16 µs typical, 100 µs maximum per started
    /// word, STM32F405xx datasheet).
    pub fn stm32f4_internal(storage: Storage) -> Result<Self, FlashModelError> {
        let geometry = FlashGeometry {
            base: 0x0800_0000,
            size: 1024 * 1024,
            erase_size: 16 * 1024,
            write_unit: 1,
            max_program: 16 * 1024,
        };
        let timing = FlashTiming {
            erase_unit: 16 * 1024,
            erase_typ: Duration::from_millis(250),
            erase_max: Duration::from_millis(500),
            program_unit: 4,
            program_typ: Duration::from_micros(16),
            program_max: Duration::from_micros(100),
            corner: TimingCorner::Typical,
        };
        let mut chip = Self::new(geometry, timing, storage)?;
        chip.sectors = Some(stm32f4_sectors());
        Ok(chip)
    }

    /// The chip's uneven sectors, if it has them.
    pub fn sectors(&self) -> Option<&[EraseSector]> {
        self.sectors.as_deref()
    }

    /// Modelled duration of `op`: per-sector erase times where the part has
    /// uneven sectors, else the uniform figures.
    fn duration_of(&self, op: &FlashOp<'_>) -> Duration {
        match (&self.sectors, op) {
            (Some(sectors), FlashOp::Erase { addr, len }) if self.timing.erase_unit > 1 => sectors
                .iter()
                .filter(|s| s.start >= *addr && s.start < addr + len)
                .map(|s| match self.timing.corner {
                    TimingCorner::Typical => s.erase_typ,
                    TimingCorner::Max => s.erase_max,
                })
                .sum(),
            _ => self.timing.duration(op),
        }
    }

    /// nRF52840 internal flash ([`FlashGeometry::NRF52840_INTERNAL`],
    /// [`FlashTiming::nrf52840_internal`]); `storage` must be 1 MiB.
    pub fn nrf52840_internal(storage: Storage) -> Result<Self, FlashModelError> {
        Self::new(
            FlashGeometry::NRF52840_INTERNAL,
            FlashTiming::nrf52840_internal(),
            storage,
        )
    }

    /// MX25R6435F on the nRF52840 QSPI
    /// ([`FlashGeometry::MX25R6435F_ON_NRF52840`], [`FlashTiming::mx25r6435f`]);
    /// `storage` must be 8 MiB.
    pub fn mx25r6435f(storage: Storage) -> Result<Self, FlashModelError> {
        Self::new(
            FlashGeometry::MX25R6435F_ON_NRF52840,
            FlashTiming::mx25r6435f(),
            storage,
        )
    }

    /// The chip's geometry.
    pub fn geometry(&self) -> &FlashGeometry {
        &self.geometry
    }

    /// The chip's timing.
    pub fn timing(&self) -> &FlashTiming {
        &self.timing
    }

    /// Replaces the timing (e.g. [`FlashTiming::instant`] to turn timing off).
    pub fn set_timing(&mut self, timing: FlashTiming) {
        self.timing = timing;
    }

    /// Whether programming over non-erased bytes is an error (default true).
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// Strict off: programming over non-erased bytes ANDs them, as the
    /// silicon does (the nRF52840 allows two writes of a word per erase).
    pub fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// Seeds the garbage left by interrupted erases.
    pub fn set_rng(&mut self, rng: SimRng) {
        self.rng = rng;
    }

    /// Totals so far.
    pub fn counters(&self) -> FlashCounters {
        self.counters
    }

    /// Sets the totals back to zero.
    pub fn reset_counters(&mut self) {
        self.counters = FlashCounters::default();
    }

    /// The storage behind the chip.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// All contents, indexed from the chip's base address.
    pub fn contents(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// True when `addr..addr + len` lies on this chip.
    pub fn contains(&self, addr: u32, len: u32) -> bool {
        self.geometry.contains(addr, len)
    }

    /// Fills `buf` from `addr` (a bus address).
    pub fn read(&self, addr: u32, buf: &mut [u8]) -> Result<(), FlashModelError> {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        if !self.contains(addr, len) {
            return Err(FlashModelError::ReadOutOfBounds {
                addr,
                len,
                start: self.geometry.base,
                end: self.geometry.end(),
            });
        }
        self.storage.read((addr - self.geometry.base) as usize, buf);
        Ok(())
    }

    /// Checks `op` without changing anything; `Ok` means [`apply`](Self::apply)
    /// would succeed (barring a storage I/O error).
    pub fn check(&self, op: &FlashOp<'_>) -> Result<(), FlashModelError> {
        self.validate(op).map(|_| ())
    }

    /// Applies `op` in full and returns its modelled duration.
    pub fn apply(&mut self, op: &FlashOp<'_>) -> Result<Duration, FlashModelError> {
        let offset = self.validate(op)?;
        let len = op.len();
        match *op {
            FlashOp::Erase { .. } => {
                self.storage.write(offset, &vec![ERASED; len as usize])?;
                self.counters.erases += 1;
                self.counters.bytes_erased += u64::from(len);
            }
            FlashOp::Program { data, .. } => {
                self.program(offset, data)?;
                self.counters.programs += 1;
                self.counters.bytes_programmed += u64::from(len);
            }
        }
        let d = self.duration_of(op);
        self.counters.busy += d;
        Ok(d)
    }

    /// Applies `op` only up to `cut`, as when power fails part-way, and
    /// returns the modelled time until the cut.
    ///
    /// - A program leaves exactly its first `n` bytes programmed, `n` being
    ///   the cut rounded down to the write unit (the unit the part completes
    ///   atomically); the rest is untouched.
    /// - An erase proceeds one erase unit at a time: units before the cut are
    ///   erased, the unit in progress has each 0 bit turned to 1 with a
    ///   probability equal to how far into that unit the cut falls (drawn
    ///   from the chip's seeded generator), units after it are untouched.
    ///   A half-erased sector therefore reads neither as erased nor as its
    ///   old contents, and the same seed leaves the same bytes.
    ///
    /// The operation is validated in full first: an invalid op is refused
    /// without a change, exactly as [`apply`](Self::apply) would refuse it.
    pub fn apply_partial(
        &mut self,
        op: &FlashOp<'_>,
        cut: CutPoint,
    ) -> Result<Duration, FlashModelError> {
        let offset = self.validate(op)?;
        let len = op.len();
        let reached = cut.bytes_of(len);
        match *op {
            FlashOp::Erase { .. } => {
                let es = self.geometry.erase_size;
                let whole = reached / es * es;
                if whole > 0 {
                    self.storage.write(offset, &vec![ERASED; whole as usize])?;
                }
                let into = reached - whole;
                if into > 0 {
                    let start = offset + whole as usize;
                    let p = f64::from(into) / f64::from(es);
                    let mut sector = vec![0; es as usize];
                    self.storage.read(start, &mut sector);
                    for byte in &mut sector {
                        let mut set = 0u8;
                        for bit in 0..8 {
                            if self.rng.chance(p) {
                                set |= 1 << bit;
                            }
                        }
                        *byte |= set;
                    }
                    self.storage.write(start, &sector)?;
                }
                self.counters.erases += 1;
                self.counters.bytes_erased += u64::from(reached);
            }
            FlashOp::Program { data, .. } => {
                let wu = self.geometry.write_unit;
                let n = (reached / wu * wu) as usize;
                self.program(offset, &data[..n])?;
                self.counters.programs += 1;
                self.counters.bytes_programmed += n as u64;
            }
        }
        self.counters.interrupted += 1;
        let full = self.duration_of(op);
        let d = if len == 0 {
            Duration::ZERO
        } else {
            full.mul_f64(f64::from(reached) / f64::from(len))
        };
        self.counters.busy += d;
        Ok(d)
    }

    /// ANDs `data` into the storage at `offset` (checks already done).
    fn program(&mut self, offset: usize, data: &[u8]) -> Result<(), FlashModelError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut new = vec![0; data.len()];
        self.storage.read(offset, &mut new);
        for (cell, &d) in new.iter_mut().zip(data) {
            *cell &= d;
        }
        self.storage.write(offset, &new)?;
        Ok(())
    }

    /// Checks bounds, alignment, page crossing and (strict) erase-before-write;
    /// returns the storage offset of the op's first byte.
    fn validate(&self, op: &FlashOp<'_>) -> Result<usize, FlashModelError> {
        let g = &self.geometry;
        let (kind, addr, len) = (OpKind::of(op), op.addr(), op.len());
        if !g.contains(addr, len) {
            return Err(FlashModelError::OutOfBounds {
                op: kind,
                addr,
                len,
                start: g.base,
                end: g.end(),
            });
        }
        let offset = addr - g.base;
        let align = match kind {
            OpKind::Erase => g.erase_size,
            OpKind::Program => g.write_unit,
        };
        if !offset.is_multiple_of(align) || len % align != 0 {
            return Err(FlashModelError::Unaligned {
                op: kind,
                addr,
                len,
                align,
            });
        }
        if let (Some(sectors), FlashOp::Erase { .. }) = (&self.sectors, op) {
            let starts = sectors.iter().any(|s| s.start == addr);
            let ends = sectors.iter().any(|s| {
                u64::from(s.start) + u64::from(s.size) == u64::from(addr) + u64::from(len)
            });
            if !starts || !ends {
                return Err(FlashModelError::Unaligned {
                    op: kind,
                    addr,
                    len,
                    align: sectors
                        .iter()
                        .find(|s| s.start <= addr && addr < s.start + s.size)
                        .map_or(g.erase_size, |s| s.size),
                });
            }
        }
        if let FlashOp::Program { .. } = op {
            if len > 0 && offset / g.max_program != (offset + len - 1) / g.max_program {
                return Err(FlashModelError::CrossesProgramPage {
                    addr,
                    len,
                    page: g.max_program,
                });
            }
            if self.strict {
                let range = &self.storage.bytes()[offset as usize..(offset + len) as usize];
                if let Some(i) = range.iter().position(|&b| b != ERASED) {
                    return Err(FlashModelError::ProgramOverNonErased {
                        addr: addr + i as u32,
                    });
                }
            }
        }
        Ok(offset as usize)
    }
}

impl ReadFlash for FlashChip {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), ReadError> {
        FlashChip::read(self, addr, buf).map_err(|_| {
            // The first address that could not be served.
            let addr = if addr < self.geometry.base {
                addr
            } else {
                u32::try_from(self.geometry.end()).unwrap_or(u32::MAX)
            };
            ReadError { addr }
        })
    }
}

#[cfg(test)]
mod tests;
