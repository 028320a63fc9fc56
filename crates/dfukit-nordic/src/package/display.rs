//! Descriptions of an opened package: `nrfutil pkg display`'s text, and JSON.

use super::hex;
use super::zip_read::{Package, PackageImage};
use crate::init_packet::{FwType, HashType, ValidationType};

impl Package {
    /// Python-isms such as `b'…'` around hex strings), so scripts parsing nrfutil's output
    /// keep working.
    pub fn display(&self) -> String {
        let mut s = format!(
            "\nDFU Package: <{}>:\n|\n|- Image count: {}\n",
            self.path.display(),
            self.images.len()
        );
        for (i, img) in self.images.iter().enumerate() {
            s.push_str(&image_display(i, img));
        }
        s
    }

    /// JSON description with fields named after `dfu-cc.proto`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let images: Vec<_> = self
            .images
            .iter()
            .map(|img| {
                let c = &img.command;
                json!({
                    "image": img.kind.manifest_key(),
                    "bin_file": if img.firmware.is_some() { Some(&img.bin_file) } else { None },
                    "dat_file": img.dat_file,
                    "op_code": "INIT",
                    "signature_type": img.signature_type.map(|t| t.proto_name()),
                    "signature": img.signature.as_deref().map(hex),
                    "fw_version": c.fw_version,
                    "hw_version": c.hw_version,
                    "sd_req": c.sd_req.as_slice(),
                    "type": c.fw_type.map(|t| t.proto_name()),
                    "sd_size": c.sd_size,
                    "bl_size": c.bl_size,
                    "app_size": c.app_size,
                    "hash_type": c.hash.as_ref().map(|h| h.hash_type.proto_name()),
                    "hash": c.hash.as_ref().map(|h| hex(&h.hash)),
                    "is_debug": c.is_debug,
                    "boot_validation": c.boot_validation.iter().map(|b| json!({
                        "type": b.kind.proto_name(),
                        "bytes": hex(&b.bytes),
                    })).collect::<Vec<_>>(),
                    "init_packet_size": img.init_packet.len(),
                    "firmware_size": img.firmware.as_ref().map(Vec::len),
                })
            })
            .collect();
        json!({ "file": self.path.display().to_string(), "images": images })
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn image_display(index: usize, img: &PackageImage) -> String {
    let c = &img.command;
    let sd_req = c
        .sd_req
        .iter()
        .map(|v| format!("0x{v:02X}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (sig_type, sig) = match (&img.signature_type, &img.signature) {
        (Some(t), Some(s)) => (t.proto_name().to_string(), format!("b'{}'", hex(s))),
        _ => ("UNSIGNED".to_string(), "N/A".to_string()),
    };
    let bv_types = c
        .boot_validation
        .iter()
        .map(|b| format!("'{}'", py_validation_name(b.kind)))
        .collect::<Vec<_>>()
        .join(", ");
    let bv_bytes = c
        .boot_validation
        .iter()
        .map(|b| format!("b'{}'", hex(&b.bytes)))
        .collect::<Vec<_>>()
        .join(", ");
    let u = |v: Option<u32>| v.unwrap_or(0);
    let fw = u(c.fw_version);
    let hw = u(c.hw_version);
    format!(
        "|\n|- Image #{index}:\n   |- Type: {}\n   |- Image file: {}\n   |- Init packet file: {}\n      |\n      |- op_code: INIT\n      |- signature_type: {sig_type}\n      |- signature (little-endian): {sig}\n      |\n      |- fw_version: 0x{fw:08X} ({fw})\n      |- hw_version 0x{hw:08X} ({hw})\n      |- sd_req: {sd_req}\n      |- type: {}\n      |- sd_size: {}\n      |- bl_size: {}\n      |- app_size: {}\n      |\n      |- hash_type: {}\n      |- hash (little-endian): b'{}'\n      |\n      |- boot_validation_type: [{bv_types}]\n      |- boot_validation_signature (little-endian): [{bv_bytes}]\n      |\n      |- is_debug: {}\n\n",
        img.kind.display_name(),
        img.bin_file,
        img.dat_file,
        c.fw_type.unwrap_or(FwType::Application).proto_name(),
        u(c.sd_size),
        u(c.bl_size),
        u(c.app_size),
        c.hash.as_ref().map_or("NONE", |h| py_hash_name(h.hash_type)),
        c.hash.as_ref().map(|h| hex(&h.hash)).unwrap_or_default(),
        py_bool(c.is_debug.unwrap_or(false)),
    )
}

/// nrfutil's Python enum names differ from the `.proto` names in two places.
fn py_validation_name(v: ValidationType) -> &'static str {
    match v {
        ValidationType::ValidateSha256 => "VALIDATE_GENERATED_SHA256",
        other => other.proto_name(),
    }
}

fn py_hash_name(h: HashType) -> &'static str {
    match h {
        HashType::NoHash => "NONE",
        other => other.proto_name(),
    }
}
