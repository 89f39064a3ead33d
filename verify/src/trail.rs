//! The custody trail's own consistency, as the offline verifier checks it
//! (docs/AUDIT_FORMATS.md, "What `custody verify` checks"): every signature
//! in a bundle's `approvals` traced to the trail record that logged it and
//! to the key the registry gave its signer; every request record equal to
//! what its signers signed; every grant backed by the logged signatures of
//! its participating officers and of a non-participant approver; every
//! access and purge under an earlier grant of the same request.
//!
//! What it cannot see is a record left out of the bundle altogether: the
//! trail is checked for what it holds, not for completeness.
//!
//! Pure: no I/O, no clock.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bundle::{registered, PersonRecord, REQUEST_CONTEXT};
use crate::jcs::to_canonical_bytes;
use crate::records::{Access, Body, Grant, Purge, Record, Request, SignedAs};

/// The context an access statement starts with (see `evidence::ACCESS_CONTEXT`).
pub const ACCESS_CONTEXT: &[u8] = b"custody/access/v1\n";

/// The kinds of record an item's trail may hold (its deposit is the bundle's `deposit`).
pub const TRAIL_KINDS: [&str; 9] = ["request", "approval", "grant", "access", "hold", "retention", "scrub", "reshare", "purge"];

/// One entry of a bundle's `approvals`: a signature on a request, the key
/// it was made with, and the signed bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalEntry {
    /// The request id.
    pub request: String,
    pub signer: String,
    /// Base64 of the signer's 32-byte Ed25519 public key.
    pub public_key: String,
    /// Base64 Ed25519 signature over `signed`.
    pub signature: String,
    /// Base64 of the signed bytes: `custody/access-request/v1\n` ‖ JCS(request).
    pub signed: String,
}

fn one() -> u32 {
    1
}

/// The request every signer signs (the vault's `approval::AccessRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    pub item: String,
    pub action: String,
    pub purpose: String,
    pub approval_doc: String,
    pub participants: Vec<String>,
    #[serde(default)]
    pub emergency: bool,
    pub expires_at_ms: u64,
    pub nonce: String,
    #[serde(default = "one")]
    pub max_fetches: u32,
}

/// A signature from `approvals` that verified and that the trail record at
/// leaf `at` logs.
#[derive(Clone, Debug)]
pub struct VerifiedSignature {
    pub request: String,
    pub signer: String,
    pub at: u64,
    pub signed: SignedRequest,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix milliseconds as the vault writes record times: RFC 3339 UTC,
/// `YYYY-MM-DDTHH:MM:SS` then, unless the milliseconds are zero, a point and
/// the milliseconds without trailing zeros, then `Z` (the `time` crate's
/// well-known RFC 3339 form, which the vault uses; a test keeps them equal).
/// `None` past the year 9999. Written here so the verifier needs no date crate.
pub fn rfc3339_ms(ms: u64) -> Option<String> {
    let secs = i64::try_from(ms / 1000).ok()?;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    if y > 9999 {
        return None;
    }
    let t = secs.rem_euclid(86_400);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
    let frac = ms % 1000;
    if frac != 0 {
        out.push('.');
        out.push_str(format!("{frac:03}").trim_end_matches('0'));
    }
    out.push('Z');
    Some(out)
}

/// Reads an RFC 3339 UTC time of the form the vault writes (a `Z` offset,
/// at most nanoseconds) as unix milliseconds, sub-millisecond digits
/// truncated; `None` for anything else.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())).then(|| t.parse().ok()).flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let (y, mo, d, h, mi, se) = (digits(0..4)?, digits(5..7)?, digits(8..10)?, digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    let millis = match frac.strip_prefix('.') {
        None if frac.is_empty() => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|c| c.is_ascii_digit()) => format!("{f:0<3}")[..3].parse::<i64>().ok()?,
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs.checked_mul(1000)?.checked_add(millis)?).ok()
}

/// Reads the signed bytes of a request: the context, then a request in
/// canonical JSON (RFC 8785) with no member name twice.
pub fn signed_request(signed: &[u8]) -> Result<SignedRequest, String> {
    let body = signed.strip_prefix(REQUEST_CONTEXT).ok_or("the signed bytes are not an access request")?;
    let v = crate::strict::value_from_slice(body).map_err(|e| format!("the signed request is not strict JSON: {e}"))?;
    if to_canonical_bytes(&v).ok().as_deref() != Some(body) {
        return Err("the signed request is not in canonical form (RFC 8785)".into());
    }
    serde_json::from_value(v).map_err(|e| format!("the signed request is not a request: {e}"))
}

/// An `approvals` entry: the signature verifies under the given key over a
/// request for this item whose id is the SHA-256 of the signed bytes; a
/// trail record of that request logs the same signature by the same signer;
/// and the key is the one the registry gave the signer before that record.
pub fn approval_signature(a: &Value, item: &str, about: &[(u64, Record)], people: &[PersonRecord]) -> Result<(String, VerifiedSignature), String> {
    let e: ApprovalEntry = serde_json::from_value(a.clone()).map_err(|e| format!("not an approvals entry: {e}"))?;
    let key: [u8; 32] = BASE64.decode(&e.public_key).ok().and_then(|k| k.try_into().ok()).ok_or("the public key is not 32 bytes of base64")?;
    let signature = BASE64.decode(&e.signature).map_err(|_| "the signature is not base64")?;
    let signed = BASE64.decode(&e.signed).map_err(|_| "the signed bytes are not base64")?;
    let req = signed_request(&signed)?;
    let id = hex::encode(&crate::crypto::sha256(&signed)[..16]);
    if id != e.request {
        return Err(format!("the signed bytes are request {id}, not {}", e.request));
    }
    if req.item != item {
        return Err("the signed request is for another item".into());
    }
    if !crate::crypto::verify_ed25519(&key, &signed, &signature) {
        return Err(format!("{}'s signature does not verify", e.signer));
    }
    let named = about.iter().find(|(_, r)| {
        let (who, recorded) = match &r.body {
            Body::Approval(x) => (&x.signer, &x.signature),
            Body::Request(x) => (&x.by, &x.signature),
            _ => return false,
        };
        r.request() == Some(e.request.as_str()) && *who == e.signer && *recorded == e.signature
    });
    let Some((at, _)) = named else {
        return Err(format!("no trail record of this item logs {}'s signature on request {}", e.signer, e.request));
    };
    let (registered_key, key_leaf, roles) = registered(people, &e.signer, *at)?;
    if registered_key != e.public_key {
        return Err(format!("the key given for {} is not the one the registry gave them (leaf {key_leaf}) before leaf {at}", e.signer));
    }
    let detail = format!(
        "{} ({}) signed request {} (the SHA-256 of the signed bytes) for this item with the key registered at leaf {key_leaf}; logged at leaf {at}",
        e.signer,
        roles.join(", "),
        e.request
    );
    Ok((detail, VerifiedSignature { request: e.request, signer: e.signer, at: *at, signed: req }))
}

/// `trail[i] <kind> kind`: a kind an item's trail holds.
pub fn kind(r: &Record) -> Result<String, String> {
    if TRAIL_KINDS.contains(&r.kind()) {
        Ok(format!("kind `{}`, one an item's trail holds", r.kind()))
    } else if r.kind() == "deposit" {
        Err("a deposit record in the trail: the item's deposit is the bundle's `deposit`, once".into())
    } else {
        Err(format!("a `{}` record is not about an item", r.kind()))
    }
}

/// The checks particular to one trail record's kind, by name (after `trail[i] <kind> `).
pub fn record_checks(
    at: u64,
    r: &Record,
    about: &[(u64, Record)],
    signed: &[VerifiedSignature],
    people: &[PersonRecord],
) -> Vec<(&'static str, Result<String, String>)> {
    let logged = |request: &str, signer: &str| signed.iter().find(|s| s.request == request && s.signer == signer && s.at == at);
    match &r.body {
        Body::Request(x) => vec![
            (
                "signature",
                logged(&x.request, &x.by)
                    .map(|_| format!("{}'s signature on request {} verified (approval signature {})", x.by, x.request, x.by))
                    .ok_or_else(|| format!("`approvals` holds no verified signature of {} on request {}", x.by, x.request)),
            ),
            ("statement", request_statement(x, signed)),
        ],
        Body::Approval(x) => {
            let v = logged(&x.request, &x.signer);
            let as_ = match v {
                None => Err("no verified signature to read the request from".to_string()),
                Some(s) => {
                    let participant = s.signed.participants.contains(&x.signer);
                    match (participant, x.signed_as) {
                        (true, SignedAs::Participant) => Ok(format!("{} is a participant of the signed request, as the record says", x.signer)),
                        (false, SignedAs::Approver) => {
                            Ok(format!("{} is not a participant of the signed request: an approver, as the record says", x.signer))
                        }
                        (true, SignedAs::Approver) => Err(format!("{} is a participant of the signed request, not an approver", x.signer)),
                        (false, SignedAs::Participant) => Err(format!("{} is not a participant of the signed request", x.signer)),
                    }
                }
            };
            vec![
                (
                    "signature",
                    v.map(|_| format!("{}'s signature on request {} verified (approval signature {})", x.signer, x.request, x.signer))
                        .ok_or_else(|| format!("`approvals` holds no verified signature of {} on request {}", x.signer, x.request)),
                ),
                ("as", as_),
            ]
        }
        Body::Grant(g) => vec![("request", grant_request(at, g, about)), ("signatures", grant_signatures(at, g, signed, people))],
        Body::Access(x) => vec![("grant", access_grant(at, r, x, about, people)), ("signature", access_signature(at, x, people))],
        Body::Purge(p) => vec![("grant", purge_grant(at, p, about))],
        _ => vec![],
    }
}

/// A request record says what its signers signed: its id is the SHA-256 of
/// the signed bytes (checked with each signature), and its fields are the
/// signed request's.
fn request_statement(x: &Request, signed: &[VerifiedSignature]) -> Result<String, String> {
    let s =
        signed.iter().find(|s| s.request == x.request).ok_or_else(|| format!("`approvals` holds no verified signature on request {}", x.request))?;
    let q = &s.signed;
    let expires = rfc3339_ms(q.expires_at_ms).unwrap_or_default();
    let diffs: Vec<&str> = [
        ("item", x.item == q.item),
        ("action", x.action == q.action),
        ("officers", x.officers == q.participants),
        ("purpose", x.purpose == q.purpose),
        ("approval_doc", x.approval_doc == q.approval_doc),
        ("emergency", x.emergency == q.emergency),
        ("expires_at", x.expires_at == expires),
        ("max_fetches", x.max_fetches == q.max_fetches),
        ("by (the first participant)", q.participants.first() == Some(&x.by)),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(f, _)| f)
    .collect();
    if !diffs.is_empty() {
        return Err(format!("the record's {} differ from the signed request's", diffs.join(", ")));
    }
    Ok("item, action, officers, purpose, approval_doc, emergency, expires_at, max_fetches and by equal the signed request's".into())
}

/// The request record a grant or purge names, logged before it.
fn request_before<'a>(at: u64, request: &str, about: &'a [(u64, Record)]) -> Option<(u64, &'a Request)> {
    about.iter().find_map(|(i, r)| match &r.body {
        Body::Request(x) if *i < at && x.request == request => Some((*i, x)),
        _ => None,
    })
}

/// The grant of `request` logged before leaf `at`.
fn grant_before<'a>(at: u64, request: &str, about: &'a [(u64, Record)]) -> Option<(u64, &'a Grant)> {
    about.iter().find_map(|(i, r)| match &r.body {
        Body::Grant(g) if *i < at && g.request == request => Some((*i, g)),
        _ => None,
    })
}

fn grant_request(at: u64, g: &Grant, about: &[(u64, Record)]) -> Result<String, String> {
    let (i, x) = request_before(at, &g.request, about).ok_or_else(|| format!("no request record of {} before leaf {at}", g.request))?;
    let diffs: Vec<&str> = [
        ("officers", g.officers == x.officers),
        ("action", g.action == x.action),
        ("expires_at", g.expires_at == x.expires_at),
        ("purpose", g.purpose == x.purpose),
        ("approval_doc", g.approval_doc == x.approval_doc),
        ("emergency", g.emergency == x.emergency),
        ("max_fetches", g.max_fetches == x.max_fetches),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(f, _)| f)
    .collect();
    if !diffs.is_empty() {
        return Err(format!("the grant's {} differ from the request record's (leaf {i})", diffs.join(", ")));
    }
    Ok(format!("grants request {} of leaf {i}: same officers, action, expires_at, purpose, approval_doc, emergency, max_fetches", g.request))
}

/// Every participating officer (two at least) and a non-participant approver
/// signed, each signature verified and logged before the grant, and each
/// signer held the role at the grant (and was not revoked).
fn grant_signatures(at: u64, g: &Grant, signed: &[VerifiedSignature], people: &[PersonRecord]) -> Result<String, String> {
    if g.officers.len() < 2 {
        return Err(format!("{} participating officer(s); two at least", g.officers.len()));
    }
    let mut leaves = Vec::new();
    let logged = |who: &str| signed.iter().filter(|s| s.request == g.request && s.signer == who && s.at < at).map(|s| s.at).min();
    for o in &g.officers {
        let l = logged(o).ok_or_else(|| format!("no verified, logged signature of officer {o} on request {} before leaf {at}", g.request))?;
        let (_, _, roles) = registered(people, o, at)?;
        if !roles.iter().any(|r| r == "officer") {
            return Err(format!("{o} was not an officer at leaf {at}"));
        }
        leaves.push(format!("{o} (leaf {l})"));
    }
    if g.officers.contains(&g.approver) {
        return Err(format!("the approver {} is a participant", g.approver));
    }
    let l = logged(&g.approver)
        .ok_or_else(|| format!("no verified, logged signature of the approver {} on request {} before leaf {at}", g.approver, g.request))?;
    let role = if g.emergency { "emergency-approver" } else { "approver" };
    let (_, _, roles) = registered(people, &g.approver, at)?;
    if !roles.iter().any(|r| r == role) {
        return Err(format!("{} was not an {role} at leaf {at}", g.approver));
    }
    Ok(format!("officers {} and {role} {} (leaf {l}) signed request {} before the grant", leaves.join(", "), g.approver, g.request))
}

fn access_grant(at: u64, r: &Record, x: &Access, about: &[(u64, Record)], people: &[PersonRecord]) -> Result<String, String> {
    let (i, g) = grant_before(at, &x.request, about).ok_or_else(|| format!("no grant of request {} before leaf {at}", x.request))?;
    let diffs: Vec<&str> = [
        ("action", x.action == g.action),
        ("officers", x.officers == g.officers),
        ("purpose", x.purpose == g.purpose),
        ("approval_doc", x.approval_doc == g.approval_doc),
        ("emergency", x.emergency == g.emergency),
        ("max_fetches", x.max_fetches == g.max_fetches),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(f, _)| f)
    .collect();
    if !diffs.is_empty() {
        return Err(format!("the access's {} differ from the grant's (leaf {i})", diffs.join(", ")));
    }
    if g.action == "purge" {
        return Err("a purge grant allows no access".into());
    }
    if !g.officers.contains(&x.by) {
        return Err(format!("the fetcher {} is not a participant of the grant", x.by));
    }
    if x.fetch == 0 || x.fetch > g.max_fetches {
        return Err(format!("fetch {} of a grant of {}", x.fetch, g.max_fetches));
    }
    let again = about.iter().any(|(j, o)| *j < at && matches!(&o.body, Body::Access(y) if y.request == x.request && y.fetch == x.fetch));
    if again {
        return Err(format!("fetch {} of request {} is logged twice", x.fetch, x.request));
    }
    match (parse_rfc3339_ms(&r.time), parse_rfc3339_ms(&g.expires_at)) {
        (Some(t), Some(e)) if t < e => {}
        (Some(_), Some(_)) => return Err(format!("at {} the grant had expired ({})", r.time, g.expires_at)),
        _ => return Err("a time that is not RFC 3339".into()),
    }
    // A grant ends when any of its signers is revoked (as far as the registry records carried show).
    for signer in g.officers.iter().chain(std::iter::once(&g.approver)) {
        registered(people, signer, at).map_err(|e| format!("the grant had ended: {e}"))?;
    }
    Ok(format!(
        "under the grant of leaf {i} (same request {} and action {}); {} is a participant; fetch {} of {}; before its expiry, no signer of it revoked",
        x.request, x.action, x.by, x.fetch, g.max_fetches
    ))
}

/// The fetcher's signature over the access statement, under the key the
/// registry gave them before the access.
fn access_signature(at: u64, x: &Access, people: &[PersonRecord]) -> Result<String, String> {
    let (key, key_leaf, _) = registered(people, &x.by, at)?;
    let statement = serde_json::json!({ "item": x.item, "request": x.request, "fetcher": x.by, "fetch_key": x.fetch_key });
    let body = to_canonical_bytes(&statement).map_err(|e| e.to_string())?;
    let signed = [ACCESS_CONTEXT, &body].concat();
    let key: [u8; 32] = BASE64.decode(&key).ok().and_then(|k| k.try_into().ok()).ok_or("the registered key is not 32 bytes of base64")?;
    let sig = BASE64.decode(&x.signature).map_err(|_| "the signature is not base64")?;
    if !crate::crypto::verify_ed25519(&key, &signed, &sig) {
        return Err(format!("the access statement's signature does not verify with {}'s key registered at leaf {key_leaf}", x.by));
    }
    Ok(format!("{} signed the access statement (item, request, fetcher, fetch_key) with the key registered at leaf {key_leaf}", x.by))
}

fn purge_grant(at: u64, p: &Purge, about: &[(u64, Record)]) -> Result<String, String> {
    let (i, g) = grant_before(at, &p.request, about).ok_or_else(|| format!("no grant of request {} before leaf {at}", p.request))?;
    if g.action != "purge" {
        return Err(format!("the grant of leaf {i} is for `{}`, not `purge`", g.action));
    }
    if p.officers != g.officers {
        return Err(format!("the purge's officers differ from the grant's (leaf {i})"));
    }
    if !g.officers.contains(&p.by) {
        return Err(format!("{} is not a participant of the grant", p.by));
    }
    Ok(format!("under the purge grant of leaf {i}; {} is a participant", p.by))
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_times_read_back_and_odd_forms_are_refused() {
        for ms in [0, 1, 10, 999, 1_000, 86_399_999, 951_782_400_000, 1_700_000_000_123, 1_700_000_000_100, 1 << 47] {
            let text = super::rfc3339_ms(ms).unwrap();
            assert_eq!(super::parse_rfc3339_ms(&text), Some(ms), "{text}");
        }
        assert_eq!(super::rfc3339_ms(1_700_000_000_100).unwrap(), "2023-11-14T22:13:20.1Z");
        assert_eq!(super::rfc3339_ms(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339_ms(253_402_300_800_000), None);
        for bad in [
            "",
            "2027-01-01T00:00:00",
            "2027-01-01T00:00:00+01:00",
            "2027-02-30T00:00:00Z",
            "2027-01-01T24:00:00Z",
            "2027-01-01T00:00:00.Z",
            "2027-01-01 00:00:00Z",
            "+027-01-01T00:00:00Z",
        ] {
            assert_eq!(super::parse_rfc3339_ms(bad), None, "{bad}");
        }
        assert_eq!(super::parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
    }
}
