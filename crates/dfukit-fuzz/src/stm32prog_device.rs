//! The STM32MP device core (`dfukit_stm32mp::stm32prog`: the ROM code, TF-A and U-Boot's
//! stm32prog as the simulated STM32MP157 runs them) fed a layout and then an arbitrary
//! sequence of stream writes, manifests, reads, DETACHes and stage changes through its DFU
//! back end, on an eMMC, SD-card and SPI-NAND board that checks every request.
//!
//! What must hold whatever the host sends: no panic; every partition write, read, erase and
//! copy the core asks of the board lies inside its partition (the core checks bounds, the
//! board trusts it); a GPT is written only with entries on the MMC it is written to; the
//! phase record fits its buffer.

use crate::script::Input;
use core::fmt;
use core::time::Duration;
use dfukit_stm32mp::stm32prog::{
    AfterDetach, BoardResult, BootStage, ExistingPartition, Geometry, GptPartition, Medium,
    MediumId, Stm32mpBoard, Stm32mpDevice, UbootPartition,
};
use dfukit_usbdfu::device::stream::StreamBackend;

/// A board that stores nothing but the RAM image, and checks what the core asks of it.
#[derive(Default)]
struct CheckingBoard {
    ram: Vec<u8>,
}

fn inside(part: &UbootPartition, pos: u64, len: usize, what: &str) {
    let end = pos.checked_add(len as u64).expect("position overflows");
    assert!(
        end <= part.size,
        "the core asked for a {what} of {len} bytes at {pos} of {} ({} bytes)",
        part.name,
        part.size
    );
}

impl Stm32mpBoard for CheckingBoard {
    type Error = &'static str;
    fn ram_write(&mut self, offset: u64, data: &[u8]) {
        // SYSRAM and DDR images are small; the core never writes past a few MiB.
        assert!(offset <= 64 << 20, "RAM write at {offset}");
        self.ram.truncate(offset as usize);
        self.ram.resize(offset as usize, 0);
        self.ram.extend_from_slice(data);
    }
    fn ram(&self) -> &[u8] {
        &self.ram
    }
    fn fsbl_start_delay(&self) -> Duration {
        Duration::from_millis(100)
    }
    fn geometry(&self, m: MediumId) -> Option<Geometry> {
        match (m.medium, m.instance) {
            (Medium::Mmc, 0) => Some(Geometry::Mmc {
                block_size: 512,
                blocks: (256 << 20) / 512,
                erase_group_blocks: 1,
                boot_size: 0,
            }),
            (Medium::Mmc, 1) => Some(Geometry::Mmc {
                block_size: 512,
                blocks: (512 << 20) / 512,
                erase_group_blocks: 1024,
                boot_size: 4 << 20,
            }),
            (Medium::SpiNand, 0) => Some(Geometry::Mtd {
                size: 256 << 20,
                erase_size: 128 << 10,
            }),
            _ => None,
        }
    }
    fn existing_partition(&mut self, _: MediumId, _: u16) -> ExistingPartition {
        ExistingPartition::Unknown
    }
    fn erase(&mut self, part: &UbootPartition) -> BoardResult<Duration, &'static str> {
        inside(part, 0, 0, "erase");
        Ok(Duration::from_millis(1))
    }
    fn write_gpt(
        &mut self,
        mmc: MediumId,
        entries: &[GptPartition<'_>],
    ) -> Result<(), &'static str> {
        assert_eq!(mmc.medium, Medium::Mmc, "a GPT on {mmc:?}");
        for e in entries {
            assert_eq!(
                e.partition.medium, mmc,
                "{} is in the GPT of another device",
                e.partition.name
            );
        }
        Ok(())
    }
    fn begin_download(&mut self, _: &UbootPartition) {}
    fn write(
        &mut self,
        part: &UbootPartition,
        pos: u64,
        data: &[u8],
    ) -> BoardResult<Duration, &'static str> {
        inside(part, pos, data.len(), "write");
        Ok(Duration::ZERO)
    }
    fn end_download(&mut self, _: &UbootPartition) -> BoardResult<Duration, &'static str> {
        Ok(Duration::ZERO)
    }
    fn copy_image(
        &mut self,
        part: &UbootPartition,
        len: u64,
        at: u64,
    ) -> BoardResult<Duration, &'static str> {
        inside(part, at, len as usize, "copy");
        Ok(Duration::ZERO)
    }
    fn read(
        &mut self,
        part: &UbootPartition,
        offset: u64,
        buf: &mut [u8],
    ) -> BoardResult<usize, &'static str> {
        inside(part, offset, buf.len(), "read");
        buf.fill(0xFF);
        Ok(buf.len())
    }
    fn select_boot_partition(&mut self, mmc: MediumId, boot: u8) -> Result<(), &'static str> {
        assert_eq!(mmc.medium, Medium::Mmc);
        assert!(boot == 1 || boot == 2, "boot partition {boot}");
        Ok(())
    }
    fn otp_read(&mut self, _: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        buf.fill(0);
        Ok(())
    }
    fn otp_write(&mut self, _: u64, _: &[u8]) -> Result<(), &'static str> {
        Ok(())
    }
    fn pmic_read(&mut self, _: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        buf.fill(0);
        Ok(())
    }
    fn pmic_write(&mut self, _: u64, _: &[u8]) -> Result<(), &'static str> {
        Ok(())
    }
    fn log(&mut self, _: fmt::Arguments<'_>) {}
}

/// The target body: the first two bytes are the length of a flashlayout that follows and is
/// sent to U-Boot on alt 0; the rest is the script (see the module documentation).
pub fn stm32prog_device(data: &[u8]) {
    run(data);
}

/// Runs the script; returns how many partition writes the board took, so that the corpus
/// test can check its seeds get past the layout.
pub fn run(data: &[u8]) -> usize {
    let mut input = Input::new(data);
    let layout_len = usize::from(input.u16());
    let layout = input.bytes(layout_len.min(data.len()));
    let mut dev = Stm32mpDevice::new(CheckingBoard::default());
    dev.enter(BootStage::UBootLayout);
    let mut writes = 0;
    let mut last = (u8::MAX, 0u64);
    if dev.write(0, 0, &layout).is_ok() {
        let _ = dev.manifest(0, layout.len() as u64);
    }
    for _ in 0..data.len().min(2048) {
        let alts = StreamBackend::alt_count(&dev).max(1);
        match input.byte() % 6 {
            0 | 1 => {
                let alt = input.byte() % alts;
                // Streams are written in order: continue the last one, or start again.
                let offset = if alt == last.0 && input.byte() & 1 == 0 {
                    last.1
                } else {
                    0
                };
                let n = usize::from(input.byte()) * 16;
                let chunk = input.bytes(n);
                if dev.write(alt, offset, &chunk).is_ok() {
                    writes += 1;
                    last = (alt, offset + n as u64);
                }
            }
            2 => {
                let alt = input.byte() % alts;
                let total = if alt == last.0 {
                    last.1
                } else {
                    u64::from(input.u16())
                };
                let _ = dev.manifest(alt, total);
                last = (u8::MAX, 0);
            }
            3 => {
                let alt = input.byte() % alts;
                let mut buf = vec![0u8; usize::from(input.byte()) * 8];
                let offset = u64::from(input.u16());
                if let Ok(n) = dev.read(alt, offset, &mut buf) {
                    assert!(n <= buf.len(), "read claims {n} bytes into {}", buf.len());
                }
            }
            4 => match dev.detach() {
                AfterDetach::Reenumerate { next, .. } => dev.enter(next),
                AfterDetach::Boot => dev.enter(BootStage::Done),
                AfterDetach::Stay => {}
            },
            _ => {
                let mut record = [0u8; 512];
                let n = dev.phase_record(&mut record);
                assert!(n <= record.len());
                let _ = dev.phase();
                let _ = dev.error();
            }
        }
    }
    writes
}
