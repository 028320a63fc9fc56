//! Opening a package (or a raw `.dat`) and checking every image against its init packet.

use super::hex;
use super::keys;
use super::manifest::{ImageKind, ManifestFile, MANIFEST_FILENAME};
use crate::init_packet::{self, DecodeError, FwType, HashType, InitCommand, SignatureType};
use p256::ecdsa::VerifyingKey;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const METADATA: &str = "manifest.json or an init packet";

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The most a firmware member (`.bin`) may inflate to. The largest flash of a supported
/// device is the nRF52840's: 1 MiB internal plus an 8 MiB MX25R6435F QSPI part for bank 1,
/// so no image can exceed 9 MiB; 16 MiB leaves room for a larger external part while a
/// 2 MB archive can no longer claim gigabytes. Checked against the zip's declared size
/// before a member is read, and again while it is read.
pub const MAX_IMAGE_BYTES: u64 = 16 << 20;

/// The most manifest.json or an init packet (`.dat`) may hold. The SDK bootloader accepts
/// init commands of at most `INIT_COMMAND_MAX_SIZE` (512 bytes); nrfutil's manifests are
/// under 1 KiB.
pub const MAX_METADATA_BYTES: u64 = 64 << 10;

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
    /// A member's declared uncompressed size is over its limit: refused before reading it.
    #[error("{path}: member {name} declares {declared} bytes uncompressed, over the {limit}-byte limit for {what} (not read)")]
    MemberTooLarge {
        /// The package.
        path: PathBuf,
        /// Member name.
        name: String,
        /// Uncompressed size the zip's central directory declares.
        declared: u64,
        /// The limit ([`MAX_IMAGE_BYTES`] or [`MAX_METADATA_BYTES`]).
        limit: u64,
        /// What the member is ("a firmware image", "manifest.json or an init packet").
        what: &'static str,
    },
    /// A member inflates to more than its zip header declares (a corrupt or crafted
    /// archive): reading stopped there.
    #[error("{path}: member {name} inflates past the {declared} bytes its zip header declares; reading stopped at offset {declared}")]
    MemberLongerThanDeclared {
        /// The package.
        path: PathBuf,
        /// Member name.
        name: String,
        /// Uncompressed size the zip header declares.
        declared: u64,
    },
    /// A manifest slot holds an init packet of another firmware type.
    #[error("{path}: manifest slot {slot} lists {dat_file}, whose init packet says type {fw_type}; that slot needs {expected}")]
    SlotTypeMismatch {
        /// The package.
        path: PathBuf,
        /// Manifest slot (`softdevice_bootloader`, ...).
        slot: &'static str,
        /// The init packet member.
        dat_file: String,
        /// The type in the init packet (`dfu-cc.proto` name).
        fw_type: &'static str,
        /// The type(s) the slot takes.
        expected: &'static str,
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

    /// The init packet's firmware type must be one the manifest slot takes: an application
    /// under `softdevice_bootloader` would be activated as a SoftDevice and bootloader.
    fn check_slot(&self, path: &Path) -> Result<(), PackageError> {
        // dfu-cc.proto's default type is APPLICATION.
        let t = self.command.fw_type.unwrap_or(FwType::Application);
        let (ok, expected) = match self.kind {
            ImageKind::Application => (
                matches!(t, FwType::Application | FwType::ExternalApplication),
                "APPLICATION or EXTERNAL_APPLICATION",
            ),
            ImageKind::Softdevice => (t == FwType::Softdevice, "SOFTDEVICE"),
            ImageKind::Bootloader => (t == FwType::Bootloader, "BOOTLOADER"),
            ImageKind::SoftdeviceBootloader => {
                (t == FwType::SoftdeviceBootloader, "SOFTDEVICE_BOOTLOADER")
            }
        };
        if ok {
            return Ok(());
        }
        Err(PackageError::SlotTypeMismatch {
            path: path.to_owned(),
            slot: self.kind.manifest_key(),
            dat_file: self.dat_file.clone(),
            fw_type: t.proto_name(),
            expected,
        })
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
    /// `.dat`, and validates it. Only the zip's central directory and the members the
    /// manifest names are read, each within its limit.
    pub fn open(path: &Path) -> Result<Package, PackageError> {
        let io = |source| PackageError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut magic = Vec::new();
        (&mut file).take(2).read_to_end(&mut magic).map_err(io)?;
        if magic != b"PK"
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("dat"))
        {
            return Package::open_dat(path);
        }
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        Package::from_zip_reader(path, std::io::BufReader::new(file))
    }

    /// Reads a raw init packet file (`.dat`) for display.
    pub fn open_dat(path: &Path) -> Result<Package, PackageError> {
        let io = |source| PackageError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_METADATA_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_METADATA_BYTES {
            let declared = std::fs::metadata(path).map_err(io)?.len();
            return Err(PackageError::MemberTooLarge {
                path: path.to_owned(),
                name: file_name(path),
                declared,
                limit: MAX_METADATA_BYTES,
                what: METADATA,
            });
        }
        Package::from_dat_bytes(path, bytes)
    }

    fn from_dat_bytes(path: &Path, bytes: Vec<u8>) -> Result<Package, PackageError> {
        let img = PackageImage::from_dat(path, None, String::new(), file_name(path), bytes, None)?;
        Ok(Package {
            path: path.to_owned(),
            images: vec![img],
        })
    }

    /// Parses and validates package bytes; `path` names errors.
    pub fn from_zip_bytes(path: &Path, bytes: &[u8]) -> Result<Package, PackageError> {
        Package::from_zip_reader(path, std::io::Cursor::new(bytes))
    }

    fn from_zip_reader(path: &Path, r: impl Read + Seek) -> Result<Package, PackageError> {
        let mut zip = zip::ZipArchive::new(r).map_err(|source| PackageError::NotZip {
            path: path.to_owned(),
            source,
        })?;
        let mut read = |name: &str, limit: u64| -> Result<Option<Vec<u8>>, PackageError> {
            let corrupt = |e: &dyn std::fmt::Display| PackageError::CorruptMember {
                path: path.to_owned(),
                name: name.into(),
                reason: e.to_string(),
            };
            let f = match zip.by_name(name) {
                Ok(f) => f,
                Err(zip::result::ZipError::FileNotFound) => return Ok(None),
                Err(e) => return Err(corrupt(&e)),
            };
            // The central directory's size, checked before a byte is inflated; then the
            // read stops one byte past it, so a header that lies cannot make it longer.
            let declared = f.size();
            if declared > limit {
                return Err(PackageError::MemberTooLarge {
                    path: path.to_owned(),
                    name: name.into(),
                    declared,
                    limit,
                    what: if limit == MAX_IMAGE_BYTES {
                        "a firmware image"
                    } else {
                        METADATA
                    },
                });
            }
            let mut v = Vec::with_capacity(declared as usize);
            f.take(declared + 1)
                .read_to_end(&mut v)
                .map_err(|e| corrupt(&e))?;
            if v.len() as u64 > declared {
                return Err(PackageError::MemberLongerThanDeclared {
                    path: path.to_owned(),
                    name: name.into(),
                    declared,
                });
            }
            Ok(Some(v))
        };
        let manifest = read(MANIFEST_FILENAME, MAX_METADATA_BYTES)?.ok_or_else(|| {
            PackageError::MissingManifest {
                path: path.to_owned(),
            }
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
            let dat = read(&e.dat_file, MAX_METADATA_BYTES)?.ok_or_else(|| missing(&e.dat_file))?;
            let img = PackageImage::from_dat(path, Some(kind), e.bin_file, e.dat_file, dat, None)?;
            img.check_slot(path)?;
            let bin =
                read(&img.bin_file, MAX_IMAGE_BYTES)?.ok_or_else(|| missing(&img.bin_file))?;
            let img = PackageImage {
                firmware: Some(bin),
                ..img
            };
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
}
