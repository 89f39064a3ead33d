//! Trusted time for checkpoints (RFC 3161; docs/AUDIT_FORMATS.md, "Trusted
//! time"). The leader asks the configured time-stamping authority for a token
//! on each new majority-cosigned checkpoint and publishes the token with it.
//! Like a witness, the TSA is never on the commit path: the request has a
//! short deadline, and a checkpoint is published without a token when the TSA
//! is down, slow, refusing, or answers something that fails the checks of
//! `audit::timestamp::accept_reply`. What the node knows of the TSA
//! lives only in memory; `cluster status` shows it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::audit::timestamp::{self, TimestampError};

use crate::client::{HttpError, PlainHttp};
use crate::wire::TsaStatus;

/// How long one request may take: a slow TSA delays the checkpoint it is
/// asked about by at most this.
pub const STAMP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why one request for a token failed.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("the TSA answered HTTP {status}")]
    Refused { status: u16 },
    #[error("the TSA's answer: {0}")]
    Reply(#[from] TimestampError),
    #[error("no random nonce: {0}")]
    Random(String),
}

#[derive(Clone, Debug, Default)]
struct Known {
    last_size: Option<u64>,
    last_ms: Option<u64>,
    last_round_trip_ms: Option<f64>,
    last_token_bytes: Option<u64>,
    last_error: Option<String>,
    last_error_ms: Option<u64>,
}

/// The configured TSA and what the node knows of it.
pub struct Tsa {
    http: PlainHttp,
    url: String,
    known: Mutex<Known>,
}

impl Tsa {
    pub fn new(url: String) -> Self {
        Tsa { http: PlainHttp::new(), url, known: Mutex::new(Known::default()) }
    }

    /// The TSA as `cluster status` shows it.
    pub fn status(&self) -> TsaStatus {
        let k = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        TsaStatus {
            url: self.url.clone(),
            last_stamped_size: k.last_size,
            last_stamped_at: k.last_ms.map(crate::wire::rfc3339_ms),
            last_round_trip_ms: k.last_round_trip_ms,
            last_token_bytes: k.last_token_bytes,
            last_error: k.last_error,
            last_error_at: k.last_error_ms.map(crate::wire::rfc3339_ms),
        }
    }

    /// A token (DER) on `checkpoint_text`, the text of the checkpoint of
    /// `size`; `None` when the TSA did not give a good one in time (recorded).
    pub async fn stamp(&self, checkpoint_text: &str, size: u64) -> Option<Vec<u8>> {
        let started = Instant::now();
        let r = match tokio::time::timeout(STAMP_TIMEOUT, self.ask(checkpoint_text)).await {
            Ok(r) => r,
            Err(_) => Err(StampError::Http(HttpError::Timeout { url: self.url.clone(), secs: STAMP_TIMEOUT.as_secs() })),
        };
        let now = super::now_ms();
        if let Ok(mut k) = self.known.lock() {
            match &r {
                Ok(token) => {
                    k.last_size = Some(size);
                    k.last_ms = Some(now);
                    k.last_round_trip_ms = Some(started.elapsed().as_secs_f64() * 1e3);
                    k.last_token_bytes = Some(token.len() as u64);
                    k.last_error = None;
                    k.last_error_ms = None;
                }
                Err(e) => {
                    k.last_error = Some(e.to_string());
                    k.last_error_ms = Some(now);
                }
            }
        }
        match r {
            Ok(token) => Some(token),
            Err(e) => {
                tracing::warn!(tsa = %self.url, size, error = %e, "no timestamp token for the checkpoint");
                None
            }
        }
    }

    async fn ask(&self, checkpoint_text: &str) -> Result<Vec<u8>, StampError> {
        let imprint = timestamp::imprint(checkpoint_text);
        let nonce = u64::from_be_bytes(crate::crypto::random_bytes::<8>().map_err(|e| StampError::Random(e.to_string()))?);
        let query = timestamp::request(&imprint, nonce)?;
        let (status, body) = self.http.post(&self.url, timestamp::QUERY_TYPE, query, timestamp::MAX_TOKEN_BYTES + 1024, STAMP_TIMEOUT).await?;
        if !status.is_success() {
            return Err(StampError::Refused { status: status.as_u16() });
        }
        Ok(timestamp::accept_reply(&body, &imprint, nonce)?)
    }
}
