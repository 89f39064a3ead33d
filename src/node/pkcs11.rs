//! Unsealing with a PKCS#11 token instead of custodians (docs/KEYS.md §8.5):
//! the one home of `cryptoki`. An AES-256 key made inside the token (never
//! extractable) wraps the node's root key with AES-GCM; the wrapped root key
//! is kept in the sealed file (`pkcs11`), and a node configured with the
//! token (`[seal.pkcs11]`) unwraps it at start, logged in with its PIN.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};

use crate::config::Pkcs11Config;
use crate::crypto::Secret;

/// Begins the associated data of a wrapped root key.
const WRAP_CONTEXT: &[u8] = b"custody/pkcs11-root/v1\0";

/// The root key wrapped by a token's key: the sealed file's `pkcs11` member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wrapped {
    /// The label of the token's AES-256 key (CKA_LABEL).
    pub key_label: String,
    /// The AES-GCM nonce, 24 hex digits.
    pub nonce: String,
    /// The wrapped root key and its 16-byte tag, base64.
    pub ciphertext: String,
}

/// The token a node's config names, with its PIN read.
pub struct Token {
    module: std::path::PathBuf,
    token: String,
    pin: Secret<String>,
    key_label: String,
}

impl Token {
    pub fn from_config(c: &Pkcs11Config) -> anyhow::Result<Token> {
        let pin = Secret::new(std::fs::read_to_string(&c.pin_file).with_context(|| format!("reading the PIN file {}", c.pin_file.display()))?);
        Ok(Token { module: c.module.clone(), token: c.token.clone(), pin: Secret::new(pin.trim().to_string()), key_label: c.key_label.clone() })
    }

    /// A logged-in read-write session on the token labelled `self.token`.
    fn session(&self) -> anyhow::Result<(Pkcs11, Session)> {
        let p = Pkcs11::new(Path::new(&self.module)).with_context(|| format!("loading the PKCS#11 module {}", self.module.display()))?;
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).context("initialising the PKCS#11 module")?;
        let mut found = None;
        for slot in p.get_slots_with_token()? {
            if p.get_token_info(slot)?.label().trim_end() == self.token {
                found = Some(slot);
            }
        }
        let slot = found.ok_or_else(|| anyhow!("no PKCS#11 token labelled {:?} in {}", self.token, self.module.display()))?;
        let s = p.open_rw_session(slot)?;
        s.login(UserType::User, Some(&AuthPin::new(self.pin.as_str().into()))).with_context(|| format!("logging in to token {:?}", self.token))?;
        Ok((p, s))
    }

    fn find_key(&self, s: &Session) -> anyhow::Result<Option<ObjectHandle>> {
        let found = s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(self.key_label.as_bytes().to_vec())])?;
        if found.len() > 1 {
            bail!("the token holds {} secret keys labelled {:?}: expected one", found.len(), self.key_label);
        }
        Ok(found.into_iter().next())
    }

    /// Wraps `root` with the token's key (made there if absent: AES-256,
    /// sensitive, not extractable). `aad` is the sealed file's header.
    pub fn wrap(&self, root: &[u8; 32], aad: &[u8]) -> anyhow::Result<Wrapped> {
        let (_p, s) = self.session()?;
        let key = match self.find_key(&s)? {
            Some(k) => k,
            None => s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Label(self.key_label.as_bytes().to_vec()),
                ],
            )?,
        };
        let mut nonce = crate::crypto::random_bytes::<12>()?;
        let ad = [WRAP_CONTEXT, aad].concat();
        let ct = s.encrypt(&Mechanism::AesGcm(GcmParams::new(&mut nonce, &ad, 128.into())?), key, root)?;
        Ok(Wrapped { key_label: self.key_label.clone(), nonce: hex::encode(nonce), ciphertext: base64::engine::general_purpose::STANDARD.encode(ct) })
    }

    /// The root key `w` wraps, unwrapped by the token.
    pub fn unwrap(&self, w: &Wrapped, aad: &[u8]) -> anyhow::Result<Secret<[u8; 32]>> {
        if w.key_label != self.key_label {
            bail!("the sealed file's root key is wrapped by token key {:?}, the config names {:?}", w.key_label, self.key_label);
        }
        let (_p, s) = self.session()?;
        let key = self.find_key(&s)?.ok_or_else(|| anyhow!("token {:?} holds no key labelled {:?}", self.token, self.key_label))?;
        let mut nonce: [u8; 12] =
            hex::decode(&w.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(|| anyhow!("pkcs11.nonce is not 24 hex digits"))?;
        let ct = base64::engine::general_purpose::STANDARD.decode(&w.ciphertext).context("pkcs11.ciphertext is not base64")?;
        let ad = [WRAP_CONTEXT, aad].concat();
        let plain = Secret::new(
            s.decrypt(&Mechanism::AesGcm(GcmParams::new(&mut nonce, &ad, 128.into())?), key, &ct)
                .context("the token does not unwrap this root key (another key, or a changed sealed file)")?,
        );
        let root: [u8; 32] = plain.as_slice().try_into().map_err(|_| anyhow!("the unwrapped root key is not 32 bytes"))?;
        Ok(Secret::new(root))
    }
}
