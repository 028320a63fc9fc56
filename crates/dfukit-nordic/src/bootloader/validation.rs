//! Init packet checks (`nrf_dfu_validation.c`) and image hashing from flash.

use super::{BootloaderConfig, SoftDevice};
use crate::init_packet::{self, FwType, HashType, SignatureType};
use crate::proto::{ExtError, Opcode, Response, ResultCode};
use crate::settings::Settings;
use dfukit_core::crc::crc32;
use dfukit_core::{ReadError, ReadFlash};
use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};

/// `sd_req` entry that accepts any SoftDevice (debug packages).
const SD_REQ_ANY: u32 = 0xFFFE;

/// What an accepted init packet fixes for the transfer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Accepted {
    pub kind: FwType,
    /// The whole image: the SoftDevice part first, then the bootloader part.
    pub size: u32,
    /// The SoftDevice part (0 without one).
    pub sd_size: u32,
    /// SHA-256 of the image, byte-reversed as the init packet carries it.
    pub hash: [u8; 32],
    pub fw_version: u32,
}

/// Why an init packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reject {
    Result(ResultCode),
    Ext(ExtError),
}

impl Reject {
    pub fn into_response(self, op: Opcode) -> Response {
        match self {
            Reject::Result(r) => Response::error(op, r),
            Reject::Ext(e) => Response::ext_error(op, e),
        }
    }
}

/// Decodes and checks an init packet against the bootloader's configuration
/// and the installed versions, in the SDK's order: signature, type,
/// hardware, SoftDevice, version, hash, sizes. `current_sd` is the
/// SoftDevice installed now.
pub(super) fn validate(
    cfg: &BootloaderConfig,
    current_sd: Option<SoftDevice>,
    s: &Settings,
    packet: &[u8],
) -> Result<Accepted, Reject> {
    let p = init_packet::decode(packet).map_err(|_| Reject::Result(ResultCode::InvalidObject))?;
    if let Some(key) = &cfg.public_key {
        let sig = p.signature.ok_or(Reject::Ext(ExtError::SignatureMissing))?;
        if p.signature_type != Some(SignatureType::EcdsaP256Sha256) {
            return Err(Reject::Ext(ExtError::WrongSignatureType));
        }
        let sig = nordic_signature(sig).ok_or(Reject::Result(ResultCode::InvalidObject))?;
        key.verify(p.init_command_bytes, &sig)
            .map_err(|_| Reject::Result(ResultCode::InvalidObject))?;
    }
    let c = &p.command;
    let kind = match c.fw_type {
        Some(
            k @ (FwType::Application
            | FwType::Softdevice
            | FwType::Bootloader
            | FwType::SoftdeviceBootloader),
        ) => k,
        // External applications go to a companion chip this bootloader
        // does not drive.
        _ => return Err(Reject::Ext(ExtError::InitCommandInvalid)),
    };
    if c.hw_version != Some(cfg.hw_version) {
        return Err(Reject::Ext(ExtError::HwVersionFailure));
    }
    // `sd_req` names the SoftDevice present now, also for a SoftDevice
    // update (the one it replaces).
    let sd_ok = match current_sd {
        Some(sd) => c
            .sd_req
            .iter()
            .any(|&r| r == sd.fwid as u32 || r == SD_REQ_ANY),
        None => c.sd_req.iter().any(|&r| r == 0 || r == SD_REQ_ANY),
    };
    if !sd_ok {
        return Err(Reject::Ext(ExtError::SdVersionFailure));
    }
    let fw_version = c
        .fw_version
        .ok_or(Reject::Ext(ExtError::InitCommandInvalid))?;
    let version_ok = match kind {
        // Applications may be re-installed at the same version, never
        // downgraded.
        FwType::Application => fw_version >= s.app_version,
        // The SDK checks no version for a SoftDevice alone.
        FwType::Softdevice => true,
        // A bootloader must be newer than the running one (`fw_version_ok`).
        _ => fw_version > s.bootloader_version,
    };
    if !version_ok {
        return Err(Reject::Ext(ExtError::FwVersionFailure));
    }
    let hash = match &c.hash {
        Some(h) if h.hash_type == HashType::Sha256 && h.hash.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(&h.hash);
            out
        }
        _ => return Err(Reject::Ext(ExtError::WrongHashType)),
    };
    let positive = |v: Option<u32>| match v {
        Some(n) if n > 0 => Ok(n),
        _ => Err(Reject::Ext(ExtError::InitCommandInvalid)),
    };
    let l = cfg.layout;
    let (sd_size, bl_size) = match kind {
        FwType::Application => (0, 0),
        FwType::Softdevice => (positive(c.sd_size)?, 0),
        FwType::Bootloader => (0, positive(c.bl_size)?),
        _ => (positive(c.sd_size)?, positive(c.bl_size)?),
    };
    // The SoftDevice part must carry its information structure (read at
    // post-validation) and fit between the MBR and bank 0; the bootloader
    // part must fit its region.
    if sd_size > 0 && sd_size < SoftDevice::MIN_IMAGE {
        return Err(Reject::Ext(ExtError::InitCommandInvalid));
    }
    if sd_size > l.softdevice_region().1 || bl_size > l.bootloader_region().1 {
        return Err(Reject::Ext(ExtError::InsufficientSpace));
    }
    let size = match kind {
        FwType::Application => positive(c.app_size)?,
        _ => sd_size + bl_size,
    };
    Ok(Accepted {
        kind,
        size,
        sd_size,
        hash,
        fw_version,
    })
}

/// Turns nrfutil's signature layout (r and s each byte-reversed) into an
/// ECDSA signature.
fn nordic_signature(raw: &[u8]) -> Option<p256::ecdsa::Signature> {
    if raw.len() != 64 {
        return None;
    }
    let mut be = [0u8; 64];
    for i in 0..32 {
        be[i] = raw[31 - i];
        be[32 + i] = raw[63 - i];
    }
    p256::ecdsa::Signature::from_slice(&be).ok()
}

/// SHA-256 of `len` bytes at `addr`, byte-reversed like the init packet's hash.
pub(super) fn hash_image(
    mem: &mut impl ReadFlash,
    addr: u32,
    len: u32,
) -> Result<[u8; 32], ReadError> {
    let mut h = Sha256::new();
    each_chunk(mem, addr, len, |b| h.update(b))?;
    let mut d: [u8; 32] = h.finalize().into();
    d.reverse();
    Ok(d)
}

/// CRC-32 of `len` bytes at `addr`.
pub(super) fn crc_of(mem: &mut impl ReadFlash, addr: u32, len: u32) -> Result<u32, ReadError> {
    let mut crc = 0;
    each_chunk(mem, addr, len, |b| crc = crc32(crc, b))?;
    Ok(crc)
}

fn each_chunk(
    mem: &mut impl ReadFlash,
    addr: u32,
    len: u32,
    mut f: impl FnMut(&[u8]),
) -> Result<(), ReadError> {
    let mut buf = [0u8; 256];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u32) as usize;
        mem.read(addr + off, &mut buf[..n])?;
        f(&buf[..n]);
        off += n as u32;
    }
    Ok(())
}
