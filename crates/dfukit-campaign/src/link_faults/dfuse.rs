//! Link faults on the simulated STM32F405 in its ROM bootloader (DfuSe),
//! written by dfukit's DfuSe host with read-back verification over a
//! virtual USB cable, in virtual time.
//!
//! The ROM bootloader cannot be bricked and keeps no second copy: a failed
//! download leaves a partly written application by nature. The promise
//! checked is that the host never reports success unless the flash holds
//! exactly the new image, and that after any error a download without
//! faults (a new connection, the device in whatever DFU state the faults
//! left it) ends byte-identical to a clean one.

use super::{FaultKind, Transport, Verdict};
use crate::stm32f4::{board, download, flash_of, FLASH_BASE};
use crate::SetupError;
use dfukit_sim::links::faults::{Direction, FaultInjector, Schedule};
use dfukit_sim::links::usb::{SimUsb, UsbLinkModel};
use dfukit_usbip::UsbDevice;

/// The DfuSe transport.
pub struct DfuseLink {
    before: Vec<u8>,
    golden: Vec<u8>,
    image: Vec<u8>,
    old_len: usize,
    clean_frames: (u64, u64),
}

impl DfuseLink {
    fn new(name: &'static str, old_len: usize, new_len: usize) -> Result<Self, SetupError> {
        let err = |what: String| SetupError {
            scenario: name,
            what,
        };
        let old = dfukit_sim::synthetic::firmware(old_len, 0x0f4);
        let image = dfukit_sim::synthetic::firmware(new_len, 0x1f4);
        let mut usb = SimUsb::new(board(&vec![0xFF; 1 << 20], 1), UsbLinkModel::full_speed());
        download(&mut usb, &old).map_err(|e| err(format!("installing the old image: {e}")))?;
        let before = flash_of(&usb);
        let mut usb = SimUsb::new(board(&before, 1), UsbLinkModel::full_speed())
            .with_faults(FaultInjector::default());
        download(&mut usb, &image).map_err(|e| err(format!("clean download: {e}")))?;
        let counted = usb.faults().unwrap_or_default();
        Ok(DfuseLink {
            golden: flash_of(&usb),
            before,
            image,
            old_len,
            clean_frames: (
                counted.frames(Direction::ToDevice),
                counted.frames(Direction::ToHost),
            ),
        })
    }
}

/// Where two flash images first differ.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
    format!("{:#010x}", FLASH_BASE + i as u32)
}

impl Transport for DfuseLink {
    fn name(&self) -> &'static str {
        "usb-dfuse"
    }

    fn describe(&self) -> String {
        format!(
            "STM32F405 ROM bootloader, DfuSe download + read-back of {} B over {} B at {FLASH_BASE:#010x}, USB full speed (control transfers)",
            self.image.len(),
            self.old_len
        )
    }

    fn clean_frames(&self) -> (u64, u64) {
        self.clean_frames
    }

    fn kinds(&self, dir: Direction) -> &'static [FaultKind] {
        match dir {
            Direction::ToDevice => &[
                FaultKind::Drop,
                FaultKind::Corrupt,
                FaultKind::Duplicate,
                FaultKind::Delay,
                FaultKind::Disconnect,
                FaultKind::ResetDevice,
            ],
            // A reply cannot arrive twice on a control pipe.
            Direction::ToHost => &[
                FaultKind::Drop,
                FaultKind::Corrupt,
                FaultKind::Delay,
                FaultKind::Disconnect,
                FaultKind::ResetDevice,
            ],
        }
    }

    fn run(&self, schedule: &Schedule) -> (Verdict, u64) {
        let mut usb = SimUsb::new(board(&self.before, 1), UsbLinkModel::full_speed())
            .with_faults(FaultInjector::new(schedule.clone()));
        let r = download(&mut usb, &self.image);
        let fired = usb.faults().map_or(0, |f| f.fired().len() as u64);
        let model_error = |usb: &SimUsb<dfukit_sim::boards::stm32f4::Stm32f4>| {
            usb.device()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .model_errors()
                .first()
                .map(|e| e.to_string())
        };
        if let Some(e) = model_error(&usb) {
            return (
                Verdict::SilentCorruption(format!("a flash rule was broken: {e}")),
                fired,
            );
        }
        let now = flash_of(&usb);
        let verdict = match r {
            Ok(()) if now == self.golden => Verdict::Completed,
            Ok(()) if now == self.before => Verdict::FalseSuccess(
                "the host reported success; the flash holds the old image".into(),
            ),
            Ok(()) => Verdict::SilentCorruption(format!(
                "the host reported success; the flash differs from the image at {}",
                first_difference(&now, &self.golden)
            )),
            Err(e) => {
                // The same board on a new cable, no faults: plugged in again,
                // it is enumerated, and enumeration starts with a bus reset.
                usb.device()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .reset();
                let mut again = SimUsb::from_shared(usb.device(), UsbLinkModel::full_speed());
                let r = download(&mut again, &self.image);
                let now = flash_of(&again);
                match (r, model_error(&again)) {
                    (Ok(()), None) if now == self.golden => {
                        // The DfuSe host's errors are text: counted by their phase.
                        Verdict::CleanError(e.split(':').next().unwrap_or(&e).to_string())
                    }
                    (r, broken) => Verdict::Bricked(format!(
                        "after \"{e}\", a download without faults ended {r:?} (flash rule: {broken:?}; flash {})",
                        if now == self.golden { "right".to_string() } else { format!("differs at {}", first_difference(&now, &self.golden)) }
                    )),
                }
            }
        };
        (verdict, fired)
    }
}

/// The STM32F4 DfuSe transport.
pub fn transports() -> Result<Vec<Box<dyn Transport>>, SetupError> {
    Ok(vec![Box::new(DfuseLink::new("usb-dfuse", 16_384, 40_000)?)])
}
