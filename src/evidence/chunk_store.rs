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

/// Alignment direct I/O asks of buffer address, length and file offset
/// (4 KiB serves disks of 512-byte and of 4 KiB sectors alike).
pub const DIRECT_IO_ALIGN: usize = 4096;

/// Writes `bytes` to the new file `path` and fsyncs it.
///
/// The block-aligned bulk goes with `O_DIRECT`, past the page cache: on the
/// project's machine copying into the page cache cost 1.8 s of CPU per GiB
/// against 0.25 s direct, and a deposit writes every byte on three nodes
/// (`custody bench`). The few bytes past the last whole block, and any file
/// system without direct I/O (tmpfs), go the ordinary way. One fsync covers
/// the file whichever way its bytes went.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let bulk = bytes.len() / DIRECT_IO_ALIGN * DIRECT_IO_ALIGN;
    if bulk > 0 {
        match OpenOptions::new().write(true).create_new(true).custom_flags(nix::libc::O_DIRECT).open(path) {
            Ok(mut direct) => {
                // Bytes that start aligned (an `AlignedBuf`'s) go as they are.
                let copy = (bytes.as_ptr().align_offset(DIRECT_IO_ALIGN) != 0).then(|| aligned_copy(&bytes[..bulk]));
                let aligned = copy.as_ref().map_or(&bytes[..bulk], |(v, off)| &v[*off..]);
                match direct.write_all(aligned) {
                    Ok(()) => {
                        let f = OpenOptions::new().write(true).open(path)?;
                        f.write_all_at(&bytes[bulk..], bulk as u64)?;
                        return f.sync_all();
                    }
                    // Opened, but the file system will not write direct after all.
                    Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                        drop(direct);
                        fs::remove_file(path)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The whole file at `path`, read like [`write_new_file`] writes: with `O_DIRECT`,
/// past the page cache, into an [`AlignedBuf`]. A chunk is read once per fetch,
/// scrub or heal; buffered, on the project's machine the page cache both halved
/// the rate (`custody bench`: `disk_buffered_mb_per_sec` against
/// `disk_direct_mb_per_sec`) and cost a copy. A file system without direct I/O
/// is read the ordinary way.
pub fn read_file(path: &Path) -> io::Result<bytes::Bytes> {
    use std::os::unix::fs::OpenOptionsExt;
    let buffered = || fs::read(path).map(bytes::Bytes::from);
    let mut f = match OpenOptions::new().read(true).custom_flags(nix::libc::O_DIRECT).open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => return buffered(),
        Err(e) => return Err(e),
    };
    let len = usize::try_from(f.metadata()?.len()).map_err(io::Error::other)?;
    // Whole blocks into an aligned buffer: the read stops at the end of the file.
    let padded = len.div_ceil(DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
    let mut buf = AlignedBuf::with_capacity(padded);
    let off = buf.off;
    buf.v.resize(off + padded, 0);
    let mut done = 0;
    while done < padded {
        match f.read(&mut buf.v[off + done..]) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                // Less than whole blocks: the end of the file (asking again would ask
                // at an offset direct I/O may refuse).
                if done % DIRECT_IO_ALIGN != 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Opened, but the file system will not read direct after all.
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => return buffered(),
            Err(e) => return Err(e),
        }
    }
    buf.v.truncate(off + done);
    Ok(buf.into_bytes())
}

/// A copy of `bytes` that starts at `off`, an address direct I/O accepts.
pub fn aligned_copy(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut v: Vec<u8> = Vec::with_capacity(bytes.len() + DIRECT_IO_ALIGN);
    let off = v.as_ptr().align_offset(DIRECT_IO_ALIGN);
    v.resize(off, 0);
    v.extend_from_slice(bytes);
    (v, off)
}

/// Bytes gathered from the start of an address direct I/O accepts, so that
/// [`write_new_file`] writes them as they are: a chunk received into one is
/// written without the copy into an aligned buffer.
///
/// Chunk-sized buffers are kept for the next chunk once their bytes are dropped
/// (up to [`POOL_BYTES`]): a node moves every chunk of a deposit or a fetch
/// through such a buffer, and memory freed and allocated again at that rate
/// stayed resident in the allocator (`custody bench`'s peak RSS of a node) or,
/// returned at once, cost a page fault per 4 KiB on its next use.
pub struct AlignedBuf {
    v: Vec<u8>,
    off: usize,
}

/// Buffers smaller than this are not kept (the smallest chunk size).
const POOLED_MIN_BYTES: usize = crate::limits::MIN_CHUNK_SIZE_BYTES as usize;
/// The most memory the kept buffers hold between them.
pub const POOL_BYTES: usize = 16 << 20;
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

impl AlignedBuf {
    /// Room for `capacity` bytes without reallocating (which would lose the alignment,
    /// costing only the copy later): a kept buffer if one is big enough.
    pub fn with_capacity(capacity: usize) -> Self {
        let want = capacity + DIRECT_IO_ALIGN;
        let kept = if want >= POOLED_MIN_BYTES {
            let mut p = pool();
            p.iter().position(|v| v.capacity() >= want).map(|i| p.swap_remove(i))
        } else {
            None
        };
        let mut v = kept.unwrap_or_else(|| Vec::with_capacity(want));
        v.clear();
        let off = v.as_ptr().align_offset(DIRECT_IO_ALIGN);
        v.resize(off, 0);
        AlignedBuf { v, off }
    }
    pub fn len(&self) -> usize {
        self.v.len() - self.off
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.v.extend_from_slice(bytes);
    }
    /// The bytes, without a copy; the buffer is kept for reuse when the last clone drops.
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        &self.v[self.off..]
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.v.capacity() < POOLED_MIN_BYTES {
            return;
        }
        let v = std::mem::take(&mut self.v);
        let mut p = pool();
        if p.iter().map(Vec::capacity).sum::<usize>() + v.capacity() <= POOL_BYTES {
            p.push(v);
        }
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
        self.write(name, sealed)
    }

    /// Stores a chunk this process sealed and named from these very bytes a
    /// moment ago (the leader's own copy in a deposit): hashing them again
    /// would cost a fifth of a deposit's SHA-256 work and check nothing new.
    /// The scrubber hash-checks every stored chunk later all the same.
    pub fn put_own(&self, name: &ChunkName, sealed: &[u8]) -> Result<Put, ChunkStoreError> {
        self.write(name, sealed)
    }

    fn write(&self, name: &ChunkName, sealed: &[u8]) -> Result<Put, ChunkStoreError> {
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
            // The chunk's bytes must be on disk before the rename makes them visible under their name.
            write_new_file(&tmp, sealed)?;
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
    pub fn get(&self, name: &ChunkName) -> Result<bytes::Bytes, ChunkStoreError> {
        let buf = match read_file(&self.path_of(name)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ChunkStoreError::Missing(*name)),
            Err(e) => return Err(e.into()),
        };
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

    /// Every length, aligned or not, reads back whole, by `read_file` (direct)
    /// and by an ordinary read: the bulk written direct, the tail buffered; and
    /// where direct I/O is refused (tmpfs on older kernels) the ordinary write
    /// and read do it all.
    #[test]
    fn new_files_read_back_whole_however_they_were_written() {
        let tmpfs = Path::new("/dev/shm");
        let dirs: Vec<tempfile::TempDir> =
            std::iter::once(tempfile::tempdir().unwrap()).chain(tmpfs.is_dir().then(|| tempfile::tempdir_in(tmpfs).unwrap())).collect();
        for dir in &dirs {
            for len in [0, 17, DIRECT_IO_ALIGN, 3 * DIRECT_IO_ALIGN + 17, (1 << 20) + 16] {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
                let path = dir.path().join(format!("f{len}"));
                write_new_file(&path, &bytes).unwrap();
                assert_eq!(fs::read(&path).unwrap(), bytes, "length {len} in {}", dir.path().display());
                assert_eq!(read_file(&path).unwrap(), bytes, "length {len} read direct in {}", dir.path().display());
                // From an aligned buffer (written as it is) and from one a byte past alignment (copied first).
                let mut a = AlignedBuf::with_capacity(len);
                a.extend_from_slice(&bytes);
                let aligned = a.into_bytes();
                assert_eq!(aligned.as_ptr().align_offset(DIRECT_IO_ALIGN), 0);
                let mut u = AlignedBuf::with_capacity(len + 1);
                u.extend_from_slice(&[0xee]);
                u.extend_from_slice(&bytes);
                let unaligned = u.into_bytes().slice(1..);
                for (name, from) in [("aligned", aligned), ("unaligned", unaligned)] {
                    let p = dir.path().join(format!("f{len}-{name}"));
                    write_new_file(&p, &from).unwrap();
                    assert_eq!(read_file(&p).unwrap(), bytes, "length {len} written from an {name} buffer");
                }
                assert!(write_new_file(&path, &bytes).is_err(), "an existing file is never overwritten");
            }
        }
    }

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
