//! Power cuts on the simulated STM32F405 in its ROM bootloader (DfuSe),
//! written by dfukit's DfuSe host over a virtual USB cable in virtual time.
//!
//! The ROM bootloader lives in ROM and always enumerates with BOOT0 held,
//! so the board itself cannot be bricked by a cut; what a cut leaves is a
//! half-written application. The promise checked here is the one the user
//! relies on: re-running the same download after the cut (even when that
//! run is cut too) ends with the flash byte-identical to a clean
//! download's, and the host never reports success for a download that a
//! cut interrupted.

use super::{Scenario, Trial, Verdict};
use crate::stm32f4::{board, download, flash_of, powered, FLASH_BASE};
use crate::SetupError;
use dfukit_sim::links::usb::{SimUsb, UsbLinkModel};
use dfukit_sim::PowerCutPlan;

/// A DfuSe download of an application over an older one.
pub struct DfuseUpdate {
    name: &'static str,
    before: Vec<u8>,
    golden: Vec<u8>,
    image: Vec<u8>,
    old_len: usize,
    clean_ops: u64,
}

impl DfuseUpdate {
    fn new(name: &'static str, old_len: usize, new_len: usize) -> Result<Self, SetupError> {
        let err = |what: String| SetupError {
            scenario: name,
            what,
        };
        let old = dfukit_sim::synthetic::firmware(old_len, 0x0f4);
        let image = dfukit_sim::synthetic::firmware(new_len, 0x1f4);
        let mut usb = SimUsb::new(board(&vec![0xFF; 1 << 20], 1), UsbLinkModel::instant());
        download(&mut usb, &old).map_err(|e| err(format!("installing the old image: {e}")))?;
        let before = flash_of(&usb);
        let mut usb = SimUsb::new(board(&before, 1), UsbLinkModel::instant());
        download(&mut usb, &image).map_err(|e| err(format!("clean download: {e}")))?;
        let clean_ops = usb
            .device()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .power()
            .ops();
        Ok(DfuseUpdate {
            name,
            golden: flash_of(&usb),
            before,
            image,
            old_len,
            clean_ops,
        })
    }
}

impl Scenario for DfuseUpdate {
    fn name(&self) -> &'static str {
        self.name
    }
    fn describe(&self) -> String {
        format!(
            "application {} B over {} B at {FLASH_BASE:#010x}, ROM bootloader, re-run after each cut",
            self.image.len(),
            self.old_len
        )
    }
    fn clean_ops(&self) -> u64 {
        self.clean_ops
    }

    fn trial(&self, t: &Trial) -> Verdict {
        let mut b = board(&self.before, t.seed);
        b.arm(t.first);
        let mut usb = SimUsb::new(b, UsbLinkModel::instant());
        let r = download(&mut usb, &self.image);
        if powered(&usb) {
            return match r {
                Ok(()) => Verdict::Bricked(
                    "the cut never fired: the download is not deterministic".into(),
                ),
                Err(e) => Verdict::Bricked(format!("failed with power on: {e}")),
            };
        }
        if r.is_ok() {
            return Verdict::WrongImage(
                "the host reported success for a download a cut interrupted".into(),
            );
        }
        let mut fired = 0;
        let plans = t
            .nested
            .iter()
            .copied()
            .chain(std::iter::once(PowerCutPlan::Never));
        for plan in plans {
            usb.device()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .power_cycle_with(plan);
            let r = download(&mut usb, &self.image);
            match (r, powered(&usb)) {
                (Ok(()), true) => {
                    let now = flash_of(&usb);
                    if now != self.golden {
                        let i = now
                            .iter()
                            .zip(&self.golden)
                            .position(|(a, b)| a != b)
                            .unwrap_or(0);
                        return Verdict::WrongImage(format!(
                            "the re-run reported success but flash differs at {:#010x}",
                            FLASH_BASE + i as u32
                        ));
                    }
                    if let Some(e) = usb
                        .device()
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .model_errors()
                        .first()
                    {
                        return Verdict::WrongImage(format!("a flash rule was broken: {e}"));
                    }
                    return Verdict::Recovered {
                        nested_fired: fired,
                    };
                }
                (Ok(()), false) => {
                    return Verdict::WrongImage(
                        "the host reported success for a download a cut interrupted".into(),
                    )
                }
                (Err(e), true) => {
                    return Verdict::Bricked(format!("the re-run failed with power on: {e}"))
                }
                (Err(_), false) => fired += 1,
            }
        }
        Verdict::Bricked("the last re-run was cut although no cut was armed".into())
    }
}

/// The STM32F4 DfuSe scenarios.
pub fn scenarios() -> Result<Vec<Box<dyn Scenario>>, SetupError> {
    // 100,000 bytes: sectors 0-4 (16, 16, 16, 16 and 64 KiB) erased and
    // written in 2 KiB blocks over a 64 KiB application.
    Ok(vec![Box::new(DfuseUpdate::new(
        "stm32f4-dfuse",
        65_536,
        100_000,
    )?)])
}
