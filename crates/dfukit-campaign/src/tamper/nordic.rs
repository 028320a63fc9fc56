//! Tampered Secure DFU updates against the simulated nRF52840 running
//! dfukit's bootloader core with a public key configured, bank 1 internal
//! or on QSPI, the old application (version 2) installed.
//!
//! Cases, per board:
//! - every single-bit flip of the signed init packet, every truncation of
//!   it, and seeded extensions (bytes appended);
//! - signatures of every wrong length (re-encoded so the packet is well
//!   formed) and seeded forged 64-byte signatures;
//! - a seeded sample of bit flips of the image, its truncations and
//!   extensions (the init packet intact, so only the image is wrong);
//! - policy: a downgrade, another hw_version, an unmet sd_req, another
//!   key, no signature, an image larger than the application area, types
//!   the image is not (a SoftDevice without its information structure, an
//!   external application), a hash type other than SHA-256, a signed
//!   packet naming another image.

use super::{Case, Outcome, Suite};
use crate::nrf52840::{
    app_package, board, board_config, crc, firmware, key, other_key, package, run_to_idle, send,
    snapshot,
};
use crate::{SetupError, TrialRng};
use dfukit_nordic::host::{UpdateError, UpdatePhase};
use dfukit_nordic::init_packet::{self, FwType, HashType, InitCommand, SignatureType};
use dfukit_nordic::package::keys;
use dfukit_nordic::proto::{ExtError, ResultCode};
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Nrf52840};
use dfukit_sim::PowerCutPlan;
use p256::ecdsa::SigningKey;

/// Seeded image bit flips per board.
const IMAGE_FLIPS: usize = 2048;
/// Seeded image truncations and extensions per board (besides the fixed ones).
const IMAGE_CUTS: usize = 252;
/// Seeded init packet extensions per board.
const INIT_EXTENSIONS: usize = 512;
/// Seeded forged signatures per board.
const FORGED_SIGNATURES: usize = 128;

/// The version the board runs, and the one the update brings.
const OLD_VERSION: u32 = 2;
const NEW_VERSION: u32 = 3;

/// A device answer the case accepts as the right refusal.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Code {
    /// A result code without an extended error.
    Result(ResultCode),
    /// An extended error.
    Ext(ExtError),
}

/// The refusal a case expects: the phase, and the answers that name the
/// reason (several where the damage decides which check fires first).
#[derive(Debug, Clone)]
struct Expect {
    phase: UpdatePhase,
    codes: &'static [Code],
}

impl Expect {
    fn matches(&self, e: &UpdateError) -> bool {
        match e {
            UpdateError::Rejected {
                phase, result, ext, ..
            } => {
                *phase == self.phase
                    && self.codes.iter().any(|c| match c {
                        Code::Ext(x) => *ext == Some(*x),
                        Code::Result(r) => ext.is_none() && result == r,
                    })
            }
            _ => false,
        }
    }
}

/// A damaged init packet: it does not decode, its signature does not
/// verify (`INVALID_OBJECT`, as the SDK answers), or the damage hit the
/// signature's fields themselves.
const INIT_DAMAGED: &[Code] = &[
    Code::Result(ResultCode::InvalidObject),
    Code::Ext(ExtError::SignatureMissing),
    Code::Ext(ExtError::WrongSignatureType),
];
const BAD_SIGNATURE: &[Code] = &[Code::Result(ResultCode::InvalidObject)];
const HASH_MISMATCH: &[Code] = &[Code::Ext(ExtError::VerificationFailed)];
/// An image shorter than its init packet says: the host's last object is
/// short of the declared size.
const SHORT_IMAGE: &[Code] = &[Code::Result(ResultCode::InvalidParameter)];
/// An image longer than its init packet says: an object past the declared
/// size (`OPERATION_NOT_PERMITTED`, as the SDK answers an overflowing CREATE).
const LONG_IMAGE: &[Code] = &[Code::Result(ResultCode::OperationNotPermitted)];

fn init_refused(codes: &'static [Code]) -> Expect {
    Expect {
        phase: UpdatePhase::InitPacket,
        codes,
    }
}

struct NordicCase {
    case: Case,
    init: Vec<u8>,
    image: Vec<u8>,
    expect: Expect,
}

/// One board configuration's cases.
pub struct NordicTamper {
    name: &'static str,
    cfg: BoardConfig,
    /// Flash of the board running the old application.
    before: (Vec<u8>, Vec<u8>),
    old: Vec<u8>,
    /// The untampered update.
    init: Vec<u8>,
    new: Vec<u8>,
    /// Size of the board's application area.
    app_area: u32,
    cases: Vec<NordicCase>,
    infos: Vec<Case>,
}

/// `cmd` signed with `k` and encoded, as `nrfutil pkg generate` does.
fn resign(k: &SigningKey, cmd: &InitCommand) -> Vec<u8> {
    let bytes = init_packet::encode_init_command(cmd);
    let sig = keys::sign_init_command(k, &bytes);
    init_packet::encode_packet(cmd, Some((SignatureType::EcdsaP256Sha256, &sig)))
}

fn command_of(init: &[u8]) -> InitCommand {
    init_packet::decode(init)
        .expect("dfukit's generator writes packets it can read")
        .command
}

impl NordicTamper {
    fn new(name: &'static str, bank1: Bank1, seed: u64, stream: u64) -> Result<Self, SetupError> {
        let err = |what: String| SetupError {
            scenario: name,
            what,
        };
        let k = key();
        let cfg = board_config(&k, bank1);
        let old = firmware(8_000, 1);
        let new = firmware(12_000, 2);
        let mut b = board(&cfg, &(vec![0xFF; 1 << 20], vec![0xFF; 8 << 20]));
        run_to_idle(&mut b);
        let (dat, bin) = app_package(name, &k, &old, OLD_VERSION)?;
        send(&mut b, &dat, &bin).map_err(|e| err(format!("installing the old app: {e}")))?;
        run_to_idle(&mut b);
        let (init, _) = app_package(name, &k, &new, NEW_VERSION)?;
        let mut t = NordicTamper {
            name,
            cfg,
            before: snapshot(&b),
            old,
            init,
            new,
            app_area: b.bootloader().config().layout.app_area(),
            cases: Vec::new(),
            infos: Vec::new(),
        };
        t.add_cases(&k, seed, stream)?;
        t.infos = t.cases.iter().map(|c| c.case.clone()).collect();
        Ok(t)
    }

    fn push(
        &mut self,
        group: &'static str,
        what: String,
        init: Vec<u8>,
        image: Vec<u8>,
        expect: Expect,
    ) {
        self.cases.push(NordicCase {
            case: Case { group, what },
            init,
            image,
            expect,
        });
    }

    fn add_cases(&mut self, k: &SigningKey, seed: u64, stream: u64) -> Result<(), SetupError> {
        let (init, new) = (self.init.clone(), self.new.clone());
        let mut rng = TrialRng::new(seed, stream);
        for bit in 0..init.len() * 8 {
            let mut bad = init.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            self.push(
                "init-bit-flip",
                format!("bit {bit} flipped"),
                bad,
                new.clone(),
                init_refused(INIT_DAMAGED),
            );
        }
        for len in 1..init.len() {
            self.push(
                "init-truncation",
                format!("cut to {len} of {} bytes", init.len()),
                init[..len].to_vec(),
                new.clone(),
                init_refused(INIT_DAMAGED),
            );
        }
        for _ in 0..INIT_EXTENSIONS {
            let n = rng.range(1, 64) as usize;
            let mut long = init.clone();
            long.extend((0..n).map(|_| rng.next_u64() as u8));
            let tail: String = long[init.len()..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            self.push(
                "init-extension",
                format!("{n} bytes appended: {tail}"),
                long,
                new.clone(),
                init_refused(INIT_DAMAGED),
            );
        }
        let cmd = command_of(&init);
        let signed = init_packet::encode_init_command(&cmd);
        let sig = keys::sign_init_command(k, &signed);
        for len in (0..=72).filter(|&l| l != 64) {
            let s: Vec<u8> = (0..len)
                .map(|i| sig.get(i).copied().unwrap_or(0xA5))
                .collect();
            let bad = init_packet::encode_packet(&cmd, Some((SignatureType::EcdsaP256Sha256, &s)));
            self.push(
                "signature-length",
                format!("a {len}-byte signature"),
                bad,
                new.clone(),
                init_refused(BAD_SIGNATURE),
            );
        }
        for i in 0..FORGED_SIGNATURES {
            let s: Vec<u8> = (0..64).map(|_| rng.next_u64() as u8).collect();
            let bad = init_packet::encode_packet(&cmd, Some((SignatureType::EcdsaP256Sha256, &s)));
            self.push(
                "signature-forged",
                format!("forged signature {i}"),
                bad,
                new.clone(),
                init_refused(BAD_SIGNATURE),
            );
        }
        for _ in 0..IMAGE_FLIPS {
            let bit = rng.range(0, new.len() as u64 * 8 - 1) as usize;
            let mut bad = new.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            self.push(
                "image-bit-flip",
                format!("image bit {bit} flipped"),
                init.clone(),
                bad,
                Expect {
                    phase: UpdatePhase::Validate,
                    codes: HASH_MISMATCH,
                },
            );
        }
        let fixed = [1, 4, 4096, new.len() - 1];
        let cuts = fixed
            .into_iter()
            .chain((0..IMAGE_CUTS).map(|_| rng.range(1, new.len() as u64 - 1) as usize));
        for cut in cuts.collect::<Vec<_>>() {
            self.push(
                "image-truncation",
                format!("image {cut} bytes short"),
                init.clone(),
                new[..new.len() - cut].to_vec(),
                Expect {
                    phase: UpdatePhase::Data,
                    codes: SHORT_IMAGE,
                },
            );
        }
        let extras = [1, 4, 4096]
            .into_iter()
            .chain((0..IMAGE_CUTS).map(|_| rng.range(1, 3 * 4096) as usize));
        for extra in extras.collect::<Vec<_>>() {
            let mut long = new.clone();
            long.extend((0..extra).map(|_| rng.next_u64() as u8));
            self.push(
                "image-extension",
                format!("image {extra} bytes too long"),
                init.clone(),
                long,
                Expect {
                    phase: UpdatePhase::Data,
                    codes: LONG_IMAGE,
                },
            );
        }
        self.add_policy_cases(k)
    }

    fn add_policy_cases(&mut self, k: &SigningKey) -> Result<(), SetupError> {
        let name = self.name;
        let new = self.new.clone();
        let app = |dir: &std::path::Path,
                   o: &mut dfukit_nordic::package::PackageOptions,
                   img: &[u8],
                   v: u32| {
            let p = dir.join("app.bin");
            std::fs::write(&p, img)?;
            o.application = Some(p);
            o.application_version = Some(v);
            Ok(())
        };
        let policy = |codes: &'static [Code]| init_refused(codes);
        let (dat, _) = app_package(name, k, &new, OLD_VERSION - 1)?;
        self.push(
            "policy",
            "downgrade: version 1 over version 2".into(),
            dat,
            new.clone(),
            policy(&[Code::Ext(ExtError::FwVersionFailure)]),
        );
        let (dat, _) = package(name, k, |d, o| {
            o.hw_version = Some(53);
            app(d, o, &new, NEW_VERSION)
        })?;
        self.push(
            "policy",
            "hw_version 53 on a board built for 52".into(),
            dat,
            new.clone(),
            policy(&[Code::Ext(ExtError::HwVersionFailure)]),
        );
        let (dat, _) = package(name, k, |d, o| {
            o.sd_req = Some(vec![0x0101, 0x00B6]);
            app(d, o, &new, NEW_VERSION)
        })?;
        self.push(
            "policy",
            "sd_req 0x0101,0x00B6 without the installed 0x0100".into(),
            dat,
            new.clone(),
            policy(&[Code::Ext(ExtError::SdVersionFailure)]),
        );
        let (dat, _) = app_package(name, &other_key(), &new, NEW_VERSION)?;
        self.push(
            "policy",
            "signed with a key the board does not trust".into(),
            dat,
            new.clone(),
            policy(BAD_SIGNATURE),
        );
        let (dat, _) = package(name, k, |d, o| {
            o.key = None;
            app(d, o, &new, NEW_VERSION)
        })?;
        self.push(
            "policy",
            "not signed".into(),
            dat,
            new.clone(),
            policy(&[Code::Ext(ExtError::SignatureMissing)]),
        );
        let area = self.app_area as usize;
        let huge = firmware(area + 4096, 3);
        let (dat, _) = app_package(name, k, &huge, NEW_VERSION)?;
        self.push(
            "policy",
            format!("a {} B image for a {area} B application area", huge.len()),
            dat,
            huge,
            policy(&[Code::Ext(ExtError::InsufficientSpace)]),
        );
        let cmd = command_of(&self.init);
        let mut sd = cmd.clone();
        sd.fw_type = Some(FwType::Softdevice);
        sd.sd_size = Some(new.len() as u32);
        sd.app_size = Some(0);
        self.push(
            "policy",
            "the application image signed as a SoftDevice (no information structure)".into(),
            resign(k, &sd),
            new.clone(),
            Expect {
                phase: UpdatePhase::Validate,
                codes: &[
                    Code::Ext(ExtError::VerificationFailed),
                    Code::Ext(ExtError::InitCommandInvalid),
                ],
            },
        );
        let mut ext = cmd.clone();
        ext.fw_type = Some(FwType::ExternalApplication);
        self.push(
            "policy",
            "an external application (for a companion chip)".into(),
            resign(k, &ext),
            new.clone(),
            policy(&[Code::Ext(ExtError::InitCommandInvalid)]),
        );
        for ht in [
            HashType::NoHash,
            HashType::Crc,
            HashType::Sha128,
            HashType::Sha512,
        ] {
            let mut h = cmd.clone();
            if let Some(hash) = &mut h.hash {
                hash.hash_type = ht;
            }
            self.push(
                "policy",
                format!("hash type {ht:?}"),
                resign(k, &h),
                new.clone(),
                policy(&[Code::Ext(ExtError::WrongHashType)]),
            );
        }
        let (dat, _) = app_package(name, k, &firmware(new.len(), 9), NEW_VERSION)?;
        self.push(
            "policy",
            "a signed packet naming another image of the same size".into(),
            dat,
            new,
            Expect {
                phase: UpdatePhase::Validate,
                codes: HASH_MISMATCH,
            },
        );
        Ok(())
    }

    /// Power-cycles the board and checks it runs the old application,
    /// bank 0 byte for byte.
    fn old_app_runs(&self, b: &mut Nrf52840) -> Result<(), String> {
        b.power_cycle(PowerCutPlan::Never);
        run_to_idle(b);
        let ins = b.inspect();
        if !ins.app_valid || ins.app_crc != crc(&self.old) || ins.app_version != OLD_VERSION {
            return Err(format!("the board no longer runs the old app: {ins:?}"));
        }
        let start = b.bootloader().config().layout.app_start as usize;
        if b.memory().internal.contents()[start..start + self.old.len()] != self.old[..] {
            return Err(format!("bank 0 at {start:#010x} changed"));
        }
        if let Some(e) = b.model_errors().first() {
            return Err(format!("a flash rule was broken: {e}"));
        }
        Ok(())
    }
}

impl Suite for NordicTamper {
    fn name(&self) -> &'static str {
        self.name
    }

    fn describe(&self) -> String {
        format!(
            "signed application {} B (v{NEW_VERSION}) over {} B (v{OLD_VERSION}), bank 1 {}, public key configured",
            self.new.len(),
            self.old.len(),
            match self.cfg.bank1 {
                Bank1::Internal => "internal",
                Bank1::Qspi => "on QSPI",
            }
        )
    }

    fn cases(&self) -> &[Case] {
        &self.infos
    }

    fn run(&self, i: usize) -> Outcome {
        let c = &self.cases[i];
        let mut b = board(&self.cfg, &self.before);
        run_to_idle(&mut b);
        let result = send(&mut b, &c.init, &c.image);
        run_to_idle(&mut b);
        let kept = self.old_app_runs(&mut b);
        match (result, kept) {
            (Ok(()), _) => Outcome::Accepted("the host reported success".into()),
            (Err(e), Err(lost)) => Outcome::OldImageLost(format!("{lost} (the host said: {e})")),
            (Err(e), Ok(())) if c.expect.matches(&e) => Outcome::Rejected,
            (Err(e), Ok(())) => Outcome::WrongError(format!(
                "{e}; expected a refusal in the {} phase with {:?}",
                c.expect.phase, c.expect.codes
            )),
        }
    }

    fn control(&self) -> Result<(), String> {
        let mut b = board(&self.cfg, &self.before);
        run_to_idle(&mut b);
        send(&mut b, &self.init, &self.new)
            .map_err(|e| format!("the untampered update failed: {e}"))?;
        run_to_idle(&mut b);
        b.power_cycle(PowerCutPlan::Never);
        run_to_idle(&mut b);
        let ins = b.inspect();
        if ins.app_valid && ins.app_crc == crc(&self.new) && ins.app_version == NEW_VERSION {
            Ok(())
        } else {
            Err(format!("the untampered update did not install: {ins:?}"))
        }
    }
}

/// The nRF52840 suites: bank 1 internal and on QSPI.
pub fn suites(seed: u64) -> Result<Vec<Box<dyn Suite>>, SetupError> {
    Ok(vec![
        Box::new(NordicTamper::new(
            "nrf52840-internal-bank1",
            Bank1::Internal,
            seed,
            1,
        )?),
        Box::new(NordicTamper::new(
            "nrf52840-qspi-bank1",
            Bank1::Qspi,
            seed,
            2,
        )?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(phase: UpdatePhase, result: ResultCode, ext: Option<ExtError>) -> UpdateError {
        UpdateError::Rejected {
            phase,
            request: dfukit_nordic::proto::Opcode::ObjectExecute,
            result,
            ext,
            object: None,
            offset: 0,
        }
    }

    /// A refusal counts only in the phase and with a code the case names:
    /// a hash mismatch expected at validation is not met by a refusal of
    /// the init packet, nor by another extended error.
    #[test]
    fn a_refusal_matches_only_its_phase_and_codes() {
        let e = Expect {
            phase: UpdatePhase::Validate,
            codes: HASH_MISMATCH,
        };
        let ext = Some(ExtError::VerificationFailed);
        assert!(e.matches(&rejected(UpdatePhase::Validate, ResultCode::ExtError, ext)));
        assert!(!e.matches(&rejected(
            UpdatePhase::InitPacket,
            ResultCode::ExtError,
            ext
        )));
        assert!(!e.matches(&rejected(
            UpdatePhase::Validate,
            ResultCode::ExtError,
            Some(ExtError::HashFailed)
        )));
        let d = init_refused(INIT_DAMAGED);
        assert!(d.matches(&rejected(
            UpdatePhase::InitPacket,
            ResultCode::InvalidObject,
            None
        )));
        // A result code with an extended error is not the bare result code.
        assert!(!d.matches(&rejected(
            UpdatePhase::InitPacket,
            ResultCode::InvalidObject,
            Some(ExtError::HwVersionFailure)
        )));
    }
}
