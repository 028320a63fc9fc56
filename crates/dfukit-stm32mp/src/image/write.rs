//! Writing STM32 headers, as TF-A's stm32image and U-Boot's mkimage do.

use super::*;

/// Header version to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteVersion {
    /// v1.0, 256-byte header (STM32MP15x).
    #[default]
    V1,
    /// v2.0, 512-byte header with one padding extension (STM32MP13x).
    V2,
}

/// Header fields for [`write()`]. The checksum and length come from the
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteParams {
    /// Header version.
    pub version: WriteVersion,
    /// Entry point address.
    pub entry_point: u32,
    /// Load address.
    pub load_address: u32,
    /// Image version (anti-rollback counter).
    pub image_version: u32,
    /// v1 option flags / v2 extension flags. `None` uses the tools'
    /// defaults: v1 `0x1` (no signature), v2 `0x80000000` (padding
    /// extension).
    pub option_flags: Option<u32>,
    /// v1 ECDSA algorithm (tool default 1); ignored for v2.
    pub ecdsa_algorithm: u32,
    /// Binary type (v1 keeps the low byte). 0x10 = TF-A, 0x00 = U-Boot.
    pub binary_type: u32,
    /// Signature bytes.
    pub signature: [u8; 64],
    /// v1 public key; ignored for v2.
    pub public_key: [u8; 64],
}

impl Default for WriteParams {
    fn default() -> Self {
        WriteParams {
            version: WriteVersion::V1,
            entry_point: 0,
            load_address: 0,
            image_version: 0,
            option_flags: None,
            ecdsa_algorithm: 1,
            binary_type: 0,
            signature: [0; 64],
            public_key: [0; 64],
        }
    }
}

impl WriteParams {
    /// Unsigned v1 image loaded and entered at `address`.
    pub fn v1(address: u32) -> Self {
        WriteParams {
            entry_point: address,
            load_address: address,
            ..Default::default()
        }
    }

    /// Unsigned v2 image loaded and entered at `address`.
    pub fn v2(address: u32) -> Self {
        WriteParams {
            version: WriteVersion::V2,
            ..Self::v1(address)
        }
    }
}

/// Build a complete image (header followed by `payload`) as TF-A's
/// `stm32image` tool (v1/v2) and `mkimage -T stm32image` (v1) do.
///
/// # Panics
///
/// If `payload` is 4 GiB or larger.
pub fn write(params: &WriteParams, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("STM32 image payload must be < 4 GiB");
    let (header_len, header_version, default_flags) = match params.version {
        WriteVersion::V1 => (V1_HEADER_LEN, HEADER_VERSION_V1, OPT_FLAG_NO_SIGNATURE),
        WriteVersion::V2 => (V2_HEADER_LEN, HEADER_VERSION_V2, EXT_FLAG_PADDING),
    };
    let mut out = vec![0u8; header_len];
    put(&mut out, offsets::MAGIC, MAGIC);
    put(&mut out, offsets::CHECKSUM, checksum(payload));
    put(&mut out, offsets::IMAGE_LENGTH, len);
    put(&mut out, offsets::ENTRY_POINT, params.entry_point);
    put(&mut out, offsets::LOAD_ADDRESS, params.load_address);
    put(&mut out, offsets::IMAGE_VERSION, params.image_version);
    put(&mut out, offsets::HEADER_VERSION, header_version);
    let flags = params.option_flags.unwrap_or(default_flags);
    put(&mut out, offsets::FLAGS, flags);
    match params.version {
        WriteVersion::V1 => {
            put(
                &mut out,
                offsets::V1_ECDSA_ALGORITHM,
                params.ecdsa_algorithm,
            );
            out[offsets::V1_PUBLIC_KEY..offsets::V1_PUBLIC_KEY + 64]
                .copy_from_slice(&params.public_key);
            out[offsets::V1_BINARY_TYPE] = params.binary_type as u8;
        }
        WriteVersion::V2 => {
            put(
                &mut out,
                offsets::V2_EXTENSION_HEADERS_LENGTH,
                PADDING_EXTENSION_LEN,
            );
            put(&mut out, offsets::V2_BINARY_TYPE, params.binary_type);
            put(&mut out, offsets::V2_EXTENSIONS, PADDING_EXTENSION_MAGIC);
            put(&mut out, offsets::V2_EXTENSIONS + 4, PADDING_EXTENSION_LEN);
        }
    }
    out[offsets::SIGNATURE..offsets::SIGNATURE + 64].copy_from_slice(&params.signature);
    out.extend_from_slice(payload);
    out
}

fn put(out: &mut [u8], off: usize, v: u32) {
    out[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
