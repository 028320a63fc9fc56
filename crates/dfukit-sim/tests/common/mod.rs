//! Shared helpers: deterministic keys, images and signed init packets, a
//! board factory, the host options the tests run with, and the checks on
//! what the board ends up running.
#![allow(dead_code)]

use dfukit_core::Crc32;
use dfukit_nordic::host::{UpdateError, UpdateOptions};
use dfukit_nordic::init_packet::{self, FwType, Hash, HashType, InitCommand, SignatureType};
use dfukit_nordic::package::keys;
use dfukit_nordic::proto::ExtError;
use dfukit_sim::boards::nrf52840::{Bank1, BoardConfig, Inspection, Nrf52840};
use dfukit_sim::Storage;
use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A fixed test key (never a real one).
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed.max(1); 32]).unwrap()
}

/// `len` bytes of deterministic pseudo-random firmware, padded to 4 bytes
/// with 0xFF as nrfutil pads images.
pub fn image(len: usize, seed: u32) -> Vec<u8> {
    let mut v = dfukit_sim::synthetic::firmware(len, seed);
    while !v.len().is_multiple_of(4) {
        v.push(0xFF);
    }
    v
}

/// What an init packet claims.
pub struct Claims {
    pub fw_version: u32,
    pub hw_version: u32,
    pub sd_req: Vec<u32>,
}

impl Claims {
    /// The default claims with firmware version `fw_version`.
    pub fn version(fw_version: u32) -> Self {
        Claims {
            fw_version,
            ..Claims::default()
        }
    }
}

impl Default for Claims {
    fn default() -> Self {
        Claims {
            fw_version: 1,
            hw_version: 52,
            sd_req: vec![0x0100],
        }
    }
}

/// The init packet's hash of `image`: SHA-256, stored little-endian as
/// nrfutil stores it.
pub fn image_hash(image: &[u8]) -> Hash {
    let mut digest: [u8; 32] = Sha256::digest(image).into();
    digest.reverse();
    Hash {
        hash_type: HashType::Sha256,
        hash: heapless::Vec::from_slice(&digest).unwrap(),
    }
}

/// `cmd` encoded and signed with `key`, as `nrfutil pkg generate` makes it.
pub fn signed(key: &SigningKey, cmd: &InitCommand) -> Vec<u8> {
    let bytes = init_packet::encode_init_command(cmd);
    let sig = keys::sign_init_command(key, &bytes);
    init_packet::encode_packet(cmd, Some((SignatureType::EcdsaP256Sha256, &sig)))
}

/// A signed init packet for `image`, as `nrfutil pkg generate` makes it.
pub fn init_packet(key: &SigningKey, image: &[u8], c: &Claims) -> Vec<u8> {
    let cmd = InitCommand {
        fw_version: Some(c.fw_version),
        hw_version: Some(c.hw_version),
        sd_req: c.sd_req.iter().copied().collect(),
        fw_type: Some(FwType::Application),
        sd_size: Some(0),
        bl_size: Some(0),
        app_size: Some(image.len() as u32),
        hash: Some(image_hash(image)),
        is_debug: Some(false),
        boot_validation: heapless::Vec::new(),
    };
    signed(key, &cmd)
}

/// Board configuration trusting `key`, flash timing on (virtual time).
pub fn config(key: &SigningKey, bank1: Bank1) -> BoardConfig {
    let point = key.verifying_key().to_encoded_point(false);
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

/// A blank board (erased flash) in memory.
pub fn blank_board(cfg: BoardConfig) -> Nrf52840 {
    Nrf52840::new(
        cfg,
        Storage::in_memory(1 << 20),
        Storage::in_memory(8 << 20),
    )
    .unwrap()
}

/// A board on copies of the given flash contents.
pub fn board_from(cfg: BoardConfig, internal: &[u8], qspi: &[u8]) -> Nrf52840 {
    Nrf52840::new(
        cfg,
        Storage::from_vec(internal.to_vec()),
        Storage::from_vec(qspi.to_vec()),
    )
    .unwrap()
}

/// A blank board, booted into DFU mode.
pub fn fresh(cfg: BoardConfig) -> Nrf52840 {
    let mut b = blank_board(cfg);
    settle(&mut b);
    b
}

/// A board on copies of the given flash contents, booted.
pub fn booted_from(cfg: BoardConfig, internal: &[u8], qspi: &[u8]) -> Nrf52840 {
    let mut b = board_from(cfg, internal, qspi);
    settle(&mut b);
    b
}

/// Host options for the simulated board: no PRN, short timeouts (virtual
/// time makes them cheap), three tries per object.
pub fn opts() -> UpdateOptions {
    UpdateOptions {
        prn: 0,
        response_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(500),
        object_retries: 3,
        ..UpdateOptions::default()
    }
}

/// Lets the board finish whatever it does without input (booting, or
/// activation after the update's reset), up to 30 s of virtual time.
pub fn settle(board: &mut Nrf52840) {
    board.settle(Duration::from_secs(30));
}

/// CRC-32 as the bootloader records it.
pub fn crc_of(b: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(b);
    c.value()
}

/// Asserts the board holds a valid app that is `image` (size and CRC) and
/// that no flash rule was broken on the way; returns what it inspected.
pub fn assert_app(board: &mut Nrf52840, image: &[u8]) -> Inspection {
    let ins = board.inspect();
    assert!(ins.app_valid, "no valid app: {ins:?}");
    assert_eq!(ins.app_size as usize, image.len());
    assert_eq!(ins.app_crc, crc_of(image));
    assert!(
        board.model_errors().is_empty(),
        "{:?}",
        board.model_errors()
    );
    ins
}

/// Whether the device refused a request of the update with `ext`.
pub fn rejected_with(err: &UpdateError, ext: ExtError) -> bool {
    matches!(err, UpdateError::Rejected { ext: Some(e), .. } if *e == ext)
}
