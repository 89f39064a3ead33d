//! The one importer of `jsonwebtoken`: short-lived session tokens (EdDSA),
//! issued after a user signs a login challenge with their registered key,
//! bound to the client certificate they were issued over (RFC 8705 `cnf` /
//! `x5t#S256`). There is no cluster-wide session secret: each node signs the
//! tokens it issues with its own Ed25519 key (header `kid` = `node-<id>`), and
//! a token verifies only with the key registered for a current member
//! (docs/KEYS.md §3). A verified token is the one way to a [`Principal`], the
//! person a `/v1` request acts for. Knows nothing of HTTP routes or the
//! registry's storage.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
    #[error("the token was not issued by a current member node (kid {0:?})")]
    UnknownIssuer(Option<String>),
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
    issuer: u64,
}

impl VerifiedToken {
    pub fn user(&self) -> &str {
        &self.user
    }
    /// The member node that issued it.
    pub fn issuer(&self) -> u64 {
        self.issuer
    }
}

/// The authenticated person a `/v1` request acts for: the user of a session
/// token that verified against this node's registered members' keys, over the
/// client certificate it was issued for. It carries identity only: roles are
/// not cached here, because the vault checks them in apply against the
/// registry as it stands when the command commits.
///
/// Its field is private and its one constructor, [`Principal::of`], consumes a
/// [`VerifiedToken`], which only [`SessionKeys::verify`] makes. So every entry
/// point of `node/` that acts for a user takes a `Principal`, and a handler
/// that skipped the session check has none to hand it: it does not compile.
///
/// Outside `auth/` a `Principal` cannot be written down from a name:
///
/// ```compile_fail,E0451
/// let p = custody::auth::Principal { name: "alice".to_string() };
/// ```
///
/// nor can the token it is made from:
///
/// ```compile_fail,E0451
/// let t = custody::auth::VerifiedToken { user: "alice".to_string(), issuer: 1 };
/// ```
///
/// It can only be received, and read:
///
/// ```
/// fn acts_for(who: &custody::auth::Principal) -> &str {
///     who.name()
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    name: String,
}

impl Principal {
    /// The person a verified token names. The session check calls this once
    /// the token verified over the request's client certificate and the person
    /// is registered and unrevoked.
    pub fn of(token: VerifiedToken) -> Principal {
        Principal { name: token.user }
    }

    /// The person's registered name (what the vault's records call `by`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The `kid` of the tokens node `id` issues.
pub fn key_id(node: u64) -> String {
    format!("node-{node}")
}

fn node_of_key_id(kid: &str) -> Option<u64> {
    kid.strip_prefix("node-").and_then(|n| n.parse().ok()).filter(|n: &u64| n.to_string() == kid["node-".len()..])
}

/// `x5t#S256`: base64url of the SHA-256 of the certificate's DER.
pub fn thumbprint(cert_sha256: &[u8; 32]) -> String {
    B64URL.encode(cert_sha256)
}

/// The bytes a user signs to log in.
pub fn login_message(user: &str, cert_sha256: &[u8; 32], time_ms: u64) -> Vec<u8> {
    format!("{LOGIN_CONTEXT}\n{user}\n{}\n{time_ms}\n", thumbprint(cert_sha256)).into_bytes()
}

/// This node's token key, and its memory of tokens it verified.
pub struct SessionKeys {
    enc: EncodingKey,
    node: u64,
    audience: String,
    /// Tokens whose signature and audience already verified, by SHA-256 of
    /// the token text, with their issuer: a session makes many calls, and
    /// checking its signature once per node is enough. Expiry, certificate,
    /// user and that the issuer is still a member with that key are checked
    /// on every call.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Claims, u64, [u8; 32])>>,
}

/// Most verified tokens a node remembers; past this the memory is cleared.
const VERIFIED_TOKENS_KEPT: usize = 10_000;

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl SessionKeys {
    /// Node `node`'s keys from its 32-byte Ed25519 seed; tokens are for `audience` (the cluster id).
    pub fn new(node: u64, seed: &[u8; 32], audience: &str) -> Self {
        // PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410): fixed prefix, then the seed.
        let mut der = hex::decode("302e020100300506032b657004220420").expect("constant hex");
        der.extend_from_slice(seed);
        SessionKeys { enc: EncodingKey::from_ed_der(&der), node, audience: audience.to_string(), verified: Default::default() }
    }

    pub fn issue(&self, user: &str, cert_sha256: &[u8; 32], now_secs: u64) -> Result<String, AuthError> {
        let claims = Claims {
            sub: user.into(),
            aud: self.audience.clone(),
            iat: now_secs,
            exp: now_secs + TOKEN_TTL_SECS,
            cnf: Confirmation { x5t_s256: thumbprint(cert_sha256) },
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key_id(self.node));
        jsonwebtoken::encode(&header, &claims, &self.enc).map_err(|e| AuthError::Token(e.to_string()))
    }

    /// EdDSA only, issued by a current member (`issuer_key` gives a member's
    /// registered session key, `None` for any other node), this cluster's
    /// audience, not expired, issued to this user over this certificate.
    pub fn verify(
        &self,
        token: &str,
        user: &str,
        cert_sha256: &[u8; 32],
        issuer_key: impl Fn(u64) -> Option<[u8; 32]>,
    ) -> Result<VerifiedToken, AuthError> {
        let key = crate::crypto::sha256(token.as_bytes());
        let known = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let (claims, issuer) = match known {
            // Still a member, with the key that signed it.
            Some((c, issuer, pk)) if issuer_key(issuer) == Some(pk) => {
                // The same expiry rule jsonwebtoken applies with no leeway.
                if c.exp < now_secs() {
                    return Err(AuthError::Token("ExpiredSignature".into()));
                }
                (c, issuer)
            }
            _ => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Token(e.to_string()))?;
                let issuer = header.kid.as_deref().and_then(node_of_key_id).ok_or(AuthError::UnknownIssuer(header.kid.clone()))?;
                let pk = issuer_key(issuer).ok_or(AuthError::UnknownIssuer(header.kid.clone()))?;
                let mut v = Validation::new(Algorithm::EdDSA);
                v.set_audience(&[&self.audience]);
                v.leeway = 0;
                v.set_required_spec_claims(&["exp", "aud", "sub"]);
                let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_ed_der(&pk), &v).map_err(|e| AuthError::Token(e.to_string()))?;
                let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= VERIFIED_TOKENS_KEPT {
                    cache.clear();
                }
                cache.insert(key, (data.claims.clone(), issuer, pk));
                (data.claims, issuer)
            }
        };
        if claims.cnf.x5t_s256 != thumbprint(cert_sha256) {
            return Err(AuthError::WrongCertificate);
        }
        if claims.sub != user {
            return Err(AuthError::WrongUser { token: claims.sub, cert: user.into() });
        }
        Ok(VerifiedToken { user: claims.sub, issuer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(seed: u8) -> [u8; 32] {
        crate::crypto::SigningKey::from_seed(&[seed; 32]).unwrap().public_key()
    }

    fn keys(node: u64, seed: u8) -> SessionKeys {
        SessionKeys::new(node, &[seed; 32], "cluster-a")
    }

    /// Members 1 and 2, with keys from seeds 7 and 8.
    fn members(n: u64) -> Option<[u8; 32]> {
        match n {
            1 => Some(public(7)),
            2 => Some(public(8)),
            _ => None,
        }
    }

    fn token(k: &SessionKeys, exp: u64) -> String {
        let claims =
            Claims { sub: "alice".into(), aud: "cluster-a".into(), iat: now_secs(), exp, cnf: Confirmation { x5t_s256: thumbprint(&[1; 32]) } };
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(key_id(k.node));
        jsonwebtoken::encode(&h, &claims, &k.enc).unwrap()
    }

    #[test]
    fn a_remembered_token_still_expires_and_stays_bound() {
        let k = keys(1, 7);
        let t = token(&k, now_secs() + 1);
        assert_eq!(k.verify(&t, "alice", &[1; 32], members).unwrap().user(), "alice");
        // From memory now: the certificate and the user are still checked.
        assert!(matches!(k.verify(&t, "alice", &[2; 32], members), Err(AuthError::WrongCertificate)));
        assert!(matches!(k.verify(&t, "bob", &[1; 32], members), Err(AuthError::WrongUser { .. })));
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(k.verify(&t, "alice", &[1; 32], members).is_err(), "an expired token must fail even when remembered");
    }

    #[test]
    fn an_altered_token_is_checked_afresh() {
        let k = keys(1, 7);
        let t = token(&k, now_secs() + 600);
        k.verify(&t, "alice", &[1; 32], members).unwrap();
        let mut forged = t.clone().into_bytes();
        let n = forged.len();
        forged[n - 3] = if forged[n - 3] == b'A' { b'B' } else { b'A' };
        assert!(k.verify(std::str::from_utf8(&forged).unwrap(), "alice", &[1; 32], members).is_err());
    }

    #[test]
    fn any_member_verifies_another_members_token_and_nothing_else() {
        let one = keys(1, 7);
        let two = keys(2, 8);
        let t = token(&two, now_secs() + 600);
        assert_eq!(one.verify(&t, "alice", &[1; 32], members).unwrap().issuer(), 2, "node 1 accepts node 2's token");
        // A key no member holds, claiming to be node 2.
        let impostor = keys(2, 9);
        let t = token(&impostor, now_secs() + 600);
        assert!(one.verify(&t, "alice", &[1; 32], members).is_err());
        // A non-member node with its own key.
        let stranger = keys(3, 9);
        assert!(matches!(one.verify(&token(&stranger, now_secs() + 600), "alice", &[1; 32], members), Err(AuthError::UnknownIssuer(_))));
    }

    #[test]
    fn a_removed_members_tokens_stop_at_once_even_when_remembered() {
        let one = keys(1, 7);
        let t = token(&keys(2, 8), now_secs() + 600);
        one.verify(&t, "alice", &[1; 32], members).unwrap();
        let without_two = |n: u64| if n == 1 { Some(public(7)) } else { None };
        assert!(one.verify(&t, "alice", &[1; 32], without_two).is_err());
        // And a re-keyed member's old tokens too.
        let rekeyed = |n: u64| if n == 2 { Some(public(10)) } else { members(n) };
        assert!(one.verify(&t, "alice", &[1; 32], rekeyed).is_err());
    }

    #[test]
    fn a_kid_is_exactly_node_and_a_decimal_id() {
        assert_eq!(node_of_key_id("node-12"), Some(12));
        for bad in ["node-012", "node-", "node-+1", "12", "Node-1", "node-1 "] {
            assert_eq!(node_of_key_id(bad), None, "{bad}");
        }
    }
}
