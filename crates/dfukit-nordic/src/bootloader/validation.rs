//! Init packet checks (`nrf_dfu_validation.c`) and image hashing from flash.

use super::BootloaderConfig;
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
    pub size: u32,
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
/// hardware, SoftDevice, version, hash.
pub(super) fn validate(
    cfg: &BootloaderConfig,
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
    if c.fw_type != Some(FwType::Application) {
        // SoftDevice and bootloader updates need the MBR copy path, which
        // this bootloader does not offer.
        return Err(Reject::Ext(ExtError::InitCommandInvalid));
    }
    if c.hw_version != Some(cfg.hw_version) {
        return Err(Reject::Ext(ExtError::HwVersionFailure));
    }
    let sd_ok = match cfg.softdevice {
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
    // Applications may be re-installed at the same version, never downgraded.
    if fw_version < s.app_version {
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
    let size = match c.app_size {
        Some(n) if n > 0 => n,
        _ => return Err(Reject::Ext(ExtError::InitCommandInvalid)),
    };
    Ok(Accepted {
        size,
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
