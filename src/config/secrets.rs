//! Secret handling for config: redacted serialization and key hashing.

use secrecy::SecretString;
use serde::Serializer;
use sha2::{Digest, Sha256};

/// What every secret looks like wherever config is shown.
pub const REDACTED: &str = "[REDACTED]";

/// The development key documented in the README; production refuses it.
pub const DEV_KEY: &str = "dev-key";

/// How every placeholder in `.env.example` starts; production refuses a secret
/// that does, so a copied example file never reaches production unnoticed.
pub const PLACEHOLDER_PREFIX: &str = "replace-me";

/// Serializes a present secret as `[REDACTED]` and an absent one as nothing.
pub fn redact_opt<S: Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(REDACTED),
        None => serializer.serialize_none(),
    }
}

/// Lower-case hex SHA-256 of a key, as stored in config files
/// (what `chatgate hash-key KEY` prints).
///
/// ```
/// assert_eq!(
///     chatgate::config::sha256_hex("dev-key"),
///     "7e9f8fd111802be56c379d597842e29b2cebd35ff2133d431a49fa556a18704e",
/// );
/// ```
pub fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}
