//! `custody-verify` and `custody verify`: the files a court holds in, the
//! verdict and every check it rests on out. The only I/O of the crate.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::bundle::{self, Check, TrustedKey, VerifyReport};

/// The command line both binaries take.
#[derive(clap::Args, Clone, Debug)]
pub struct VerifyArgs {
    /// The proof bundle (`custody proof --out FILE`).
    #[arg(required_unless_present = "page")]
    pub bundle: Option<PathBuf>,
    /// The clip to check against the deposited SHA-256.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The node verifier keys you trust (from `custody cluster keys`).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Witness verifier keys you trust, one per line (from `custody witness init`).
    #[arg(long)]
    pub witness_keys: Option<PathBuf>,
    /// How many of those witnesses must have cosigned the bundle's checkpoint.
    #[arg(long, default_value_t = 0, requires = "witness_keys")]
    pub min_witnesses: usize,
    /// The certificate (PEM or DER) of the time-stamping authority you trust:
    /// the bundle's RFC 3161 token must verify under it.
    #[arg(long)]
    pub tsa_cert: Option<PathBuf>,
    /// Print the court's page instead: one self-contained HTML file that runs
    /// these checks in a browser, offline (`> verify.html`).
    #[arg(long, conflicts_with_all = ["bundle", "file", "keys", "witness_keys", "tsa_cert"])]
    pub page: bool,
}

/// A file could not be read, or is not what its flag asks for: a usage error
/// (exit status 2), not a verdict on the bundle.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(path: &Path, e: impl std::fmt::Display) -> UsageError {
    UsageError(format!("{}: {e}", path.display()))
}

/// Reads a keys file (docs/AUDIT_FORMATS.md, "Verifier keys").
pub fn read_keys(path: &Path) -> Result<Vec<TrustedKey>, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| usage(path, e))?;
    bundle::parse_keys(&text).map_err(|e| usage(path, e))
}

/// Hex SHA-256 of a file, read in 1 MiB pieces (a clip may be many GB).
pub fn file_sha256(path: &Path) -> Result<String, UsageError> {
    let mut f = std::fs::File::open(path).map_err(|e| usage(path, e))?;
    let mut h = crate::crypto::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| usage(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finish()))
}

/// Runs every check on the files `a` names. `Ok` carries the verdict, valid
/// or not; `Err` means the inputs could not be read.
pub fn verify(a: &VerifyArgs) -> Result<VerifyReport, UsageError> {
    let keys_path = a
        .keys
        .as_deref()
        .ok_or_else(|| UsageError("--keys FILE is required: the node verifier keys you trust (from `custody cluster keys`)".into()))?;
    let keys = read_keys(keys_path)?;
    let bundle_path = a.bundle.as_deref().ok_or_else(|| UsageError("BUNDLE is required: the proof bundle (`custody proof --out FILE`)".into()))?;
    let bytes = std::fs::read(bundle_path).map_err(|e| usage(bundle_path, e))?;
    let b = bundle::parse(&bytes).map_err(|e| usage(bundle_path, e))?;
    let clip_sha = a.file.as_deref().map(file_sha256).transpose()?;
    let tsa = match a.tsa_cert.as_deref() {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| usage(path, e))?;
            Some(crate::timestamp::TsaCertificate::parse(&bytes).map_err(|e| usage(path, e))?)
        }
        None => None,
    };
    let mut checks = bundle::verify(&b, &keys, clip_sha.as_deref());
    if let Some(path) = a.witness_keys.as_deref() {
        // Witnesses outside the vault's control (docs/AUDIT_FORMATS.md, "Witnesses"):
        // their cosignature lines travel in the checkpoint note.
        let text = std::fs::read_to_string(path).map_err(|e| usage(path, e))?;
        let wkeys = crate::cosignature::parse_witness_keys(&text).map_err(|e| usage(path, e))?;
        let min = a.min_witnesses;
        let (ok, detail) = match crate::cosignature::check_witnesses(&b.checkpoint, &wkeys, min) {
            Ok(names) => {
                (true, format!("cosigned by {} ({} needed)", if names.is_empty() { "no witness".to_string() } else { names.join(", ") }, min))
            }
            Err(e) => (false, e),
        };
        checks.push(Check { name: "witness cosignatures".into(), ok, detail });
    }
    let (timestamp_check, timestamp) = bundle::check_timestamp(&b, tsa.as_ref());
    checks.extend(timestamp_check);
    let valid = checks.iter().all(|c| c.ok);
    Ok(VerifyReport { valid, item: bundle::reported_item(&b), checks, timestamp })
}

/// The report for people: one line per check, then the verdict.
pub fn report_text(r: &VerifyReport) -> String {
    let mut out = String::new();
    for c in &r.checks {
        out.push_str(&format!("{} {}: {}\n", if c.ok { "✔" } else { "✘" }, c.name, c.detail));
    }
    out.push_str(if r.valid { "VALID: every check holds" } else { "INVALID: see the failed checks above" });
    out
}
