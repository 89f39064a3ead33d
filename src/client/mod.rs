//! HTTPS over mutual TLS for everything that calls a node: the CLI, and nodes
//! calling each other. Speaks JSON and streams; turns problem documents into
//! typed errors. Knows no routes' meaning.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire::Problem;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;
pub type Incoming = hyper::body::Incoming;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{}: {}", .0.title, .0.detail)]
    Problem(Problem),
    #[error("unexpected answer from {url}: {detail}")]
    BadAnswer { url: String, detail: String },
}

impl HttpError {
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            HttpError::Problem(p) => Some(p),
            _ => None,
        }
    }
}

pub fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// An HTTPS client with connection reuse (HTTP/1.1 keep-alive, see `tls::https_connector`).
#[derive(Clone)]
pub struct Http {
    inner: Arc<std::sync::RwLock<Client<crate::tls::HttpsConnector, Body>>>,
    tls: crate::tls::ClientTls,
    names: crate::tls::NodeNames,
}

fn pooled_client(tls: &crate::tls::ClientTls, names: &crate::tls::NodeNames) -> Client<crate::tls::HttpsConnector, Body> {
    Client::builder(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(crate::limits::CLIENT_POOL_IDLE_SECS))
        .build(crate::tls::https_connector(tls.clone(), names.clone()))
}

impl Http {
    pub fn new(tls: crate::tls::ClientTls) -> Self {
        let names = crate::tls::NodeNames::default();
        let inner = Arc::new(std::sync::RwLock::new(pooled_client(&tls, &names)));
        Http { inner, tls, names }
    }

    fn client(&self) -> Client<crate::tls::HttpsConnector, Body> {
        match self.inner.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Forgets every pooled connection: the next call makes a new one, with
    /// a new handshake (after the TLS files changed: a revoked peer must
    /// not keep a connection made before). Calls in flight finish.
    pub fn drop_connections(&self) {
        let fresh = pooled_client(&self.tls, &self.names);
        match self.inner.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// The base URL to call node `id` at `addr` by, so that the call fails
    /// its handshake unless the server holds node `id`'s certificate
    /// (`tls::NodeNames`). Every node-to-node call goes through here.
    pub fn node_url(&self, id: u64, addr: &str) -> String {
        if crate::mutation::on(crate::mutation::Mutation::UnpinnedPeers) {
            return addr.to_string();
        }
        self.names.pin(id, addr)
    }

    /// [`Http::node_url`] for node `id` while sealed: the call fails its
    /// handshake unless the server holds node `id`'s seal certificate.
    pub fn sealed_node_url(&self, id: u64, addr: &str) -> String {
        self.names.pin_sealed(id, addr)
    }

    /// Sends a request; the answer's status is not interpreted.
    pub async fn send(&self, req: Request<Body>, timeout: Duration) -> Result<Response<Incoming>, HttpError> {
        let url = req.uri().to_string();
        match tokio::time::timeout(timeout, self.client().request(req)).await {
            Err(_) => Err(HttpError::Timeout { url, secs: timeout.as_secs() }),
            Ok(Err(e)) => {
                let mut detail = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    detail = format!("{detail}: {s}");
                    src = s.source();
                }
                Err(HttpError::Unreachable { url, detail })
            }
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Sends a request and reads a JSON answer, turning problem documents into errors.
    pub async fn json<T: DeserializeOwned>(&self, req: Request<Body>, timeout: Duration) -> Result<T, HttpError> {
        let url = req.uri().to_string();
        let resp = self.send(req, timeout).await?;
        read_json(&url, resp).await
    }

    /// `method url` with an optional JSON body.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, HttpError> {
        let req = json_request(method, url, body)?;
        self.json(req, timeout).await
    }
}

/// Builds a request with a JSON body (or none).
pub fn json_request<B: Serialize>(method: Method, url: &str, body: Option<&B>) -> Result<Request<Body>, HttpError> {
    let bad = |detail: String| HttpError::BadAnswer { url: url.to_string(), detail };
    let builder = Request::builder().method(method).uri(url);
    match body {
        None => builder.body(empty()).map_err(|e| bad(e.to_string())),
        Some(b) => {
            let bytes = serde_json::to_vec(b).map_err(|e| bad(e.to_string()))?;
            builder.header("content-type", "application/json").body(full(bytes)).map_err(|e| bad(e.to_string()))
        }
    }
}

/// Reads a whole (small) answer body, bounded by `limit` bytes.
pub async fn read_body(url: &str, resp: Response<Incoming>, limit: usize) -> Result<(StatusCode, Bytes), HttpError> {
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), limit);
    let bytes = body.collect().await.map_err(|e| HttpError::BadAnswer { url: url.to_string(), detail: e.to_string() })?.to_bytes();
    Ok((status, bytes))
}

/// Largest JSON answer the client reads.
const MAX_JSON_ANSWER_BYTES: usize = 64 * 1024 * 1024;

pub async fn read_json<T: DeserializeOwned>(url: &str, resp: Response<Incoming>) -> Result<T, HttpError> {
    let (status, bytes) = read_body(url, resp, MAX_JSON_ANSWER_BYTES).await?;
    if !status.is_success() {
        return Err(problem_from(url, status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| HttpError::BadAnswer { url: url.to_string(), detail: format!("bad JSON: {e}") })
}

pub fn problem_from(url: &str, status: StatusCode, bytes: &[u8]) -> HttpError {
    match serde_json::from_slice::<Problem>(bytes) {
        Ok(p) => HttpError::Problem(p),
        Err(_) => HttpError::BadAnswer {
            url: url.to_string(),
            detail: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)])),
        },
    }
}

/// A plain-HTTP client for the one interface whose peers are not the
/// cluster's: witnesses (`api/witness.rs` serves plain HTTP, since all it
/// carries is public and signed). Not for anything that carries secrets or
/// needs to know who answers.
#[derive(Clone)]
pub struct PlainHttp {
    inner: Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
}

impl Default for PlainHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl PlainHttp {
    pub fn new() -> Self {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        let inner = Client::builder(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(crate::limits::CLIENT_POOL_IDLE_SECS))
            .build(http);
        PlainHttp { inner }
    }

    /// `POST url` with a `text/plain` body; answers the status and at most
    /// `limit` bytes of body, all within `timeout`.
    pub async fn post_text(&self, url: &str, body: String, limit: usize, timeout: Duration) -> Result<(StatusCode, Bytes), HttpError> {
        self.post(url, "text/plain; charset=utf-8", body, limit, timeout).await
    }

    /// `POST url` with a body of `content_type`; answers the status and at
    /// most `limit` bytes of body, all within `timeout`.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        limit: usize,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", content_type)
            .body(full(body))
            .map_err(|e| HttpError::BadAnswer { url: url.to_string(), detail: e.to_string() })?;
        let work = async {
            let resp = self.inner.request(req).await.map_err(|e| {
                let mut detail = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    detail = format!("{detail}: {s}");
                    src = s.source();
                }
                HttpError::Unreachable { url: url.to_string(), detail }
            })?;
            read_body(url, resp, limit).await
        };
        match tokio::time::timeout(timeout, work).await {
            Err(_) => Err(HttpError::Timeout { url: url.to_string(), secs: timeout.as_secs() }),
            Ok(r) => r,
        }
    }
}
