//! `request`, `approve` and `fetch`: art. 17–18 access from the officer's side.
//! Signatures are made here, with the user's own key; the vault never sees it.

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use clap::Args;
use hyper::Method;

use super::ops::Session;
use super::{emit, Failure};
use crate::api::access::{FileRequest, RequestStatus, Signature};
use crate::approval::{AccessRequest, Action, DEFAULT_TTL_SECS};
use crate::client::HttpError;
use crate::crypto::SigningKey;
use crate::evidence::ItemId;
use crate::vault::access::RequestRecord;
use crate::wire::FetchOutput;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct RequestArgs {
    pub item: String,
    #[arg(long)]
    pub action: String,
    #[arg(long)]
    pub purpose: String,
    #[arg(long)]
    pub approval_doc: String,
    /// The other participating officers (at least one).
    #[arg(long = "with", num_args = 1.., required = true)]
    pub with: Vec<String>,
    /// Art. 17 ¶2: approved by an emergency-approver.
    #[arg(long)]
    pub emergency: bool,
    /// How many fetches the grant allows (at most `limits::MAX_FETCHES_PER_GRANT`).
    #[arg(long, default_value_t = 1)]
    pub fetches: u32,
    /// How long the request and its grant stay valid, in seconds (at most `limits::MAX_GRANT_SECS`).
    #[arg(long, default_value_t = DEFAULT_TTL_SECS)]
    pub valid_secs: u64,
}

/// The vault's answer as a failure: a refusal exits 1 (`Failure::from`).
pub(super) fn failure(e: HttpError) -> Failure {
    Failure::from(e)
}

/// The profile's user (its certificate's common name) and signing key.
pub(super) fn me(s: &Session) -> Result<(String, std::sync::Arc<SigningKey>), Failure> {
    if let Some(known) = s.signer.get() {
        return Ok(known.clone());
    }
    let certs = crate::tls::load_certs(&s.profile.cert)?;
    let name = match crate::tls::identity_of(certs[0].as_ref())? {
        crate::tls::PeerIdentity::User(u) => u,
        crate::tls::PeerIdentity::Node(_) => return Err(Failure::new(2, "the profile's certificate is a node's")),
    };
    let path = s.profile.signing_key.as_ref().ok_or_else(|| Failure::new(2, "the profile names no signing_key"))?;
    let text = std::fs::read_to_string(path).map_err(|e| Failure::new(2, format!("{}: {e}", path.display())))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Failure::new(2, format!("{}: not a signing key", path.display())))?;
    let known = (name, std::sync::Arc::new(SigningKey::from_seed(&seed)?));
    Ok(s.signer.get_or_init(|| known).clone())
}

/// Signs a request; one that does not validate (a hostile node may send
/// anything) is an error, never a panic.
fn sign(key: &SigningKey, req: &AccessRequest) -> Result<String, Failure> {
    let bytes = req.signing_bytes().map_err(|e| Failure::new(1, format!("refusing to sign an invalid request: {e}")))?;
    Ok(BASE64.encode(key.sign(&bytes)))
}

pub async fn request(s: &Session, a: RequestArgs, json: bool) -> Result<(), Failure> {
    let st = file_request(s, a).await?;
    emit(json, &serde_json::to_value(&st)?, || {
        format!("request {} filed ({}); the other participants and an approver run: custody approve {}", st.request, st.status, st.request)
    });
    Ok(())
}

/// Files a request signed with the profile's key; prints nothing.
pub async fn file_request(s: &Session, a: RequestArgs) -> Result<RequestStatus, Failure> {
    let item: ItemId = a.item.parse().map_err(|e| Failure::new(2, format!("{e}")))?;
    let action: Action = a.action.parse().map_err(|e: String| Failure::new(2, e))?;
    let (name, key) = me(s)?;
    let mut participants = vec![name];
    participants.extend(a.with);
    let req = AccessRequest {
        item,
        action,
        purpose: a.purpose,
        approval_doc: a.approval_doc,
        participants,
        emergency: a.emergency,
        expires_at_ms: crate::node::now_ms().saturating_add(a.valid_secs.saturating_mul(1000)),
        nonce: hex::encode(crate::crypto::random_bytes::<16>()?),
        max_fetches: a.fetches,
    };
    req.validate().map_err(|e| Failure::new(2, e))?;
    let body = FileRequest { signature: sign(&key, &req)?, request: req };
    s.call(Method::POST, "/v1/requests", Some(&body), TIMEOUT).await.map_err(failure)
}

pub async fn approve(s: &Session, id: &str, yes: bool, json: bool) -> Result<(), Failure> {
    let st = sign_request_confirmed(s, id, if yes { Confirm::Yes } else { Confirm::Ask }).await?;
    emit(json, &serde_json::to_value(&st)?, || format!("request {}: {}", st.request, st.status));
    Ok(())
}

/// Whether `approve` shows the request and waits for the signer's word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// `--yes`: sign without asking (scripts).
    Yes,
    /// Show the request on standard error; on a terminal, ask before signing.
    /// Without a terminal and without `--yes`, refuse.
    Ask,
}

/// Signs request `id` with the profile's key without asking; prints nothing.
pub async fn sign_request(s: &Session, id: &str) -> Result<RequestStatus, Failure> {
    sign_request_confirmed(s, id, Confirm::Yes).await
}

/// What the signer is asked to sign, as a person reads it.
pub fn describe(req: &AccessRequest) -> String {
    let expires = crate::wire::try_rfc3339_ms(req.expires_at_ms).unwrap_or_else(|| format!("{} ms after 1970", req.expires_at_ms));
    format!(
        "item:          {}\naction:        {}\npurpose:       {}\napproval doc:  {}\nparticipants:  {}\nexpires:       {}\nemergency:     {}\nfetches:       {}\n",
        req.item,
        req.action,
        req.purpose,
        req.approval_doc,
        req.participants.join(", "),
        expires,
        if req.emergency { "YES" } else { "no" },
        req.max_fetches,
    )
}

/// With [`Confirm::Ask`]: shows `description` of `what` on standard error and,
/// on a terminal, waits for a yes; without a terminal, refuses.
pub(super) fn ask(confirm: Confirm, what: &str, description: &str) -> Result<(), Failure> {
    if confirm == Confirm::Yes {
        return Ok(());
    }
    use std::io::{BufRead, IsTerminal, Write};
    eprint!("You are about to sign {what}:\n{description}");
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(2, "not signed: confirm on a terminal, or pass --yes to sign without asking"));
    }
    eprint!("Sign it? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::new(2, format!("reading the answer: {e}")))?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        return Err(Failure::new(1, "not signed: the signer declined"));
    }
    Ok(())
}

async fn sign_request_confirmed(s: &Session, id: &str, confirm: Confirm) -> Result<RequestStatus, Failure> {
    let (_, key) = me(s)?;
    let rec: RequestRecord = s.call::<(), _>(Method::GET, &format!("/v1/requests/{id}"), None, TIMEOUT).await.map_err(failure)?;
    // Validate before anything else: a hostile node may send any request.
    rec.request.validate().map_err(|e| Failure::new(1, format!("the vault returned an invalid request: {e}")))?;
    // Sign only what the id names: a node cannot slip another request under this id.
    let got = rec.request.id().map_err(|e| Failure::new(1, e))?;
    if got != id {
        return Err(Failure::new(1, format!("the vault returned a request whose id is {got}, not {id}")));
    }
    ask(confirm, &format!("access request {id}"), &describe(&rec.request))?;
    let body = Signature { signature: sign(&key, &rec.request)? };
    s.call(Method::POST, &format!("/v1/requests/{id}/approvals"), Some(&body), TIMEOUT).await.map_err(failure)
}

pub async fn fetch(s: &Session, item: &str, request: &str, out: &Path, json: bool) -> Result<(), Failure> {
    let v = fetch_to(s, item, request, out).await?;
    emit(json, &serde_json::to_value(&v)?, || {
        format!(
            "fetched {} to {} ({} bytes); SHA-256 matches the deposit ({}); access record at leaf {}",
            v.item,
            out.display(),
            v.size,
            v.sha256,
            v.access_leaf
        )
    });
    Ok(())
}

/// Fetches into `out`, checking the SHA-256; returns the result object; prints nothing.
pub async fn fetch_to(s: &Session, item: &str, request: &str, out: &Path) -> Result<FetchOutput, Failure> {
    fetch_into(s, item, request, Some(out)).await
}

/// Fetches and checks the SHA-256 without keeping the bytes (`custody bench`:
/// the client's own disk is not what it measures).
pub async fn fetch_checked(s: &Session, item: &str, request: &str) -> Result<FetchOutput, Failure> {
    fetch_into(s, item, request, None).await
}

/// [`fetch_checked`], timing each step (`custody bench`).
pub async fn fetch_checked_timed(s: &Session, item: &str, request: &str) -> Result<(FetchOutput, crate::sealing::FetchTimings), Failure> {
    let item: ItemId = item.parse().map_err(|e| Failure::new(2, format!("{e}")))?;
    let (fetcher, key) = me(s)?;
    crate::sealing::fetch_timed(s, &fetcher, &key, item, request, None).await.map_err(super::sealing_failure)
}

async fn fetch_into(s: &Session, item: &str, request: &str, out: Option<&Path>) -> Result<FetchOutput, Failure> {
    let item: ItemId = item.parse().map_err(|e| Failure::new(2, format!("{e}")))?;
    let (fetcher, key) = me(s)?;
    crate::sealing::fetch(s, &fetcher, &key, item, request, out).await.map_err(super::sealing_failure)
}

/// `hold`, `release`, `extend`.
pub async fn retention(s: &Session, item: &str, what: &str, body: serde_json::Value, json: bool) -> Result<(), Failure> {
    let item: ItemId = item.parse().map_err(|e| Failure::new(2, format!("{e}")))?;
    let path = format!("/v1/items/{item}/{what}");
    if what.starts_with("purge") {
        let v: crate::wire::PurgeView = s.call(Method::POST, &path, Some(&body), TIMEOUT).await.map_err(failure)?;
        emit(json, &serde_json::to_value(&v)?, || {
            format!("item {item} purged: data key and {} chunks destroyed; the record stays (audit leaf {})", v.chunks_destroyed, v.leaf_index)
        });
    } else {
        let v: crate::wire::RetentionView = s.call(Method::POST, &path, Some(&body), TIMEOUT).await.map_err(failure)?;
        emit(json, &serde_json::to_value(&v)?, || {
            format!("item {item}: retained until {}{}", v.retain_until, if v.hold { ", ON LEGAL HOLD" } else { "" })
        });
    }
    Ok(())
}
