//! DFU packages (`.zip`) as `nrfutil pkg generate` writes them, and reading/validating them.
//!
//! A package holds, per image, a `.bin` (the flattened, word-padded firmware), a `.dat` (the
//! init packet) and one `manifest.json`. Generation mirrors nrfutil 6.1.7 so that, for the same
//! inputs, manifest.json, every `.bin` and every unsigned `.dat` are byte-identical; signed
//! `.dat` files differ only in the (randomized) ECDSA signature bytes.
//!
//! nrfutil details reproduced here:
//! - The hash is SHA-256 of the `.bin`, stored byte-reversed.
//! - The signature covers the serialized `InitCommand` only, r and s each byte-reversed.
//! - `sd_req` is written in the iteration order of a CPython `set` built from the list
//!   (`list(set(sd_req))` in `init_packet_pb.py`), not in command-line order.
//! - SoftDevice + bootloader become one `sd_bl.bin` image (SoftDevice then bootloader, each
//!   padded), with the bootloader's version, boot validation `[sd, CRC]`, and an ECDSA boot
//!   validation signing the SoftDevice part only.
//! - manifest.json is Python's `json.dumps(sort_keys=True, indent=4)` without trailing newline.
//!
//! Everything here is host-side (`std`): zip files, manifest.json, signing keys and firmware
//! files. The init packet codec is not: the bootloader decodes init packets too, so it lives in
//! the `no_std` [`crate::init_packet`], and this module only builds and reads the files around
//! it.
//!
//! `zip_write` generates packages, `zip_read` opens and checks them, `display` describes them,
//! `manifest` is manifest.json, `pyset` the CPython set order and `warnings` what a valid
//! package may still do wrong; `keys` and `firmware` load
//! the inputs (signing keys, firmware files).

mod display;
pub mod firmware;
pub mod keys;
mod manifest;
mod pyset;
#[cfg(test)]
mod tests;
mod warnings;
mod zip_read;
mod zip_write;

pub use manifest::{manifest_json, ImageKind, MANIFEST_FILENAME};
pub use pyset::{merge_sd_id, python_set_order};
pub use zip_read::{Package, PackageError, PackageImage, MAX_IMAGE_BYTES, MAX_METADATA_BYTES};
pub use zip_write::{
    build, generate, generate_to_file, GenerateError, GeneratedImage, GeneratedPackage,
    PackageOptions,
};

use crate::init_packet::ValidationType;
use std::path::Path;

/// The `sd_req` value meaning "no SoftDevice requirement" (nrfutil's default).
pub const SD_REQ_ANY: u32 = 0xFFFE;

/// Parses a boot-validation name as nrfutil's command line spells it.
pub fn parse_validation_arg(name: &str) -> Option<ValidationType> {
    Some(match name {
        "NO_VALIDATION" => ValidationType::NoValidation,
        "VALIDATE_GENERATED_CRC" => ValidationType::ValidateGeneratedCrc,
        "VALIDATE_GENERATED_SHA256" => ValidationType::ValidateSha256,
        "VALIDATE_ECDSA_P256_SHA256" => ValidationType::ValidateEcdsaP256Sha256,
        _ => return None,
    })
}

/// Parses an integer as nrfutil does (`int_as_text_to_int`): `0x` prefix → hex, a leading
/// `0` → octal, otherwise decimal.
pub fn parse_nrfutil_int(text: &str) -> Option<u32> {
    let t = text.trim();
    if t.len() >= 2 && t[..2].eq_ignore_ascii_case("0x") {
        u32::from_str_radix(&t[2..], 16).ok()
    } else if t.starts_with('0') && t.len() > 1 {
        u32::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}

/// nrfutil's `.bin` name: the input's file name with `.hex` replaced by `.bin` (Python
/// `str.replace`, so every occurrence). Other names not ending in `.bin` get `.bin` appended.
pub fn bin_file_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.contains(".hex") {
        name.replace(".hex", ".bin")
    } else if name.ends_with(".bin") {
        name
    } else {
        format!("{name}.bin")
    }
}

/// nrfutil's `.dat` name: the `.bin` name with `.bin` replaced by `.dat`.
pub fn dat_file_name(bin_file: &str) -> String {
    bin_file.replace(".bin", ".dat")
}

/// Lower-case hex, as nrfutil prints hashes and signatures.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
