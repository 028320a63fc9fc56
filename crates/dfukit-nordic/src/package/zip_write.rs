//! `pkg generate`: the `.bin` and `.dat` of every image, manifest.json, and the zip.

use super::firmware;
use super::keys;
use super::manifest::{manifest_json, ImageKind, MANIFEST_FILENAME};
use super::pyset::{merge_sd_id, python_set_order};
use super::{bin_file_name, dat_file_name, SD_REQ_ANY};
use crate::init_packet::{
    self, BootValidation, FwType, Hash, HashType, InitCommand, SignatureType, ValidationType,
};
use dfukit_firmware::FirmwareError;
use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

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
