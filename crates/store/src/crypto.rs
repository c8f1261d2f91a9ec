//! Secrets at rest: XChaCha20-Poly1305 with a 256-bit master key kept in a mode-0600 file.
//! Each value is sealed with a fresh random 192-bit nonce and bound (as associated data)
//! to where it is stored, so a sealed value copied to another secret does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The key that seals secrets and webhook secrets.
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Why the master key could not be had, or a value not sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no randomness from the operating system: {0}")]
    Random(#[from] getrandom::Error),
    #[error("{}: not a hex key: {source}", path.display())]
    NotHex {
        path: std::path::PathBuf,
        #[source]
        source: hex::FromHexError,
    },
    #[error("{}: the key must be 32 bytes (64 hex digits)", path.display())]
    Length { path: std::path::PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encryption failed")]
    Seal,
    #[error("sealed value too short")]
    TooShort,
    #[error("cannot decrypt: wrong master key or tampered value")]
    Open,
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

impl MasterKey {
    /// Reads the key file, or creates it (mode 0600) with a new random key.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, KeyError> {
        let io = |action: &'static str| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { action, path, source }
        };
        let bytes = match std::fs::read(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o077).unwrap_or(0);
                if mode != 0 {
                    tracing::warn!(path = %path.display(), "the master key file is readable by others; chmod 600 it");
                }
                let text = String::from_utf8_lossy(&text);
                hex::decode(text.trim()).map_err(|source| KeyError::NotHex { path: path.to_path_buf(), source })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>()?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io("create"))?;
                file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io("write"))?;
                key.to_vec()
            }
            Err(e) => return Err(io("read")(e)),
        };
        let cipher =
            XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| KeyError::Length { path: path.to_path_buf() })?;
        Ok(MasterKey { cipher })
    }

    /// Encrypts `plaintext` bound to `context`: nonce (24 bytes) followed by the ciphertext.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let nonce_bytes = random_bytes::<24>()?;
        let nonce = XNonce::from(nonce_bytes);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: context.as_bytes() })
            .map_err(|_| KeyError::Seal)?;
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 24 {
            return Err(KeyError::TooShort);
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| KeyError::TooShort)?;
        self.cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: context.as_bytes() }).map_err(|_| KeyError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_other_contexts_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = key.seal("secret:1:TOKEN", b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open("secret:1:TOKEN", &sealed).unwrap(), b"hunter2");
        assert!(key.open("secret:1:OTHER", &sealed).is_err());
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(again.open("secret:1:TOKEN", &sealed).unwrap(), b"hunter2");
        let other = MasterKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open("secret:1:TOKEN", &sealed).is_err());
    }
}
