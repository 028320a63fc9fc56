//! Key files as users pass them to several commands (`sim nrf52840
//! --public-key`, `nordic dfu ble --sim --public-key`, the demo).

use super::diag::Diag;
use std::path::Path;

/// Reads a private or public key PEM into the SEC1 hex the board stores.
/// The library's parser takes the file as people have it (blank lines,
/// CRLF, indentation, text around the PEM block).
pub fn public_key_hex(path: &Path) -> Result<String, Diag> {
    const KEY_HELP: &str = "pass a key made by `dfukit nordic keys generate` or `nrfutil keys generate`, or the public key `keys display --key pk --format pem` prints";
    let vk = dfukit_nordic::package::keys::load_verifying_key(path)
        .map_err(|e| Diag::new("dfukit::sim::key", e.to_string(), KEY_HELP))?;
    Ok(vk
        .to_encoded_point(false)
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
