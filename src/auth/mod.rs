//! The one importer of `jsonwebtoken`: short-lived session tokens (EdDSA),
//! issued after a user signs a login challenge with their registered key,
//! bound to the client certificate they were issued over (RFC 8705 `cnf` /
//! `x5t#S256`), verifiable on every node (the signing key is derived from the
//! cluster KEK). Knows nothing of HTTP routes or the registry's storage.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a session key is derived for.
pub const SESSION_KEY_CONTEXT: &[u8] = b"custody/session-key/v1";
/// What a login signature covers first.
pub const LOGIN_CONTEXT: &str = "custody/login/v1";
/// How long a session token lives.
pub const TOKEN_TTL_SECS: u64 = 600;
/// How far a login's stated time may be from the node's clock.
pub const LOGIN_SKEW_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("session token rejected: {0}")]
    Token(String),
    #[error("the token was issued over another client certificate")]
    WrongCertificate,
    #[error("the token names {token}, the certificate {cert}")]
    WrongUser { token: String, cert: String },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub cnf: Confirmation,
}

/// A token that verified; only [`SessionKeys::verify`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    user: String,
}

impl VerifiedToken {
    pub fn user(&self) -> &str {
        &self.user
    }
}

/// `x5t#S256`: base64url of the SHA-256 of the certificate's DER.
pub fn thumbprint(cert_sha256: &[u8; 32]) -> String {
    B64URL.encode(cert_sha256)
}

/// The bytes a user signs to log in.
pub fn login_message(user: &str, cert_sha256: &[u8; 32], time_ms: u64) -> Vec<u8> {
    format!("{LOGIN_CONTEXT}\n{user}\n{}\n{time_ms}\n", thumbprint(cert_sha256)).into_bytes()
}

pub struct SessionKeys {
    enc: EncodingKey,
    dec: DecodingKey,
    audience: String,
    /// Tokens whose signature and audience already verified, by SHA-256 of
    /// the token text: a session makes many calls, and checking its
    /// signature once per node is enough. Expiry, certificate and user are
    /// still checked on every call.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>,
}

/// Most verified tokens a node remembers; past this the memory is cleared.
const VERIFIED_TOKENS_KEPT: usize = 10_000;

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl SessionKeys {
    /// Keys from a 32-byte Ed25519 seed; tokens are for `audience` (the cluster id).
    pub fn new(seed: &[u8; 32], public_key: &[u8; 32], audience: &str) -> Self {
        // PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410): fixed prefix, then the seed.
        let mut der = hex::decode("302e020100300506032b657004220420").expect("constant hex");
        der.extend_from_slice(seed);
        SessionKeys {
            enc: EncodingKey::from_ed_der(&der),
            dec: DecodingKey::from_ed_der(public_key),
            audience: audience.to_string(),
            verified: Default::default(),
        }
    }

    pub fn issue(&self, user: &str, cert_sha256: &[u8; 32], now_secs: u64) -> Result<String, AuthError> {
        let claims = Claims {
            sub: user.into(),
            aud: self.audience.clone(),
            iat: now_secs,
            exp: now_secs + TOKEN_TTL_SECS,
            cnf: Confirmation { x5t_s256: thumbprint(cert_sha256) },
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.enc).map_err(|e| AuthError::Token(e.to_string()))
    }

    /// EdDSA only, this cluster's audience, not expired, issued to this user over this certificate.
    pub fn verify(&self, token: &str, user: &str, cert_sha256: &[u8; 32]) -> Result<VerifiedToken, AuthError> {
        let key = crate::crypto::sha256(token.as_bytes());
        let known = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let claims = match known {
            // The same expiry rule jsonwebtoken applies with no leeway.
            Some(c) if c.exp >= now_secs() => c,
            Some(_) => return Err(AuthError::Token("ExpiredSignature".into())),
            None => {
                let mut v = Validation::new(Algorithm::EdDSA);
                v.set_audience(&[&self.audience]);
                v.leeway = 0;
                v.set_required_spec_claims(&["exp", "aud", "sub"]);
                let data = jsonwebtoken::decode::<Claims>(token, &self.dec, &v).map_err(|e| AuthError::Token(e.to_string()))?;
                let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= VERIFIED_TOKENS_KEPT {
                    cache.clear();
                }
                cache.insert(key, data.claims.clone());
                data.claims
            }
        };
        if claims.cnf.x5t_s256 != thumbprint(cert_sha256) {
            return Err(AuthError::WrongCertificate);
        }
        if claims.sub != user {
            return Err(AuthError::WrongUser { token: claims.sub, cert: user.into() });
        }
        Ok(VerifiedToken { user: claims.sub })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        let seed = [7u8; 32];
        let public = crate::crypto::SigningKey::from_seed(&seed).unwrap().public_key();
        SessionKeys::new(&seed, &public, "cluster-a")
    }

    fn token(k: &SessionKeys, exp: u64) -> String {
        let claims =
            Claims { sub: "alice".into(), aud: "cluster-a".into(), iat: now_secs(), exp, cnf: Confirmation { x5t_s256: thumbprint(&[1; 32]) } };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &k.enc).unwrap()
    }

    #[test]
    fn a_remembered_token_still_expires_and_stays_bound() {
        let k = keys();
        let t = token(&k, now_secs() + 1);
        assert_eq!(k.verify(&t, "alice", &[1; 32]).unwrap().user(), "alice");
        // From memory now: the certificate and the user are still checked.
        assert!(matches!(k.verify(&t, "alice", &[2; 32]), Err(AuthError::WrongCertificate)));
        assert!(matches!(k.verify(&t, "bob", &[1; 32]), Err(AuthError::WrongUser { .. })));
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(k.verify(&t, "alice", &[1; 32]).is_err(), "an expired token must fail even when remembered");
    }

    #[test]
    fn an_altered_token_is_checked_afresh() {
        let k = keys();
        let t = token(&k, now_secs() + 600);
        k.verify(&t, "alice", &[1; 32]).unwrap();
        let mut forged = t.clone().into_bytes();
        let n = forged.len();
        forged[n - 3] = if forged[n - 3] == b'A' { b'B' } else { b'A' };
        assert!(k.verify(std::str::from_utf8(&forged).unwrap(), "alice", &[1; 32]).is_err());
    }
}
