//! Client commands: talk to any node of the profile, follow the leader.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hyper::{Method, Request};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::IsTerminal;

use super::{emit, Failure};
use crate::client::{read_json, Http, HttpError};
use crate::config::Profile;
use crate::wire::{AddMember, ClusterStatus, DepositReceipt, ItemDetail, ItemList, ItemView};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Membership changes wait for a learner to catch up.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `cluster add-node` waits for the new node to listen.
const NODE_START_PATIENCE: Duration = Duration::from_secs(60);
/// How long a call keeps looking for a leader (an election, a leader that just died) before it gives up.
const LEADER_PATIENCE: Duration = Duration::from_secs(20);

pub struct Session {
    http: Http,
    endpoints: Vec<String>,
    pub profile: Profile,
    /// The session token, obtained on first use and renewed once if refused.
    token: tokio::sync::Mutex<Option<String>>,
    /// The user's name and signing key, read from the profile on first use.
    pub(crate) signer: std::sync::OnceLock<(String, std::sync::Arc<crate::crypto::SigningKey>)>,
}

pub fn session(profile: Option<PathBuf>) -> Result<Session, Failure> {
    let path = profile.ok_or_else(|| Failure::new(2, "no client profile: pass --profile FILE or set CUSTODY_PROFILE"))?;
    let p = Profile::load(&path)?;
    let tls = crate::tls::client_config(&crate::tls::TlsFiles { ca: &p.ca, cert: &p.cert, key: &p.key })?;
    Ok(Session { http: Http::new(tls), endpoints: p.endpoints.clone(), profile: p, token: tokio::sync::Mutex::new(None), signer: Default::default() })
}

impl Session {
    /// Sends a request built by `make` to the nodes in turn until one answers;
    /// follows a `not-leader` answer to the leader it names.
    pub async fn send<T: DeserializeOwned, F, Fut>(&self, path: &str, timeout: Duration, make: F) -> Result<T, HttpError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Request<crate::client::Body>, HttpError>>,
    {
        self.send_with(path, timeout, make, |url, resp| async move { read_json::<T>(&url, resp).await }).await
    }

    /// Like `send`, with the answer read by `read` (e.g. streamed to a file).
    pub async fn send_with<T, F, Fut, R, RFut>(&self, path: &str, timeout: Duration, make: F, read: R) -> Result<T, HttpError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Request<crate::client::Body>, HttpError>>,
        R: Fn(String, hyper::Response<crate::client::Incoming>) -> RFut,
        RFut: std::future::Future<Output = Result<T, HttpError>>,
    {
        let mut queue: Vec<String> = self.endpoints.clone();
        let mut last: Option<HttpError> = None;
        let mut renewed = false;
        // Endpoints that did not answer during this call: a follower may still name one as leader
        // for a while after it died, until the election it starts ends.
        let mut dead: Vec<String> = Vec::new();
        let deadline = std::time::Instant::now() + LEADER_PATIENCE;
        // Did any node answer at all? If none does for a few rounds, the cluster is down, not electing.
        let (mut answered, mut rounds) = (false, 0);
        loop {
            let patient = std::time::Instant::now() < deadline;
            if queue.is_empty() {
                rounds += 1;
                if !patient || (!answered && rounds >= 3) {
                    break;
                }
                // Everyone answered but nobody leads yet (an election): wait and go round again.
                tokio::time::sleep(Duration::from_millis(300)).await;
                queue = self.endpoints.clone();
                dead.clear();
            }
            let base = queue.remove(0);
            let url = format!("{base}{path}");
            let mut req = make(url.clone()).await?;
            let token = self.token().await?;
            let bearer = hyper::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| HttpError::BadAnswer { url: url.clone(), detail: e.to_string() })?;
            req.headers_mut().insert(hyper::header::AUTHORIZATION, bearer);
            let res = match self.http.send(req, timeout).await {
                Ok(resp) if !resp.status().is_success() => read_json::<serde_json::Value>(&url, resp)
                    .await
                    .and_then(|_| Err(HttpError::BadAnswer { url: url.clone(), detail: "unexpected answer".into() })),
                Ok(resp) => read(url.clone(), resp).await,
                Err(e) => Err(e),
            };
            answered |= !matches!(res, Err(HttpError::Unreachable { .. } | HttpError::Timeout { .. }));
            match res {
                Ok(t) => return Ok(t),
                // Only a redirect to the leader is retried: a refused request is not repeated.
                Err(HttpError::Problem(p)) if p.kind.ends_with(":not-leader") && patient => {
                    match p.leader.clone() {
                        // The named leader just failed us: let the election run before asking again.
                        Some(l) if dead.contains(&l) => tokio::time::sleep(Duration::from_millis(250)).await,
                        Some(l) => {
                            queue.retain(|q| q != &l);
                            queue.insert(0, l);
                        }
                        None => {}
                    }
                    last = Some(HttpError::Problem(p));
                }
                // An expired or refused token: log in again, once.
                Err(HttpError::Problem(p)) if p.kind.ends_with(":unauthenticated") && !renewed => {
                    renewed = true;
                    *self.token.lock().await = None;
                    queue.insert(0, base);
                    last = Some(HttpError::Problem(p));
                }
                Err(e @ (HttpError::Unreachable { .. } | HttpError::Timeout { .. })) => {
                    dead.push(base);
                    last = Some(e);
                }
                // A node that has not caught up yet did nothing: ask the next one. (Only this
                // answer: an `unavailable` one may come after work was attempted, e.g. a deposit.)
                Err(HttpError::Problem(p)) if p.kind.ends_with(":not-caught-up") => last = Some(HttpError::Problem(p)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(HttpError::Unreachable { url: path.into(), detail: "no endpoint".into() }))
    }

    /// The session token, logging in with the profile's signing key if there is none yet.
    pub async fn token(&self) -> Result<String, HttpError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            return Ok(t.clone());
        }
        let t = self.login().await?;
        *guard = Some(t.clone());
        Ok(t)
    }

    /// Signs a login challenge (user, this certificate's hash, the time) and gets a token from any node.
    async fn login(&self) -> Result<String, HttpError> {
        use base64::Engine;
        let local = |detail: String| HttpError::BadAnswer { url: "login".into(), detail };
        let certs = crate::tls::load_certs(&self.profile.cert).map_err(|e| local(e.to_string()))?;
        let user = match crate::tls::identity_of(certs[0].as_ref()).map_err(|e| local(e.to_string()))? {
            crate::tls::PeerIdentity::User(u) => u,
            crate::tls::PeerIdentity::Node(_) => return Err(local("the profile's certificate is a node's".into())),
        };
        let path = self.profile.signing_key.as_ref().ok_or_else(|| local("the profile names no signing_key: cannot log in".into()))?;
        let text = std::fs::read_to_string(path).map_err(|e| local(format!("{}: {e}", path.display())))?;
        let seed: [u8; 32] =
            hex::decode(text.trim()).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| local(format!("{}: not a signing key", path.display())))?;
        let key = crate::crypto::SigningKey::from_seed(&seed).map_err(|e| local(e.to_string()))?;
        let cert_sha = crate::crypto::sha256(certs[0].as_ref());
        let time_ms = crate::node::now_ms();
        let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&crate::auth::login_message(&user, &cert_sha, time_ms)));
        let body = crate::api::session::Login { user, time_ms, signature };
        let mut last = None;
        for base in &self.endpoints {
            let url = format!("{base}/v1/login");
            match self.http.call::<_, crate::api::session::Session>(Method::POST, &url, Some(&body), CALL_TIMEOUT).await {
                Ok(s) => return Ok(s.token),
                Err(e @ (HttpError::Unreachable { .. } | HttpError::Timeout { .. })) => last = Some(e),
                // That node has not caught up with the cluster (its registry is empty): try the next.
                Err(HttpError::Problem(p)) if p.kind.ends_with(":not-caught-up") => last = Some(HttpError::Problem(p)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(HttpError::Unreachable { url: "login".into(), detail: "no endpoint".into() }))
    }

    /// The profile's endpoints, one per node.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The HTTPS client over the profile's certificate.
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// `method path` on the one node at `base` (no leader following), logged in.
    pub async fn call_at<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, HttpError> {
        let url = format!("{base}{path}");
        for renewed in [false, true] {
            let mut req = crate::client::json_request(method.clone(), &url, body)?;
            let bearer = hyper::header::HeaderValue::from_str(&format!("Bearer {}", self.token().await?))
                .map_err(|e| HttpError::BadAnswer { url: url.clone(), detail: e.to_string() })?;
            req.headers_mut().insert(hyper::header::AUTHORIZATION, bearer);
            match self.http.json::<T>(req, timeout).await {
                Err(HttpError::Problem(p)) if p.kind.ends_with(":unauthenticated") && !renewed => *self.token.lock().await = None,
                other => return other,
            }
        }
        Err(HttpError::BadAnswer { url, detail: "refused twice".into() })
    }

    pub async fn call<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, HttpError> {
        self.send(path, timeout, |url| {
            let r = crate::client::json_request(method.clone(), &url, body);
            async move { r }
        })
        .await
    }
}

/// The client half of custody (`crate::sealing`) talks to the vault through the session.
impl crate::sealing::Vault for Session {
    fn endpoints(&self) -> &[String] {
        Session::endpoints(self)
    }

    fn call<B: Serialize + Sync, T: DeserializeOwned + Send>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<T, HttpError>> + Send {
        Session::call(self, method, path, body, timeout)
    }

    fn call_at<B: Serialize + Sync, T: DeserializeOwned + Send>(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<T, HttpError>> + Send {
        Session::call_at(self, base, method, path, body, timeout)
    }

    fn send<T, F, Fut>(&self, path: &str, timeout: Duration, make: F) -> impl std::future::Future<Output = Result<T, HttpError>> + Send
    where
        T: DeserializeOwned + Send,
        F: Fn(String) -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Result<Request<crate::client::Body>, HttpError>> + Send,
    {
        Session::send(self, path, timeout, make)
    }

    fn get_stream(
        &self,
        path: &str,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(String, hyper::Response<crate::client::Incoming>), HttpError>> + Send {
        self.send_with(
            path,
            timeout,
            |url| async move {
                Request::builder()
                    .method(Method::GET)
                    .uri(&url)
                    .body(crate::client::empty())
                    .map_err(|e| HttpError::BadAnswer { url, detail: e.to_string() })
            },
            |url, resp| async move { Ok((url, resp)) },
        )
    }
}

pub async fn status(s: &Session, json: bool) -> Result<(), Failure> {
    let st: ClusterStatus = s.call::<(), _>(Method::GET, "/v1/cluster/status", None, CALL_TIMEOUT).await?;
    emit(json, &serde_json::to_value(&st)?, || {
        let mut out =
            format!("cluster {}  leader: {}  term: {}", st.cluster_id, st.leader.map(|l| format!("node {l}")).unwrap_or("none".into()), st.term);
        if let Some(d) = st.dev_retention_secs {
            out.push_str(&format!("\nDEV CLUSTER: retention shortened to {d} s (standard) / {} s (important)", d * 2));
        }
        if st.dev_auto_unseal {
            out.push_str("\nDEV CLUSTER: nodes unseal themselves from a shares file, with no custodian");
        }
        for m in &st.members {
            let h = m.health.as_ref();
            out.push_str(&format!(
                "\n  node {:>2}  {:<24} {:<7} {:<10} applied {:>6}  {}",
                m.id,
                m.addr,
                if m.voter { "voter" } else { "learner" },
                match (h, &m.seal) {
                    (Some(h), _) => h.state.clone(),
                    (None, Some(s)) => format!("SEALED {}/{}", s.progress, s.threshold),
                    (None, None) => "UNREACHABLE".into(),
                },
                m.last_applied.map(|a| a.to_string()).unwrap_or("-".into()),
                h.map(|h| h.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("; ")).unwrap_or_default()
            ));
        }
        out
    });
    Ok(())
}

/// Binds node `id`'s keys (docs/KEYS.md §7): fetches the binding the node at
/// `addr` states, checks its certificate against the profile's CA and both of
/// its proofs, and files it signed with the administrator's key.
pub async fn bind_node(s: &Session, id: u64, addr: &str) -> Result<crate::api::registry::ChangeStatus, Failure> {
    let url = format!("{}/v1/node/binding", addr.trim_end_matches('/'));
    // A node just started may not listen yet (it opens its database first).
    let deadline = tokio::time::Instant::now() + NODE_START_PATIENCE;
    let binding: crate::vault::nodes::NodeBinding = loop {
        match s.http.call::<(), _>(Method::GET, &url, None, CALL_TIMEOUT).await {
            Ok(b) => break b,
            Err(HttpError::Unreachable { .. }) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(300)).await,
            Err(e) => return Err(Failure::new(1, format!("node {id} at {addr}: {e}"))),
        }
    };
    if binding.keys.node != id {
        return Err(Failure::new(1, format!("the node at {addr} is node {}, not {id}", binding.keys.node)));
    }
    let st: ClusterStatus = s.call::<(), _>(Method::GET, "/v1/cluster/status", None, CALL_TIMEOUT).await?;
    let der = binding.keys.certificate_der().map_err(|e| Failure::new(1, e))?;
    crate::tls::verify_node_certificate(&s.profile.ca, &der, id).map_err(|e| Failure::new(1, format!("node {id}'s binding: {e}")))?;
    binding.check(&st.cluster_id).map_err(|e| Failure::new(1, format!("node {id}'s binding: {e}")))?;
    super::registry::submit(s, crate::vault::registry::RegistryChange::BindNode { binding }).await
}

/// `cluster bind`: registers node `id`'s keys as it states them now.
pub async fn bind(s: &Session, id: u64, addr: &str, json: bool) -> Result<(), Failure> {
    let status = bind_node(s, id, addr).await?;
    emit(json, &serde_json::to_value(&status)?, || format!("node {id}'s keys and certificate: {:?} (change {})", status.status, status.change));
    Ok(())
}

pub async fn add_node(s: &Session, a: super::AddNodeArgs, json: bool) -> Result<(), Failure> {
    bind_node(s, a.id, &a.addr).await?;
    let body = AddMember { id: a.id, addr: a.addr, learner_only: a.learner_only };
    let st: ClusterStatus = s.call(Method::POST, "/v1/cluster/members", Some(&body), MEMBERSHIP_TIMEOUT).await?;
    emit(json, &serde_json::to_value(&st)?, || format!("node {} added; members: {:?}", body.id, st.members.iter().map(|m| m.id).collect::<Vec<_>>()));
    Ok(())
}

pub async fn remove_node(s: &Session, id: u64, json: bool) -> Result<(), Failure> {
    let st: ClusterStatus = s.call::<(), _>(Method::DELETE, &format!("/v1/cluster/members/{id}"), None, MEMBERSHIP_TIMEOUT).await?;
    emit(json, &serde_json::to_value(&st)?, || format!("node {id} removed; members: {:?}", st.members.iter().map(|m| m.id).collect::<Vec<_>>()));
    Ok(())
}

#[derive(Args, Clone)]
pub struct DepositArgs {
    pub file: PathBuf,
    #[arg(long)]
    pub case: String,
    #[arg(long)]
    pub system: String,
    #[arg(long)]
    pub retention: String,
    #[arg(long)]
    pub note: Option<String>,
}

pub async fn deposit(s: &Session, a: DepositArgs, json: bool) -> Result<DepositReceipt, Failure> {
    let receipt = upload(s, &a, !json).await?;
    emit(json, &serde_json::to_value(&receipt)?, || {
        format!(
            "deposited {}\n  item        {}\n  sha256      {}\n  size        {} bytes\n  leaf index  {}\n  retain until {}",
            a.file.display(),
            receipt.item,
            receipt.sha256,
            receipt.size,
            receipt.leaf_index,
            receipt.retain_until
        )
    });
    Ok(receipt)
}

/// Streams a clip to the leader (with a progress bar on a terminal) and returns the receipt.
pub async fn upload(s: &Session, a: &DepositArgs, progress: bool) -> Result<DepositReceipt, Failure> {
    let retention: crate::evidence::Retention = a.retention.parse().map_err(|e: String| Failure::new(2, e))?;
    let meta = crate::evidence::DepositMeta { case: a.case.clone(), system: a.system.clone(), retention, note: a.note.clone() };
    meta.validate().map_err(|e| Failure::new(2, e))?;
    let size = tokio::fs::metadata(&a.file).await.map_err(|e| Failure::new(2, format!("{}: {e}", a.file.display())))?.len();
    if size > crate::limits::MAX_CLIP_SIZE_BYTES {
        return Err(Failure::new(2, format!("a clip may be at most {} bytes", crate::limits::MAX_CLIP_SIZE_BYTES)));
    }
    let (depositor, key) = super::access::me(s)?;
    // One bar per attempt, drawn only on a terminal.
    let bar = || {
        if !progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let pb = ProgressBar::new(size);
        pb.set_style(
            ProgressStyle::with_template("{spinner} depositing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(pb)
    };
    crate::sealing::deposit(s, &a.file, size, meta, &depositor, &key, &bar).await.map_err(super::sealing_failure)
}

fn line(i: &ItemView) -> String {
    format!("{}  {:>12} B  case {:<16} system {:<12} {:<9} until {}", i.item, i.size, i.case, i.system, i.retention, i.retain_until)
}

/// `custody items`' filters (`GET /v1/items`' query).
#[derive(clap::Args, Debug)]
pub struct ItemsFilter {
    /// Only items of this case.
    #[arg(long)]
    pub case: Option<String>,
    /// Only items from this source system.
    #[arg(long)]
    pub system: Option<String>,
    /// Only items this officer deposited.
    #[arg(long)]
    pub depositor: Option<String>,
    /// Deposited at or after (RFC 3339, or YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Deposited before (RFC 3339, or YYYY-MM-DD: before the next day).
    #[arg(long)]
    pub until: Option<String>,
}

pub async fn items(s: &Session, f: &ItemsFilter, json: bool) -> Result<(), Failure> {
    let pairs: Vec<(&str, &String)> = [("case", &f.case), ("system", &f.system), ("depositor", &f.depositor), ("from", &f.from), ("until", &f.until)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
    let path = if pairs.is_empty() { "/v1/items".to_string() } else { format!("/v1/items?{}", serde_urlencoded::to_string(&pairs)?) };
    let list: ItemList = s.call::<(), _>(Method::GET, &path, None, CALL_TIMEOUT).await?;
    emit(json, &serde_json::to_value(&list)?, || {
        if list.items.is_empty() {
            "no items".into()
        } else {
            list.items.iter().map(line).collect::<Vec<_>>().join("\n")
        }
    });
    Ok(())
}

pub async fn show(s: &Session, item: &str, json: bool) -> Result<(), Failure> {
    let id: crate::evidence::ItemId = item.parse().map_err(|e| Failure::new(2, format!("{e}")))?;
    let d: ItemDetail = s.call::<(), _>(Method::GET, &format!("/v1/items/{id}"), None, CALL_TIMEOUT).await?;
    emit(json, &serde_json::to_value(&d)?, || {
        let i = &d.item;
        let mut out = format!(
            "item {}\n  sha256     {}\n  size       {} bytes in {} chunks\n  case       {}\n  system     {}\n  depositor  {}\n  deposited  {}\n  retention  {} (until {})",
            i.item,
            i.sha256,
            i.size,
            i.chunks.len(),
            i.case,
            i.system,
            i.depositor,
            i.deposited_at,
            i.retention,
            i.retain_until
        );
        out.push_str("\n  trail:");
        for t in &d.trail {
            out.push_str(&format!("\n    {} {} (leaf {}) by {}: {}", t.time, t.kind, t.leaf_index, t.who(), t.summary()));
        }
        out
    });
    Ok(())
}
