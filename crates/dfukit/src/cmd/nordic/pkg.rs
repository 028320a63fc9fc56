//! `dfukit nordic keys|pkg|settings`: nrfutil-compatible packaging jobs.
//!
//! Option names follow `nrfutil` 6.1.7 so existing scripts translate one to one; numbers
//! accept nrfutil's forms (`0x` hex, leading-`0` octal, decimal).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use dfukit_nordic::init_packet::ValidationType;
use dfukit_nordic::package::keys::{self, Format, KeyError, KeyPart};
use dfukit_nordic::package::{self, GenerateError, Package, PackageOptions};
use dfukit_nordic::settings::{self, Family, SettingsError, SettingsHexOptions};

use crate::util::diag::Diag;
use crate::util::output::{write_output, Output, OutputCodes};

/// `dfukit nordic keys ...`
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate a P-256 private key and store it in a file in PEM format (as nrfutil does).
    Generate {
        /// Output PEM file, created with mode 0600. An existing file is kept unless
        /// --overwrite is given (nrfutil asks); a symbolic link is refused.
        key_file: PathBuf,
        /// Replace an existing key file.
        #[arg(long, visible_alias = "force")]
        overwrite: bool,
    },
    /// Display the private key stored in a PEM file, or the public key derived from it.
    Display {
        /// PEM private key file (SEC1 or PKCS#8).
        key_file: PathBuf,
        /// Which key to show.
        #[arg(long, value_enum)]
        key: KeyArg,
        /// Output format.
        #[arg(long, value_enum)]
        format: FormatArg,
        /// Write the output to this file instead of stdout. A private key (--key sk)
        /// is written as `keys generate` writes one: mode 0600, no existing file replaced
        /// unless --overwrite.
        #[arg(long = "out_file", alias = "out-file")]
        out_file: Option<PathBuf>,
        /// With --out_file --key sk: replace an existing file.
        #[arg(long, visible_alias = "force")]
        overwrite: bool,
    },
}

/// `--key` values.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum KeyArg {
    /// Public (verification) key.
    Pk,
    /// Private (signing) key.
    Sk,
}

/// `--format` values.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    /// Little-endian hex, as the bootloader stores it.
    Hex,
    /// C source for the bootloader's `pk` array.
    Code,
    /// C source guarded for debug bootloaders only.
    Dbgcode,
    /// PEM.
    Pem,
}

/// Boot validation names as nrfutil spells them.
#[derive(ValueEnum, Clone, Copy, Debug)]
#[clap(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BootValidationArg {
    /// No boot validation.
    NoValidation,
    /// CRC32 computed by the bootloader.
    ValidateGeneratedCrc,
    /// SHA-256 computed by the bootloader.
    ValidateGeneratedSha256,
    /// ECDSA P-256 signature over the image (needs --key-file).
    ValidateEcdsaP256Sha256,
}

impl From<BootValidationArg> for ValidationType {
    fn from(v: BootValidationArg) -> Self {
        match v {
            BootValidationArg::NoValidation => ValidationType::NoValidation,
            BootValidationArg::ValidateGeneratedCrc => ValidationType::ValidateGeneratedCrc,
            BootValidationArg::ValidateGeneratedSha256 => ValidationType::ValidateSha256,
            BootValidationArg::ValidateEcdsaP256Sha256 => ValidationType::ValidateEcdsaP256Sha256,
        }
    }
}

/// `dfukit nordic pkg ...`
#[derive(Subcommand, Debug)]
pub enum PkgCommand {
    /// Generate a DFU package (zip), byte-compatible with `nrfutil pkg generate`.
    Generate(PkgGenerateArgs),
    /// Display the contents of a package (.zip) or a raw init packet (.dat).
    Display {
        /// Package or init packet file.
        file: PathBuf,
        /// Print JSON instead of nrfutil's text layout.
        #[arg(long)]
        json: bool,
    },
}

fn parse_int(s: &str) -> Result<u32, String> {
    package::parse_nrfutil_int(s)
        .ok_or_else(|| format!("{s} is not a valid integer (use 0x.. for hex)"))
}

fn parse_version_string(s: &str) -> Result<u32, String> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 3 {
        return Err("must be on the format x.y.z".into());
    }
    let mut v: u32 = 0;
    for (p, mult) in parts.iter().zip([10000u32, 100, 1]) {
        let n: u32 = p.parse().map_err(|_| format!("{p} is not a number"))?;
        v = n
            .checked_mul(mult)
            .and_then(|n| v.checked_add(n))
            .ok_or("version too large")?;
    }
    Ok(v)
}

/// `--app-boot-validation` and `--sd-boot-validation`, taken alike by
/// `pkg generate` and `settings generate` (as nrfutil's).
#[derive(Args, Debug)]
pub struct BootValidationArgs {
    /// Boot validation for the application.
    #[arg(long, value_enum)]
    pub app_boot_validation: Option<BootValidationArg>,
    /// Boot validation for the SoftDevice.
    #[arg(long, value_enum)]
    pub sd_boot_validation: Option<BootValidationArg>,
}

/// `pkg generate` options (names as nrfutil's).
#[derive(Args, Debug)]
pub struct PkgGenerateArgs {
    /// Output zip file.
    pub zipfile: PathBuf,
    /// Debug mode: the bootloader skips version checks; versions default to 0xFFFFFFFF.
    #[arg(long)]
    pub debug_mode: bool,
    /// Application image (.hex, .bin or ELF).
    #[arg(long)]
    pub application: Option<PathBuf>,
    /// Application version.
    #[arg(long, value_parser = parse_int)]
    pub application_version: Option<u32>,
    /// Application version as "x.y.z", converted to x*10000 + y*100 + z.
    #[arg(long, value_parser = parse_version_string)]
    pub application_version_string: Option<u32>,
    /// Bootloader image.
    #[arg(long)]
    pub bootloader: Option<PathBuf>,
    /// Bootloader version.
    #[arg(long, value_parser = parse_int)]
    pub bootloader_version: Option<u32>,
    /// Hardware version.
    #[arg(long, value_parser = parse_int)]
    pub hw_version: Option<u32>,
    /// Comma-separated SoftDevice firmware IDs, one of which must be on the device.
    #[arg(long, value_delimiter = ',', value_parser = parse_int)]
    pub sd_req: Option<Vec<u32>>,
    /// Comma-separated IDs of the SoftDevice in this package (for the application's sd_req).
    #[arg(long, value_delimiter = ',', value_parser = parse_int)]
    pub sd_id: Option<Vec<u32>>,
    /// SoftDevice image.
    #[arg(long)]
    pub softdevice: Option<PathBuf>,
    #[command(flatten)]
    pub boot: BootValidationArgs,
    /// Private signing key (PEM). Without it the package is unsigned.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// The update is passed through, not applied, by the receiving device.
    #[arg(long)]
    pub external_app: bool,
}

/// `dfukit nordic settings ...`
#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// Generate a bootloader settings page as Intel HEX, identical to `nrfutil settings generate`.
    Generate(SettingsGenerateArgs),
}

/// `--family` values.
#[derive(ValueEnum, Clone, Copy, Debug)]
#[clap(rename_all = "UPPERCASE")]
pub enum FamilyArg {
    /// nRF51.
    Nrf51,
    /// nRF52832.
    Nrf52,
    /// nRF52832 QFAB.
    Nrf52qfab,
    /// nRF52810.
    Nrf52810,
    /// nRF52840.
    Nrf52840,
}

impl From<FamilyArg> for Family {
    fn from(f: FamilyArg) -> Self {
        match f {
            FamilyArg::Nrf51 => Family::Nrf51,
            FamilyArg::Nrf52 => Family::Nrf52,
            FamilyArg::Nrf52qfab => Family::Nrf52Qfab,
            FamilyArg::Nrf52810 => Family::Nrf52810,
            FamilyArg::Nrf52840 => Family::Nrf52840,
        }
    }
}

/// `settings generate` options (names as nrfutil's).
#[derive(Args, Debug)]
pub struct SettingsGenerateArgs {
    /// Output .hex file.
    pub hex_file: PathBuf,
    /// Chip family.
    #[arg(long, value_enum)]
    pub family: FamilyArg,
    /// Application image currently in flash.
    #[arg(long)]
    pub application: Option<PathBuf>,
    /// Application version.
    #[arg(long, value_parser = parse_int)]
    pub application_version: Option<u32>,
    /// Application version as "x.y.z".
    #[arg(long, value_parser = parse_version_string)]
    pub application_version_string: Option<u32>,
    /// Bootloader version.
    #[arg(long, value_parser = parse_int)]
    pub bootloader_version: u32,
    /// Settings layout version: 1 for SDK 12.0–15.2, 2 for SDK 15.3 and later.
    #[arg(long, value_parser = parse_int)]
    pub bl_settings_version: u32,
    /// Settings page address (default: the family's last flash page).
    #[arg(long, value_parser = parse_int)]
    pub start_address: Option<u32>,
    /// Do not write the backup page copy.
    #[arg(long)]
    pub no_backup: bool,
    /// Backup page address (default: settings address − 0x1000).
    #[arg(long, value_parser = parse_int)]
    pub backup_address: Option<u32>,
    #[command(flatten)]
    pub boot: BootValidationArgs,
    /// SoftDevice image in flash.
    #[arg(long)]
    pub softdevice: Option<PathBuf>,
    /// Private key (PEM), needed for ECDSA boot validation.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

fn key_diag(e: KeyError) -> Diag {
    match &e {
        KeyError::Io { path, .. } => Diag::new(
            "dfukit::nordic::keys::io",
            e.to_string(),
            format!("check that {} exists and is readable/writable", path.display()),
        ),
        KeyError::NotAPrivateKey { .. } => Diag::new(
            "dfukit::nordic::keys::not_a_key",
            e.to_string(),
            "pass the private key file made by `dfukit nordic keys generate` or `nrfutil keys generate`",
        ),
        KeyError::NotAKey { .. } => Diag::new(
            "dfukit::nordic::keys::not_a_key",
            e.to_string(),
            "pass a private key file, or the public key `keys display --key pk --format pem` prints",
        ),
        KeyError::PrivateKeyAsCode => {
            Diag::new("dfukit::nordic::keys::sk_as_code", e.to_string(), "use --format hex or pem for the private key")
        }
        KeyError::Encode { .. } => Diag::new("dfukit::nordic::keys::encode", e.to_string(), "report this as a bug"),
    }
}

fn load_key(path: &Path) -> miette::Result<p256::ecdsa::SigningKey> {
    let key = keys::load(path).map_err(key_diag)?;
    if keys::is_default_key(&key) {
        eprintln!(
            "warning: {} is nrfutil's widely distributed default key; do not use it in a product",
            path.display()
        );
    }
    Ok(key)
}

/// Runs `dfukit nordic keys ...`.
pub fn run_keys(cmd: KeysCommand) -> miette::Result<()> {
    match cmd {
        KeysCommand::Generate {
            key_file,
            overwrite,
        } => {
            let pem = keys::private_pem(&keys::generate_key()).map_err(key_diag)?;
            let out = Output {
                codes: &OutputCodes::NORDIC,
                inputs: vec![],
                overwrite,
                private: true,
            };
            write_output(&key_file, pem.as_bytes(), &out)?;
            println!(
                "Generated private key and stored it in: {}",
                key_file.display()
            );
            Ok(())
        }
        KeysCommand::Display {
            key_file,
            key,
            format,
            out_file,
            overwrite,
        } => {
            let sk = load_key(&key_file)?;
            let part = match key {
                KeyArg::Pk => KeyPart::Public,
                KeyArg::Sk => KeyPart::Private,
            };
            let format = match format {
                FormatArg::Hex => Format::Hex,
                FormatArg::Code => Format::Code,
                FormatArg::Dbgcode => Format::DbgCode,
                FormatArg::Pem => Format::Pem,
            };
            let text = keys::display(&sk, part, format).map_err(key_diag)?;
            match out_file {
                // nrfutil writes the text without the newline click.echo would add.
                Some(p) => {
                    let private = part == KeyPart::Private;
                    let out = Output {
                        codes: &OutputCodes::NORDIC,
                        inputs: vec![&key_file],
                        // nrfutil replaces the file; a private key is kept unless asked.
                        overwrite: overwrite || !private,
                        private,
                    };
                    let body = text.strip_suffix('\n').unwrap_or(&text);
                    write_output(&p, body.as_bytes(), &out)?
                }
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

fn generate_diag(e: GenerateError) -> Diag {
    let (code, help) = match &e {
        GenerateError::InvalidOptions { .. } => (
            "dfukit::nordic::pkg::invalid_options",
            "fix the options as the message says; they follow nrfutil pkg generate",
        ),
        GenerateError::Firmware(_) => (
            "dfukit::nordic::pkg::firmware",
            "check the firmware file is a valid .hex, .bin or ELF",
        ),
        GenerateError::MissingKey { .. } => (
            "dfukit::nordic::pkg::missing_key",
            "pass --key-file with a private key, or choose another boot validation type",
        ),
        GenerateError::DuplicateFileName { .. } => (
            "dfukit::nordic::pkg::duplicate_name",
            "rename one of the input files so their base names differ",
        ),
        GenerateError::Zip { .. } | GenerateError::Io { .. } => (
            "dfukit::nordic::pkg::write",
            "check the output directory exists and is writable",
        ),
    };
    Diag::new(code, e.to_string(), help)
}

fn settings_diag(e: SettingsError) -> Diag {
    let (code, help) = match &e {
        SettingsError::Firmware(_) => (
            "dfukit::nordic::settings::firmware",
            "check the firmware file is a valid .hex, .bin or ELF",
        ),
        SettingsError::InvalidOptions { .. } => (
            "dfukit::nordic::settings::invalid_options",
            "fix the options as the message says; they follow nrfutil settings generate",
        ),
    };
    Diag::new(code, e.to_string(), help)
}

/// Runs `dfukit nordic pkg ...`.
pub fn run_pkg(cmd: PkgCommand) -> miette::Result<()> {
    match cmd {
        PkgCommand::Generate(a) => {
            let key = a.key_file.as_deref().map(load_key).transpose()?;
            if key.is_none() {
                eprintln!("warning: no --key-file: the package is unsigned and only a signature-less bootloader accepts it");
            }
            let opts = PackageOptions {
                application: a.application,
                application_version: a.application_version_string.or(a.application_version),
                bootloader: a.bootloader,
                bootloader_version: a.bootloader_version,
                softdevice: a.softdevice,
                hw_version: a.hw_version,
                sd_req: a.sd_req,
                sd_id: a.sd_id,
                key,
                app_boot_validation: a.boot.app_boot_validation.map(Into::into),
                sd_boot_validation: a.boot.sd_boot_validation.map(Into::into),
                debug_mode: a.debug_mode,
                external_app: a.external_app,
            };
            let generated = package::build(&opts).map_err(generate_diag)?;
            let zip = generated.to_zip().map_err(generate_diag)?;
            let inputs = [
                &opts.application,
                &opts.bootloader,
                &opts.softdevice,
                &a.key_file,
            ];
            // nrfutil replaces an existing zip; scripts rerun it.
            let out = Output::replacing(
                &OutputCodes::NORDIC,
                inputs.iter().filter_map(|p| p.as_deref()).collect(),
            );
            write_output(&a.zipfile, &zip, &out)?;
            super::print_warnings(&generated.warnings());
            println!("Zip created at {}", a.zipfile.display());
            Ok(())
        }
        PkgCommand::Display { file, json } => {
            let pkg = Package::open(&file).map_err(crate::util::nordic::open_diag)?;
            // The local flag predates the global `--json`; either asks for it.
            if json || crate::util::progress::json() {
                let text = serde_json::to_string_pretty(&pkg.to_json()).map_err(|e| {
                    Diag::new(
                        "dfukit::nordic::pkg::json",
                        e.to_string(),
                        "report this as a bug",
                    )
                })?;
                println!("{text}");
            } else {
                println!("{}", pkg.display());
            }
            super::print_warnings(&pkg.warnings());
            Ok(())
        }
    }
}

/// Runs `dfukit nordic settings ...`.
pub fn run_settings(cmd: SettingsCommand) -> miette::Result<()> {
    match cmd {
        SettingsCommand::Generate(a) => {
            let key = a.key_file.as_deref().map(load_key).transpose()?;
            let family: Family = a.family.into();
            let opts = SettingsHexOptions {
                family,
                application: a.application,
                application_version: a.application_version_string.or(a.application_version),
                bootloader_version: a.bootloader_version,
                bl_settings_version: a.bl_settings_version,
                start_address: a.start_address,
                no_backup: a.no_backup,
                backup_address: a.backup_address,
                app_boot_validation: a.boot.app_boot_validation.map(Into::into),
                sd_boot_validation: a.boot.sd_boot_validation.map(Into::into),
                softdevice: a.softdevice,
                key,
            };
            let generated = settings::generate_settings(&opts).map_err(settings_diag)?;
            let inputs = [&opts.application, &opts.softdevice, &a.key_file];
            // nrfutil replaces an existing hex file.
            let out = Output::replacing(
                &OutputCodes::NORDIC,
                inputs.iter().filter_map(|p| p.as_deref()).collect(),
            );
            write_output(&a.hex_file, generated.to_hex().as_bytes(), &out)?;
            println!(
                "Generated Bootloader DFU settings .hex file and stored it in: {}",
                a.hex_file.display()
            );
            print!(
                "{}",
                generated.summary(&a.hex_file.display().to_string(), family)
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        pkg: PkgCommand,
    }

    #[test]
    fn parses_nrfutil_style_options() {
        let t = T::try_parse_from([
            "t",
            "generate",
            "out.zip",
            "--hw-version",
            "52",
            "--sd-req",
            "0x100,0xCA",
            "--application",
            "a.hex",
            "--application-version-string",
            "2.7.31",
            "--app-boot-validation",
            "VALIDATE_ECDSA_P256_SHA256",
        ])
        .unwrap();
        let PkgCommand::Generate(a) = t.pkg else {
            panic!()
        };
        assert_eq!(a.sd_req, Some(vec![0x100, 0xCA]));
        assert_eq!(a.application_version_string, Some(20731));
        assert!(matches!(
            a.boot.app_boot_validation,
            Some(BootValidationArg::ValidateEcdsaP256Sha256)
        ));
    }
}
