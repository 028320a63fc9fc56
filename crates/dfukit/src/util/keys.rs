//! Key files as users pass them to several commands (`sim nrf52840
//! --public-key`, `nordic dfu ble --sim --public-key`, the demo).

use super::diag::read_input;
use super::diag::Diag;
use std::path::Path;

/// Reads a private or public key PEM into the SEC1 hex the board stores.
pub fn public_key_hex(path: &Path) -> Result<String, Diag> {
    use p256::pkcs8::DecodePublicKey;
    const KEY_HELP: &str =
        "pass a key made by `dfukit nordic keys generate` or `nrfutil keys generate`";
    let bytes = read_input(path, "dfukit::sim::key", KEY_HELP)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Diag::new(
            "dfukit::sim::key",
            format!("cannot read {}: {e}", path.display()),
            KEY_HELP,
        )
    })?;
    let vk = match dfukit_nordic::package::keys::from_pem(&text) {
        Ok(sk) => *sk.verifying_key(),
        Err(_) => p256::ecdsa::VerifyingKey::from_public_key_pem(&text).map_err(|e| {
            Diag::new(
                "dfukit::sim::key",
                format!(
                    "{} is neither a P-256 private key nor a public key PEM: {e}",
                    path.display()
                ),
                "pass a key made by `dfukit nordic keys generate` or `nrfutil keys generate`",
            )
        })?,
    };
    Ok(vk
        .to_encoded_point(false)
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
