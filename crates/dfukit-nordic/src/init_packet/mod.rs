//! Init packet codec for Nordic's `dfu-cc.proto` (proto2), byte-compatible with nrfutil 6.1.7.
//!
//! The decoder is `no_std` and allocation-free because it runs in the bootloader. It borrows
//! from the packet and reports the exact byte span of the serialized `InitCommand`: that span is
//! what nrfutil signs (`package.py`: `sign(init_packet.get_init_command_bytes())`), and the
//! device must verify the sender's bytes, never a re-encoding of them.
//!
//! Limits follow the SDK's nanopb options (`dfu-cc.options`): hash ≤ 32 bytes, signature ≤ 64
//! bytes, `sd_req` ≤ 16 entries, `boot_validation` ≤ 3 entries, `BootValidation.bytes` ≤ 64
//! bytes. Oversize fields are reported as errors, never truncated, never a panic.
//!
//! Schema summary (field numbers):
//! - `Packet { 1 command: Command, 2 signed_command: SignedCommand }`
//! - `SignedCommand { 1 command: Command, 2 signature_type, 3 signature: bytes }`
//! - `Command { 1 op_code (INIT = 1), 2 init: InitCommand }`
//! - `InitCommand { 1 fw_version, 2 hw_version, 3 sd_req [packed], 4 type, 5 sd_size,
//!   6 bl_size, 7 app_size, 8 hash: Hash, 9 is_debug, 10 boot_validation: BootValidation* }`
//! - `Hash { 1 hash_type, 2 hash }`, `BootValidation { 1 type, 2 bytes }`
//!
//! This module is the protocol codec only, and stays outside `package` on purpose: the device
//! decodes init packets (the bootloader's EXECUTE path), so it must build without `std`, while
//! `package` (zip files, manifests, keys, firmware files) is host-only. The encoder is `no_std`
//! as well (it writes through a callback); only the `Vec`-returning wrappers need `std`.

mod decode;
mod encode;
#[cfg(all(test, feature = "std"))]
mod tests;

pub use decode::{decode, DecodeError};
#[cfg(feature = "std")]
pub use encode::{encode_init_command, encode_packet};

use core::fmt;

/// Maximum hash length accepted (nanopb `dfu.Hash.hash max_size:32`).
pub const MAX_HASH_LEN: usize = 32;
/// Maximum signature length accepted (nanopb `dfu.SignedCommand.signature max_size:64`).
pub const MAX_SIGNATURE_LEN: usize = 64;
/// Maximum number of `sd_req` entries (nanopb `dfu.InitCommand.sd_req max_count:16`).
pub const MAX_SD_REQ: usize = 16;
/// Maximum number of `boot_validation` entries (nanopb `max_count:3`).
pub const MAX_BOOT_VALIDATION: usize = 3;
/// Maximum length of `BootValidation.bytes` (nanopb `max_size:64`).
pub const MAX_BOOT_VALIDATION_BYTES: usize = 64;

/// `OpCode.INIT`: the only command a Secure DFU bootloader executes from an init packet.
pub const OP_CODE_INIT: u32 = 1;

macro_rules! proto_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:literal => $pyname:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vm])* $var = $val,)*
        }
        impl $name {
            /// All values, in numeric order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];
            /// Converts a wire value; `None` if the value is not defined by `dfu-cc.proto`.
            pub fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($val => Some($name::$var),)*
                    _ => None,
                }
            }
            /// The numeric wire value.
            pub fn as_u32(self) -> u32 {
                self as u32
            }
            /// The enum value's name as the `.proto` file (and so `nrfutil pkg display`) spells it.
            pub fn proto_name(self) -> &'static str {
                match self {
                    $($name::$var => $pyname,)*
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.proto_name())
            }
        }
    };
}

proto_enum!(
    /// `dfu.FwType`: what kind of image the init packet describes.
    FwType {
        /// Application image.
        Application = 0 => "APPLICATION",
        /// SoftDevice image.
        Softdevice = 1 => "SOFTDEVICE",
        /// Bootloader image.
        Bootloader = 2 => "BOOTLOADER",
        /// Combined SoftDevice + bootloader image.
        SoftdeviceBootloader = 3 => "SOFTDEVICE_BOOTLOADER",
        /// Application passed through to an external consumer.
        ExternalApplication = 4 => "EXTERNAL_APPLICATION",
    }
);

proto_enum!(
    /// `dfu.HashType`: the hash algorithm of [`Hash`](struct@Hash).
    HashType {
        /// No hash.
        NoHash = 0 => "NO_HASH",
        /// CRC32.
        Crc = 1 => "CRC",
        /// SHA-128 (sic).
        Sha128 = 2 => "SHA128",
        /// SHA-256 (what nrfutil uses).
        Sha256 = 3 => "SHA256",
        /// SHA-512.
        Sha512 = 4 => "SHA512",
    }
);

proto_enum!(
    /// `dfu.ValidationType`: how the bootloader validates an image at boot.
    ValidationType {
        /// No boot validation.
        NoValidation = 0 => "NO_VALIDATION",
        /// CRC32 generated by the bootloader.
        ValidateGeneratedCrc = 1 => "VALIDATE_GENERATED_CRC",
        /// SHA-256 generated by the bootloader (nrfutil's CLI calls it `VALIDATE_GENERATED_SHA256`).
        ValidateSha256 = 2 => "VALIDATE_SHA256",
        /// ECDSA P-256 signature over the image.
        ValidateEcdsaP256Sha256 = 3 => "VALIDATE_ECDSA_P256_SHA256",
    }
);

proto_enum!(
    /// `dfu.SignatureType`: algorithm of the init packet signature.
    SignatureType {
        /// ECDSA over P-256 with SHA-256 (what nrfutil produces).
        EcdsaP256Sha256 = 0 => "ECDSA_P256_SHA256",
        /// Ed25519.
        Ed25519 = 1 => "ED25519",
    }
);

/// `dfu.Hash`: hash of the firmware image. nrfutil stores SHA-256 digests byte-reversed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hash {
    /// Algorithm.
    pub hash_type: HashType,
    /// Digest bytes as they appear on the wire (at most [`MAX_HASH_LEN`] when decoded).
    pub hash: heapless::Vec<u8, 64>,
}

/// `dfu.BootValidation`: one boot-time validation method and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootValidation {
    /// Validation method.
    pub kind: ValidationType,
    /// Validation data (empty for generated CRC/SHA-256, the 64-byte signature for ECDSA).
    pub bytes: heapless::Vec<u8, 64>,
}

/// `dfu.InitCommand`: what the bootloader checks before accepting the firmware.
///
/// Optional proto2 fields are `Option`s: `None` means absent on the wire (nrfutil always sets
/// every field explicitly, so its packets carry all of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitCommand {
    /// Firmware version (application or bootloader version; 0xFFFFFFFF for SoftDevices).
    pub fw_version: Option<u32>,
    /// Hardware version.
    pub hw_version: Option<u32>,
    /// Accepted SoftDevice firmware IDs (encoded packed, as the `.proto` asks).
    pub sd_req: heapless::Vec<u32, 16>,
    /// Image type.
    pub fw_type: Option<FwType>,
    /// SoftDevice size in bytes.
    pub sd_size: Option<u32>,
    /// Bootloader size in bytes.
    pub bl_size: Option<u32>,
    /// Application size in bytes.
    pub app_size: Option<u32>,
    /// Image hash.
    pub hash: Option<Hash>,
    /// Debug flag (a debug bootloader then skips version checks).
    pub is_debug: Option<bool>,
    /// Boot validation entries.
    pub boot_validation: heapless::Vec<BootValidation, 3>,
}

/// A decoded init packet borrowing from the sender's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitPacket<'a> {
    /// The decoded `InitCommand`.
    pub command: InitCommand,
    /// The serialized `InitCommand` exactly as received: the region the signature covers.
    pub init_command_bytes: &'a [u8],
    /// Signature algorithm (`None` for an unsigned `Packet.command`).
    pub signature_type: Option<SignatureType>,
    /// Signature bytes (`None` for an unsigned `Packet.command`). nrfutil stores r and s each
    /// byte-reversed.
    pub signature: Option<&'a [u8]>,
}

// Protobuf wire types, shared by the reader and the writer.
const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;
