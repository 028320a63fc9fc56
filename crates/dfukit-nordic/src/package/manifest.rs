//! manifest.json: the image slots, and the file as nrfutil writes and reads it.

use super::zip_write::GeneratedImage;
use crate::init_packet::FwType;
use serde::Deserialize;

/// Name of the manifest inside a package.
pub const MANIFEST_FILENAME: &str = "manifest.json";

/// Which manifest slot an image occupies. The order is the order nrfutil displays them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageKind {
    /// `softdevice_bootloader` (combined image).
    SoftdeviceBootloader,
    /// `softdevice`.
    Softdevice,
    /// `bootloader`.
    Bootloader,
    /// `application` (also external applications).
    Application,
}

impl ImageKind {
    /// Key in manifest.json.
    pub fn manifest_key(self) -> &'static str {
        match self {
            ImageKind::SoftdeviceBootloader => "softdevice_bootloader",
            ImageKind::Softdevice => "softdevice",
            ImageKind::Bootloader => "bootloader",
            ImageKind::Application => "application",
        }
    }

    /// The label `nrfutil pkg display` uses.
    pub fn display_name(self) -> &'static str {
        match self {
            ImageKind::SoftdeviceBootloader => "sd_bl",
            ImageKind::Softdevice => "softdevice",
            ImageKind::Bootloader => "bootloader",
            ImageKind::Application => "application",
        }
    }

    pub(super) fn from_fw_type(t: Option<FwType>) -> ImageKind {
        match t {
            Some(FwType::SoftdeviceBootloader) => ImageKind::SoftdeviceBootloader,
            Some(FwType::Softdevice) => ImageKind::Softdevice,
            Some(FwType::Bootloader) => ImageKind::Bootloader,
            _ => ImageKind::Application,
        }
    }
}

/// manifest.json exactly as nrfutil writes it (sorted keys, 4-space indent, no final newline).
pub fn manifest_json(images: &[GeneratedImage]) -> String {
    use serde_json::{json, Map, Value};
    let mut m = Map::new();
    for img in images {
        let mut e = Map::new();
        e.insert("bin_file".into(), Value::from(img.bin_file.clone()));
        e.insert("dat_file".into(), Value::from(img.dat_file.clone()));
        if let Some((sd, bl)) = img.sd_bl_sizes {
            e.insert(
                "info_read_only_metadata".into(),
                json!({ "bl_size": bl, "sd_size": sd }),
            );
        }
        m.insert(img.kind.manifest_key().into(), Value::Object(e));
    }
    let root = json!({ "manifest": Value::Object(m) });
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing a Value into a Vec cannot fail.
    let _ = serde::Serialize::serialize(&root, &mut ser);
    String::from_utf8(out).unwrap_or_default()
}

/// manifest.json as read: only the entries a package may hold.
#[derive(Deserialize)]
pub(super) struct ManifestFile {
    pub(super) manifest: ManifestEntries,
}

#[derive(Deserialize, Default)]
pub(super) struct ManifestEntries {
    pub(super) application: Option<ManifestEntry>,
    pub(super) bootloader: Option<ManifestEntry>,
    pub(super) softdevice: Option<ManifestEntry>,
    pub(super) softdevice_bootloader: Option<ManifestEntry>,
}

#[derive(Deserialize)]
pub(super) struct ManifestEntry {
    pub(super) bin_file: String,
    pub(super) dat_file: String,
}
