//! The object-store chunk tier (`[chunks] backend = "s3"`, docs/STORAGE.md §"Object store"):
//! chunks, ciphertext only, as objects `<prefix><hex name>` in one S3 bucket that has Object Lock
//! enabled. Each object is locked in **compliance mode** until its item's retention ends, and
//! carries a legal hold while the item does, so the store itself refuses to delete or overwrite
//! it inside retention, whoever holds the credentials.
//!
//! This module is the home of `aws-sigv4` (every request is signed with Signature Version 4,
//! the payload hash included), `md-5` (the `Content-MD5` S3 asks of lock requests) and
//! `quick-xml` (S3's XML answers). Only the few S3 operations the vault uses are here; they work
//! against AWS S3, Ceph RGW and MinIO alike.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::ChunkName;

/// How long one request to the store may take, a whole chunk's transfer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest answer read from the store: a whole chunk, or a page of a version listing.
const MAX_ANSWER_BYTES: usize = crate::limits::MAX_CHUNK_SIZE_BYTES as usize + 1024 * 1024;
/// SHA-256 of no bytes: the payload hash of a request without a body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Where the chunks go, from a node config's `[chunks]` table.
#[derive(Clone, Debug)]
pub struct BucketConfig {
    /// `http://host:port` or `https://host:port` of the S3 API (path-style requests).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Object names start with this (default `chunks/`).
    pub prefix: String,
    /// The CA (PEM) an `https` endpoint's certificate is checked against.
    pub ca: Option<PathBuf>,
    /// Seconds between the leader's sweeps over every item's objects (the keeper).
    pub sweep_every_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("chunk {0} is not in the bucket")]
    Missing(ChunkName),
    #[error("the bucket's object for chunk {0} does not hash to its name")]
    HashMismatch(ChunkName),
    #[error("the object store refused {op}: HTTP {status} {code}: {message}")]
    Refused { op: String, status: u16, code: String, message: String },
    #[error("the object store could not be reached for {op}: {detail}")]
    Unreachable { op: String, detail: String },
    #[error("object store configuration: {0}")]
    Config(String),
}

impl BucketError {
    /// The S3 error code (`AccessDenied`, `NoSuchKey`…), when the store answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            BucketError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An object's lock as the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// `COMPLIANCE` or `GOVERNANCE`; `None` when the object has no retention.
    pub mode: Option<String>,
    /// The end of the retention, in Unix milliseconds.
    pub retain_until_ms: Option<u64>,
    pub legal_hold: bool,
}

/// One version of an object, newest first in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub version_id: String,
    /// A delete marker hides the versions under it; it has no bytes.
    pub delete_marker: bool,
    pub is_latest: bool,
}

/// An S3 answer: status, headers, body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

pub struct Bucket {
    cfg: BucketConfig,
    client: Client<crate::tls::ObjectStoreConnector, Full<Bytes>>,
    identity: aws_smithy_runtime_api::client::identity::Identity,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({}/{})", self.cfg.endpoint, self.cfg.bucket)
    }
}

fn md5_base64(body: &[u8]) -> String {
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// S3's timestamp form: `2027-01-31T12:00:00.000Z`.
fn iso8601(ms: u64) -> String {
    crate::wire::rfc3339_ms(ms)
}

fn parse_iso8601(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The first `<tag>…</tag>` text inside `xml` (S3's small answers: error codes, lock settings).
fn xml_text(xml: &[u8], tag: &str) -> Option<String> {
    let mut r = quick_xml::Reader::from_reader(xml);
    let mut inside = false;
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).ok()? {
            quick_xml::events::Event::Start(e) => inside = e.local_name().as_ref() == tag.as_bytes(),
            quick_xml::events::Event::Text(t) if inside => return t.decode().ok().map(|s| s.into_owned()),
            quick_xml::events::Event::End(_) if inside => return Some(String::new()),
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
        buf.clear();
    }
}

/// The `<Version>` and `<DeleteMarker>` entries of a `ListVersionsResult`, in the order given
/// (newest first for each key), with whether the listing was truncated.
fn parse_versions(xml: &[u8], key: &str) -> Result<(Vec<Version>, bool), String> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut truncated = false;
    // The entry being read: (is a delete marker, key, version id, is latest).
    let mut entry: Option<(bool, String, String, bool)> = None;
    let mut field = String::new();
    loop {
        match r.read_event_into(&mut buf).map_err(|e| e.to_string())? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match name.as_str() {
                    "Version" => entry = Some((false, String::new(), String::new(), false)),
                    "DeleteMarker" => entry = Some((true, String::new(), String::new(), false)),
                    _ => field = name,
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| e.to_string())?.into_owned();
                match (entry.as_mut(), field.as_str()) {
                    (Some(e), "Key") => e.1 = text,
                    (Some(e), "VersionId") => e.2 = text,
                    (Some(e), "IsLatest") => e.3 = text == "true",
                    (None, "IsTruncated") => truncated = text == "true",
                    _ => {}
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                if name.as_ref() == b"Version" || name.as_ref() == b"DeleteMarker" {
                    if let Some((delete_marker, k, version_id, is_latest)) = entry.take() {
                        if k == key {
                            out.push(Version { version_id, delete_marker, is_latest });
                        }
                    }
                }
                field.clear();
            }
            Event::Eof => return Ok((out, truncated)),
            _ => {}
        }
        buf.clear();
    }
}

impl Bucket {
    pub fn new(cfg: BucketConfig) -> Result<Self, BucketError> {
        if !(cfg.endpoint.starts_with("http://") || cfg.endpoint.starts_with("https://")) {
            return Err(BucketError::Config(format!("endpoint `{}` must start with http:// or https://", cfg.endpoint)));
        }
        let connector = crate::tls::object_store_connector(cfg.ca.as_deref()).map_err(|e| BucketError::Config(e.to_string()))?;
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        let identity = aws_credential_types::Credentials::new(&cfg.access_key, &cfg.secret_key, None, None, "custody-node-config").into();
        Ok(Bucket { cfg, client, identity })
    }

    pub fn config(&self) -> &BucketConfig {
        &self.cfg
    }

    /// The object name of a chunk.
    pub fn key(&self, name: &ChunkName) -> String {
        format!("{}{name}", self.cfg.prefix)
    }

    fn url(&self, key: Option<&str>, query: &str) -> String {
        let base = self.cfg.endpoint.trim_end_matches('/');
        let path = match key {
            Some(k) => format!("{base}/{}/{k}", self.cfg.bucket),
            None => format!("{base}/{}", self.cfg.bucket),
        };
        if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        }
    }

    /// Sends one signed request. `payload_sha256` is the hex SHA-256 of `body`, which the
    /// signature covers and the store checks against the bytes it receives.
    async fn send(
        &self,
        op: &str,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        payload_sha256: &str,
    ) -> Result<Answer, BucketError> {
        let unreachable = |detail: String| BucketError::Unreachable { op: op.to_string(), detail };
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = aws_sigv4::http_request::PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = aws_sigv4::http_request::UriPathNormalizationMode::Disabled;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.cfg.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| BucketError::Config(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Precomputed(payload_sha256.to_string()),
        )
        .map_err(|e| unreachable(format!("signing: {e}")))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| unreachable(format!("signing: {e}")))?.into_parts();
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let mut req = req.body(Full::new(body)).map_err(|e| unreachable(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut req);
        let work = async {
            let resp = self.client.request(req).await.map_err(|e| unreachable(format!("{e:?}")))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
            Ok(Answer { status: parts.status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work).await.map_err(|_| unreachable(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
    }

    fn refused(op: &str, a: &Answer) -> BucketError {
        BucketError::Refused {
            op: op.to_string(),
            status: a.status.as_u16(),
            code: xml_text(&a.body, "Code").unwrap_or_default(),
            message: xml_text(&a.body, "Message").unwrap_or_default(),
        }
    }

    async fn xml_call(&self, op: &str, method: Method, key: Option<&str>, query: &str, body: String) -> Result<Answer, BucketError> {
        let body = Bytes::from(body);
        let hash = hex::encode(crate::crypto::sha256(&body));
        let headers = [("content-md5", md5_base64(&body)), ("content-type", "application/xml".to_string())];
        let a = self.send(op, method, &self.url(key, query), &headers, body, &hash).await?;
        if !a.status.is_success() {
            return Err(Self::refused(op, &a));
        }
        Ok(a)
    }

    /// Makes sure the bucket exists with Object Lock enabled, creating it if it does not exist.
    /// A bucket without Object Lock is refused: the store could not keep its promise.
    pub async fn ensure(&self) -> Result<(), BucketError> {
        let a = self.send("GetObjectLockConfiguration", Method::GET, &self.url(None, "object-lock="), &[], Bytes::new(), EMPTY_SHA256).await?;
        let a = if a.status == StatusCode::NOT_FOUND && xml_text(&a.body, "Code").as_deref() == Some("NoSuchBucket") {
            let headers = [("x-amz-bucket-object-lock-enabled", "true".to_string())];
            let c = self.send("CreateBucket", Method::PUT, &self.url(None, ""), &headers, Bytes::new(), EMPTY_SHA256).await?;
            if !c.status.is_success() {
                return Err(Self::refused("CreateBucket", &c));
            }
            tracing::info!(bucket = %self.cfg.bucket, "created the chunk bucket with Object Lock enabled");
            self.send("GetObjectLockConfiguration", Method::GET, &self.url(None, "object-lock="), &[], Bytes::new(), EMPTY_SHA256).await?
        } else {
            a
        };
        if a.status.is_success() && xml_text(&a.body, "ObjectLockEnabled").as_deref() == Some("Enabled") {
            return Ok(());
        }
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            return Err(BucketError::Config(format!(
                "bucket `{}` does not have Object Lock enabled; it can only be enabled when a bucket is made: make a new one",
                self.cfg.bucket
            )));
        }
        Err(Self::refused("GetObjectLockConfiguration", &a))
    }

    /// Writes a chunk. The signature covers the payload's SHA-256, which is the chunk's name, and
    /// the store refuses a body that does not hash to it: a completed PUT is a checked copy.
    pub async fn put(&self, name: &ChunkName, sealed: Bytes) -> Result<(), BucketError> {
        let headers = [("content-type", "application/octet-stream".to_string())];
        let a = self.send("PutObject", Method::PUT, &self.url(Some(&self.key(name)), ""), &headers, sealed, &name.to_string()).await?;
        if !a.status.is_success() {
            return Err(Self::refused("PutObject", &a));
        }
        Ok(())
    }

    /// Reads a chunk (its current version, or `version`) and checks it against its name.
    pub async fn get(&self, name: &ChunkName) -> Result<Bytes, BucketError> {
        self.get_version(name, None).await
    }

    async fn get_version(&self, name: &ChunkName, version: Option<&str>) -> Result<Bytes, BucketError> {
        let query = version.map(|v| format!("versionId={v}")).unwrap_or_default();
        let a = self.send("GetObject", Method::GET, &self.url(Some(&self.key(name)), &query), &[], Bytes::new(), EMPTY_SHA256).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Err(BucketError::Missing(*name));
        }
        if !a.status.is_success() {
            return Err(Self::refused("GetObject", &a));
        }
        if !name.matches(&a.body) {
            return Err(BucketError::HashMismatch(*name));
        }
        Ok(a.body)
    }

    /// The current version's lock, or `None` when the chunk is not in the bucket.
    pub async fn lock_of(&self, name: &ChunkName) -> Result<Option<Lock>, BucketError> {
        let key = self.key(name);
        let r = self.send("GetObjectRetention", Method::GET, &self.url(Some(&key), "retention="), &[], Bytes::new(), EMPTY_SHA256).await?;
        let (mode, retain_until_ms) = match r.status {
            s if s.is_success() => (xml_text(&r.body, "Mode"), xml_text(&r.body, "RetainUntilDate").as_deref().and_then(parse_iso8601)),
            StatusCode::NOT_FOUND if xml_text(&r.body, "Code").as_deref() == Some("NoSuchKey") => return Ok(None),
            // No retention set on an object that exists.
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => (None, None),
            _ => return Err(Self::refused("GetObjectRetention", &r)),
        };
        let h = self.send("GetObjectLegalHold", Method::GET, &self.url(Some(&key), "legal-hold="), &[], Bytes::new(), EMPTY_SHA256).await?;
        let legal_hold = match h.status {
            s if s.is_success() => xml_text(&h.body, "Status").as_deref() == Some("ON"),
            StatusCode::NOT_FOUND if xml_text(&h.body, "Code").as_deref() == Some("NoSuchKey") => return Ok(None),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => false,
            _ => return Err(Self::refused("GetObjectLegalHold", &h)),
        };
        Ok(Some(Lock { mode, retain_until_ms, legal_hold }))
    }

    /// Locks a chunk in compliance mode until `until_ms` (rounded up to the second). The store
    /// refuses to shorten a compliance lock; this only ever extends one.
    pub async fn lock(&self, name: &ChunkName, until_ms: u64) -> Result<(), BucketError> {
        let until = until_ms.div_ceil(1000) * 1000;
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>COMPLIANCE</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            iso8601(until)
        );
        self.xml_call("PutObjectRetention", Method::PUT, Some(&self.key(name)), "retention=", body).await.map(|_| ())
    }

    /// Sets or lifts a chunk's legal hold.
    pub async fn legal_hold(&self, name: &ChunkName, on: bool) -> Result<(), BucketError> {
        let body =
            format!("<LegalHold xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>{}</Status></LegalHold>", if on { "ON" } else { "OFF" });
        self.xml_call("PutObjectLegalHold", Method::PUT, Some(&self.key(name)), "legal-hold=", body).await.map(|_| ())
    }

    /// Every version of a chunk's object, newest first (delete markers included).
    pub async fn versions(&self, name: &ChunkName) -> Result<Vec<Version>, BucketError> {
        let key = self.key(name);
        let a = self
            .send("ListObjectVersions", Method::GET, &self.url(None, &format!("prefix={key}&versions=")), &[], Bytes::new(), EMPTY_SHA256)
            .await?;
        if !a.status.is_success() {
            return Err(Self::refused("ListObjectVersions", &a));
        }
        let (v, truncated) = parse_versions(&a.body, &key)
            .map_err(|e| BucketError::Unreachable { op: "ListObjectVersions".into(), detail: format!("unreadable answer: {e}") })?;
        if truncated {
            return Err(BucketError::Unreachable { op: "ListObjectVersions".into(), detail: format!("more than one page of versions of {key}") });
        }
        Ok(v)
    }

    /// Deletes one version of a chunk's object (the store refuses while it is locked).
    pub async fn delete_version(&self, name: &ChunkName, version_id: &str) -> Result<(), BucketError> {
        let url = self.url(Some(&self.key(name)), &format!("versionId={version_id}"));
        let a = self.send("DeleteObject", Method::DELETE, &url, &[], Bytes::new(), EMPTY_SHA256).await?;
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(Self::refused("DeleteObject", &a))
    }

    /// Deletes every version of a chunk's object (purge after retention, or a failed deposit's
    /// unlocked chunks). Stops at the first version the store refuses to delete.
    pub async fn delete_all(&self, name: &ChunkName) -> Result<usize, BucketError> {
        let versions = self.versions(name).await?;
        for v in &versions {
            self.delete_version(name, &v.version_id).await?;
        }
        Ok(versions.len())
    }

    /// Brings back the newest intact version of a chunk when versions written over it (an
    /// altered copy) or delete markers (a "deleted" one) hide it: deletes those newer versions.
    /// The store refuses to delete a locked version, and the vault's own are locked, so this only
    /// ever removes what someone put over them. `Ok(false)`: no intact version is left.
    pub async fn restore(&self, name: &ChunkName) -> Result<bool, BucketError> {
        let versions = self.versions(name).await?;
        let mut newer: Vec<String> = Vec::new();
        for v in &versions {
            if !v.delete_marker {
                match self.get_version(name, Some(&v.version_id)).await {
                    Ok(_) => {
                        for n in &newer {
                            self.delete_version(name, n).await?;
                        }
                        return Ok(true);
                    }
                    Err(BucketError::HashMismatch(_)) | Err(BucketError::Missing(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            newer.push(v.version_id.clone());
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_listing_is_read_in_order_with_its_delete_markers() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>chunks/ab</Prefix><IsTruncated>false</IsTruncated>
<DeleteMarker><Key>chunks/ab</Key><VersionId>v3</VersionId><IsLatest>true</IsLatest></DeleteMarker>
<Version><Key>chunks/ab</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest><Size>3</Size></Version>
<Version><Key>chunks/abc</Key><VersionId>other</VersionId><IsLatest>true</IsLatest></Version>
<Version><Key>chunks/ab</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest></Version></ListVersionsResult>"#;
        let (v, truncated) = parse_versions(xml, "chunks/ab").unwrap();
        assert!(!truncated);
        let ids: Vec<(&str, bool)> = v.iter().map(|v| (v.version_id.as_str(), v.delete_marker)).collect();
        assert_eq!(ids, [("v3", true), ("v2", false), ("v1", false)]);
        assert!(v[0].is_latest && !v[1].is_latest);
    }

    #[test]
    fn an_error_answer_gives_its_code() {
        let xml = br#"<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>forbidden by object lock</Message></Error>"#;
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(xml_text(xml, "Message").as_deref(), Some("forbidden by object lock"));
        assert_eq!(xml_text(xml, "Missing"), None);
    }

    #[test]
    fn lock_dates_are_s3_timestamps() {
        assert_eq!(parse_iso8601(&iso8601(1_800_000_000_000)), Some(1_800_000_000_000));
        assert_eq!(parse_iso8601("2027-01-31T12:00:00Z"), Some(1_801_396_800_000));
    }
}
