//! The machine's own limits, measured in the same run as the vault's figures.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::crypto::{ChunkCipher, DataKey, Hasher};
use crate::evidence::aligned_copy;

/// How the crypto budget counts the work a deposit costs the cluster, per byte
/// of clip, with `nodes` nodes (F = nodes − 1 followers; the client on the
/// same machine):
/// - AES-256-GCM: the client's chunk seal, the upload's TLS (client seals,
///   leader opens), and the chunk push's TLS to each follower (leader seals,
///   the follower opens): 1 + 2 + 2·F passes (7 for 3 nodes, 11 for 5).
/// - SHA-256: the client's plaintext digest and its chunk names, the leader's
///   naming of each chunk it cuts from the stream, and each follower's check
///   of the name: 1 + 1 + 1 + F passes (5 for 3 nodes, 7 for 5).
pub fn passes_per_byte(nodes: u64) -> (f64, f64) {
    let followers = nodes.saturating_sub(1) as f64;
    (3.0 + 2.0 * followers, 3.0 + followers)
}

/// The same for a fetch, which does not depend on the cluster's size: the
/// node checks each chunk's name as it reads it (1 SHA) and seals it into
/// TLS (1 AES); the client opens the TLS (1 AES) and the chunk (1 AES) and
/// hashes the plaintext (1 SHA). 3 AES and 2 SHA passes.
pub const FETCH_PASSES: (f64, f64) = (3.0, 2.0);

/// Clip bytes per second one core carries through `passes` of AES-GCM and SHA-256.
pub fn budget(aes: f64, sha: f64, passes: (f64, f64)) -> f64 {
    1.0 / (passes.0 / aes + passes.1 / sha)
}

#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    /// One core sealing 4 MiB chunks.
    pub aes_gcm_mb_per_sec: f64,
    /// One core hashing 4 MiB buffers.
    pub sha256_mb_per_sec: f64,
    /// Clip bytes per second one core can carry through every pass of a deposit.
    pub crypto_limit_mb_per_sec: f64,
    /// ... through every pass of a fetch (`FETCH_PASSES`).
    pub fetch_crypto_limit_mb_per_sec: f64,
    /// One reader reading chunk-sized files back as a fetch does (`disk_read_rate`).
    pub disk_read_mb_per_sec: f64,
    /// The lower of the two: what a fetch is measured against.
    pub fetch_limit_mb_per_sec: f64,
    pub fetch_limited_by: &'static str,
    /// Three concurrent writers, each writing and fsyncing `disk_test_mib`:
    /// the better of the two ways below.
    pub disk_limit_mb_per_sec: f64,
    /// ... through the page cache.
    pub disk_buffered_mb_per_sec: f64,
    /// ... with direct I/O, as the chunk store writes (0 where refused).
    pub disk_direct_mb_per_sec: f64,
    pub disk_test_mib: u64,
    /// The lower of the two: what a deposit is measured against.
    pub limit_mb_per_sec: f64,
    pub limited_by: &'static str,
    /// One core's cost of each public-key operation a small record's cycle makes.
    pub ops: PublicKeyOps,
}

/// Microseconds of one core per operation, each timed over many runs of the
/// vault's own functions (ring's Ed25519; the `hpke` crate's X25519 for shares).
#[derive(Clone, Debug, Serialize)]
pub struct PublicKeyOps {
    pub ed25519_sign_us: f64,
    pub ed25519_verify_us: f64,
    /// A fetch key pair drawn (`ShareSecretKey::generate`).
    pub x25519_keygen_us: f64,
    /// A share sealed to an X25519 key (HPKE: an ephemeral key and one agreement).
    pub hpke_seal_us: f64,
    /// A share opened (HPKE: one agreement).
    pub hpke_open_us: f64,
}

/// Records one small-records cycle commits (`cluster::small_records`): the
/// request, two approvals, the grant the second one makes, the access.
pub const RECORDS_PER_CYCLE: f64 = 5.0;

impl PublicKeyOps {
    fn measure(min_time: Duration) -> anyhow::Result<PublicKeyOps> {
        use crate::crypto::shares::{self, ShareSecretKey};
        let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
            let (start, mut n) = (Instant::now(), 0u64);
            while start.elapsed() < min_time {
                f()?;
                n += 1;
            }
            Ok(start.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64)
        };
        let signer = crate::crypto::SigningKey::from_seed(&crate::crypto::random_bytes::<32>()?).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        // About the size of an access request's signing bytes.
        let message = vec![0x61u8; 400];
        let signature = signer.sign(&message);
        let public = signer.public_key();
        let holder = ShareSecretKey::generate()?;
        let envelope = shares::seal(&holder.public_key(), shares::RELEASE_INFO, b"aad", &[7u8; 33])?;
        Ok(PublicKeyOps {
            ed25519_sign_us: time(&mut || {
                std::hint::black_box(signer.sign(&message));
                Ok(())
            })?,
            ed25519_verify_us: time(&mut || {
                anyhow::ensure!(crate::crypto::verify_ed25519(&public, &message, &signature), "a signature did not verify");
                Ok(())
            })?,
            x25519_keygen_us: time(&mut || {
                std::hint::black_box(ShareSecretKey::generate()?.public_key());
                Ok(())
            })?,
            hpke_seal_us: time(&mut || {
                std::hint::black_box(shares::seal(&holder.public_key(), shares::RELEASE_INFO, b"aad", &[7u8; 33])?);
                Ok(())
            })?,
            hpke_open_us: time(&mut || {
                std::hint::black_box(holder.open(shares::RELEASE_INFO, b"aad", &envelope)?);
                Ok(())
            })?,
        })
    }

    /// CPU microseconds per small record, over all processes, that the
    /// public-key operations alone cost on `nodes` nodes, per cycle
    /// ([`RECORDS_PER_CYCLE`] records):
    /// - the client signs the request, two approvals and the access statement
    ///   (4 signatures), draws a fetch key and opens k released shares;
    /// - every node verifies those 4 signatures in apply (4·n);
    /// - each of the k holders asked opens its own share and seals it to the
    ///   fetch key (k opens, k seals), k being a majority of the nodes.
    pub fn small_record_floor_us(&self, nodes: u64) -> f64 {
        let (n, k) = (nodes as f64, crate::crypto::shares::threshold(nodes.min(255) as u8) as f64);
        let client = 4.0 * self.ed25519_sign_us + self.x25519_keygen_us + k * self.hpke_open_us;
        let cluster = 4.0 * n * self.ed25519_verify_us + k * (self.hpke_open_us + self.hpke_seal_us);
        (client + cluster) / RECORDS_PER_CYCLE
    }
}

const BUF: usize = 4 * 1024 * 1024;

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// AES-256-GCM seal rate of one core, in MB/s.
pub fn aes_rate(min_time: Duration) -> anyhow::Result<f64> {
    let key = DataKey::generate()?;
    let cipher = ChunkCipher::new(&key, b"bench", [0; 4], u64::MAX)?;
    let mut buf = vec![0u8; BUF];
    let (start, mut bytes, mut i) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < min_time {
        buf.truncate(BUF);
        cipher.seal(i, &mut buf)?;
        bytes += BUF as u64;
        i += 1;
    }
    Ok(rate(bytes, start.elapsed()))
}

/// SHA-256 rate of one core, in MB/s.
pub fn sha_rate(min_time: Duration) -> f64 {
    let buf = vec![0x5au8; BUF];
    let (start, mut bytes) = (Instant::now(), 0u64);
    while start.elapsed() < min_time {
        let mut h = Hasher::new();
        h.update(&buf);
        std::hint::black_box(h.finish());
        bytes += BUF as u64;
    }
    rate(bytes, start.elapsed())
}

/// `writers` threads (one per node) each write `mib` MiB to their own file in `dir` and fsync
/// it; the clip rate is `mib` over the time the slowest took. `None` when
/// `direct` I/O was asked for and the file system refuses it.
pub fn disk_rate(dir: &Path, mib: u64, direct: bool, writers: u64) -> anyhow::Result<Option<f64>> {
    use std::os::unix::fs::OpenOptionsExt;
    let block = pseudo_random_block(1 << 20)?;
    let paths: Vec<_> = (0..writers).map(|w| dir.join(format!("disk-test-{w}"))).collect();
    let refused = |e: &std::io::Error| direct && e.raw_os_error() == Some(nix::libc::EINVAL);
    let start = Instant::now();
    let writers: Vec<_> = paths
        .iter()
        .map(|path| {
            let (path, block) = (path.clone(), block.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create_new(true);
                if direct {
                    o.custom_flags(nix::libc::O_DIRECT);
                }
                let mut f = o.open(&path)?;
                // Direct I/O wants an aligned buffer.
                let (aligned, off) = aligned_copy(&block);
                (0..mib).try_for_each(|_| f.write_all(&aligned[off..]))?;
                f.sync_all()
            })
        })
        .collect();
    let results: Vec<std::io::Result<()>> =
        writers.into_iter().map(|w| w.join().map_err(|_| std::io::Error::other("a disk writer panicked")).and_then(|r| r)).collect();
    let elapsed = start.elapsed();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    for r in results {
        match r {
            Err(e) if refused(&e) => return Ok(None),
            r => r?,
        }
    }
    Ok(Some(rate(mib << 20, elapsed)))
}

/// One reader reading `mib` MiB back from `dir`, one chunk-sized file at a time,
/// with the chunk store's own read (`chunk_store::read_file`: direct I/O where
/// the file system allows it), after they were written and fsynced: the disk's
/// part of a fetch, which reads one node's chunks in order.
pub fn disk_read_rate(dir: &Path, mib: u64) -> anyhow::Result<f64> {
    let chunk = crate::limits::CHUNK_SIZE_BYTES;
    let block = pseudo_random_block(chunk as usize)?;
    let paths: Vec<_> = (0..(mib << 20).div_ceil(chunk)).map(|i| dir.join(format!("read-test-{i}"))).collect();
    let read = || -> anyhow::Result<f64> {
        for p in &paths {
            std::fs::write(p, &block)?;
            std::fs::File::open(p)?.sync_all()?;
        }
        let start = Instant::now();
        let mut bytes = 0;
        for p in &paths {
            bytes += crate::evidence::read_file(p)?.len() as u64;
        }
        Ok(rate(bytes, start.elapsed()))
    };
    let measured = read();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    measured
}

pub fn measure(dir: &Path, disk_mib: u64, nodes: u64) -> anyhow::Result<Limits> {
    let aes = aes_rate(Duration::from_secs(1))?;
    let sha = sha_rate(Duration::from_secs(1));
    let crypto = budget(aes, sha, passes_per_byte(nodes));
    let buffered = disk_rate(dir, disk_mib, false, nodes)?.unwrap_or(0.0);
    // A file system without direct I/O (tmpfs) refuses it: the chunk store then writes buffered too.
    let direct = disk_rate(dir, disk_mib, true, nodes)?.unwrap_or(0.0);
    let disk = buffered.max(direct);
    let (limit, by) = if crypto <= disk { (crypto, "crypto") } else { (disk, "disk") };
    let fetch_crypto = budget(aes, sha, FETCH_PASSES);
    let read = disk_read_rate(dir, disk_mib)?;
    let (fetch_limit, fetch_by) = if fetch_crypto <= read { (fetch_crypto, "crypto") } else { (read, "disk") };
    Ok(Limits {
        aes_gcm_mb_per_sec: aes,
        sha256_mb_per_sec: sha,
        crypto_limit_mb_per_sec: crypto,
        fetch_crypto_limit_mb_per_sec: fetch_crypto,
        disk_read_mb_per_sec: read,
        fetch_limit_mb_per_sec: fetch_limit,
        fetch_limited_by: fetch_by,
        disk_limit_mb_per_sec: disk,
        disk_buffered_mb_per_sec: buffered,
        disk_direct_mb_per_sec: direct,
        disk_test_mib: disk_mib,
        limit_mb_per_sec: limit,
        limited_by: by,
        ops: PublicKeyOps::measure(Duration::from_millis(300))?,
    })
}

/// Incompressible bytes, fast: zeros sealed under a fresh key.
pub fn pseudo_random_block(len: usize) -> anyhow::Result<Vec<u8>> {
    let key = DataKey::generate()?;
    let cipher = ChunkCipher::new(&key, b"bench-clip", [7; 4], 1)?;
    let mut buf = vec![0u8; len];
    cipher.seal(0, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// Writes a clip of `bytes` incompressible bytes (every MiB differs);
/// returns its SHA-256 in hex.
pub fn write_clip(path: &Path, bytes: u64) -> anyhow::Result<String> {
    let mut block = pseudo_random_block(1 << 20)?;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut h = Hasher::new();
    let (mut i, mut left) = (0u64, bytes);
    while left > 0 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        h.update(&block[..n]);
        left -= n as u64;
        i += 1;
    }
    f.flush()?;
    Ok(hex::encode(h.finish()))
}
