//! Power cuts on the simulated nRF52840 running dfukit's Secure DFU
//! bootloader core, updated by dfukit's host over the serial link, in
//! virtual time. The packages are made as `nrfutil pkg generate` makes them
//! (dfukit's generator, signed), from synthetic images.

use super::{Scenario, Trial, Verdict};
use crate::nrf52840::*;
use dfukit_nordic::bootloader::Mode;
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Inspection, Nrf52840};
use dfukit_sim::{Board, CutPoint, PowerCutPlan};

/// What the update installs, and so what "old", "new" and "done" mean.
#[derive(Debug, Clone)]
enum Target {
    /// An application: old and new (CRC, version).
    App { old: (u32, u32), new: (u32, u32) },
    /// A SoftDevice and bootloader: the new bootloader version, and the
    /// CRCs of the old and new bootloader regions (filled in by a clean run).
    SdBl { bl_version: u32, bl_crcs: [u32; 2] },
}

/// One nRF52840 update under power cuts.
pub struct NordicUpdate {
    name: &'static str,
    describe: String,
    cfg: BoardConfig,
    /// Flash of the board before the update (running the old image).
    before: (Vec<u8>, Vec<u8>),
    /// Flash after a clean update.
    golden: (Vec<u8>, Vec<u8>),
    init: Vec<u8>,
    firmware: Vec<u8>,
    target: Target,
    clean_ops: u64,
    keeps_old_image: bool,
    fixed: Vec<CutPoint>,
}

impl NordicUpdate {
    /// Sets up a scenario: a blank board, the old image installed with the
    /// host, then one clean update to count its operations and keep its
    /// final flash.
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &'static str,
        describe: String,
        cfg: BoardConfig,
        old: &[(Vec<u8>, Vec<u8>)],
        init: Vec<u8>,
        firmware: Vec<u8>,
        target: Target,
        keeps_old_image: bool,
        fixed: Vec<CutPoint>,
    ) -> Result<Self, SetupError> {
        let err = |what: String| SetupError {
            scenario: name,
            what,
        };
        let blank = (vec![0xFF; 1 << 20], vec![0xFF; 8 << 20]);
        let mut b = board(&cfg, &blank);
        run_to_idle(&mut b);
        for (dat, bin) in old {
            send(&mut b, dat, bin).map_err(|e| err(format!("installing the old image: {e}")))?;
            run_to_idle(&mut b);
        }
        let before = snapshot(&b);
        let mut clean = board(&cfg, &before);
        run_to_idle(&mut clean);
        clean.arm(PowerCutPlan::Never);
        send(&mut clean, &init, &firmware).map_err(|e| err(format!("clean update: {e}")))?;
        run_to_idle(&mut clean);
        let mut target = target;
        if let Target::SdBl { bl_crcs, .. } = &mut target {
            // The bootloader regions the board may boot: the one before the
            // update and the one a clean update leaves.
            *bl_crcs = [
                board(&cfg, &before).inspect().bootloader_crc,
                clean.inspect().bootloader_crc,
            ];
        }
        let s = NordicUpdate {
            name,
            describe,
            cfg,
            golden: snapshot(&clean),
            before,
            init,
            firmware,
            target,
            clean_ops: clean.power().ops(),
            keeps_old_image,
            fixed,
        };
        if !s.done(&clean.inspect()) {
            return Err(err(format!(
                "a clean update did not install the image: {:?}",
                clean.inspect()
            )));
        }
        Ok(s)
    }

    fn done(&self, ins: &Inspection) -> bool {
        match self.target {
            Target::App { new, .. } => ins.app_valid && (ins.app_crc, ins.app_version) == new,
            Target::SdBl { bl_version, .. } => {
                ins.softdevice_fwid == Some(NEW_SD) && ins.bootloader_version == Some(bl_version)
            }
        }
    }

    /// What a reboot came up with: `Err` names a failure.
    fn check_boot(&self, b: &mut Nrf52840) -> Result<(), Verdict> {
        let ins = b.inspect();
        if ins.settings == "none" {
            return Err(Verdict::Bricked(format!(
                "both settings copies lost: {ins:?}"
            )));
        }
        if b.mode() != Mode::Dfu {
            return Err(Verdict::Bricked(format!(
                "the bootloader does not serve DFU: {ins:?}"
            )));
        }
        match self.target {
            Target::App { old, new } => {
                let ran = (ins.app_crc, ins.app_version);
                if ins.app_valid && ran != old && ran != new {
                    return Err(Verdict::WrongImage(format!(
                        "boots an app that is neither old nor new: {ins:?}"
                    )));
                }
                if !ins.app_valid && self.keeps_old_image {
                    return Err(Verdict::Bricked(format!(
                        "no valid app after reboot: {ins:?}"
                    )));
                }
            }
            Target::SdBl { bl_crcs, .. } => {
                if ins.bootloader_version.is_some() && !bl_crcs.contains(&ins.bootloader_crc) {
                    return Err(Verdict::WrongImage(format!(
                        "the bootloader region holds neither bootloader: {ins:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Scenario for NordicUpdate {
    fn name(&self) -> &'static str {
        self.name
    }
    fn describe(&self) -> String {
        self.describe.clone()
    }
    fn clean_ops(&self) -> u64 {
        self.clean_ops
    }
    fn keeps_old_image(&self) -> bool {
        self.keeps_old_image
    }
    fn fixed_cuts(&self) -> Vec<CutPoint> {
        self.fixed.clone()
    }

    fn trial(&self, t: &Trial) -> Verdict {
        let mut cfg = self.cfg.clone();
        cfg.seed = t.seed;
        let mut b = board(&cfg, &self.before);
        run_to_idle(&mut b);
        b.arm(t.first);
        let _ = send(&mut b, &self.init, &self.firmware);
        run_to_idle(&mut b);
        if b.is_powered() {
            return Verdict::Bricked(format!(
                "the cut never fired ({} operations): the update is not deterministic",
                b.power().ops()
            ));
        }
        let mut fired = 0;
        let plans = t
            .nested
            .iter()
            .copied()
            .chain(std::iter::once(PowerCutPlan::Never));
        for plan in plans {
            b.power_cycle(plan);
            run_to_idle(&mut b);
            if b.is_powered() {
                if let Err(v) = self.check_boot(&mut b) {
                    return v;
                }
                if !self.done(&b.inspect()) {
                    let r = send(&mut b, &self.init, &self.firmware);
                    run_to_idle(&mut b);
                    if let (Err(e), true) = (r, b.is_powered()) {
                        return Verdict::Bricked(format!("the resume failed: {e}"));
                    }
                }
            }
            if b.is_powered() {
                break;
            }
            fired += 1;
        }
        if !b.is_powered() {
            return Verdict::Bricked("the board is still off".into());
        }
        if let Err(v) = self.check_boot(&mut b) {
            return v;
        }
        if !self.done(&b.inspect()) {
            return Verdict::Bricked(format!("resumed, but not updated: {:?}", b.inspect()));
        }
        if let Some(e) = b.model_errors().first() {
            return Verdict::WrongImage(format!("a flash rule was broken: {e}"));
        }
        let now = snapshot(&b);
        if now != self.golden {
            return Verdict::WrongImage(first_difference(&now, &self.golden));
        }
        Verdict::Recovered {
            nested_fired: fired,
        }
    }
}

/// Where the final flash differs from a clean run's: the first differing
/// byte of each differing 4 KiB page (at most four pages named).
fn first_difference(a: &(Vec<u8>, Vec<u8>), b: &(Vec<u8>, Vec<u8>)) -> String {
    let mut pages = Vec::new();
    let mut count = 0;
    for (chip, x, y) in [("internal", &a.0, &b.0), ("QSPI", &a.1, &b.1)] {
        for (n, (p, q)) in x.chunks(4096).zip(y.chunks(4096)).enumerate() {
            if let Some(i) = p.iter().zip(q).position(|(u, v)| u != v) {
                count += 1;
                if pages.len() < 4 {
                    let at = n * 4096 + i;
                    let n = p.iter().zip(q).filter(|(u, v)| u != v).count();
                    pages.push(format!(
                        "{chip} {at:#010x} ({:#04x}, clean {:#04x}; {n} bytes of the page)",
                        p[i], q[i]
                    ));
                }
            }
        }
    }
    format!(
        "final flash differs from a clean run's in {count} page(s): {}",
        pages.join(", ")
    )
}

/// The nRF52840 scenarios.
pub fn scenarios() -> Result<Vec<Box<dyn Scenario>>, SetupError> {
    let k = key();
    let mut v: Vec<Box<dyn Scenario>> = Vec::new();
    let settings_tears = vec![
        // Inside the SDK's CRC-covered prefix (0x5C bytes), just past it,
        // inside the stored init packet, and late in the page.
        CutPoint::Bytes(4),
        CutPoint::Bytes(0x40),
        CutPoint::Bytes(0x5C),
        CutPoint::Bytes(0x70),
        CutPoint::Bytes(0x200),
        CutPoint::Bytes(0xF00),
    ];
    for (name, bank1, old_len, new_len, keeps, fixed) in [
        (
            "nrf52840-dual-bank",
            Bank1::Internal,
            9_000,
            41_000,
            true,
            vec![CutPoint::Fraction(0.5)],
        ),
        (
            "nrf52840-qspi-bank1",
            Bank1::Qspi,
            9_000,
            41_000,
            true,
            vec![CutPoint::Fraction(0.5)],
        ),
        (
            "nrf52840-single-bank",
            Bank1::Internal,
            400_000,
            450_000,
            false,
            vec![CutPoint::Fraction(0.5)],
        ),
        (
            "nrf52840-settings-tears",
            Bank1::Qspi,
            9_000,
            17_000,
            true,
            settings_tears,
        ),
    ] {
        let old = firmware(old_len, 1);
        let new = firmware(new_len, 2);
        let mut cfg = board_config(&k, bank1);
        cfg.flash_timing = true;
        v.push(Box::new(NordicUpdate::new(
            name,
            format!(
                "application {} B -> {} B, bank 1 {}",
                old.len(),
                new.len(),
                match bank1 {
                    Bank1::Internal => "internal",
                    Bank1::Qspi => "on QSPI (activation copy)",
                }
            ),
            cfg,
            &[app_package(name, &k, &old, 1)?],
            app_package(name, &k, &new, 2)?.0,
            new.clone(),
            Target::App {
                old: (crc(&old), 1),
                new: (crc(&new), 2),
            },
            keeps,
            fixed,
        )?));
    }
    for bank1 in [Bank1::Internal, Bank1::Qspi] {
        let name = match bank1 {
            Bank1::Internal => "nrf52840-sd-bl",
            Bank1::Qspi => "nrf52840-sd-bl-qspi",
        };
        let sd = softdevice(40 * 1024, NEW_SD, 11);
        let bl = firmware(6_000, 12);
        let (dat, bin) = package(name, &k, |dir, o| {
            let (s, b) = (dir.join("sd.bin"), dir.join("bl.bin"));
            std::fs::write(&s, &sd)?;
            std::fs::write(&b, &bl)?;
            o.softdevice = Some(s);
            o.bootloader = Some(b);
            o.bootloader_version = Some(2);
            Ok(())
        })?;
        let cfg = board_config(&k, bank1);
        v.push(Box::new(NordicUpdate::new(
            name,
            format!(
                "SoftDevice {} B + bootloader {} B, bank 1 {}, MBR-style copies",
                sd.len(),
                bl.len(),
                if bank1 == Bank1::Qspi {
                    "on QSPI"
                } else {
                    "internal"
                }
            ),
            cfg,
            &[app_package(name, &k, &firmware(9_000, 1), 1)?],
            dat,
            bin,
            Target::SdBl {
                bl_version: 2,
                bl_crcs: [0; 2],
            },
            true,
            vec![CutPoint::Fraction(0.5)],
        )?));
    }
    Ok(v)
}
