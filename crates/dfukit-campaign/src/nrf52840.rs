//! The simulated nRF52840 as the campaigns set it up: a fixed test key, a
//! board trusting it, signed packages made as `nrfutil pkg generate` makes
//! them (dfukit's generator) from synthetic images, and dfukit's host
//! driving the board over the serial link in virtual time.

use dfukit_core::Crc32;
use dfukit_nordic::bootloader::{Mode, SoftDevice, SD_MAGIC};
use dfukit_nordic::host::{self, UpdateOptions};
use dfukit_nordic::package::{build, PackageOptions};
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Nrf52840};
use dfukit_sim::links::serial::BoardLink;
use dfukit_sim::{Board, Storage};
use p256::ecdsa::SigningKey;
use std::time::Duration;

/// The SoftDevice firmware id the boards start with.
pub const OLD_SD: u16 = 0x0100;
/// The SoftDevice firmware id an update brings.
pub const NEW_SD: u16 = 0x0123;

pub use crate::SetupError;

/// The host's options for the simulated board.
pub fn host_options() -> UpdateOptions {
    // No PRN (the bootloader's CRC answers still check every object), short
    // timeouts: virtual time makes waiting cheap, and a cut board answers
    // nothing.
    UpdateOptions {
        prn: 0,
        response_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(500),
        object_retries: 3,
        ..UpdateOptions::default()
    }
}

/// CRC-32 of `b`, as the settings record it.
pub fn crc(b: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(b);
    c.value()
}

/// The fixed test key the boards trust (never a real one).
pub fn key() -> SigningKey {
    SigningKey::from_slice(&[0x5a; 32]).expect("a valid scalar")
}

/// Another fixed key, which no board trusts.
pub fn other_key() -> SigningKey {
    SigningKey::from_slice(&[0x3c; 32]).expect("a valid scalar")
}

/// A board that trusts `k`, with bank 1 on `bank1`.
pub fn board_config(k: &SigningKey, bank1: Bank1) -> BoardConfig {
    let point = k.verifying_key().to_encoded_point(false);
    BoardConfig {
        bank1,
        public_key: Some(
            point
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        ),
        ..BoardConfig::default()
    }
}

/// `len` bytes of synthetic firmware, padded to a word with 0xFF as
/// nrfutil pads images.
pub fn firmware(len: usize, seed: u32) -> Vec<u8> {
    let mut v = dfukit_sim::synthetic::firmware(len, seed);
    v.resize(len.next_multiple_of(4), 0xFF);
    v
}

/// A SoftDevice image whose information structure names `fwid`.
pub fn softdevice(len: usize, fwid: u16, seed: u32) -> Vec<u8> {
    let mut sd = firmware(len, seed);
    let m = SoftDevice::MAGIC_OFFSET as usize;
    sd[m..m + 4].copy_from_slice(&SD_MAGIC.to_le_bytes());
    let f = SoftDevice::FWID_OFFSET as usize;
    sd[f..f + 2].copy_from_slice(&fwid.to_le_bytes());
    sd
}

/// A signed package's one image (init packet, firmware) as `pkg generate`
/// makes it from `.bin` files.
pub fn package(
    scenario: &'static str,
    k: &SigningKey,
    fill: impl FnOnce(&std::path::Path, &mut PackageOptions) -> std::io::Result<()>,
) -> Result<(Vec<u8>, Vec<u8>), SetupError> {
    let err = |what: String| SetupError { scenario, what };
    let dir = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
    let mut o = PackageOptions {
        hw_version: Some(52),
        sd_req: Some(vec![u32::from(OLD_SD)]),
        key: Some(k.clone()),
        ..PackageOptions::default()
    };
    fill(dir.path(), &mut o).map_err(|e| err(e.to_string()))?;
    let p = build(&o).map_err(|e| err(e.to_string()))?;
    let [img] = &p.images[..] else {
        return Err(err(format!("{} images in the package", p.images.len())));
    };
    Ok((img.dat.clone(), img.bin.clone()))
}

/// An application package's init packet and image, signed with `k`.
pub fn app_package(
    scenario: &'static str,
    k: &SigningKey,
    app: &[u8],
    version: u32,
) -> Result<(Vec<u8>, Vec<u8>), SetupError> {
    package(scenario, k, |dir, o| {
        let path = dir.join("app.bin");
        std::fs::write(&path, app)?;
        o.application = Some(path);
        o.application_version = Some(version);
        Ok(())
    })
}

/// Runs dfukit's host over the serial link against `b`.
pub fn send(b: &mut Nrf52840, init: &[u8], fw: &[u8]) -> Result<(), host::UpdateError> {
    host::update(
        &mut BoardLink::new(b),
        &host_options(),
        init,
        fw,
        &mut |_| {},
    )
}

/// Lets the board boot, activate and restart (a SoftDevice or bootloader
/// copy restarts it) until it waits in DFU mode or loses power.
pub fn run_to_idle(b: &mut Nrf52840) {
    for _ in 0..4 {
        b.settle(Duration::from_secs(30));
        if !b.is_powered() || (b.mode() == Mode::Dfu && !b.bootloader().is_busy()) {
            return;
        }
    }
}

/// Copies of the board's internal and QSPI flash.
pub fn snapshot(b: &Nrf52840) -> (Vec<u8>, Vec<u8>) {
    (
        b.memory().internal.contents().to_vec(),
        b.memory().qspi.contents().to_vec(),
    )
}

/// A board on copies of `flash` (internal, QSPI), not yet booted.
pub fn board(cfg: &BoardConfig, flash: &(Vec<u8>, Vec<u8>)) -> Nrf52840 {
    Nrf52840::new(
        cfg.clone(),
        Storage::from_vec(flash.0.clone()),
        Storage::from_vec(flash.1.clone()),
    )
    .expect("sizes come from a board")
}
