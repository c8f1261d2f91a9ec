//! Content-addressed blobs (logs, artifacts) behind a trait; the file-system implementation
//! keeps `sha256/ab/cdef…` under a root and writes through a temporary file and a rename,
//! so a crash never leaves a half-written blob under its final name.
#![forbid(unsafe_code)]

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where blobs live. Digests are lowercase hex SHA-256 of the content.
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores the content of a file; returns its digest and size.
    fn put_file(&self, path: &Path) -> std::io::Result<(String, u64)>;
    /// Stores bytes; returns their digest.
    fn put_bytes(&self, bytes: &[u8]) -> std::io::Result<String>;
    /// Opens a blob for reading.
    fn open(&self, digest: &str) -> std::io::Result<std::fs::File>;
    /// Removes a blob (absent blobs are not an error).
    fn delete(&self, digest: &str) -> std::io::Result<()>;
}

/// Blobs in a folder on the local disk.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

fn valid_digest(digest: &str) -> std::io::Result<()> {
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not a blob digest: '{digest}'")))
    }
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("sha256"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(FsBlobStore { root })
    }

    fn path_of(&self, digest: &str) -> std::io::Result<PathBuf> {
        valid_digest(digest)?;
        Ok(self.root.join("sha256").join(&digest[..2]).join(&digest[2..]))
    }

    fn temp_file(&self) -> std::io::Result<(PathBuf, std::fs::File)> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
        let path = self.root.join("tmp").join(hex::encode(random));
        // Readable by the server only: jobs and other users of the host never read blobs directly.
        let file =
            std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create_new(true), 0o600)
                .open(&path)?;
        Ok((path, file))
    }

    fn commit(&self, temp: &Path, digest: &str) -> std::io::Result<()> {
        let dest = self.path_of(digest)?;
        if dest.exists() {
            std::fs::remove_file(temp)?;
            return Ok(());
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(temp, dest)
    }
}

impl BlobStore for FsBlobStore {
    fn put_file(&self, path: &Path) -> std::io::Result<(String, u64)> {
        let mut source = std::fs::File::open(path)?;
        let (temp, mut out) = self.temp_file()?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        let copied = (|| -> std::io::Result<()> {
            loop {
                let n = source.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                out.write_all(&buffer[..n])?;
                size += n as u64;
            }
            out.sync_all()
        })();
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        let digest = hex::encode(hasher.finalize());
        self.commit(&temp, &digest)?;
        Ok((digest, size))
    }

    fn put_bytes(&self, bytes: &[u8]) -> std::io::Result<String> {
        let digest = hex::encode(Sha256::digest(bytes));
        if self.path_of(&digest)?.exists() {
            return Ok(digest);
        }
        let (temp, mut out) = self.temp_file()?;
        out.write_all(bytes)?;
        out.sync_all()?;
        self.commit(&temp, &digest)?;
        Ok(digest)
    }

    fn open(&self, digest: &str) -> std::io::Result<std::fs::File> {
        std::fs::File::open(self.path_of(digest)?)
    }

    fn delete(&self, digest: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path_of(digest)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_same_blob_and_bad_digests_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path()).unwrap();
        let a = store.put_bytes(b"hello").unwrap();
        std::fs::write(dir.path().join("f"), b"hello").unwrap();
        let (b, size) = store.put_file(&dir.path().join("f")).unwrap();
        assert_eq!(a, b);
        assert_eq!(size, 5);
        let mut text = String::new();
        store.open(&a).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello");
        assert!(store.open("../../etc/passwd").is_err());
        store.delete(&a).unwrap();
        assert!(store.open(&a).is_err());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
