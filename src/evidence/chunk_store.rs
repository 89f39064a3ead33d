//! The write-once chunk store: `<data dir>/chunks/<first two hex>/<hex name>`.
//! A chunk is written to a temporary name, fsynced, renamed into place, and
//! the directory fsynced; a chunk in place is never rewritten (a corrupt one is
//! removed first, then written again from a healthy replica).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::ChunkName;

#[derive(Debug, thiserror::Error)]
pub enum ChunkStoreError {
    #[error("chunk {0} does not hash to its name")]
    HashMismatch(ChunkName),
    #[error("chunk {0} is not on this node")]
    Missing(ChunkName),
    #[error("no space left on the chunk store's disk")]
    Full,
    #[error("chunk store I/O error: {0}")]
    Io(#[from] io::Error),
}

fn classify(e: io::Error) -> ChunkStoreError {
    // ENOSPC (28) and EDQUOT (122): the disk is full, a condition operators must see as such.
    match e.raw_os_error() {
        Some(28) | Some(122) => ChunkStoreError::Full,
        _ => ChunkStoreError::Io(e),
    }
}

/// Outcome of a `put`.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    Written,
    AlreadyPresent,
}

#[derive(Clone, Debug)]
pub struct ChunkStore {
    root: PathBuf,
}

impl ChunkStore {
    /// Opens (creating) the store and removes temporary files a crash left behind.
    pub fn open(root: &Path) -> Result<Self, ChunkStoreError> {
        fs::create_dir_all(root)?;
        let store = ChunkStore { root: root.to_path_buf() };
        for fan in fs::read_dir(root)? {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(fan.path())? {
                let f = f?;
                if f.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = fs::remove_file(f.path());
                }
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, name: &ChunkName) -> PathBuf {
        let hex = name.to_string();
        self.root.join(&hex[..2]).join(hex)
    }

    pub fn contains(&self, name: &ChunkName) -> bool {
        self.path_of(name).is_file()
    }

    /// Stores `sealed` under `name` durably. Refuses bytes that do not hash to the name.
    pub fn put(&self, name: &ChunkName, sealed: &[u8]) -> Result<Put, ChunkStoreError> {
        if !name.matches(sealed) {
            return Err(ChunkStoreError::HashMismatch(*name));
        }
        let path = self.path_of(name);
        if path.is_file() {
            match self.get(name) {
                Ok(_) => return Ok(Put::AlreadyPresent),
                // A damaged copy is replaced by the intact bytes we were just given.
                Err(ChunkStoreError::HashMismatch(_)) => self.remove(name)?,
                Err(ChunkStoreError::Missing(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let dir = path.parent().ok_or_else(|| io::Error::other("chunk path has no parent"))?;
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(classify)?;
            // The new fan-out directory's entry must itself survive a crash.
            fsync_dir(&self.root)?;
        }
        let suffix = hex::encode(crate::crypto::random_bytes::<6>().map_err(|e| io::Error::other(e.to_string()))?);
        let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(sealed)?;
            // The chunk's bytes must be on disk before the rename makes them visible under their name.
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            // The rename itself is durable only once the directory is fsynced; only then may we acknowledge.
            fsync_dir(dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(classify(e));
        }
        Ok(Put::Written)
    }

    /// Reads a chunk and checks it against its name.
    pub fn get(&self, name: &ChunkName) -> Result<Vec<u8>, ChunkStoreError> {
        let mut f = match File::open(self.path_of(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ChunkStoreError::Missing(*name)),
            Err(e) => return Err(e.into()),
        };
        let mut buf = Vec::with_capacity(f.metadata().map(|m| m.len() as usize).unwrap_or(0));
        f.read_to_end(&mut buf)?;
        if !name.matches(&buf) {
            return Err(ChunkStoreError::HashMismatch(*name));
        }
        Ok(buf)
    }

    /// Removes a chunk (orphan collection, or a corrupt copy about to be replaced).
    pub fn remove(&self, name: &ChunkName) -> Result<(), ChunkStoreError> {
        match fs::remove_file(self.path_of(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every chunk file with its modification time. Files whose names are not
    /// chunk names are skipped.
    pub fn list(&self) -> Result<Vec<(ChunkName, SystemTime)>, ChunkStoreError> {
        let mut out = Vec::new();
        for fan in fs::read_dir(&self.root)? {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(fan.path())? {
                let f = f?;
                if let Ok(name) = f.file_name().to_string_lossy().parse::<ChunkName>() {
                    let modified = f.metadata()?.modified()?;
                    out.push((name, modified));
                }
            }
        }
        Ok(out)
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_once_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let bytes = b"sealed chunk".to_vec();
        let name = ChunkName::from_digest(crate::crypto::sha256(&bytes));
        assert_eq!(store.put(&name, &bytes).unwrap(), Put::Written);
        assert_eq!(store.put(&name, &bytes).unwrap(), Put::AlreadyPresent);
        assert_eq!(store.get(&name).unwrap(), bytes);
        // bytes that do not hash to the name are refused
        assert!(matches!(store.put(&name, b"other"), Err(ChunkStoreError::HashMismatch(_))));
        // a chunk altered on disk is detected on read, and replaced by a put of the intact bytes
        std::fs::write(store.path_of(&name), b"altered").unwrap();
        assert!(matches!(store.get(&name), Err(ChunkStoreError::HashMismatch(_))));
        assert_eq!(store.put(&name, &bytes).unwrap(), Put::Written);
        assert_eq!(store.get(&name).unwrap(), bytes);
        store.remove(&name).unwrap();
        assert!(matches!(store.get(&name), Err(ChunkStoreError::Missing(_))));
        assert_eq!(store.list().unwrap().len(), 0);
    }

    #[test]
    fn stale_temporaries_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ab")).unwrap();
        std::fs::write(dir.path().join("ab/.x.tmp"), b"partial").unwrap();
        ChunkStore::open(dir.path()).unwrap();
        assert!(!dir.path().join("ab/.x.tmp").exists());
    }
}
