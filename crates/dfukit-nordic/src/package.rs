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

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::firmware::{self, FirmwareError};
use crate::init_packet::{
    self, BootValidation, DecodeError, FwType, Hash, HashType, InitCommand, SignatureType,
    ValidationType,
};
use crate::keys;

/// Name of the manifest inside a package.
pub const MANIFEST_FILENAME: &str = "manifest.json";
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

// ---------------------------------------------------------------------------------------------
// CPython set iteration order
// ---------------------------------------------------------------------------------------------

/// Just enough of CPython 3.11's `setobject.c` to reproduce the iteration order of a set of
/// small non-negative ints (whose hash is the value itself).
#[derive(Clone)]
struct PySet {
    table: Vec<Option<u64>>,
    fill: usize,
    used: usize,
}

const LINEAR_PROBES: usize = 9;
const PERTURB_SHIFT: u32 = 5;

impl PySet {
    fn new() -> Self {
        PySet {
            table: vec![None; 8],
            fill: 0,
            used: 0,
        }
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    fn from_iter(values: impl IntoIterator<Item = u64>) -> Self {
        let mut s = PySet::new();
        for v in values {
            s.add(v);
        }
        s
    }

    fn contains(&self, key: u64) -> bool {
        self.table.contains(&Some(key))
    }

    fn add(&mut self, key: u64) {
        let mask = self.mask();
        let mut perturb = key;
        let mut i = (key as usize) & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in 0..=probes {
                match self.table[i + j] {
                    None => {
                        self.table[i + j] = Some(key);
                        self.fill += 1;
                        self.used += 1;
                        if self.fill * 5 >= mask * 3 {
                            self.resize(if self.used > 50000 {
                                self.used * 2
                            } else {
                                self.used * 4
                            });
                        }
                        return;
                    }
                    Some(k) if k == key => return,
                    Some(_) => {}
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
        }
    }

    fn resize(&mut self, minused: usize) {
        let mut newsize = 8;
        while newsize <= minused {
            newsize <<= 1;
        }
        let old = std::mem::replace(&mut self.table, vec![None; newsize]);
        for k in old.into_iter().flatten() {
            self.insert_clean(k);
        }
        self.fill = self.used;
    }

    fn insert_clean(&mut self, key: u64) {
        let mask = self.mask();
        let mut perturb = key;
        let mut i = (key as usize) & mask;
        loop {
            if self.table[i].is_none() {
                self.table[i] = Some(key);
                return;
            }
            if i + LINEAR_PROBES <= mask {
                for j in 1..=LINEAR_PROBES {
                    if self.table[i + j].is_none() {
                        self.table[i + j] = Some(key);
                        return;
                    }
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.table.iter().flatten().copied()
    }

    /// `self - other` (CPython `set_difference`).
    fn difference(&self, other: &PySet) -> Vec<u64> {
        if (self.used >> 2) > other.used {
            // set_copy_and_difference: copy (merge into an empty set), then discard.
            let mut copy = PySet::new();
            if (copy.fill + self.used) * 5 >= copy.mask() * 3 {
                copy.resize((copy.used + self.used) * 2);
            }
            if copy.table.len() == self.table.len() {
                copy.table.clone_from(&self.table);
            } else {
                for k in self.iter() {
                    copy.insert_clean(k);
                }
            }
            copy.iter().filter(|k| !other.contains(*k)).collect()
        } else {
            PySet::from_iter(self.iter().filter(|k| !other.contains(*k)))
                .iter()
                .collect()
        }
    }
}

/// The order nrfutil writes `sd_req` in: `list(set(values))` under CPython 3.11.
pub fn python_set_order(values: &[u32]) -> Vec<u32> {
    PySet::from_iter(values.iter().map(|&v| u64::from(v)))
        .iter()
        .map(|v| v as u32)
        .collect()
}

/// nrfutil's `sd_req_list += set(sd_id_list) - set(sd_req_list)`.
pub fn merge_sd_id(sd_req: &[u32], sd_id: &[u32]) -> Vec<u32> {
    let a = PySet::from_iter(sd_id.iter().map(|&v| u64::from(v)));
    let b = PySet::from_iter(sd_req.iter().map(|&v| u64::from(v)));
    let mut out = sd_req.to_vec();
    out.extend(a.difference(&b).into_iter().map(|v| v as u32));
    out
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/// Options of `pkg generate`, named after nrfutil's.
#[derive(Clone, Debug, Default)]
pub struct PackageOptions {
    /// `--application`.
    pub application: Option<PathBuf>,
    /// `--application-version`.
    pub application_version: Option<u32>,
    /// `--bootloader`.
    pub bootloader: Option<PathBuf>,
    /// `--bootloader-version`.
    pub bootloader_version: Option<u32>,
    /// `--softdevice`.
    pub softdevice: Option<PathBuf>,
    /// `--hw-version`.
    pub hw_version: Option<u32>,
    /// `--sd-req` (list of SoftDevice firmware IDs).
    pub sd_req: Option<Vec<u32>>,
    /// `--sd-id` (IDs of the SoftDevice in the package, for the application's init packet).
    pub sd_id: Option<Vec<u32>>,
    /// `--key-file`, loaded. `None` makes an unsigned package.
    pub key: Option<SigningKey>,
    /// `--app-boot-validation` (default VALIDATE_GENERATED_CRC).
    pub app_boot_validation: Option<ValidationType>,
    /// `--sd-boot-validation` (default VALIDATE_GENERATED_CRC).
    pub sd_boot_validation: Option<ValidationType>,
    /// `--debug-mode`.
    pub debug_mode: bool,
    /// `--external-app`.
    pub external_app: bool,
}

/// Why a package could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The options are inconsistent; nrfutil refuses the same combinations.
    #[error("invalid package options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// A firmware file could not be loaded.
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    /// ECDSA boot validation was requested without a key.
    #[error(
        "{image}: VALIDATE_ECDSA_P256_SHA256 boot validation needs a signing key (--key-file)"
    )]
    MissingKey {
        /// The image needing the signature.
        image: &'static str,
    },
    /// Two images would get the same file name inside the zip.
    #[error("two images would both be stored as {name} in the package")]
    DuplicateFileName {
        /// The clashing name.
        name: String,
    },
    /// Writing the zip failed.
    #[error("cannot write package: {source}")]
    Zip {
        /// Underlying error.
        source: zip::result::ZipError,
    },
    /// Writing the output file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Output path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

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

    fn from_fw_type(t: Option<FwType>) -> ImageKind {
        match t {
            Some(FwType::SoftdeviceBootloader) => ImageKind::SoftdeviceBootloader,
            Some(FwType::Softdevice) => ImageKind::Softdevice,
            Some(FwType::Bootloader) => ImageKind::Bootloader,
            _ => ImageKind::Application,
        }
    }
}

/// One generated image: file names and contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedImage {
    /// Manifest slot.
    pub kind: ImageKind,
    /// Name of the `.bin` in the zip.
    pub bin_file: String,
    /// Name of the `.dat` in the zip.
    pub dat_file: String,
    /// Firmware bytes.
    pub bin: Vec<u8>,
    /// Init packet bytes.
    pub dat: Vec<u8>,
    /// `(sd_size, bl_size)` for the combined SoftDevice + bootloader image.
    pub sd_bl_sizes: Option<(u32, u32)>,
}

/// A generated package before zipping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedPackage {
    /// Images in manifest order.
    pub images: Vec<GeneratedImage>,
    /// manifest.json text.
    pub manifest: String,
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

struct Plan {
    kind: ImageKind,
    fw_type: FwType,
    fw_version: u32,
    sd_req: Vec<u32>,
    boot_validation: Vec<ValidationType>,
    bin_file: String,
    bin: Vec<u8>,
    /// What an ECDSA boot validation signs (the SoftDevice part for sd_bl).
    signed_image: Option<Vec<u8>>,
    sd_bl_sizes: Option<(u32, u32)>,
}

fn invalid<T>(reason: &str) -> Result<T, GenerateError> {
    Err(GenerateError::InvalidOptions {
        reason: reason.into(),
    })
}

/// Builds the package contents (`.bin`/`.dat` per image and manifest.json).
pub fn build(opts: &PackageOptions) -> Result<GeneratedPackage, GenerateError> {
    if opts.bootloader.is_some() && opts.application.is_some() && opts.softdevice.is_none() {
        return invalid(
            "bootloader and application together need a SoftDevice too; use two packages instead",
        );
    }
    let mut app_version = opts.application_version;
    let mut bl_version = opts.bootloader_version;
    let mut hw_version = opts.hw_version;
    let mut sd_req = opts.sd_req.clone();
    if app_version.is_some() && opts.application.is_none() {
        return invalid("--application-version given without --application");
    }
    if bl_version.is_some() && opts.bootloader.is_none() {
        return invalid("--bootloader-version given without --bootloader");
    }
    if opts.debug_mode {
        // nrfutil defaults everything to "no check" in debug mode.
        app_version.get_or_insert(0xFFFF_FFFF);
        bl_version.get_or_insert(0xFFFF_FFFF);
        hw_version.get_or_insert(0xFFFF_FFFF);
        sd_req.get_or_insert_with(|| vec![SD_REQ_ANY]);
    }
    let Some(hw_version) = hw_version else {
        return invalid("--hw-version is required");
    };
    if sd_req.is_none() && !opts.external_app {
        return invalid("--sd-req is required");
    }
    if opts.application.is_some() && app_version.is_none() {
        return invalid("--application-version is required with --application");
    }
    if opts.bootloader.is_some() && bl_version.is_none() {
        return invalid("--bootloader-version is required with --bootloader");
    }
    if opts.application.is_some() && opts.softdevice.is_some() && opts.sd_id.is_none() {
        return invalid("--sd-id is required with --softdevice and --application");
    }
    if opts.application.is_none() && opts.external_app {
        return invalid("--external-app requires --application");
    }
    if opts.external_app && (opts.softdevice.is_some() || opts.bootloader.is_some()) {
        return invalid("--external-app is only possible for application-only packages");
    }
    if opts.application.is_none() && opts.bootloader.is_none() && opts.softdevice.is_none() {
        return invalid("no image given: use --application, --bootloader and/or --softdevice");
    }
    let mut sd_req_list = sd_req.unwrap_or_default();
    let sd_id_list = match &opts.sd_id {
        Some(ids) => {
            sd_req_list = merge_sd_id(&sd_req_list, ids);
            ids.clone()
        }
        None => sd_req_list.clone(),
    };
    let app_bv = opts
        .app_boot_validation
        .unwrap_or(ValidationType::ValidateGeneratedCrc);
    let sd_bv = opts
        .sd_boot_validation
        .unwrap_or(ValidationType::ValidateGeneratedCrc);

    let mut plans = Vec::new();
    match (&opts.softdevice, &opts.bootloader) {
        (Some(sd), Some(bl)) => {
            let sd_img = firmware::load(sd)?;
            let bl_img = firmware::load(bl)?;
            let sizes = (sd_img.data.len() as u32, bl_img.data.len() as u32);
            let mut bin = sd_img.data.clone();
            bin.extend_from_slice(&bl_img.data);
            plans.push(Plan {
                kind: ImageKind::SoftdeviceBootloader,
                fw_type: FwType::SoftdeviceBootloader,
                fw_version: bl_version.unwrap_or(0xFFFF_FFFF),
                sd_req: sd_req_list.clone(),
                boot_validation: vec![sd_bv, ValidationType::ValidateGeneratedCrc],
                bin_file: "sd_bl.bin".into(),
                bin,
                signed_image: Some(sd_img.data),
                sd_bl_sizes: Some(sizes),
            });
        }
        (Some(sd), None) => plans.push(Plan {
            kind: ImageKind::Softdevice,
            fw_type: FwType::Softdevice,
            fw_version: 0xFFFF_FFFF,
            sd_req: sd_req_list.clone(),
            boot_validation: vec![sd_bv],
            bin_file: bin_file_name(sd),
            bin: firmware::load(sd)?.data,
            signed_image: None,
            sd_bl_sizes: None,
        }),
        (None, Some(bl)) => plans.push(Plan {
            kind: ImageKind::Bootloader,
            fw_type: FwType::Bootloader,
            fw_version: bl_version.unwrap_or(0xFFFF_FFFF),
            sd_req: sd_req_list.clone(),
            boot_validation: vec![ValidationType::ValidateGeneratedCrc],
            bin_file: bin_file_name(bl),
            bin: firmware::load(bl)?.data,
            signed_image: None,
            sd_bl_sizes: None,
        }),
        (None, None) => {}
    }
    if let Some(app) = &opts.application {
        plans.push(Plan {
            kind: ImageKind::Application,
            fw_type: if opts.external_app {
                FwType::ExternalApplication
            } else {
                FwType::Application
            },
            fw_version: app_version.unwrap_or(0xFFFF_FFFF),
            sd_req: sd_id_list,
            boot_validation: vec![app_bv],
            bin_file: bin_file_name(app),
            bin: firmware::load(app)?.data,
            signed_image: None,
            sd_bl_sizes: None,
        });
    }
    let mut names = std::collections::BTreeSet::new();
    for p in &plans {
        for n in [p.bin_file.clone(), dat_file_name(&p.bin_file)] {
            if n == MANIFEST_FILENAME || !names.insert(n.clone()) {
                return Err(GenerateError::DuplicateFileName { name: n });
            }
        }
    }

    let mut images = Vec::new();
    for p in plans {
        let cmd = init_command_for(&p, hw_version, opts)?;
        let dat = match &opts.key {
            Some(key) => {
                let sig = keys::sign_init_command(key, &init_packet::encode_init_command(&cmd));
                init_packet::encode_packet(&cmd, Some((SignatureType::EcdsaP256Sha256, &sig)))
            }
            None => init_packet::encode_packet(&cmd, None),
        };
        images.push(GeneratedImage {
            kind: p.kind,
            dat_file: dat_file_name(&p.bin_file),
            bin_file: p.bin_file,
            bin: p.bin,
            dat,
            sd_bl_sizes: p.sd_bl_sizes,
        });
    }
    images.sort_by_key(|i| i.kind);
    let manifest = manifest_json(&images);
    Ok(GeneratedPackage { images, manifest })
}

fn init_command_for(
    p: &Plan,
    hw_version: u32,
    opts: &PackageOptions,
) -> Result<InitCommand, GenerateError> {
    let too_many = |what: &str| GenerateError::InvalidOptions {
        reason: format!("too many {what} entries"),
    };
    let mut digest: Vec<u8> = Sha256::digest(&p.bin).to_vec();
    digest.reverse();
    let mut boot_validation = heapless::Vec::new();
    for kind in &p.boot_validation {
        let mut bytes = heapless::Vec::new();
        if *kind == ValidationType::ValidateEcdsaP256Sha256 {
            let key = opts.key.as_ref().ok_or(GenerateError::MissingKey {
                image: p.kind.manifest_key(),
            })?;
            let signed = p.signed_image.as_deref().unwrap_or(&p.bin);
            let _ = bytes.extend_from_slice(&keys::sign(key, signed));
        }
        boot_validation
            .push(BootValidation { kind: *kind, bytes })
            .map_err(|_| too_many("boot validation"))?;
    }
    let sd_req_in = if p.sd_req.is_empty() {
        vec![SD_REQ_ANY]
    } else {
        p.sd_req.clone()
    };
    let sd_req = heapless::Vec::from_slice(&python_set_order(&sd_req_in))
        .map_err(|_| too_many("--sd-req"))?;
    let len = p.bin.len() as u32;
    let (sd_size, bl_size, app_size) = match (p.kind, p.sd_bl_sizes) {
        (ImageKind::SoftdeviceBootloader, Some((sd, bl))) => (sd, bl, 0),
        (ImageKind::Softdevice, _) => (len, 0, 0),
        (ImageKind::Bootloader, _) => (0, len, 0),
        _ => (0, 0, len),
    };
    Ok(InitCommand {
        fw_version: Some(p.fw_version),
        hw_version: Some(hw_version),
        sd_req,
        fw_type: Some(p.fw_type),
        sd_size: Some(sd_size),
        bl_size: Some(bl_size),
        app_size: Some(app_size),
        hash: Some(Hash {
            hash_type: HashType::Sha256,
            hash: heapless::Vec::from_slice(&digest).unwrap_or_default(),
        }),
        is_debug: Some(opts.debug_mode),
        boot_validation,
    })
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

impl GeneratedPackage {
    /// The zip bytes. Entries are stored uncompressed, as Python's `ZipFile` does by default.
    pub fn to_zip(&self) -> Result<Vec<u8>, GenerateError> {
        let zerr = |source| GenerateError::Zip { source };
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut put = |name: &str, data: &[u8]| -> Result<(), GenerateError> {
            w.start_file(name, o).map_err(zerr)?;
            w.write_all(data).map_err(|e| zerr(e.into()))
        };
        put(MANIFEST_FILENAME, self.manifest.as_bytes())?;
        for img in &self.images {
            put(&img.dat_file, &img.dat)?;
            put(&img.bin_file, &img.bin)?;
        }
        Ok(w.finish().map_err(zerr)?.into_inner())
    }
}

/// `pkg generate`: the zip bytes for `opts`.
pub fn generate(opts: &PackageOptions) -> Result<Vec<u8>, GenerateError> {
    build(opts)?.to_zip()
}

/// `pkg generate OUT.zip`: writes the package to `out`.
pub fn generate_to_file(opts: &PackageOptions, out: &Path) -> Result<(), GenerateError> {
    let zip = generate(opts)?;
    std::fs::write(out, zip).map_err(|source| GenerateError::Io {
        path: out.to_owned(),
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Why a package (or init packet file) could not be opened or did not validate.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not a zip archive, or its central directory is truncated or corrupt.
    #[error("{path} is not a readable zip archive (truncated or corrupt?): {source}")]
    NotZip {
        /// The file.
        path: PathBuf,
        /// What the zip reader reported.
        source: zip::result::ZipError,
    },
    /// A member of the zip could not be read (bad compression data or CRC).
    #[error("{path}: member {name} is corrupt: {reason}")]
    CorruptMember {
        /// The package.
        path: PathBuf,
        /// Member name.
        name: String,
        /// What the reader reported.
        reason: String,
    },
    /// The zip has no manifest.json.
    #[error("{path} has no manifest.json; it is not a Nordic DFU package")]
    MissingManifest {
        /// The package.
        path: PathBuf,
    },
    /// manifest.json is not valid JSON of the expected shape.
    #[error("{path}: manifest.json is invalid: {source}")]
    BadManifest {
        /// The package.
        path: PathBuf,
        /// Parser error.
        source: serde_json::Error,
    },
    /// The manifest lists no image.
    #[error("{path}: manifest.json lists no image")]
    EmptyManifest {
        /// The package.
        path: PathBuf,
    },
    /// The manifest names a file that is not in the zip.
    #[error("{path}: manifest entry {entry} names {name}, which is not in the package")]
    MissingFile {
        /// The package.
        path: PathBuf,
        /// Manifest entry (`application`, ...).
        entry: &'static str,
        /// Missing member name.
        name: String,
    },
    /// An init packet does not decode.
    #[error("{path}: init packet {dat_file} is invalid: {source}")]
    InitPacket {
        /// The package or .dat file.
        path: PathBuf,
        /// Name of the init packet.
        dat_file: String,
        /// Decoder error.
        source: DecodeError,
    },
    /// The image size does not match the size in the init packet.
    #[error("{path}: {bin_file} is {actual} bytes but the init packet's {field} says {expected}")]
    SizeMismatch {
        /// The package.
        path: PathBuf,
        /// Image name.
        bin_file: String,
        /// Init packet field (`app_size`, `sd_size`, `bl_size`, `sd_size + bl_size`).
        field: &'static str,
        /// Size in the init packet.
        expected: u64,
        /// Actual image size.
        actual: u64,
    },
    /// The image hash does not match the hash in the init packet.
    #[error("{path}: {bin_file} has {hash_type} {actual} but the init packet says {expected}")]
    HashMismatch {
        /// The package.
        path: PathBuf,
        /// Image name.
        bin_file: String,
        /// Hash algorithm.
        hash_type: HashType,
        /// Hash in the init packet (hex, as stored).
        expected: String,
        /// Hash of the image (hex, in the init packet's byte order).
        actual: String,
    },
}

#[derive(Deserialize)]
struct ManifestFile {
    manifest: ManifestEntries,
}

#[derive(Deserialize, Default)]
struct ManifestEntries {
    application: Option<ManifestEntry>,
    bootloader: Option<ManifestEntry>,
    softdevice: Option<ManifestEntry>,
    softdevice_bootloader: Option<ManifestEntry>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    bin_file: String,
    dat_file: String,
}

/// One image of an opened package, validated.
#[derive(Clone, Debug)]
pub struct PackageImage {
    /// Manifest slot (for a raw `.dat`, derived from the init packet's type).
    pub kind: ImageKind,
    /// `.bin` member name (empty for a raw `.dat`).
    pub bin_file: String,
    /// `.dat` member name (the file name for a raw `.dat`).
    pub dat_file: String,
    /// Init packet bytes.
    pub init_packet: Vec<u8>,
    /// Firmware bytes (`None` for a raw `.dat`).
    pub firmware: Option<Vec<u8>>,
    /// The decoded init command.
    pub command: InitCommand,
    /// Signature type (`None` if unsigned).
    pub signature_type: Option<SignatureType>,
    /// Signature bytes as stored (`None` if unsigned).
    pub signature: Option<Vec<u8>>,
    /// Byte range of the serialized InitCommand in `init_packet`.
    pub init_command_range: std::ops::Range<usize>,
}

impl PackageImage {
    fn from_dat(
        path: &Path,
        kind: Option<ImageKind>,
        bin_file: String,
        dat_file: String,
        dat: Vec<u8>,
        firmware: Option<Vec<u8>>,
    ) -> Result<Self, PackageError> {
        let p = init_packet::decode(&dat).map_err(|source| PackageError::InitPacket {
            path: path.to_owned(),
            dat_file: dat_file.clone(),
            source,
        })?;
        let start = p.init_command_bytes.as_ptr() as usize - dat.as_ptr() as usize;
        let range = start..start + p.init_command_bytes.len();
        let (command, signature_type, signature) = (
            p.command.clone(),
            p.signature_type,
            p.signature.map(<[u8]>::to_vec),
        );
        Ok(PackageImage {
            kind: kind.unwrap_or(ImageKind::from_fw_type(command.fw_type)),
            bin_file,
            dat_file,
            init_packet: dat,
            firmware,
            command,
            signature_type,
            signature,
            init_command_range: range,
        })
    }

    /// The serialized InitCommand (what the signature covers).
    pub fn init_command_bytes(&self) -> &[u8] {
        &self.init_packet[self.init_command_range.clone()]
    }

    /// True if the init packet is signed and the signature verifies with `key`.
    pub fn verify_signature(&self, key: &VerifyingKey) -> bool {
        self.signature
            .as_deref()
            .is_some_and(|s| keys::verify(key, self.init_command_bytes(), s))
    }

    fn validate(&self, path: &Path) -> Result<(), PackageError> {
        let Some(fw) = &self.firmware else {
            return Ok(());
        };
        let c = &self.command;
        let actual = fw.len() as u64;
        let g = |v: Option<u32>| u64::from(v.unwrap_or(0));
        let (field, expected) = match c.fw_type {
            Some(FwType::Softdevice) => ("sd_size", g(c.sd_size)),
            Some(FwType::Bootloader) => ("bl_size", g(c.bl_size)),
            Some(FwType::SoftdeviceBootloader) => {
                ("sd_size + bl_size", g(c.sd_size) + g(c.bl_size))
            }
            _ => ("app_size", g(c.app_size)),
        };
        if expected != actual {
            return Err(PackageError::SizeMismatch {
                path: path.to_owned(),
                bin_file: self.bin_file.clone(),
                field,
                expected,
                actual,
            });
        }
        if let Some(h) = &c.hash {
            let computed: Option<Vec<u8>> = match h.hash_type {
                HashType::Sha256 => {
                    let mut d = Sha256::digest(fw).to_vec();
                    d.reverse();
                    Some(d)
                }
                HashType::Crc => Some(dfukit_core::crc::crc32(0, fw).to_le_bytes().to_vec()),
                _ => None,
            };
            if let Some(computed) = computed {
                if computed[..] != h.hash[..] {
                    return Err(PackageError::HashMismatch {
                        path: path.to_owned(),
                        bin_file: self.bin_file.clone(),
                        hash_type: h.hash_type,
                        expected: hex(&h.hash),
                        actual: hex(&computed),
                    });
                }
            }
        }
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An opened, validated package (or a single raw init packet).
#[derive(Clone, Debug)]
pub struct Package {
    /// The file it was read from.
    pub path: PathBuf,
    /// Images in display order (sd_bl, softdevice, bootloader, application).
    pub images: Vec<PackageImage>,
}

impl Package {
    /// Opens a `.zip` package, or a raw init packet if the file is not a zip and ends in
    /// `.dat`, and validates it.
    pub fn open(path: &Path) -> Result<Package, PackageError> {
        let bytes = std::fs::read(path).map_err(|source| PackageError::Io {
            path: path.to_owned(),
            source,
        })?;
        if !bytes.starts_with(b"PK")
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("dat"))
        {
            return Package::from_dat_bytes(path, bytes);
        }
        Package::from_zip_bytes(path, &bytes)
    }

    /// Reads a raw init packet file (`.dat`) for display.
    pub fn open_dat(path: &Path) -> Result<Package, PackageError> {
        let bytes = std::fs::read(path).map_err(|source| PackageError::Io {
            path: path.to_owned(),
            source,
        })?;
        Package::from_dat_bytes(path, bytes)
    }

    fn from_dat_bytes(path: &Path, bytes: Vec<u8>) -> Result<Package, PackageError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let img = PackageImage::from_dat(path, None, String::new(), name, bytes, None)?;
        Ok(Package {
            path: path.to_owned(),
            images: vec![img],
        })
    }

    /// Parses and validates package bytes; `path` names errors.
    pub fn from_zip_bytes(path: &Path, bytes: &[u8]) -> Result<Package, PackageError> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|source| {
            PackageError::NotZip {
                path: path.to_owned(),
                source,
            }
        })?;
        let mut read = |name: &str| -> Result<Option<Vec<u8>>, PackageError> {
            let mut f = match zip.by_name(name) {
                Ok(f) => f,
                Err(zip::result::ZipError::FileNotFound) => return Ok(None),
                Err(e) => {
                    return Err(PackageError::CorruptMember {
                        path: path.to_owned(),
                        name: name.into(),
                        reason: e.to_string(),
                    })
                }
            };
            let mut v = Vec::new();
            f.read_to_end(&mut v)
                .map_err(|e| PackageError::CorruptMember {
                    path: path.to_owned(),
                    name: name.into(),
                    reason: e.to_string(),
                })?;
            Ok(Some(v))
        };
        let manifest = read(MANIFEST_FILENAME)?.ok_or_else(|| PackageError::MissingManifest {
            path: path.to_owned(),
        })?;
        let m: ManifestFile =
            serde_json::from_slice(&manifest).map_err(|source| PackageError::BadManifest {
                path: path.to_owned(),
                source,
            })?;
        let entries = [
            (
                ImageKind::SoftdeviceBootloader,
                m.manifest.softdevice_bootloader,
            ),
            (ImageKind::Softdevice, m.manifest.softdevice),
            (ImageKind::Bootloader, m.manifest.bootloader),
            (ImageKind::Application, m.manifest.application),
        ];
        let mut images = Vec::new();
        for (kind, entry) in entries {
            let Some(e) = entry else { continue };
            let missing = |name: &str| PackageError::MissingFile {
                path: path.to_owned(),
                entry: kind.manifest_key(),
                name: name.into(),
            };
            let dat = read(&e.dat_file)?.ok_or_else(|| missing(&e.dat_file))?;
            let bin = read(&e.bin_file)?.ok_or_else(|| missing(&e.bin_file))?;
            let img =
                PackageImage::from_dat(path, Some(kind), e.bin_file, e.dat_file, dat, Some(bin))?;
            img.validate(path)?;
            images.push(img);
        }
        if images.is_empty() {
            return Err(PackageError::EmptyManifest {
                path: path.to_owned(),
            });
        }
        Ok(Package {
            path: path.to_owned(),
            images,
        })
    }

    /// Human-readable description in the format of `nrfutil pkg display` (including its
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_set_order_matches_cpython() {
        // Expected values printed by CPython 3.11.7: list(set([...])).
        let cases: &[(&[u32], &[u32])] = &[
            (&[0x100, 0xCA], &[256, 202]),
            (&[0xCA, 0x100], &[256, 202]),
            (&[9, 1, 17], &[9, 1, 17]),
            (&[17, 9, 1], &[17, 9, 1]),
            (&[5, 4, 3, 2, 1, 0], &[0, 1, 2, 3, 4, 5]),
            (&[1, 9, 17, 25, 33, 2, 10], &[1, 33, 2, 9, 10, 17, 25]),
            (
                &[0xB6, 0xFFFE, 0x100, 0xCE, 0x8, 0x10],
                &[256, 8, 206, 16, 182, 65534],
            ),
            (
                &[257, 256, 513, 769, 1025, 1281, 1537],
                &[256, 257, 1025, 513, 769, 1281, 1537],
            ),
            (&[3, 3, 3], &[3]),
        ];
        for (input, expected) in cases {
            assert_eq!(&python_set_order(input)[..], *expected, "input {input:?}");
        }
        let seventeen: Vec<u32> = (100..117).collect();
        assert_eq!(python_set_order(&seventeen), seventeen);
        // list(set(a) - set(b)), both the plain and the copy-and-discard path.
        assert_eq!(
            merge_sd_id(&[3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
            vec![3, 1, 2, 4, 5, 6, 7, 8, 9, 10]
        );
        assert_eq!(
            merge_sd_id(&[16], &[64, 8, 0x100, 0x200, 0x1000, 16, 32, 0xCA, 0xB6]),
            vec![16, 64, 4096, 256, 512, 32, 8, 202, 182]
        );
    }

    #[test]
    fn nrfutil_int_parsing() {
        assert_eq!(parse_nrfutil_int("0x100"), Some(256));
        assert_eq!(parse_nrfutil_int("0X1f"), Some(31));
        assert_eq!(parse_nrfutil_int("010"), Some(8));
        assert_eq!(parse_nrfutil_int("0"), Some(0));
        assert_eq!(parse_nrfutil_int("52"), Some(52));
        assert_eq!(parse_nrfutil_int("x"), None);
    }

    #[test]
    fn file_names_follow_nrfutil() {
        assert_eq!(bin_file_name(Path::new("/a/app.hex")), "app.bin");
        assert_eq!(bin_file_name(Path::new("app.bin")), "app.bin");
        assert_eq!(bin_file_name(Path::new("app.elf")), "app.elf.bin");
        assert_eq!(dat_file_name("app.bin"), "app.dat");
    }

    #[test]
    fn manifest_format() {
        let img = |kind, name: &str, sizes| GeneratedImage {
            kind,
            bin_file: format!("{name}.bin"),
            dat_file: format!("{name}.dat"),
            bin: vec![],
            dat: vec![],
            sd_bl_sizes: sizes,
        };
        let m = manifest_json(&[
            img(ImageKind::SoftdeviceBootloader, "sd_bl", Some((8, 4))),
            img(ImageKind::Application, "app", None),
        ]);
        let expected = "{\n    \"manifest\": {\n        \"application\": {\n            \"bin_file\": \"app.bin\",\n            \"dat_file\": \"app.dat\"\n        },\n        \"softdevice_bootloader\": {\n            \"bin_file\": \"sd_bl.bin\",\n            \"dat_file\": \"sd_bl.dat\",\n            \"info_read_only_metadata\": {\n                \"bl_size\": 4,\n                \"sd_size\": 8\n            }\n        }\n    }\n}";
        assert_eq!(m, expected);
    }

    fn write_app(dir: &Path) -> PathBuf {
        let p = dir.join("app.bin");
        std::fs::write(&p, (0..1001u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()).unwrap();
        p
    }

    #[test]
    fn generate_open_round_trip_and_validation_errors() {
        let dir = tempfile::tempdir().unwrap();
        let app = write_app(dir.path());
        let key = keys::generate_key();
        let opts = PackageOptions {
            application: Some(app),
            application_version: Some(7),
            hw_version: Some(52),
            sd_req: Some(vec![0x100]),
            key: Some(key.clone()),
            ..Default::default()
        };
        let pkg = build(&opts).unwrap();
        assert_eq!(pkg.images[0].bin.len(), 1004);
        assert_eq!(&pkg.images[0].bin[1001..], &[0xFF; 3]);
        let zip = pkg.to_zip().unwrap();
        let p = Package::from_zip_bytes(Path::new("t.zip"), &zip).unwrap();
        let img = &p.images[0];
        assert_eq!(img.command.app_size, Some(1004));
        assert_eq!(img.command.fw_version, Some(7));
        assert!(img.verify_signature(key.verifying_key()));
        assert!(!img.verify_signature(keys::generate_key().verifying_key()));

        // Truncated zip.
        assert!(matches!(
            Package::from_zip_bytes(Path::new("t.zip"), &zip[..zip.len() / 2]),
            Err(PackageError::NotZip { .. })
        ));
        // Not a zip at all.
        assert!(matches!(
            Package::from_zip_bytes(Path::new("t.zip"), b"hello"),
            Err(PackageError::NotZip { .. })
        ));

        let rezip = |files: &[(&str, &[u8])]| {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            for (n, d) in files {
                w.start_file(*n, zip::write::SimpleFileOptions::default())
                    .unwrap();
                w.write_all(d).unwrap();
            }
            w.finish().unwrap().into_inner()
        };
        let im = &pkg.images[0];
        let m = pkg.manifest.as_bytes();
        let no_manifest = rezip(&[("app.bin", &im.bin), ("app.dat", &im.dat)]);
        assert!(matches!(
            Package::from_zip_bytes(Path::new("t.zip"), &no_manifest),
            Err(PackageError::MissingManifest { .. })
        ));
        let no_bin = rezip(&[(MANIFEST_FILENAME, m), ("app.dat", &im.dat)]);
        match Package::from_zip_bytes(Path::new("t.zip"), &no_bin) {
            Err(PackageError::MissingFile {
                entry: "application",
                name,
                ..
            }) => assert_eq!(name, "app.bin"),
            other => panic!("{other:?}"),
        }
        let bad_dat = rezip(&[
            (MANIFEST_FILENAME, m),
            ("app.dat", &im.dat[..20]),
            ("app.bin", &im.bin),
        ]);
        assert!(matches!(
            Package::from_zip_bytes(Path::new("t.zip"), &bad_dat),
            Err(PackageError::InitPacket { .. })
        ));
        let short_bin = rezip(&[
            (MANIFEST_FILENAME, m),
            ("app.dat", &im.dat),
            ("app.bin", &im.bin[..1000]),
        ]);
        assert!(matches!(
            Package::from_zip_bytes(Path::new("t.zip"), &short_bin),
            Err(PackageError::SizeMismatch {
                field: "app_size",
                expected: 1004,
                actual: 1000,
                ..
            })
        ));
        let mut flipped = im.bin.clone();
        flipped[0] ^= 1;
        let bad_hash = rezip(&[
            (MANIFEST_FILENAME, m),
            ("app.dat", &im.dat),
            ("app.bin", &flipped),
        ]);
        assert!(matches!(
            Package::from_zip_bytes(Path::new("t.zip"), &bad_hash),
            Err(PackageError::HashMismatch { .. })
        ));
        let bad_json = rezip(&[
            (MANIFEST_FILENAME, b"{"),
            ("app.dat", &im.dat),
            ("app.bin", &im.bin),
        ]);
        assert!(matches!(
            Package::from_zip_bytes(Path::new("t.zip"), &bad_json),
            Err(PackageError::BadManifest { .. })
        ));
    }

    #[test]
    fn option_checks() {
        let dir = tempfile::tempdir().unwrap();
        let app = write_app(dir.path());
        let base = PackageOptions {
            application: Some(app.clone()),
            application_version: Some(1),
            hw_version: Some(52),
            sd_req: Some(vec![0x100]),
            ..Default::default()
        };
        assert!(build(&base).is_ok());
        assert!(matches!(
            build(&PackageOptions {
                hw_version: None,
                ..base.clone()
            }),
            Err(GenerateError::InvalidOptions { .. })
        ));
        assert!(matches!(
            build(&PackageOptions {
                sd_req: None,
                ..base.clone()
            }),
            Err(GenerateError::InvalidOptions { .. })
        ));
        assert!(matches!(
            build(&PackageOptions {
                app_boot_validation: Some(ValidationType::ValidateEcdsaP256Sha256),
                ..base.clone()
            }),
            Err(GenerateError::MissingKey {
                image: "application"
            })
        ));
        // Debug mode fills in defaults.
        let dbg = build(&PackageOptions {
            application: Some(app),
            debug_mode: true,
            ..Default::default()
        })
        .unwrap();
        let d = init_packet::decode(&dbg.images[0].dat).unwrap();
        assert_eq!(d.command.hw_version, Some(0xFFFF_FFFF));
        assert_eq!(d.command.sd_req.as_slice(), &[SD_REQ_ANY]);
        assert_eq!(d.command.is_debug, Some(true));
    }
}
