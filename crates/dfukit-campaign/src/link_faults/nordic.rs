//! Link faults on the simulated nRF52840 (dual bank, bank 1 internal, a
//! public key configured, the old application installed), updated by
//! dfukit's host with the options a user gets, over serial SLIP and over
//! the BLE connection model, in virtual time.

use super::{FaultKind, Transport, Verdict};
use crate::nrf52840::{
    app_package, board, board_config, crc, firmware, key, run_to_idle, snapshot,
};
use crate::SetupError;
use dfukit_nordic::bootloader::Mode;
use dfukit_nordic::host::{self, SecureDfuLink, UpdateOptions};
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Nrf52840};
use dfukit_sim::links::ble::BleParams;
use dfukit_sim::links::ble_link::BleBoardLink;
use dfukit_sim::links::faults::{Direction, FaultInjector, Schedule};
use dfukit_sim::links::serial::BoardLink;
use dfukit_sim::PowerCutPlan;

/// Which link the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Serial,
    Ble,
}

const OLD_VERSION: u32 = 1;
const NEW_VERSION: u32 = 2;

/// One nRF52840 transport.
pub struct NordicLink {
    link: Link,
    cfg: BoardConfig,
    before: (Vec<u8>, Vec<u8>),
    old: Vec<u8>,
    new: Vec<u8>,
    init: Vec<u8>,
    clean_frames: (u64, u64),
}

/// Runs the update over `link` with `injector`; returns the host's result
/// and the injector as it ended.
fn update(
    b: &mut Nrf52840,
    link: Link,
    injector: FaultInjector,
    init: &[u8],
    image: &[u8],
) -> (Result<(), host::UpdateError>, FaultInjector) {
    let opts = UpdateOptions::default();
    let go = |l: &mut dyn SecureDfuLink| host::update(l, &opts, init, image, &mut |_| {});
    match link {
        Link::Serial => {
            let mut l = BoardLink::new(b).with_faults(injector);
            let r = go(&mut l);
            let inj = l.faults().cloned().unwrap_or_default();
            (r, inj)
        }
        Link::Ble => {
            // The link's own seed (anchor offset; no CRC errors at the
            // default packet error rate) is fixed: the schedule is the
            // only thing that varies.
            let mut l = BleBoardLink::new(b, BleParams::fast_15ms(), 1)
                .expect("the preset is valid")
                .with_faults(injector);
            let r = go(&mut l);
            let inj = l.faults().cloned().unwrap_or_default();
            (r, inj)
        }
    }
}

impl NordicLink {
    fn new(name: &'static str, link: Link) -> Result<Self, SetupError> {
        let err = |what: String| SetupError {
            scenario: name,
            what,
        };
        let k = key();
        let cfg = board_config(&k, Bank1::Internal);
        let old = firmware(9_000, 1);
        let new = firmware(20_000, 2);
        let mut b = board(&cfg, &(vec![0xFF; 1 << 20], vec![0xFF; 8 << 20]));
        run_to_idle(&mut b);
        let (dat, bin) = app_package(name, &k, &old, OLD_VERSION)?;
        let (r, _) = update(&mut b, Link::Serial, FaultInjector::default(), &dat, &bin);
        r.map_err(|e| err(format!("installing the old app: {e}")))?;
        run_to_idle(&mut b);
        let (init, _) = app_package(name, &k, &new, NEW_VERSION)?;
        let mut t = NordicLink {
            link,
            cfg,
            before: snapshot(&b),
            old,
            new,
            init,
            clean_frames: (0, 0),
        };
        let mut clean = board(&t.cfg, &t.before);
        run_to_idle(&mut clean);
        let (r, counted) = update(&mut clean, link, FaultInjector::default(), &t.init, &t.new);
        r.map_err(|e| err(format!("clean update: {e}")))?;
        t.clean_frames = (
            counted.frames(Direction::ToDevice),
            counted.frames(Direction::ToHost),
        );
        if t.runs(&mut clean) != Some(NEW_VERSION) {
            return Err(err("a clean update did not install the new app".into()));
        }
        Ok(t)
    }

    /// After a power cycle: the version of the app the board runs, if it is
    /// the old or the new one intact (bank 0 byte for byte); `None` for
    /// anything else.
    fn runs(&self, b: &mut Nrf52840) -> Option<u32> {
        run_to_idle(b);
        b.power_cycle(PowerCutPlan::Never);
        run_to_idle(b);
        let ins = b.inspect();
        let start = b.bootloader().config().layout.app_start as usize;
        let bank0 = &b.memory().internal.contents()[start..];
        [(OLD_VERSION, &self.old), (NEW_VERSION, &self.new)]
            .into_iter()
            .find(|(v, img)| {
                ins.app_valid
                    && ins.app_version == *v
                    && ins.app_crc == crc(img)
                    && bank0[..img.len()] == img[..]
            })
            .map(|(v, _)| v)
    }
}

impl Transport for NordicLink {
    fn name(&self) -> &'static str {
        match self.link {
            Link::Serial => "serial-slip",
            Link::Ble => "ble",
        }
    }

    fn describe(&self) -> String {
        format!(
            "nRF52840 Secure DFU over {}: signed application {} B over {} B, dual bank (bank 1 internal)",
            match self.link {
                Link::Serial => "serial (SLIP frames)",
                Link::Ble => "BLE (2M PHY, 15 ms interval; ATT PDUs)",
            },
            self.new.len(),
            self.old.len()
        )
    }

    fn clean_frames(&self) -> (u64, u64) {
        self.clean_frames
    }

    fn kinds(&self, _dir: Direction) -> &'static [FaultKind] {
        &[
            FaultKind::Drop,
            FaultKind::Corrupt,
            FaultKind::Duplicate,
            FaultKind::Delay,
            FaultKind::Disconnect,
            FaultKind::ResetDevice,
        ]
    }

    fn run(&self, schedule: &Schedule) -> (Verdict, u64) {
        let mut b = board(&self.cfg, &self.before);
        run_to_idle(&mut b);
        let (r, inj) = update(
            &mut b,
            self.link,
            FaultInjector::new(schedule.clone()),
            &self.init,
            &self.new,
        );
        let fired = inj.fired().len() as u64;
        if let Some(e) = b.model_errors().first() {
            return (
                Verdict::SilentCorruption(format!("a flash rule was broken: {e}")),
                fired,
            );
        }
        let running = self.runs(&mut b);
        if b.mode() != Mode::Dfu && running.is_none() {
            return (
                Verdict::Bricked(format!(
                    "no valid app and no DFU service: {:?}",
                    b.inspect()
                )),
                fired,
            );
        }
        let verdict = match (r, running) {
            (Ok(()), Some(NEW_VERSION)) => Verdict::Completed,
            (Ok(()), Some(_)) => Verdict::FalseSuccess(
                "the host reported success; the board runs the old app".into(),
            ),
            (Ok(()), None) => Verdict::SilentCorruption(format!(
                "the host reported success; the board runs neither app: {:?}",
                b.inspect()
            )),
            (Err(_), None) => Verdict::Bricked(format!(
                "after the error the board runs neither app: {:?}",
                b.inspect()
            )),
            (Err(e), Some(_)) => {
                // The board kept its old app (or finished the new one); a run
                // without faults must now complete.
                let (again, _) = update(
                    &mut b,
                    self.link,
                    FaultInjector::default(),
                    &self.init,
                    &self.new,
                );
                match (again, self.runs(&mut b)) {
                    (Ok(()), Some(NEW_VERSION)) => Verdict::CleanError(e.code().into()),
                    (again, now) => Verdict::Bricked(format!(
                        "after \"{e}\", a run without faults ended {again:?} with the board on {now:?}"
                    )),
                }
            }
        };
        (verdict, fired)
    }
}

/// The nRF52840 transports: serial SLIP and BLE.
pub fn transports() -> Result<Vec<Box<dyn Transport>>, SetupError> {
    Ok(vec![
        Box::new(NordicLink::new("serial-slip", Link::Serial)?),
        Box::new(NordicLink::new("ble", Link::Ble)?),
    ])
}
