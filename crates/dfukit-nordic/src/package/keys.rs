//! nrfutil-compatible P-256 signing keys: generate, load, display, sign and verify.
//!
//! nrfutil 6.1.7 (python-ecdsa) writes private keys as SEC1 `EC PRIVATE KEY` PEM with the
//! named-curve OID and the public key, and prints keys in a "little-endian" form: every
//! 256-bit number (the private scalar, and the public x and y separately) byte-reversed.
//! Signatures follow the same convention: r and s each byte-reversed.

use std::path::{Path, PathBuf};

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use p256::SecretKey;

/// Errors while reading, writing or using a signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("cannot access key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a PEM P-256 private key (SEC1 `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
    #[error("{path} is not a P-256 private key in PEM format (SEC1 or PKCS#8): {reason}")]
    NotAPrivateKey {
        /// The key file (or `<memory>`).
        path: PathBuf,
        /// What the parsers reported.
        reason: String,
    },
    /// The file holds neither a P-256 private key nor a public key PEM.
    #[error("{path} is neither a P-256 private key nor a public key in PEM format: {reason}")]
    NotAKey {
        /// The key file (or `<memory>`).
        path: PathBuf,
        /// What the parsers reported.
        reason: String,
    },
    /// A private key cannot be shown as C code (nrfutil refuses this too).
    #[error("displaying the private key as code is not available")]
    PrivateKeyAsCode,
    /// Encoding the key as PEM failed.
    #[error("cannot encode key as PEM: {reason}")]
    Encode {
        /// What the encoder reported.
        reason: String,
    },
}

/// Which half of the key pair to display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPart {
    /// The public (verification) key, `--key pk`.
    Public,
    /// The private (signing) key, `--key sk`.
    Private,
}

/// Output format of [`display`], as nrfutil's `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// PEM text.
    Pem,
    /// "Little-endian" hex (each 256-bit number byte-reversed).
    Hex,
    /// C source for the bootloader's `pk[64]` array.
    Code,
    /// Like `Code`, wrapped in `#ifdef NRF_DFU_DEBUG_VERSION` (nrfutil's `dbgcode`).
    DbgCode,
}

/// The private key nrfutil ships as `keys_default_pem` (widely distributed, insecure).
const DEFAULT_KEY_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIGvsrpXh8m/E9bj1dq/0o1aBPQVAFJQ6Pzusx685URE0oAoGCCqGSM49
AwEHoUQDQgAEaHYrUu/oFKIXN457GH+8IOuv6OIPBRLqoHjaEKM0wIzJZ0lhfO/A
53hKGjKEjYT3VNTQ3Zq1YB3o5QSQMP/LRg==
-----END EC PRIVATE KEY-----
";

/// Generates a fresh random P-256 key from the operating system's RNG.
pub fn generate_key() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

/// Generates a key and writes it to `path` as nrfutil's `keys generate` does (SEC1 PEM).
pub fn generate(path: &Path) -> Result<SigningKey, KeyError> {
    let key = generate_key();
    let pem = private_pem(&key)?;
    std::fs::write(path, pem).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(key)
}

/// SEC1 `EC PRIVATE KEY` PEM as python-ecdsa's `to_pem()` writes it: version 1, the scalar,
/// the named-curve OID (`[0]` parameters) and the uncompressed public key (`[1]`), base64 in
/// 64-column lines with LF endings. (p256's own `to_sec1_pem` omits the parameters.)
pub fn private_pem(key: &SigningKey) -> Result<String, KeyError> {
    use sec1::der::Encode;
    let scalar = key.to_bytes();
    let point = key.verifying_key().to_encoded_point(false);
    let ec = sec1::EcPrivateKey {
        private_key: &scalar,
        parameters: Some(sec1::EcParameters::NamedCurve(
            sec1::der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
        )),
        public_key: Some(point.as_bytes()),
    };
    let der = ec.to_der().map_err(|e| KeyError::Encode {
        reason: e.to_string(),
    })?;
    sec1::der::pem::encode_string("EC PRIVATE KEY", LineEnding::LF, &der).map_err(|e| {
        KeyError::Encode {
            reason: e.to_string(),
        }
    })
}

/// SubjectPublicKeyInfo `PUBLIC KEY` PEM (uncompressed point), as python-ecdsa writes it.
pub fn public_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode {
            reason: e.to_string(),
        })
}

/// Parses a PEM private key: SEC1 `EC PRIVATE KEY` (what nrfutil writes) or PKCS#8.
pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    parse_pem(pem, Path::new("<memory>"))
}

/// The PEM blocks of `text`, each rewritten in the strict form RFC 7468 parsers take:
/// one trimmed line per line, LF endings, no blank lines. Key files as people have them
/// differ from that form: `keys display ... > pub.pem` ends in blank lines, nrfutil's
/// private key display starts with a warning, Windows editors write CRLF, e-mail and wikis
/// indent, and `openssl ecparam -genkey` puts an `EC PARAMETERS` block before the key.
fn pem_blocks(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                blocks.extend(current.take());
            }
        }
    }
    blocks
}

fn parse_pem(pem: &str, path: &Path) -> Result<SigningKey, KeyError> {
    let mut reasons = Vec::new();
    for block in pem_blocks(pem) {
        match SecretKey::from_sec1_pem(&block) {
            Ok(sk) => return Ok(SigningKey::from(sk)),
            Err(e) => reasons.push(format!("SEC1: {e}")),
        }
        match SecretKey::from_pkcs8_pem(&block) {
            Ok(sk) => return Ok(SigningKey::from(sk)),
            Err(e) => reasons.push(format!("PKCS#8: {e}")),
        }
    }
    if reasons.is_empty() {
        reasons.push("no -----BEGIN ...----- line".into());
    }
    Err(KeyError::NotAPrivateKey {
        path: path.to_owned(),
        reason: reasons.join("; "),
    })
}

/// The verification key in a PEM: a private key's public half, or a `PUBLIC KEY`
/// (SubjectPublicKeyInfo, what `keys display --key pk --format pem` prints).
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
    parse_verifying_pem(pem, Path::new("<memory>"))
}

fn parse_verifying_pem(pem: &str, path: &Path) -> Result<VerifyingKey, KeyError> {
    use p256::pkcs8::DecodePublicKey;
    let private = match parse_pem(pem, path) {
        Ok(sk) => return Ok(*sk.verifying_key()),
        Err(e) => e,
    };
    let mut reasons = vec![private.to_string()];
    for block in pem_blocks(pem) {
        match VerifyingKey::from_public_key_pem(&block) {
            Ok(vk) => return Ok(vk),
            Err(e) => reasons.push(format!("public key: {e}")),
        }
    }
    Err(KeyError::NotAKey {
        path: path.to_owned(),
        reason: reasons.join("; "),
    })
}

/// Loads the verification key from a PEM file holding a private or a public key.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_verifying_pem(&text, path)
}

/// Loads a PEM private key from a file.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_pem(&text, path)
}

/// True if `key` is nrfutil's built-in default key (nrfutil then prints a security warning).
pub fn is_default_key(key: &SigningKey) -> bool {
    from_pem(DEFAULT_KEY_PEM)
        .map(|d| d.to_bytes() == key.to_bytes())
        .unwrap_or(false)
}

/// The public key as the bootloader stores it: x and y each byte-reversed (64 bytes).
pub fn public_key_le(key: &VerifyingKey) -> [u8; 64] {
    let point = key.to_encoded_point(false);
    let mut out = [0u8; 64];
    // Uncompressed SEC1 point: 0x04 || x || y.
    out.copy_from_slice(&point.as_bytes()[1..65]);
    out[..32].reverse();
    out[32..].reverse();
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// nrfutil's `keys display` text for `key`, byte-identical to what it prints on stdout
/// (including the trailing newline `click.echo` adds). Code formats embed the current local
/// time; see [`display_at`] to fix it.
pub fn display(key: &SigningKey, part: KeyPart, format: Format) -> Result<String, KeyError> {
    let now = chrono::Local::now()
        .format("%Y-%m-%d (YY-MM-DD) at %H:%M:%S")
        .to_string();
    display_at(key, part, format, &now)
}

/// [`display`] with the timestamp of the code header given as text
/// (`"%Y-%m-%d (YY-MM-DD) at %H:%M:%S"` in nrfutil).
pub fn display_at(
    key: &SigningKey,
    part: KeyPart,
    format: Format,
    timestamp: &str,
) -> Result<String, KeyError> {
    let body = match (part, format) {
        (KeyPart::Private, Format::Code | Format::DbgCode) => {
            return Err(KeyError::PrivateKeyAsCode)
        }
        (KeyPart::Private, Format::Pem) => private_pem(key)?,
        (KeyPart::Private, Format::Hex) => {
            let mut b = key.to_bytes().to_vec();
            b.reverse();
            format!("Private (signing) key sk:\n{}", hex(&b))
        }
        (KeyPart::Public, Format::Pem) => public_pem(key.verifying_key())?,
        (KeyPart::Public, Format::Hex) => {
            format!(
                "Public (verification) key pk:\n{}",
                hex(&public_key_le(key.verifying_key()))
            )
        }
        (KeyPart::Public, Format::Code | Format::DbgCode) => {
            public_key_code(key.verifying_key(), format == Format::DbgCode, timestamp)
        }
    };
    let prefix = match part {
        KeyPart::Private => "\nWARNING: Security risk! Do not share the private key.\n\n",
        KeyPart::Public => "",
    };
    Ok(format!("{prefix}{body}\n"))
}

/// The C source nrfutil's `keys display --key pk --format code` emits (without the final
/// newline `click.echo` adds).
pub fn public_key_code(key: &VerifyingKey, debug: bool, timestamp: &str) -> String {
    let pk = public_key_le(key);
    let join = |b: &[u8]| {
        b.iter()
            .map(|x| format!("0x{x:02x}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key_code = format!(
        "\n/** @brief Public key used to verify DFU images */\n__ALIGN(4) const uint8_t pk[64] =\n{{\n    {},\n    {}\n}};\n",
        join(&pk[..32]),
        join(&pk[32..])
    );
    let header = format!(
        "\n/* This file was automatically generated by nrfutil on {timestamp} */\n\n#include \"stdint.h\"\n#include \"compiler_abstraction.h\"\n"
    );
    if debug {
        let dbg_header = "\n/* This file was generated with a throwaway private key, that is only intended for a debug version of the DFU project.\n  Please see https://github.com/NordicSemiconductor/pc-nrfutil/blob/master/README.md to generate a valid public key. */\n\n#ifdef NRF_DFU_DEBUG_VERSION\n";
        let dbg_footer = "\n#else\n#error \"Debug public key not valid for production. Please see https://github.com/NordicSemiconductor/pc-nrfutil/blob/master/README.md to generate it\"\n#endif\n";
        format!("{header}{dbg_header}{key_code}{dbg_footer}")
    } else {
        format!("{header}{key_code}")
    }
}

/// Signs `data` with ECDSA P-256/SHA-256 and returns r‖s with r and s each byte-reversed,
/// nrfutil's on-wire convention (`signing.py`: `signature[31::-1] + signature[63:31:-1]`).
pub fn sign(key: &SigningKey, data: &[u8]) -> [u8; 64] {
    let sig: Signature = key.sign(data);
    let mut out = [0u8; 64];
    out.copy_from_slice(&sig.to_bytes());
    out[..32].reverse();
    out[32..].reverse();
    out
}

/// Signs a serialized `InitCommand` (the span an init packet's signature covers).
pub fn sign_init_command(key: &SigningKey, init_command_bytes: &[u8]) -> [u8; 64] {
    sign(key, init_command_bytes)
}

/// Verifies an nrfutil-convention signature (r and s each byte-reversed) over `data`.
pub fn verify(key: &VerifyingKey, data: &[u8], signature: &[u8]) -> bool {
    if signature.len() != 64 {
        return false;
    }
    let mut be = [0u8; 64];
    be.copy_from_slice(signature);
    be[..32].reverse();
    be[32..].reverse();
    match Signature::from_slice(&be) {
        Ok(sig) => key.verify(data, &sig).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init_packet::{self, FwType, InitCommand, SignatureType};
    use p256::pkcs8::EncodePrivateKey;

    #[test]
    fn pem_round_trip_sec1_and_pkcs8() {
        let k = generate_key();
        let pem = private_pem(&k).unwrap();
        assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END EC PRIVATE KEY-----\n"));
        assert_eq!(from_pem(&pem).unwrap().to_bytes(), k.to_bytes());
        let p8 = SecretKey::from(&k).to_pkcs8_pem(LineEnding::LF).unwrap();
        assert_eq!(from_pem(&p8).unwrap().to_bytes(), k.to_bytes());
        assert!(matches!(
            from_pem("garbage"),
            Err(KeyError::NotAPrivateKey { .. })
        ));
    }

    /// Keys as people have them: what shell redirection of `keys display` writes (a
    /// trailing blank line, nrfutil's warning text before a private key), CRLF line ends,
    /// indentation, and openssl's `EC PARAMETERS` block before the key.
    #[test]
    fn pem_as_people_have_it_is_accepted() {
        let k = generate_key();
        let sk = private_pem(&k).unwrap();
        let pk = public_pem(k.verifying_key()).unwrap();
        let variants = |pem: &str| {
            vec![
                format!("{pem}\n\n"),
                pem.replace('\n', "\r\n"),
                format!("\r\n{}\r\n\r\n", pem.replace('\n', "\r\n")),
                pem.lines().map(|l| format!("  {l}\n")).collect::<String>(),
                format!("\u{feff}{pem}"),
            ]
        };
        for text in variants(&sk) {
            assert_eq!(
                from_pem(&text).unwrap().to_bytes(),
                k.to_bytes(),
                "{text:?}"
            );
            assert_eq!(verifying_key_from_pem(&text).unwrap(), *k.verifying_key());
        }
        for text in variants(&pk) {
            assert_eq!(
                verifying_key_from_pem(&text).unwrap(),
                *k.verifying_key(),
                "{text:?}"
            );
            // A public key is not a private key, and says so.
            assert!(matches!(
                from_pem(&text),
                Err(KeyError::NotAPrivateKey { .. })
            ));
        }
        // `nrfutil keys display --key sk --format pem > sk.pem` keeps its warning.
        let shown = display(&k, KeyPart::Private, Format::Pem).unwrap();
        assert!(shown.starts_with("\nWARNING"));
        assert_eq!(from_pem(&shown).unwrap().to_bytes(), k.to_bytes());
        let params =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        assert_eq!(
            from_pem(&format!("{params}{sk}")).unwrap().to_bytes(),
            k.to_bytes()
        );
        assert!(matches!(
            verifying_key_from_pem("no key here\n"),
            Err(KeyError::NotAKey { .. })
        ));
    }

    #[test]
    fn default_key_is_detected_and_reencodes_identically() {
        let k = from_pem(DEFAULT_KEY_PEM).unwrap();
        assert!(is_default_key(&k));
        assert_eq!(private_pem(&k).unwrap(), DEFAULT_KEY_PEM);
        assert!(!is_default_key(&generate_key()));
    }

    #[test]
    fn signature_covers_init_command_not_whole_packet() {
        let k = generate_key();
        let cmd = InitCommand {
            fw_version: Some(3),
            fw_type: Some(FwType::Application),
            app_size: Some(4),
            ..Default::default()
        };
        let ic = init_packet::encode_init_command(&cmd);
        let sig = sign_init_command(&k, &ic);
        let pkt = init_packet::encode_packet(&cmd, Some((SignatureType::EcdsaP256Sha256, &sig)));
        let d = init_packet::decode(&pkt).unwrap();
        assert!(verify(
            k.verifying_key(),
            d.init_command_bytes,
            d.signature.unwrap()
        ));
        assert!(!verify(k.verifying_key(), &pkt, d.signature.unwrap()));
        // The byte-reversed convention matters: the raw big-endian form does not verify.
        let mut raw = sig;
        raw[..32].reverse();
        raw[32..].reverse();
        assert!(!verify(k.verifying_key(), &ic, &raw));
        assert!(!verify(generate_key().verifying_key(), &ic, &sig));
    }

    #[test]
    fn hex_display_is_little_endian() {
        let k = from_pem(DEFAULT_KEY_PEM).unwrap();
        let s = display(&k, KeyPart::Private, Format::Hex).unwrap();
        let mut b = k.to_bytes().to_vec();
        b.reverse();
        assert_eq!(s, format!("\nWARNING: Security risk! Do not share the private key.\n\nPrivate (signing) key sk:\n{}\n", hex(&b)));
        assert!(matches!(
            display(&k, KeyPart::Private, Format::Code),
            Err(KeyError::PrivateKeyAsCode)
        ));
        let code = display_at(&k, KeyPart::Public, Format::Code, "T").unwrap();
        assert!(code.contains("__ALIGN(4) const uint8_t pk[64] =\n{\n    0x"));
        assert!(code.ends_with("\n};\n\n"));
    }
}
