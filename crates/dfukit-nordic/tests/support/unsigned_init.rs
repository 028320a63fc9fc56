//! The unsigned init packet that the device core's unit tests and the
//! host-window tests send. Both include this file by `#[path]`: a helper in
//! the library would be public API, and one in dfukit-testkit would need a
//! second copy of dfukit-nordic in the unit tests. The includer brings the
//! `init_packet` module into scope (`crate::` or `dfukit_nordic::`).

use super::init_packet::{self, FwType, Hash, HashType, InitCommand};

/// An unsigned init packet for `image` the unsigned core accepts.
pub fn unsigned_init(image: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut d: [u8; 32] = sha2::Sha256::digest(image).into();
    // The SDK stores SHA-256 little-endian.
    d.reverse();
    let cmd = InitCommand {
        fw_version: Some(1),
        hw_version: Some(52),
        sd_req: heapless::Vec::from_slice(&[0x0100]).unwrap(),
        fw_type: Some(FwType::Application),
        app_size: Some(image.len() as u32),
        hash: Some(Hash {
            hash_type: HashType::Sha256,
            hash: heapless::Vec::from_slice(&d).unwrap(),
        }),
        ..Default::default()
    };
    init_packet::encode_packet(&cmd, None)
}
