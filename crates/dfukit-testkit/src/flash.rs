//! A RAM-backed flash for device-core tests.

use dfukit_core::{FlashOp, ReadError, ReadFlash};

/// One memory region.
#[derive(Debug, Clone)]
pub struct Region {
    /// First address.
    pub start: u32,
    /// Contents.
    pub bytes: Vec<u8>,
    /// NOR flash: a program may only hit erased (0xFF) bytes. Otherwise
    /// RAM-like (option bytes, SRAM).
    pub nor: bool,
}

impl Region {
    /// `len` erased bytes of NOR flash at `start`.
    pub fn nor(start: u32, len: usize) -> Self {
        Region {
            start,
            bytes: vec![0xFF; len],
            nor: true,
        }
    }
}

/// A memory map of regions that applies flash operations with NOR rules.
///
/// By default a program over bytes that are not erased panics with the
/// address, so a core that forgets an erase fails its test where it
/// happens; [`TestFlash::recording`] records such programs in
/// [`TestFlash::violations`] instead, for tests that assert on them.
#[derive(Debug, Clone)]
pub struct TestFlash {
    /// The regions, in no particular order.
    pub regions: Vec<Region>,
    /// Programs issued over bytes that were not erased (first bad address),
    /// when recording.
    pub violations: Vec<u32>,
    /// Every erase applied, as (address, length).
    pub erases: Vec<(u32, u32)>,
    /// Every program applied, as (address, length).
    pub programs: Vec<(u32, u32)>,
    strict: bool,
}

impl TestFlash {
    /// A map of `regions` that panics on a program over unerased bytes.
    pub fn new(regions: Vec<Region>) -> Self {
        TestFlash {
            regions,
            violations: Vec::new(),
            erases: Vec::new(),
            programs: Vec::new(),
            strict: true,
        }
    }

    /// The same map, recording programs over unerased bytes instead of
    /// panicking.
    pub fn recording(mut self) -> Self {
        self.strict = false;
        self
    }

    /// nRF52840: 1 MiB internal flash at 0 and an 8 MiB MX25R6435F on
    /// QSPI at its XIP window, 0x1200_0000.
    pub fn nrf52840_with_qspi() -> Self {
        Self::new(vec![
            Region::nor(0, 1 << 20),
            Region::nor(0x1200_0000, 8 << 20),
        ])
    }

    /// STM32F4: 1 MiB internal flash (erased) at 0x0800_0000 and its 16
    /// bytes of option bytes at 0x1FFF_C000 (factory values).
    pub fn stm32f4() -> Self {
        Self::new(vec![
            Region::nor(0x0800_0000, 1 << 20),
            Region {
                start: 0x1FFF_C000,
                bytes: vec![
                    0xAA, 0x55, 0xFF, 0x0F, 0, 0, 0, 0, 0xAA, 0x55, 0xFF, 0x0F, 0, 0, 0, 0,
                ],
                nor: false,
            },
        ])
    }

    fn slice_mut(&mut self, addr: u32, len: usize) -> Option<(&mut [u8], bool)> {
        self.regions.iter_mut().find_map(|r| {
            let off = addr.checked_sub(r.start)? as usize;
            (off + len <= r.bytes.len()).then(|| (&mut r.bytes[off..off + len], r.nor))
        })
    }

    /// A copy of `len` bytes at `addr`; panics when they are not mapped.
    pub fn bytes(&mut self, addr: u32, len: usize) -> Vec<u8> {
        self.slice_mut(addr, len).expect("mapped").0.to_vec()
    }

    /// Overwrites the bytes at `addr` (test set-up, not a flash operation).
    pub fn fill(&mut self, addr: u32, data: &[u8]) {
        self.slice_mut(addr, data.len())
            .expect("mapped")
            .0
            .copy_from_slice(data);
    }

    /// Applies `op`; false when it touches unmapped memory or (recording)
    /// programs over bytes that are not erased.
    pub fn apply(&mut self, op: &FlashOp<'_>) -> bool {
        match *op {
            FlashOp::Erase { addr, len } => {
                self.erases.push((addr, len));
                match self.slice_mut(addr, len as usize) {
                    Some((s, _)) => {
                        s.fill(0xFF);
                        true
                    }
                    None => false,
                }
            }
            FlashOp::Program { addr, data } => {
                self.programs.push((addr, data.len() as u32));
                let strict = self.strict;
                let Some((s, nor)) = self.slice_mut(addr, data.len()) else {
                    return false;
                };
                let bad = nor
                    .then(|| s.iter().position(|&b| b != 0xFF))
                    .flatten()
                    .map(|i| addr + i as u32);
                match bad {
                    None => {
                        s.copy_from_slice(data);
                        true
                    }
                    Some(b) if strict => panic!("program over unerased flash at {b:#010x}"),
                    Some(b) => {
                        self.violations.push(b);
                        false
                    }
                }
            }
        }
    }
}

impl ReadFlash for TestFlash {
    fn read(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), ReadError> {
        let (s, _) = self.slice_mut(addr, buf.len()).ok_or(ReadError { addr })?;
        buf.copy_from_slice(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_need_an_erase_and_reads_see_them() {
        let mut f = TestFlash::new(vec![Region::nor(0x100, 16)]).recording();
        assert!(f.apply(&FlashOp::Program {
            addr: 0x104,
            data: &[1, 2]
        }));
        assert!(!f.apply(&FlashOp::Program {
            addr: 0x105,
            data: &[3]
        }));
        assert_eq!(f.violations, [0x105]);
        assert!(f.apply(&FlashOp::Erase {
            addr: 0x100,
            len: 16
        }));
        assert!(f.apply(&FlashOp::Program {
            addr: 0x105,
            data: &[3]
        }));
        let mut buf = [0; 3];
        f.read(0x104, &mut buf).unwrap();
        assert_eq!(buf, [0xFF, 3, 0xFF]);
        assert_eq!(f.read(0x10F, &mut buf), Err(ReadError { addr: 0x10F }));
        assert!(!f.apply(&FlashOp::Erase { addr: 0, len: 4 }), "unmapped");
    }

    #[test]
    #[should_panic(expected = "program over unerased flash at 0x00000001")]
    fn strict_flash_fails_the_test_at_the_bad_program() {
        let mut f = TestFlash::new(vec![Region::nor(0, 4)]);
        f.fill(0, &[0xFF, 0x00]);
        f.apply(&FlashOp::Program {
            addr: 0,
            data: &[0, 0],
        });
    }
}
