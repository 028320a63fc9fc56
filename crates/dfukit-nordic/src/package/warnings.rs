//! Packages that are valid but will cause trouble later: the text lives here, once, and
//! every command that makes, shows or sends a package prints it.

use super::manifest::ImageKind;
use super::zip_read::Package;
use super::zip_write::GeneratedPackage;
use crate::init_packet::{self, InitCommand};

/// The warning for an image made with `--debug-mode` and no explicit version.
///
/// nrfutil's `--debug-mode` sets `is_debug` and defaults the version to 0xFFFFFFFF. Only a
/// bootloader built with `NRF_DFU_DEBUG` skips its checks for `is_debug` and leaves the
/// stored version alone (nRF5 SDK 17 `nrf_dfu_validation.c`, `nrf_dfu_ver_validation_check`
/// and `postvalidate_app`); a production bootloader accepts the package (nothing is above
/// 0xFFFFFFFF), stores 0xFFFFFFFF in its settings, and from then on refuses every normal
/// package as a downgrade. SoftDevice images always carry 0xFFFFFFFF and are not versioned.
fn debug_mode_warning(member: &str, kind: ImageKind, cmd: &InitCommand) -> Option<String> {
    if cmd.is_debug != Some(true) || cmd.fw_version != Some(0xFFFF_FFFF) {
        return None;
    }
    let (what, option) = match kind {
        ImageKind::Application => ("application", "--application-version"),
        ImageKind::Bootloader | ImageKind::SoftdeviceBootloader => {
            ("bootloader", "--bootloader-version")
        }
        ImageKind::Softdevice => return None,
    };
    Some(format!(
        "{member}: debug-mode package, {what} version 0xFFFFFFFF: a bootloader built without NRF_DFU_DEBUG stores that version and then refuses every normal update as a downgrade; to recover, keep sending --debug-mode packages, or program a new settings page (`dfukit nordic settings generate {option} N ...`) with a debugger; give {option} with --debug-mode to avoid this"
    ))
}

impl Package {
    /// One line per image that is valid but will cause trouble later (see
    /// `debug_mode_warning`); empty for an ordinary package.
    pub fn warnings(&self) -> Vec<String> {
        self.images
            .iter()
            .filter_map(|img| debug_mode_warning(&img.dat_file, img.kind, &img.command))
            .collect()
    }
}

impl GeneratedPackage {
    /// The same warnings as [`Package::warnings`], for a package just generated.
    pub fn warnings(&self) -> Vec<String> {
        self.images
            .iter()
            .filter_map(|img| {
                let p = init_packet::decode(&img.dat).ok()?;
                debug_mode_warning(&img.dat_file, img.kind, &p.command)
            })
            .collect()
    }
}
