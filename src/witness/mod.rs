//! A witness a court or procuratorate runs outside the vault's control
//! (C2SP `tlog-witness` and `tlog-cosignature`, Ed25519): it cosigns a
//! checkpoint only if the log's own keys signed it and it extends the last
//! checkpoint this witness cosigned for that log, so a vault that showed two
//! different histories would need the witness to sign both (it will not).
//!
//! This module holds the decision and the files; `api/witness.rs` serves it
//! over HTTP and the CLI starts it. It must not know axum, Raft, RocksDB or
//! the vault's state: it sees only what a log sends it. The clock is read by
//! the caller and handed in.
//!
//! Which signatures make a checkpoint acceptable: a strict majority of the
//! keys its `logs` file lists for the origin and that are valid at the
//! checkpoint's size (`from=`/`until=`), exactly the rule `custody verify`
//! applies (docs/AUDIT_FORMATS.md, "Verifier keys"). One node's key alone is
//! not enough: a single compromised node must not be able to obtain a
//! cosignature for a history the cluster never agreed on.

pub mod state;

pub use custody_verify::cosignature;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

pub use cosignature::{
    check_witnesses, cosigned_message, cosigner_key_id, parse_witness_keys, verify_cosignature, verify_cosignatures, Cosignature, CosignatureError,
    Cosigner, CosignerKey,
};
pub use state::{LogConfig, LogState, StateError, StateFile};

use crate::audit::bundle::verify_checkpoint;
use crate::audit::{empty_root, verify_consistency, Checkpoint, Hash, Note};

/// Largest `add-checkpoint` body: an old-size line, at most 63 proof lines of
/// 45 bytes and a signed note (`limits::MAX_NOTE_BYTES`), with room to spare.
pub const MAX_REQUEST_BYTES: usize = crate::limits::MAX_NOTE_BYTES + 8 * 1024;
/// Most consistency proof lines a request may carry (tlog-witness: "MUST NOT send more than 63").
pub const MAX_PROOF_LINES: usize = 63;
/// The `Content-Type` of a 409 answer's body (tlog-witness).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Why a witness refuses a checkpoint; each maps to the HTTP status
/// tlog-witness prescribes (`api/witness.rs`). A refusal changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// 400: the body is not `old N`, proof lines, a blank line and a
    /// checkpoint note, or the old size is above the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the checkpoint's origin is not in the witness's `logs` file.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 403: not signed by a majority of the log's keys valid at its size, or
    /// a signature line of a known key does not verify.
    #[error("checkpoint not accepted: {0}")]
    Unauthenticated(String),
    /// 409: `old` is not the size this witness last cosigned; the body
    /// carries that size.
    #[error("old size {old} is not {known}, the size of the latest checkpoint this witness cosigned")]
    Conflict {
        /// The client's old size.
        old: u64,
        /// The witness's recorded size for the origin.
        known: u64,
    },
    /// 422: the checkpoint does not extend the one the witness cosigned
    /// (proof does not verify, same size with another root, a size-zero tree
    /// with a root other than the empty tree's).
    #[error("checkpoint is not consistent with the latest one cosigned: {0}")]
    Inconsistent(String),
    /// 500: the new state could not be made durable; nothing was cosigned.
    #[error("cannot persist the witness state: {0}")]
    Storage(#[from] StateError),
    /// 500: no cosignature could be made (the clock read zero, say).
    #[error("cannot cosign: {0}")]
    Cosign(#[from] CosignatureError),
}

/// An `add-checkpoint` body, parsed and shape-checked; nothing verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddRequest {
    /// The size of the previous checkpoint the client believes the witness holds.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub note: String,
    /// The note's signed text (what the witness cosigns).
    pub text: String,
    /// Its parsed body.
    pub checkpoint: Checkpoint,
}

fn bad(detail: impl Into<String>) -> AddError {
    AddError::BadRequest(detail.into())
}

/// Decimal without sign or leading zeros (`0` alone is zero).
fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Parses an `add-checkpoint` body (tlog-witness): `old <size>\n`, zero to 63
/// lines each one base64 hash, an empty line, then a signed checkpoint note.
pub fn parse_request(body: &[u8]) -> Result<AddRequest, AddError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(bad(format!("body longer than {MAX_REQUEST_BYTES} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("body is not UTF-8"))?;
    let (first, mut rest) = text.split_once('\n').ok_or_else(|| bad("no `old <size>` line"))?;
    let old_size = first.strip_prefix("old ").and_then(parse_size).ok_or_else(|| bad("first line is not `old <decimal size>`"))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest.split_once('\n').ok_or_else(|| bad("no empty line before the checkpoint"))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad(format!("more than {MAX_PROOF_LINES} consistency proof lines")));
        }
        let bytes = BASE64.decode(line).map_err(|_| bad("a consistency proof line is not base64"))?;
        let hash: Hash = bytes.try_into().map_err(|_| bad("a consistency proof line is not a 32-byte hash"))?;
        proof.push(hash);
    }
    let note = Note::parse(rest).map_err(|e| bad(format!("checkpoint: {e}")))?;
    let checkpoint = Checkpoint::parse(&note.text).map_err(|e| bad(format!("checkpoint: {e}")))?;
    Ok(AddRequest { old_size, proof, note: rest.to_owned(), text: note.text, checkpoint })
}

/// A running witness: its key, the logs it accepts, and the state it has
/// cosigned, kept in memory and on disk (the disk first).
pub struct Witness {
    cosigner: Cosigner,
    logs: BTreeMap<String, LogConfig>,
    dir: PathBuf,
    /// One lock around check, persist and update: two requests can never both
    /// pass the `old` check against the same size, so none rolls the other back
    /// (the race tlog-witness describes).
    state: Mutex<StateFile>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Witness({:?}, {} logs, {})", self.cosigner, self.logs.len(), self.dir.display())
    }
}

impl Witness {
    /// Opens a witness: the key file, `<dir>/logs` and `<dir>/state.json`
    /// (which must exist: `witness init` makes it).
    pub fn open(key_file: &Path, dir: &Path) -> Result<Self, StateError> {
        let signer = state::load_key(key_file)?;
        let cosigner = Cosigner::new(signer).map_err(|e| StateError::BadKey { path: key_file.to_path_buf(), detail: e.to_string() })?;
        let logs = state::load_logs(dir)?;
        let st = state::load_state(dir)?;
        Ok(Self { cosigner, logs, dir: dir.to_path_buf(), state: Mutex::new(st) })
    }

    /// The witness's verifier key.
    pub fn key(&self) -> &CosignerKey {
        self.cosigner.key()
    }

    /// The origins it accepts.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateFile> {
        // A panic while the lock was held happened before the in-memory state
        // was replaced (it is replaced only after the file was written), so
        // what the poisoned lock holds is still what is on disk.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the witness last cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<LogState> {
        self.lock().logs.get(origin).cloned()
    }

    /// The checkpoint note last cosigned for the log whose origin hashes
    /// (SHA-256, lowercase hex) to `origin_hash`, with the witness's
    /// cosignature line appended (tlog-witness's monitoring GET).
    pub fn checkpoint_by_origin_hash(&self, origin_hash: &str) -> Option<String> {
        let st = self.lock();
        st.logs
            .iter()
            .find(|(o, _)| hex::encode(crate::crypto::sha256(o.as_bytes())) == origin_hash)
            .map(|(_, l)| format!("{}{}", l.checkpoint, l.cosignature))
    }

    /// tlog-witness `add-checkpoint`: checks the request and, if every check
    /// passes, records the new checkpoint durably and returns the
    /// cosignature line (with its newline). `now_secs` is the POSIX time the
    /// cosignature states. Any refusal leaves the state as it was.
    pub fn add_checkpoint(&self, body: &[u8], now_secs: u64) -> Result<String, AddError> {
        let req = parse_request(body)?;
        let cp = &req.checkpoint;
        let log = self.logs.get(&cp.origin).ok_or_else(|| AddError::UnknownOrigin(cp.origin.clone()))?;
        // A strict majority of the keys valid at this size, every line of a
        // known key valid (the same rule as `custody verify`).
        verify_checkpoint(&req.note, &log.keys).map_err(AddError::Unauthenticated)?;
        if req.old_size > cp.size {
            return Err(bad(format!("old size {} is above the checkpoint's size {}", req.old_size, cp.size)));
        }
        let mut st = self.lock();
        let (known_size, known_root) = match st.logs.get(&cp.origin) {
            Some(l) => (l.size, l.root_hash().map_err(|e| AddError::Storage(StateError::BadState { path: self.dir.clone(), detail: e }))?),
            None => (0, empty_root()),
        };
        if req.old_size != known_size {
            return Err(AddError::Conflict { old: req.old_size, known: known_size });
        }
        if cp.size == 0 && cp.root != empty_root() {
            return Err(AddError::Inconsistent("a tree of size 0 must have the empty tree's root".into()));
        }
        // From the size and root this witness recorded (never the client's
        // claim of them) to the new checkpoint: the new tree must contain the
        // old one, so the witness never cosigns a rollback or a fork. Equal
        // sizes need equal roots and an empty proof; from 0, an empty proof.
        verify_consistency(known_size, cp.size, &known_root, &cp.root, &req.proof)
            .map_err(|e| AddError::Inconsistent(format!("from the cosigned tree of size {known_size} to size {}: {e}", cp.size)))?;
        // Exactly the text the log signed, extension lines included.
        let cosig = self.cosigner.cosign(&req.text, now_secs)?;
        let line = cosig.to_line();
        let mut next = st.clone();
        next.logs.insert(
            cp.origin.clone(),
            LogState { size: cp.size, root: BASE64.encode(cp.root), checkpoint: req.note.clone(), cosignature: line.clone() },
        );
        // The new size is on disk before anyone sees the cosignature
        // (tlog-witness: "MUST persist the new checkpoint before responding").
        state::save_state(&self.dir, &next)?;
        *st = next;
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{sign_note, MemStore, Signer};

    struct Log {
        tree: MemStore,
        nodes: Vec<Signer>,
    }

    impl Log {
        fn new() -> Self {
            Log { tree: MemStore::new(), nodes: (1..=3).map(|i| Signer::from_seed(&format!("custody-c1-node{i}"), &[i; 32]).unwrap()).collect() }
        }
        fn grow(&mut self, n: u64) {
            for _ in 0..n {
                let i = self.tree.size();
                self.tree.append(&crate::audit::leaf_hash(&i.to_be_bytes())).unwrap();
            }
        }
        fn checkpoint(&self, signers: &[usize]) -> String {
            let cp = Checkpoint { origin: "custody.vault/c1".into(), size: self.tree.size(), root: self.tree.root().unwrap(), extensions: vec![] };
            let s: Vec<&Signer> = signers.iter().map(|i| &self.nodes[*i]).collect();
            sign_note(&cp.to_text().unwrap(), &s).unwrap()
        }
        fn body(&self, old: u64, signers: &[usize]) -> Vec<u8> {
            let proof = crate::audit::consistency_proof(&self.tree, old, self.tree.size()).unwrap();
            body(old, &proof, &self.checkpoint(signers))
        }
    }

    fn body(old: u64, proof: &[Hash], note: &str) -> Vec<u8> {
        let mut b = format!("old {old}\n");
        for h in proof {
            b.push_str(&BASE64.encode(h));
            b.push('\n');
        }
        b.push('\n');
        b.push_str(note);
        b.into_bytes()
    }

    fn witness(log: &Log) -> (tempfile::TempDir, Witness) {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("w.key");
        state::write_key(&key, &state::private_key_text("witness.test/w1", &[42; 32]).unwrap()).unwrap();
        let dir = d.path().join("state");
        state::init_dir(&dir).unwrap();
        let mut logs = "origin custody.vault/c1\n".to_owned();
        for n in &log.nodes {
            logs.push_str(&format!("{}\n", n.verifier_key()));
        }
        std::fs::write(dir.join("logs"), logs).unwrap();
        let w = Witness::open(&key, &dir).unwrap();
        (d, w)
    }

    #[test]
    fn request_parsing_follows_the_spec() {
        let log = Log::new();
        let note = log.checkpoint(&[0, 1]);
        let r = parse_request(&body(0, &[], &note)).unwrap();
        assert_eq!((r.old_size, r.proof.len(), r.note.as_str()), (0, 0, note.as_str()));
        let h = [[1u8; 32], [2u8; 32]];
        assert_eq!(parse_request(&body(7, &h, &note)).unwrap().proof, h.to_vec());
        let ok = String::from_utf8(body(0, &[], &note)).unwrap();
        for badb in [
            ok.replacen("old 0", "old 00", 1),
            ok.replacen("old 0", "old -1", 1),
            ok.replacen("old 0", "old  0", 1),
            ok.replacen("old 0", "new 0", 1),
            ok.replacen("old 0\n\n", "old 0\n", 1),
            ok.replacen("old 0\n", &format!("old 0\n{}\n", BASE64.encode([0u8; 31])), 1),
            ok.replacen("old 0\n", "old 0\nnot base64!\n", 1),
            format!("old 0\n\n{}", note.replace('\u{2014}', "-")),
            "old 0".to_owned(),
        ] {
            assert!(matches!(parse_request(badb.as_bytes()), Err(AddError::BadRequest(_))), "{badb:?}");
        }
        let many: Vec<Hash> = vec![[3; 32]; MAX_PROOF_LINES + 1];
        assert!(parse_request(&body(1, &many, &note)).is_err());
        assert!(parse_request(&body(1, &many[..MAX_PROOF_LINES], &note)).is_ok());
        assert!(parse_request(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn cosigns_in_sequence_and_refuses_forks_rollbacks_and_wrong_sizes() {
        let mut log = Log::new();
        log.grow(5);
        let (_d, w) = witness(&log);
        let t = 1_800_000_000;
        let line = w.add_checkpoint(&log.body(0, &[0, 1]), t).unwrap();
        assert_eq!(verify_cosignature(&log.checkpoint(&[0, 1]), &line, w.key()).unwrap(), t);
        assert_eq!(w.latest("custody.vault/c1").unwrap().size, 5);

        log.grow(6);
        // Old size not the recorded one: 409 with the known size.
        assert!(matches!(w.add_checkpoint(&log.body(0, &[0, 1, 2]), t), Err(AddError::Conflict { old: 0, known: 5 })));
        assert!(matches!(w.add_checkpoint(&log.body(4, &[0, 1, 2]), t), Err(AddError::Conflict { old: 4, known: 5 })));
        // One node's signature is not a majority: 403.
        assert!(matches!(w.add_checkpoint(&log.body(5, &[2]), t), Err(AddError::Unauthenticated(_))));
        // Unknown origin: 404.
        let other = sign_note("custody.vault/c2\n11\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", &[&log.nodes[0], &log.nodes[1]]).unwrap();
        assert!(matches!(w.add_checkpoint(&body(5, &[], &other), t), Err(AddError::UnknownOrigin(_))));
        // Old above the checkpoint's size: 400.
        let note = log.checkpoint(&[0, 1]);
        assert!(matches!(w.add_checkpoint(&body(12, &[], &note), t), Err(AddError::BadRequest(_))));
        // A wrong proof: 422.
        let mut proof = crate::audit::consistency_proof(&log.tree, 5, 11).unwrap();
        proof[0][0] ^= 1;
        assert!(matches!(w.add_checkpoint(&body(5, &proof, &note), t), Err(AddError::Inconsistent(_))));
        // A fork: another tree of a larger size, validly signed, with its own proof from 5.
        let mut fork = Log::new();
        fork.grow(4);
        fork.tree.append(&[9; 32]).unwrap();
        fork.grow(6);
        assert!(matches!(w.add_checkpoint(&fork.body(5, &[0, 1, 2]), t), Err(AddError::Inconsistent(_))));
        // Same size, other root: 422.
        let mut same = Log::new();
        same.grow(4);
        same.tree.append(&[8; 32]).unwrap();
        assert!(matches!(w.add_checkpoint(&same.body(5, &[0, 1]), t), Err(AddError::Inconsistent(_))));
        // Nothing refused changed the state, in memory or on disk.
        assert_eq!(w.latest("custody.vault/c1").unwrap().size, 5);
        assert_eq!(state::load_state(&w.dir).unwrap().logs["custody.vault/c1"].size, 5);

        // The true extension is cosigned, and the same checkpoint again too.
        let line = w.add_checkpoint(&log.body(5, &[1, 2]), t + 1).unwrap();
        assert_eq!(verify_cosignature(&log.checkpoint(&[0]), &line, w.key()).unwrap(), t + 1);
        assert!(w.add_checkpoint(&log.body(11, &[0, 2]), t + 2).is_ok());
        let reopened = state::load_state(&w.dir).unwrap();
        assert_eq!(reopened.logs["custody.vault/c1"].size, 11);
        // The monitoring view carries the log's signatures and the cosignature.
        let h = hex::encode(crate::crypto::sha256(b"custody.vault/c1"));
        let seen = w.checkpoint_by_origin_hash(&h).unwrap();
        assert_eq!(verify_cosignatures(&seen, &[w.key().clone()]).unwrap().len(), 1);
        assert!(w.checkpoint_by_origin_hash(&"0".repeat(64)).is_none());
    }

    #[test]
    fn witness_keys_and_the_minimum_count() {
        let a = Cosigner::new(Signer::from_seed("w.test/a", &[1; 32]).unwrap()).unwrap();
        let b = Cosigner::new(Signer::from_seed("w.test/b", &[2; 32]).unwrap()).unwrap();
        let keys = parse_witness_keys(&format!("# court's witnesses\n{}\n\n{}\n", a.key(), b.key())).unwrap();
        assert_eq!(keys.len(), 2);
        // A key listed twice counts once; one key under two names is refused.
        assert_eq!(parse_witness_keys(&format!("{}\n{}\n", a.key(), a.key())).unwrap().len(), 1);
        let alias = CosignerKey::from_public_key("w.test/alias", *a.key().public_key()).unwrap();
        assert!(parse_witness_keys(&format!("{}\n{alias}\n", a.key())).is_err());
        assert!(parse_witness_keys("").is_err());
        assert!(parse_witness_keys("junk").is_err());
        let log = Signer::from_seed("log", &[3; 32]).unwrap();
        let text = "custody.vault/c1\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let note = sign_note(text, &[&log]).unwrap();
        let one = format!("{note}{}", a.cosign(text, 9).unwrap().to_line());
        assert_eq!(check_witnesses(&one, &keys, 1).unwrap(), ["w.test/a".to_owned()]);
        assert!(check_witnesses(&one, &keys, 2).is_err());
        // The same witness twice still counts once.
        let twice = format!("{one}{}", a.cosign(text, 10).unwrap().to_line());
        assert!(check_witnesses(&twice, &keys, 2).is_err());
        let both = format!("{one}{}", b.cosign(text, 9).unwrap().to_line());
        assert_eq!(check_witnesses(&both, &keys, 2).unwrap().len(), 2);
        // A line under a trusted witness's name but another key id is an unknown key: ignored
        // (C2SP signed-note), and the other witness still counts.
        let mut stranger = a.cosign(text, 9).unwrap();
        stranger.key_id[0] ^= 1;
        let mixed = format!("{note}{}{}", stranger.to_line(), b.cosign(text, 9).unwrap().to_line());
        assert_eq!(check_witnesses(&mixed, &keys, 1).unwrap(), ["w.test/b".to_owned()]);
        // A trusted witness's line over another text fails the check outright.
        let bad = format!("{note}{}", a.cosign("custody.vault/c1\n4\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 9).unwrap().to_line());
        assert!(check_witnesses(&bad, &keys, 0).is_err());
    }

    #[test]
    fn an_empty_tree_needs_the_empty_root_and_no_proof() {
        let log = Log::new();
        let (_d, w) = witness(&log);
        let bad0 = sign_note(&format!("custody.vault/c1\n0\n{}\n", BASE64.encode([1u8; 32])), &[&log.nodes[0], &log.nodes[1]]).unwrap();
        assert!(matches!(w.add_checkpoint(&body(0, &[], &bad0), 1), Err(AddError::Inconsistent(_))));
        assert!(w.add_checkpoint(&log.body(0, &[0, 1]), 1).is_ok());
        let mut log = log;
        log.grow(3);
        assert!(matches!(w.add_checkpoint(&body(0, &[[0; 32]], &log.checkpoint(&[0, 1])), 1), Err(AddError::Inconsistent(_))));
        assert!(w.add_checkpoint(&log.body(0, &[0, 1]), 1).is_ok());
        // A zero clock cosigns nothing and records nothing.
        log.grow(1);
        assert!(matches!(w.add_checkpoint(&log.body(3, &[0, 1]), 0), Err(AddError::Cosign(_))));
        assert_eq!(w.latest("custody.vault/c1").unwrap().size, 3);
    }
}
