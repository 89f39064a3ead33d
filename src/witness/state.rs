//! A witness's files: its signing key, the logs it accepts (`logs`), and what
//! it last cosigned for each (`state.json`), written atomically.
//!
//! The state directory holds:
//! - `logs`: written by the witness's operator. `origin <origin line>` starts a
//!   log; the lines after it, up to the next `origin`, are that log's verifier
//!   keys exactly as `custody cluster keys` prints them (`<vkey> [from=N]
//!   [until=M]`). `#` starts a comment line.
//! - `state.json`: written only by the witness, see [`StateFile`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::audit::bundle::{parse_keys, TrustedKey};
use crate::audit::{Checkpoint, Hash, Note, Signer};

/// The file naming the logs a witness accepts and their keys.
pub const LOGS_FILE: &str = "logs";
/// The file holding the latest cosigned checkpoint of every log.
pub const STATE_FILE: &str = "state.json";
/// `format` of the state file.
pub const STATE_FORMAT: &str = "custody-witness-state";
/// `version` of the state file.
pub const STATE_VERSION: u32 = 1;

/// Errors reading or writing a witness's key and state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a note private key.
    #[error("{path}: not a witness key file: {detail}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The `logs` file does not parse.
    #[error("{path}:{line}: {detail}")]
    BadLogs {
        /// The logs file.
        path: PathBuf,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// `state.json` is missing, unreadable or inconsistent: the witness refuses
    /// to start rather than forget what it cosigned (it could then be made to
    /// cosign a rolled-back log).
    #[error("{path}: {detail}")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A file that must not be overwritten exists.
    #[error("{0} exists already; refusing to overwrite it")]
    Exists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

/// A log the witness accepts: its origin line and the keys that sign its checkpoints.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The checkpoint origin line.
    pub origin: String,
    /// Its verifier keys, each with the sizes it may sign.
    pub keys: Vec<TrustedKey>,
}

/// Parses the `logs` file text.
pub fn parse_logs(path: &Path, text: &str) -> Result<BTreeMap<String, LogConfig>, StateError> {
    let bad = |line: usize, detail: String| StateError::BadLogs { path: path.to_path_buf(), line, detail };
    let mut logs: BTreeMap<String, LogConfig> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(origin) = line.strip_prefix("origin ") {
            let origin = origin.trim();
            if origin.is_empty() || origin.chars().any(char::is_control) {
                return Err(bad(i + 1, "empty or invalid origin".into()));
            }
            if logs.contains_key(origin) {
                return Err(bad(i + 1, format!("origin {origin:?} is listed twice")));
            }
            logs.insert(origin.to_owned(), LogConfig { origin: origin.to_owned(), keys: Vec::new() });
            current = Some(origin.to_owned());
            continue;
        }
        let Some(log) = current.as_ref().and_then(|o| logs.get_mut(o)) else {
            return Err(bad(i + 1, "a key line before any `origin <origin>` line".into()));
        };
        let key = parse_keys(line).map_err(|e| bad(i + 1, e.to_string()))?;
        log.keys.extend(key);
    }
    if logs.is_empty() {
        return Err(bad(0, "no `origin <origin>` line: the witness would accept no log".into()));
    }
    for log in logs.values() {
        if log.keys.is_empty() {
            return Err(bad(0, format!("origin {:?} has no keys", log.origin)));
        }
    }
    Ok(logs)
}

/// Reads `<dir>/logs`.
pub fn load_logs(dir: &Path) -> Result<BTreeMap<String, LogConfig>, StateError> {
    let path = dir.join(LOGS_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    parse_logs(&path, &text)
}

/// What the witness last cosigned for one log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogState {
    /// The tree size of the latest cosigned checkpoint.
    pub size: u64,
    /// Its root hash, base64.
    pub root: String,
    /// The checkpoint note as submitted (with the log's signature lines).
    pub checkpoint: String,
    /// The cosignature line the witness returned for it, with its newline.
    pub cosignature: String,
}

impl LogState {
    /// The root hash as bytes.
    pub fn root_hash(&self) -> Result<Hash, String> {
        let b = BASE64.decode(&self.root).map_err(|e| format!("root: {e}"))?;
        b.try_into().map_err(|_| "root is not 32 bytes".to_string())
    }
}

/// `state.json`: `{"format": "custody-witness-state", "version": 1, "logs": {<origin>: LogState}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Always [`STATE_FORMAT`].
    pub format: String,
    /// Always [`STATE_VERSION`].
    pub version: u32,
    /// Per origin, the latest cosigned checkpoint.
    pub logs: BTreeMap<String, LogState>,
}

impl StateFile {
    /// A witness that has cosigned nothing yet.
    pub fn empty() -> Self {
        StateFile { format: STATE_FORMAT.into(), version: STATE_VERSION, logs: BTreeMap::new() }
    }
}

/// Reads and checks `<dir>/state.json`: each entry's checkpoint must parse and
/// name the origin, size and root it is filed under.
pub fn load_state(dir: &Path) -> Result<StateFile, StateError> {
    let path = dir.join(STATE_FILE);
    let bad = |detail: String| StateError::BadState { path: path.clone(), detail };
    let bytes =
        match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(bad(
                "missing: run `custody witness init` to make a new witness; a witness that lost its state must not cosign again under the same key"
                    .into(),
            )),
            Err(e) => return Err(io(&path)(e)),
        };
    let st: StateFile = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a witness state file: {e}")))?;
    if st.format != STATE_FORMAT || st.version != STATE_VERSION {
        return Err(bad(format!("format {:?} version {} is not {STATE_FORMAT:?} version {STATE_VERSION}", st.format, st.version)));
    }
    for (origin, log) in &st.logs {
        let root = log.root_hash().map_err(|e| bad(format!("{origin}: {e}")))?;
        let cp =
            Note::parse(&log.checkpoint).and_then(|n| Checkpoint::parse(&n.text)).map_err(|e| bad(format!("{origin}: stored checkpoint: {e}")))?;
        if cp.origin != *origin || cp.size != log.size || cp.root != root {
            return Err(bad(format!("{origin}: the stored checkpoint does not match the stored size and root")));
        }
    }
    Ok(st)
}

/// Writes `<dir>/state.json` so that a crash leaves either the old or the new
/// file, never a mix, and the new one is on disk when this returns.
pub fn save_state(dir: &Path, st: &StateFile) -> Result<(), StateError> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(st).map_err(|e| StateError::BadState { path: path.clone(), detail: e.to_string() })?;
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.write_all(b"\n").map_err(io(&tmp))?;
        // Durability point 1: the new contents are on disk before the rename
        // can make them the state (a rename of unsynced data can surface as an
        // empty file after a crash).
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    // Durability point 2: the rename itself is on disk. Only after this may the
    // witness hand out a cosignature: the spec requires the new size to be
    // persisted first, or a crash would let it cosign an older tree again.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

/// Reads a witness key file: one line, the note private key form
/// `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ 32-byte seed)>`.
pub fn load_key(path: &Path) -> Result<Signer, StateError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Signer::from_private_key_text(text.trim()).map_err(|e| StateError::BadKey { path: path.to_path_buf(), detail: e.to_string() })
}

/// The private key text of `name` with `seed`.
pub fn private_key_text(name: &str, seed: &[u8; 32]) -> Result<String, crate::audit::NoteError> {
    let signer = Signer::from_seed(name, seed)?;
    let mut key = Vec::with_capacity(33);
    key.push(crate::audit::note::ALG_ED25519);
    key.extend_from_slice(seed);
    Ok(format!("PRIVATE+KEY+{name}+{}+{}", hex::encode(signer.key_id()), BASE64.encode(key)))
}

/// Writes a new key file (mode 0600, never over an existing file).
pub fn write_key(path: &Path, text: &str) -> Result<(), StateError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            StateError::Exists(path.to_path_buf())
        } else {
            io(path)(e)
        }
    })?;
    f.write_all(text.as_bytes()).and_then(|_| f.write_all(b"\n")).and_then(|_| f.sync_all()).map_err(io(path))
}

/// Makes a new state directory: an empty `state.json` and, unless one is
/// there, a `logs` file that explains itself. Refuses an existing state file.
pub fn init_dir(dir: &Path) -> Result<(), StateError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let state = dir.join(STATE_FILE);
    if state.exists() {
        return Err(StateError::Exists(state));
    }
    let logs = dir.join(LOGS_FILE);
    if !logs.exists() {
        let template = "# The logs this witness cosigns. For each: `origin <origin line>` (the first line of\n\
                        # the log's checkpoints), then its verifier keys, one per line, as `custody cluster keys`\n\
                        # prints them. A checkpoint is cosigned only if a majority of the keys valid at its size signed it.\n";
        std::fs::write(&logs, template).map_err(io(&logs))?;
    }
    save_state(dir, &StateFile::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vkey(name: &str, n: u8) -> String {
        Signer::from_seed(name, &[n; 32]).unwrap().verifier_key().to_string()
    }

    #[test]
    fn logs_file_parses_and_refuses_what_it_cannot_mean() {
        let p = Path::new("logs");
        let text =
            format!("# court copy\norigin custody.vault/c1\n{} from=3\n{}\n\n{} from=3 until=9\n", vkey("n1", 1), vkey("n2", 2), vkey("n3", 3));
        let logs = parse_logs(p, &text).unwrap();
        let l = &logs["custody.vault/c1"];
        assert_eq!(l.keys.len(), 3);
        assert_eq!((l.keys[0].from_size, l.keys[2].until_size), (3, Some(9)));
        for bad in [
            String::new(),
            format!("{}\n", vkey("n1", 1)),
            "origin a\n".to_owned(),
            format!("origin a\n{}\norigin a\n{}\n", vkey("n1", 1), vkey("n2", 2)),
            format!("origin a\n{} from=x\n", vkey("n1", 1)),
            "origin a\nnot-a-key\n".to_owned(),
        ] {
            assert!(parse_logs(p, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_round_trips_and_a_missing_or_altered_state_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(load_state(d.path()), Err(StateError::BadState { .. })), "no state is an error, not an empty state");
        init_dir(d.path()).unwrap();
        assert!(init_dir(d.path()).is_err(), "init twice");
        assert_eq!(load_state(d.path()).unwrap(), StateFile::empty());
        let s = Signer::from_seed("n1", &[1; 32]).unwrap();
        let cp = Checkpoint { origin: "o".into(), size: 5, root: [7; 32], extensions: vec![] };
        let note = crate::audit::sign_note(&cp.to_text().unwrap(), &[&s]).unwrap();
        let mut st = StateFile::empty();
        st.logs.insert("o".into(), LogState { size: 5, root: BASE64.encode([7u8; 32]), checkpoint: note, cosignature: "\u{2014} w AAAA\n".into() });
        save_state(d.path(), &st).unwrap();
        assert_eq!(load_state(d.path()).unwrap(), st);
        assert!(!d.path().join("state.json.tmp").exists());
        // A size that is not the stored checkpoint's is refused at load.
        let mut wrong = st.clone();
        wrong.logs.get_mut("o").unwrap().size = 6;
        save_state(d.path(), &wrong).unwrap();
        assert!(load_state(d.path()).is_err());
        std::fs::write(d.path().join(STATE_FILE), b"{").unwrap();
        assert!(load_state(d.path()).is_err());
    }

    #[test]
    fn key_file_round_trips_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.key");
        let text = private_key_text("witness.court.example/w1", &[4; 32]).unwrap();
        write_key(&p, &text).unwrap();
        assert!(matches!(write_key(&p, &text), Err(StateError::Exists(_))));
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let s = load_key(&p).unwrap();
        assert_eq!(s.verifier_key(), Signer::from_seed("witness.court.example/w1", &[4; 32]).unwrap().verifier_key());
        std::fs::write(&p, "junk").unwrap();
        assert!(load_key(&p).is_err());
    }
}
