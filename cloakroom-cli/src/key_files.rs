//! The demo's key files: the key ring of cookie mode and `--encrypt-store`,
//! and token mode's access-token signing key, read or created (mode 0600).

use std::path::Path;

use cloakroom::crypto::{Keyring, MasterKey};

use crate::DemoError;

/// The access-token signing key: an Ed25519 seed in `path` (base64url),
/// created (mode 0600) if missing.
pub(crate) fn load_signing_key(path: &Path) -> Result<cloakroom::token::TokenKey, DemoError> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bad = |why: String| DemoError::Keys(format!("{}: {why}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed: [u8; 32] = URL_SAFE_NO_PAD
                .decode(text.trim())
                .map_err(|e| bad(e.to_string()))?
                .try_into()
                .map_err(|_| bad("not a 32-byte Ed25519 seed".into()))?;
            Ok(cloakroom::token::TokenKey::ed25519_from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut *seed).map_err(|e| DemoError::Random(e.to_string()))?;
            write_private(path, &URL_SAFE_NO_PAD.encode(*seed))
                .map_err(|e| bad(format!("cannot create: {e}")))?;
            tracing::warn!(
                file = %path.display(),
                "created a new access-token signing key (mode 0600); keep it secret"
            );
            Ok(cloakroom::token::TokenKey::ed25519_from_seed(&seed))
        }
        Err(e) => Err(bad(format!("cannot read: {e}"))),
    }
}

/// The keyring for cookie mode: from `keys` if given, else from `key_file`,
/// which is created (mode 0600) with a fresh key if it does not exist.
pub(crate) fn load_keyring(keys: Option<&str>, key_file: &Path) -> Result<Keyring, DemoError> {
    if let Some(keys) = keys {
        return Keyring::parse(keys).map_err(|e| DemoError::Keys(e.to_string()));
    }
    match std::fs::read_to_string(key_file) {
        Ok(text) => Keyring::parse(text.trim())
            .map_err(|e| DemoError::Keys(format!("{}: {e}", key_file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            write_private(key_file, &key.to_base64url()).map_err(|e| {
                DemoError::Keys(format!("cannot create {}: {e}", key_file.display()))
            })?;
            tracing::warn!(
                file = %key_file.display(),
                "no CLOAKROOM_KEYS given: created a new key file (mode 0600) for sealed cookies; keep it secret, and set CLOAKROOM_KEYS in production"
            );
            Keyring::new(vec![key]).map_err(|e| DemoError::Keys(e.to_string()))
        }
        Err(e) => Err(DemoError::Keys(format!(
            "cannot read {}: {e}",
            key_file.display()
        ))),
    }
}

/// Creates `path` readable by its owner only, failing if it exists.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{contents}")?;
    file.sync_all()
}
