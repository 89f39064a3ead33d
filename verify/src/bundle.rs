//! The court's proof bundle (JSON, self-describing, versioned) and its
//! offline verification. Pure: the verifier needs the bundle, the verifier
//! keys the court keeps, and optionally the clip's SHA-256 — no network.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::merkle::{leaf_hash, verify_inclusion, Hash};
use super::note::{verify_checkpoint_quorum, Checkpoint, Note, VerifierKey};
use super::records::{Applied, Body, Deposit, PersonAction, Record, Registry};
use crate::timestamp::{Stamp, TsaCertificate};
use crate::trail;

/// The `format` every bundle names.
pub const BUNDLE_FORMAT: &str = "custody-proof-bundle";
/// The bundle version this code writes and reads.
pub const BUNDLE_VERSION: u32 = 3;

/// A leaf of the audit log with (for trail records) its inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafProof {
    /// Leaf index in the tree.
    pub index: u64,
    /// Base64 of the canonical leaf bytes (RFC 8785 JSON).
    pub leaf: String,
    /// Base64 hashes, RFC 9162 order (empty for `deposit`, whose proof is the bundle's `inclusion`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inclusion: Vec<String>,
}

/// What a court receives for one item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Always [`BUNDLE_VERSION`] for bundles this code reads.
    pub version: u32,
    /// The checkpoint, as signed-note text, every proof is against.
    pub checkpoint: String,
    /// The item's metadata as the vault shows it (checked against the deposit record).
    pub item: Value,
    /// The deposit record.
    pub deposit: LeafProof,
    /// Inclusion proof of the deposit record.
    pub inclusion: Vec<String>,
    /// The item's other records (requests, approvals, grants, accesses, retention changes).
    pub trail: Vec<LeafProof>,
    /// Officers' public keys and signatures for each approval.
    pub approvals: Vec<Value>,
    /// The registry records (with inclusion proofs) that gave each signer —
    /// the depositor and every request and approval signer — their key and
    /// their roles, from the genesis on (version 2).
    pub registry: Vec<LeafProof>,
    /// The item-head statement for the checkpoint (`heads`, version 3): how
    /// many records about the item its leaves hold and the last one's index,
    /// signed by a majority of the nodes, so that none can be left out.
    pub head: String,
    /// An RFC 3161 timestamp token on `checkpoint`'s text (base64 of the DER
    /// TimeStampToken), when the cluster has a TSA and it answered in time;
    /// absent otherwise (docs/AUDIT_FORMATS.md, "Trusted time").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// One named check and its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// `custody verify --json`: the verdict and every check it rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerifyReport {
    /// Every check holds.
    pub valid: bool,
    /// The item id of the bundle's deposit record (absent when its deposit leaf is not a deposit record); never read from the bundle's own `item`.
    pub item: Option<String>,
    pub checks: Vec<Check>,
    /// What the bundle's RFC 3161 token says, when it was checked against the
    /// TSA certificate given with `--tsa-cert` and held; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<crate::timestamp::Stamp>,
}

fn check(name: impl Into<String>, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check { name: name.into(), ok: true, detail },
        Err(detail) => Check { name: name.into(), ok: false, detail },
    }
}

/// Why a bundle or key file cannot be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a proof bundle: {0}")]
    Parse(String),
    #[error("unsupported bundle: {0}")]
    Unsupported(String),
    #[error("bad verifier key on line {line}: {detail}")]
    Key { line: usize, detail: String },
    #[error("the key file holds no verifier keys")]
    NoKeys,
}

/// Parses a bundle; refuses other formats and versions, and JSON that
/// names a member twice in any object ([`crate::strict`]).
pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
    let b: Bundle = crate::strict::from_slice(bytes).map_err(|e| BundleError::Parse(e.to_string()))?;
    if b.format != BUNDLE_FORMAT {
        return Err(BundleError::Unsupported(format!("format `{}`", b.format)));
    }
    if b.version != BUNDLE_VERSION {
        return Err(BundleError::Unsupported(format!("version {}", b.version)));
    }
    Ok(b)
}

/// A verifier key a court trusts, for the checkpoint sizes it may sign:
/// `from_size ≤ size`, and `size ≤ until_size` when it has one (a key of a
/// node that left or was rebound; docs/AUDIT_FORMATS.md, "Verifier keys").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: VerifierKey,
    pub from_size: u64,
    pub until_size: Option<u64>,
}

impl TrustedKey {
    /// A key trusted for every size.
    pub fn always(key: VerifierKey) -> Self {
        TrustedKey { key, from_size: 0, until_size: None }
    }

    pub fn valid_at(&self, size: u64) -> bool {
        self.from_size <= size && self.until_size.is_none_or(|u| size <= u)
    }

    /// One line of a key file: the key, then `from=N` and `until=N` when they bound it.
    pub fn to_line(&self) -> String {
        let mut line = self.key.to_string();
        if self.from_size > 0 {
            line.push_str(&format!(" from={}", self.from_size));
        }
        if let Some(u) = self.until_size {
            line.push_str(&format!(" until={u}"));
        }
        line
    }
}

/// The keys of `keys` that may sign a checkpoint of `size`, each once: a key
/// a file lists twice (the same name, key id and public key) counts once.
pub fn keys_at(keys: &[TrustedKey], size: u64) -> Vec<VerifierKey> {
    let mut out: Vec<VerifierKey> = Vec::new();
    for k in keys.iter().filter(|k| k.valid_at(size)) {
        if !out.contains(&k.key) {
            out.push(k.key.clone());
        }
    }
    out
}

/// Verifies a checkpoint note against the trusted keys valid at its size:
/// a strict majority of them must have signed it.
pub fn verify_checkpoint(note: &str, keys: &[TrustedKey]) -> Result<(Checkpoint, Vec<String>, usize), String> {
    let size = Note::parse(note).and_then(|n| Checkpoint::parse(&n.text)).map_err(|e| e.to_string())?.size;
    let valid = keys_at(keys, size);
    if valid.is_empty() {
        return Err(format!("no trusted key may sign a checkpoint of size {size}"));
    }
    let (cp, signers) = verify_checkpoint_quorum(note, &valid).map_err(|e| e.to_string())?;
    Ok((cp, signers, valid.len()))
}

/// Parses a verifier key file: one key per line, optionally followed by
/// `from=N` and `until=N` (the checkpoint sizes it may sign); blank lines and
/// `#` comments skipped. A key listed twice is kept and counted once; two
/// lines that share a public key but not a name (or a name and key id but
/// not a key) are refused.
pub fn parse_keys(text: &str) -> Result<Vec<TrustedKey>, BundleError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |detail: String| BundleError::Key { line: i + 1, detail };
        let mut words = line.split_whitespace();
        let key = VerifierKey::parse(words.next().unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
        let mut k = TrustedKey::always(key);
        for w in words {
            let number = |v: &str| v.parse::<u64>().map_err(|_| bad(format!("`{w}`: a size is a whole number")));
            match w.split_once('=') {
                Some(("from", v)) => k.from_size = number(v)?,
                Some(("until", v)) => k.until_size = Some(number(v)?),
                _ => return Err(bad(format!("`{w}` is neither from=N nor until=N"))),
            }
        }
        if k.until_size.is_some_and(|u| u < k.from_size) {
            return Err(bad("until is below from".into()));
        }
        // The same key twice counts once (keys_at); one public key under two
        // names, or one name and key id for two keys, is ambiguous: refused.
        if let Some(o) = keys.iter().find(|o: &&TrustedKey| {
            o.key != k.key && (o.key.public_key() == k.key.public_key() || (o.key.name() == k.key.name() && o.key.key_id() == k.key.key_id()))
        }) {
            return Err(bad(format!("{} and {} are one key under two names, or two keys under one name and key id", o.key, k.key)));
        }
        keys.push(k);
    }
    if keys.is_empty() {
        return Err(BundleError::NoKeys);
    }
    Ok(keys)
}

fn decode_hashes(list: &[String]) -> Result<Vec<Hash>, String> {
    list.iter()
        .enumerate()
        .map(|(i, h)| {
            let b = BASE64.decode(h).map_err(|e| format!("proof hash {i}: {e}"))?;
            b.try_into().map_err(|_| format!("proof hash {i} is not 32 bytes"))
        })
        .collect()
}

/// A leaf's bytes and the record they are; a leaf that is not exactly a
/// record's canonical encoding is an error naming its index.
pub fn decode_leaf(p: &LeafProof) -> Result<(Vec<u8>, Record), String> {
    let bytes = BASE64.decode(&p.leaf).map_err(|e| format!("leaf {}: {e}", p.index))?;
    let r = Record::from_leaf(&bytes).map_err(|e| format!("leaf {}: {e}", p.index))?;
    Ok((bytes, r))
}

/// A person's registry record, as the verifier walks them.
pub type PersonRecord = (u64, Applied<PersonAction>);

fn inclusion(leaf: &[u8], index: u64, proof: &[String], cp: &Checkpoint) -> Result<String, String> {
    let hashes = decode_hashes(proof)?;
    verify_inclusion(&leaf_hash(leaf), index, cp.size, &hashes, &cp.root).map_err(|e| e.to_string())?;
    Ok(format!("leaf {index} is in the tree of size {}", cp.size))
}

/// The `timestamp` check (docs/AUDIT_FORMATS.md, "Checking a token"): the
/// bundle's token against the TSA certificate a court trusts, over the text
/// of the bundle's checkpoint. No token and no certificate: no check. A token
/// and no certificate: a passing check that says it was not checked, and no
/// stamp. A certificate and no token: a failing check.
pub fn check_timestamp(b: &Bundle, tsa: Option<&TsaCertificate>) -> (Option<Check>, Option<Stamp>) {
    let name = "timestamp";
    let stamp = match (&b.timestamp, tsa) {
        (None, None) => return (None, None),
        (Some(_), None) => return (Some(check(name, Ok("the bundle carries an RFC 3161 token, NOT checked: no --tsa-cert given".into()))), None),
        (None, Some(_)) => return (Some(check(name, Err("--tsa-cert given, but the bundle carries no timestamp token".into()))), None),
        (Some(token), Some(cert)) => BASE64
            .decode(token)
            .map_err(|e| format!("the token is not base64: {e}"))
            .and_then(|der| Note::parse(&b.checkpoint).map(|n| (der, n)).map_err(|e| e.to_string()))
            .and_then(|(der, note)| crate::timestamp::check_token(&der, cert, &crate::timestamp::imprint(&note.text)).map_err(|e| e.to_string())),
    };
    match stamp {
        Ok(s) => {
            let c = check(name, Ok(format!("the checkpoint existed at {} by the word of {} (token serial {})", s.gen_time, s.tsa, s.serial)));
            (Some(c), Some(s))
        }
        Err(e) => (Some(check(name, Err(e))), None),
    }
}

/// The item id a report names: the deposit record's, never the bundle's own
/// `item` text (which the `item …` checks compare with the records).
pub fn reported_item(b: &Bundle) -> Option<String> {
    match decode_leaf(&b.deposit).ok()?.1.body {
        Body::Deposit(d) => Some(d.statement.item),
        _ => None,
    }
}

/// The fields of a bundle's `item`, each bound to a logged record; `hold`
/// may be absent.
pub const ITEM_FIELDS: [&str; 10] = ["item", "sha256", "size", "case", "system", "depositor", "retention", "deposited_at", "retain_until", "note"];

/// Checks a bundle against the court's verifier keys and, if given, the
/// clip's SHA-256 (hex). Every check is reported; the bundle is valid only if
/// all of them hold. docs/AUDIT_FORMATS.md ("What `custody verify` checks")
/// lists them.
pub fn verify(b: &Bundle, keys: &[TrustedKey], clip_sha256: Option<&str>) -> Vec<Check> {
    let mut checks = Vec::new();
    let cp = match verify_checkpoint(&b.checkpoint, keys) {
        Ok((cp, signers, valid)) => {
            let dev = match (cp.origin.contains("/dev-retention-"), cp.origin.ends_with("/dev-auto-unseal")) {
                (false, false) => "",
                (true, false) => " — a DEV cluster with shortened retention",
                (false, true) => " — a DEV cluster whose nodes unseal themselves",
                (true, true) => " — a DEV cluster with shortened retention, whose nodes unseal themselves",
            };
            checks.push(check(
                "checkpoint signatures",
                Ok(format!(
                    "signed by {} of the {valid} keys valid at size {} ({}); origin {}{dev}",
                    signers.len(),
                    cp.size,
                    signers.join(", "),
                    cp.origin
                )),
            ));
            Some(cp)
        }
        Err(e) => {
            checks.push(check("checkpoint signatures", Err(e)));
            None
        }
    };
    let untrusted = || Err::<String, String>("no trusted checkpoint to check against".into());
    let deposit = decode_leaf(&b.deposit);
    let deposit_record = deposit.as_ref().map_err(Clone::clone).and_then(|(_, r)| match &r.body {
        Body::Deposit(d) => Ok((r.time.clone(), d.clone())),
        _ => Err(format!("leaf {} is a `{}` record, not a deposit record", b.deposit.index, r.kind())),
    });
    checks.push(check(
        "deposit record",
        deposit_record
            .as_ref()
            .map(|(time, d)| {
                format!(
                    "leaf {} is the canonical deposit record of item {}, deposited {time} by {}",
                    b.deposit.index, d.statement.item, d.statement.depositor
                )
            })
            .map_err(Clone::clone),
    ));
    checks.push(check(
        "deposit inclusion",
        match (&cp, &deposit) {
            _ if !b.deposit.inclusion.is_empty() => Err("the deposit's proof is the bundle's `inclusion`; `deposit.inclusion` must be absent".into()),
            (Some(cp), Ok((leaf, _))) => inclusion(leaf, b.deposit.index, &b.inclusion, cp),
            (None, _) => untrusted(),
            (_, Err(e)) => Err(e.clone()),
        },
    ));
    if let Some(clip) = clip_sha256 {
        let want = deposit_record.as_ref().ok().map(|(_, d)| d.statement.sha256.clone());
        checks.push(check(
            "clip sha256",
            match want {
                Some(w) if w == clip => Ok(format!("the clip's SHA-256 is the deposited one ({w})")),
                Some(w) => Err(format!("the clip's SHA-256 {clip} is not the deposited {w}")),
                None => Err("no deposited SHA-256 to compare with".into()),
            },
        ));
    }
    let item_id = deposit_record.as_ref().ok().map(|(_, d)| d.statement.item.clone());
    // The trail's records, read once: each is checked below, and only records
    // about this item that come after its deposit feed the other checks.
    let trail: Vec<Result<(Vec<u8>, Record), String>> = b.trail.iter().map(decode_leaf).collect();
    let about: Vec<(u64, Record)> = b
        .trail
        .iter()
        .zip(&trail)
        .filter_map(|(t, r)| r.as_ref().ok().map(|(_, r)| (t.index, r.clone())))
        .filter(|(i, r)| *i > b.deposit.index && item_id.is_some() && r.item() == item_id.as_deref())
        .collect();
    checks.extend(item_checks(&b.item, b.deposit.index, deposit_record.as_ref().ok(), &about));
    // The registry records a signer's key is traced to: each must be in the tree.
    let mut people: Vec<PersonRecord> = Vec::new();
    for (i, r) in b.registry.iter().enumerate() {
        let res = match (&cp, decode_leaf(r)) {
            (None, _) => untrusted(),
            (_, Err(e)) => Err(e),
            (Some(cp), Ok((bytes, record))) => match record.body {
                Body::Registry(Registry::Person(p)) => inclusion(&bytes, r.index, &r.inclusion, cp).inspect(|_| people.push((r.index, p))),
                _ => Err("not a registry record about a person".into()),
            },
        };
        checks.push(check(format!("registry[{i}] inclusion"), res));
    }
    people.sort_by_key(|(i, _)| *i);
    checks.push(check(
        "deposit signature",
        deposit_record.as_ref().map_err(Clone::clone).and_then(|(_, d)| deposit_signature(d, b.deposit.index, &people)),
    ));
    checks.push(check("leaves distinct", leaves_distinct(b)));
    // Each signature in `approvals`, traced to the trail record that logged it.
    let mut signed = Vec::new();
    for (i, a) in b.approvals.iter().enumerate() {
        let signer = a.get("signer").and_then(Value::as_str).unwrap_or("?");
        let name = format!("approval signature {signer}");
        let res = trail::approval_signature(a, item_id.as_deref().unwrap_or_default(), &about, &people);
        checks.push(check(
            name,
            res.map(|(detail, s)| {
                signed.push(s);
                detail
            })
            .map_err(|e| format!("approvals[{i}]: {e}")),
        ));
    }
    let mut previous: Option<u64> = None;
    for (i, (t, leaf)) in b.trail.iter().zip(trail).enumerate() {
        let kind = leaf.as_ref().map(|(_, r)| r.kind()).unwrap_or("record");
        let name = |what: &str| format!("trail[{i}] {kind} {what}");
        let order = match previous {
            _ if t.index <= b.deposit.index => Err(format!("leaf {} is not after the deposit (leaf {})", t.index, b.deposit.index)),
            Some(p) if t.index <= p => Err(format!("leaf {} is not after the previous trail record (leaf {p})", t.index)),
            Some(p) => Ok(format!("leaf {} comes after the deposit (leaf {}) and after trail[{}] (leaf {p})", t.index, b.deposit.index, i - 1)),
            None => Ok(format!("leaf {} comes after the deposit (leaf {})", t.index, b.deposit.index)),
        };
        previous = Some(t.index);
        checks.push(check(name("order"), order));
        if let Ok((_, r)) = &leaf {
            checks.push(check(name("kind"), trail::kind(r)));
            for (what, result) in trail::record_checks(t.index, r, &about, &signed, &people) {
                checks.push(check(name(what), result));
            }
        }
        let res = match (&cp, leaf) {
            (_, Err(e)) => Err(e),
            (_, Ok((_, r))) if item_id.is_none() || r.item() != item_id.as_deref() => Err("the record is about another item".into()),
            (None, _) => untrusted(),
            (Some(cp), Ok((bytes, _))) => inclusion(&bytes, t.index, &t.inclusion, cp),
        };
        checks.push(check(name("inclusion"), res));
    }
    checks.push(check("trail completeness", completeness(b, cp.as_ref(), keys, item_id.as_deref().unwrap_or_default())));
    checks
}

/// No leaf appears twice among the deposit, the trail and the registry records.
fn leaves_distinct(b: &Bundle) -> Result<String, String> {
    let mut seen: std::collections::BTreeMap<u64, String> = std::collections::BTreeMap::new();
    let all = std::iter::once((b.deposit.index, "deposit".to_string()))
        .chain(b.trail.iter().enumerate().map(|(i, t)| (t.index, format!("trail[{i}]"))))
        .chain(b.registry.iter().enumerate().map(|(i, r)| (r.index, format!("registry[{i}]"))));
    for (index, place) in all {
        if let Some(first) = seen.insert(index, place.clone()) {
            return Err(format!("leaf {index} appears twice: {first} and {place}"));
        }
    }
    Ok(format!("the {} leaves of the bundle (deposit, trail, registry) are distinct", seen.len()))
}

/// Each field of the bundle's `item` against the record that sets it: the
/// deposit record, or for `retention` and `retain_until` the latest
/// `retention` record, and for `hold` (when present) the latest `hold` record.
fn item_checks(item: &Value, deposit_index: u64, deposit: Option<&(String, Deposit)>, about: &[(u64, Record)]) -> Vec<Check> {
    let mut checks = Vec::new();
    let fields = match item.as_object() {
        Some(o) => {
            let unknown: Vec<&String> = o.keys().filter(|k| !ITEM_FIELDS.contains(&k.as_str()) && k.as_str() != "hold").collect();
            checks.push(check(
                "item fields",
                if unknown.is_empty() {
                    Ok(format!("every field of `item` is one the verifier binds to a record ({}, and `hold` when present)", ITEM_FIELDS.join(", ")))
                } else {
                    Err(format!("`item` has fields no record binds: {unknown:?}"))
                },
            ));
            o.clone()
        }
        None => {
            checks.push(check("item fields", Err("`item` is not a JSON object".into())));
            serde_json::Map::new()
        }
    };
    let Some((time, d)) = deposit else {
        for f in ITEM_FIELDS {
            checks.push(check(format!("item {f}"), Err("no deposit record to compare with".into())));
        }
        return checks;
    };
    let s = &d.statement;
    let at_deposit = format!("the deposit record (leaf {deposit_index})");
    let latest_retention = about.iter().rev().find_map(|(i, r)| match &r.body {
        Body::Retention(x) => Some((*i, x)),
        _ => None,
    });
    let (retention, retain_until, retention_source) = match latest_retention {
        Some((i, x)) => (x.to.clone(), x.retain_until.clone(), format!("the latest retention record (leaf {i})")),
        None => (s.retention.clone(), d.retain_until.clone(), at_deposit.clone()),
    };
    let expected: Vec<(&str, Value, String)> = vec![
        ("item", Value::from(s.item.clone()), at_deposit.clone()),
        ("sha256", Value::from(s.sha256.clone()), at_deposit.clone()),
        ("size", Value::from(s.size), at_deposit.clone()),
        ("case", Value::from(s.case.clone()), at_deposit.clone()),
        ("system", Value::from(s.system.clone()), at_deposit.clone()),
        ("depositor", Value::from(s.depositor.clone()), at_deposit.clone()),
        ("retention", Value::from(retention), retention_source.clone()),
        ("deposited_at", Value::from(time.clone()), format!("{at_deposit}'s time")),
        ("retain_until", Value::from(retain_until), retention_source),
        ("note", s.note.clone().map(Value::from).unwrap_or(Value::Null), at_deposit.clone()),
    ];
    let mut all = expected;
    if fields.contains_key("hold") {
        let held = about.iter().rev().find_map(|(i, r)| match &r.body {
            Body::Hold(crate::records::Hold::Hold { reason, .. }) => {
                Some((Value::from(reason.clone()), format!("the latest hold record (leaf {i})")))
            }
            Body::Hold(crate::records::Hold::Release { .. }) => Some((Value::Null, format!("the latest hold record (leaf {i}, a release)"))),
            _ => None,
        });
        let (v, source) = held.unwrap_or((Value::Null, "the trail (no hold record)".into()));
        all.push(("hold", v, source));
    }
    for (f, want, source) in all {
        let res = match fields.get(f) {
            Some(got) if *got == want => Ok(format!("`{f}` is {want}, as {source} says")),
            Some(got) => Err(format!("`{f}` is {got}, but {source} says {want}")),
            None => Err(format!("`item` has no `{f}`; {source} says {want}")),
        };
        checks.push(check(format!("item {f}"), res));
    }
    checks
}

/// The bundle holds every record about the item among the checkpoint's
/// leaves: as many distinct leaves (the deposit and the trail) as the
/// item-head statement counts, the last at its head. (Each of them is checked
/// above to be in the tree and about this item.)
fn completeness(b: &Bundle, cp: Option<&Checkpoint>, keys: &[TrustedKey], item: &str) -> Result<String, String> {
    let cp = cp.ok_or("no trusted checkpoint to check against")?;
    let (h, signers, valid) = crate::heads::verify_item_head(&b.head, keys).map_err(|e| format!("the item-head statement: {e}"))?;
    if (h.origin.as_str(), h.size, h.root) != (cp.origin.as_str(), cp.size, cp.root) {
        return Err(format!("the item-head statement is for the tree of size {}, not the bundle's checkpoint", h.size));
    }
    if h.item != item {
        return Err(format!("the item-head statement is about item {}, not {item}", h.item));
    }
    let mut indices: Vec<u64> = std::iter::once(b.deposit.index).chain(b.trail.iter().map(|t| t.index)).collect();
    indices.sort_unstable();
    if let Some(w) = indices.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("leaf {} appears twice", w[0]));
    }
    if indices.len() as u64 != h.records {
        return Err(format!(
            "the bundle carries {} records about the item; {} of the nodes state that the first {} leaves hold {}",
            indices.len(),
            signers.len(),
            h.size,
            h.records
        ));
    }
    if indices.last() != Some(&h.head) {
        return Err(format!("the item's last record is leaf {}, the bundle's last is leaf {}", h.head, indices.last().copied().unwrap_or_default()));
    }
    Ok(format!(
        "all {} records about the item among the first {} leaves, the last at leaf {}, as {} of the {valid} keys valid there sign ({})",
        h.records,
        h.size,
        h.head,
        signers.len(),
        signers.join(", ")
    ))
}

/// The context every request signature starts with (see `approval::SIGNING_CONTEXT`).
pub const REQUEST_CONTEXT: &[u8] = b"custody/access-request/v1\n";

/// What the included registry records say of person `name` just before leaf
/// `before`: the key registered to them, the leaf that registered it, and
/// their roles. Refused when no included record registers them then, or a
/// later one (still before `before`) revoked them.
pub fn registered(people: &[PersonRecord], name: &str, before: u64) -> Result<(String, u64, Vec<String>), String> {
    let mut key: Option<(String, u64)> = None;
    let mut roles: Vec<String> = Vec::new();
    for (index, p) in people.iter().filter(|(i, p)| *i < before && p.action.name() == name) {
        match &p.action {
            PersonAction::Add { public_key, roles: given, .. } => {
                key = Some((public_key.clone(), *index));
                roles = given.clone();
            }
            PersonAction::ChangeKey { public_key, .. } => key = Some((public_key.clone(), *index)),
            PersonAction::SetRoles { roles: given, .. } => roles = given.clone(),
            PersonAction::Revoke { .. } => return Err(format!("{name} was revoked at leaf {index}, before leaf {before}")),
        }
    }
    let (key, at) = key.ok_or_else(|| format!("no included registry record registers {name} before leaf {before}"))?;
    Ok((key, at, roles))
}

/// The depositor's signature over the deposit statement (the deposit leaf
/// without `v`, `kind`, `time`, `retain_until` and `signature`), under the key
/// the registry gave them, as an officer, before the deposit.
fn deposit_signature(leaf: &Deposit, index: u64, people: &[PersonRecord]) -> Result<String, String> {
    let depositor = &leaf.statement.depositor;
    let (key, at, roles) = registered(people, depositor, index)?;
    if !roles.iter().any(|r| r == "officer") {
        return Err(format!("{depositor} was not an officer at leaf {index}"));
    }
    // The statement is the record less `v`, `kind`, `time`, `retain_until` and
    // `signature`; the leaf was read only if it is exactly the record's encoding,
    // so nothing else is in the leaf that the statement would leave out.
    let body = leaf.statement.canonical_bytes().map_err(|e| e.to_string())?;
    let signed = [DEPOSIT_CONTEXT, &body].concat();
    let key: [u8; 32] = BASE64.decode(&key).ok().and_then(|k| k.try_into().ok()).ok_or("the registered key is not 32 bytes of base64")?;
    let sig = BASE64.decode(&leaf.signature).map_err(|_| "the signature is not base64")?;
    if !crate::crypto::verify_ed25519(&key, &signed, &sig) {
        return Err(format!("the deposit statement's signature does not verify with {depositor}'s key registered at leaf {at}"));
    }
    Ok(format!("{depositor} (an officer) signed the deposit with the key registered at leaf {at}"))
}

/// The context every deposit statement starts with (see `evidence::DEPOSIT_CONTEXT`).
pub const DEPOSIT_CONTEXT: &[u8] = b"custody/deposit/v1\n";
