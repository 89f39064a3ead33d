//! Node bindings (docs/KEYS.md §7): which keys speak for which node. A node
//! states its own checkpoint, session and share public keys, signs the
//! statement with its checkpoint key and with the key of its node
//! certificate; an administrator's signed registry change (or, for the first
//! members, the genesis written by `cluster init`) registers it. Apply checks
//! both proofs and the administrator's signature on every node, so neither a
//! leader nor a node alone can put a key in a member's name.
//!
//! Each checkpoint key is kept with the range of tree sizes it may sign for,
//! so a removed or rebound node's old key stops counting toward a court's
//! majority for later checkpoints.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{audit, decode, StateRead, Tx, VaultError};
use crate::audit::records::NodeAction;

/// Begins the bytes a node signs to bind its keys.
pub const BINDING_CONTEXT: &[u8] = b"custody/node-binding/v1\n";

/// What a node states about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeKeys {
    pub cluster_id: String,
    pub node: u64,
    /// Its checkpoint verifier key, signed-note form (`<name>+<key id>+<base64>`);
    /// the name is `custody-<cluster id>-node<id>`.
    pub checkpoint_key: String,
    /// Base64 of its 32-byte Ed25519 session-token public key.
    pub session_key: String,
    /// Hex of its 32-byte X25519 share public key.
    pub share_key: String,
    /// Base64 of the DER of its node certificate (DNS name `node-<id>.custody`).
    pub certificate: String,
}

/// A node's keys with its two proofs of possession.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeBinding {
    pub keys: NodeKeys,
    /// Base64 Ed25519 signature by the checkpoint key over [`NodeKeys::signing_bytes`].
    pub checkpoint_proof: String,
    /// Base64 signature by the certificate's key over the same bytes (ECDSA
    /// P-256 with SHA-256, ASN.1 DER; or Ed25519, as the certificate's key is).
    pub certificate_proof: String,
}

/// The signed-note key name of node `id`'s checkpoint key.
pub fn checkpoint_key_name(cluster_id: &str, id: u64) -> String {
    format!("custody-{cluster_id}-node{id}")
}

impl NodeKeys {
    /// `BINDING_CONTEXT` ‖ the keys as canonical JSON (RFC 8785).
    pub fn signing_bytes(&self) -> Result<Vec<u8>, String> {
        let v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let body = crate::audit::to_canonical_bytes(&v).map_err(|e| format!("the binding has no canonical form: {e}"))?;
        Ok([BINDING_CONTEXT, &body].concat())
    }

    pub fn checkpoint_verifier(&self) -> Result<crate::audit::VerifierKey, String> {
        crate::audit::VerifierKey::parse(&self.checkpoint_key).map_err(|e| format!("bad checkpoint key: {e}"))
    }

    pub fn session_key_bytes(&self) -> Result<[u8; 32], String> {
        BASE64.decode(&self.session_key).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| "a session key is the base64 of 32 bytes".into())
    }

    pub fn share_key_bytes(&self) -> Result<[u8; 32], String> {
        crate::evidence::parse_hex::<32>(&self.share_key, "share key").map_err(|_| "a share key is 64 lowercase hex digits".into())
    }

    pub fn certificate_der(&self) -> Result<Vec<u8>, String> {
        BASE64.decode(&self.certificate).map_err(|_| "the certificate is not base64".into())
    }
}

impl NodeBinding {
    /// Makes a node's binding: signs its keys with its checkpoint key and its
    /// certificate's key (PKCS#8).
    pub fn sign(keys: NodeKeys, checkpoint: &crate::audit::Signer, tls_pkcs8: &[u8]) -> Result<Self, String> {
        let bytes = keys.signing_bytes()?;
        let checkpoint_proof = BASE64.encode(checkpoint.sign_bytes(&bytes));
        let (_, sig) = crate::crypto::sign_with_pkcs8(tls_pkcs8, &bytes).map_err(|e| e.to_string())?;
        Ok(NodeBinding { keys, checkpoint_proof, certificate_proof: BASE64.encode(sig) })
    }

    /// Everything that can be checked without the CA: the fields, the key
    /// name, that the certificate names this node, and both proofs. (The
    /// administrator's client checks the certificate's chain to the CA
    /// before it signs; see `tls::verify_node_certificate`.)
    pub fn check(&self, cluster_id: &str) -> Result<(), String> {
        let k = &self.keys;
        if k.cluster_id != cluster_id {
            return Err(format!("the binding is for cluster {}, not {cluster_id}", k.cluster_id));
        }
        if k.node == 0 || k.node > crate::limits::MAX_NODE_ID {
            return Err(format!("node ids are 1 to {}", crate::limits::MAX_NODE_ID));
        }
        let vk = k.checkpoint_verifier()?;
        if vk.name() != checkpoint_key_name(cluster_id, k.node) {
            return Err(format!("the checkpoint key is named {}, not {}", vk.name(), checkpoint_key_name(cluster_id, k.node)));
        }
        k.session_key_bytes()?;
        k.share_key_bytes()?;
        let der = k.certificate_der()?;
        match crate::tls::identity_of(&der) {
            Ok(crate::tls::PeerIdentity::Node(id)) if id == k.node => {}
            Ok(_) => return Err(format!("the certificate is not node {}'s", k.node)),
            Err(e) => return Err(format!("the certificate does not parse: {e}")),
        }
        let bytes = k.signing_bytes()?;
        let proof = BASE64.decode(&self.checkpoint_proof).map_err(|_| "the checkpoint proof is not base64")?;
        if !crate::crypto::verify_ed25519(vk.public_key(), &bytes, &proof) {
            return Err("the checkpoint proof does not verify: the node does not hold that checkpoint key".into());
        }
        let (kind, public) = crate::tls::certificate_key(&der).map_err(|e| e.to_string())?;
        let proof = BASE64.decode(&self.certificate_proof).map_err(|_| "the certificate proof is not base64")?;
        if !crate::crypto::verify_with_cert_key(kind, &public, &bytes, &proof) {
            return Err("the certificate proof does not verify: the binding is not signed with the node certificate's key".into());
        }
        Ok(())
    }
}

/// A checkpoint key with the tree sizes it may sign checkpoints for:
/// `from_size ≤ size`, and `size ≤ until_size` once it is retired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyRange {
    pub node: u64,
    pub key: String,
    pub from_size: u64,
    pub until_size: Option<u64>,
    /// The leaf that bound it.
    pub leaf_index: u64,
}

/// A node's current binding and the leaf that recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub binding: NodeBinding,
    pub leaf_index: u64,
}

pub mod keys {
    pub const BINDING_PREFIX: &[u8] = b"a/binding/";
    pub const RANGE_PREFIX: &[u8] = b"a/keyrange/";
    pub fn binding(node: u64) -> Vec<u8> {
        [BINDING_PREFIX, &node.to_be_bytes()].concat()
    }
    pub fn range(node: u64, leaf: u64) -> Vec<u8> {
        [RANGE_PREFIX, &node.to_be_bytes(), &leaf.to_be_bytes()].concat()
    }
}

/// Node `id`'s current binding.
pub fn bound(s: &dyn StateRead, id: u64) -> Result<Option<Bound>, VaultError> {
    let k = keys::binding(id);
    s.get(&k)?.map(|v| decode(&k, &v)).transpose()
}

/// Every checkpoint key ever bound, with its range, by node then leaf.
pub fn key_ranges(s: &dyn StateRead) -> Result<Vec<KeyRange>, VaultError> {
    s.scan_prefix(keys::RANGE_PREFIX)?.iter().map(|(k, v)| decode(k, v)).collect()
}

/// Closes node `id`'s open checkpoint-key range at the current tree size.
fn close_range(tx: &mut Tx<'_>, id: u64) -> Result<(), VaultError> {
    let size = audit::size(tx)?;
    for (k, v) in tx.scan_prefix(&[keys::RANGE_PREFIX, &id.to_be_bytes()].concat())? {
        let mut r: KeyRange = decode(&k, &v)?;
        if r.until_size.is_none() {
            r.until_size = Some(size);
            tx.put_json(k, &r);
        }
    }
    Ok(())
}

/// Registers a checked binding (the caller checked it and who signed it) and
/// returns what its record says; an identical current binding is `None`.
pub(super) fn bind(tx: &mut Tx<'_>, b: &NodeBinding) -> Result<Option<NodeAction>, VaultError> {
    let id = b.keys.node;
    if bound(tx, id)?.is_some_and(|cur| cur.binding == *b) {
        return Ok(None);
    }
    close_range(tx, id)?;
    let k = &b.keys;
    let unrecordable = VaultError::Unrecordable;
    let leaf_index = audit::size(tx)?;
    tx.put(audit::keys::node_key(id), k.checkpoint_verifier().map_err(unrecordable)?.to_string().into_bytes());
    tx.put(audit::keys::session_key(id), k.session_key_bytes().map_err(unrecordable)?.to_vec());
    tx.put(audit::keys::share_key(id), k.share_key_bytes().map_err(unrecordable)?.to_vec());
    tx.put_json(keys::binding(id), &Bound { binding: b.clone(), leaf_index });
    let range = KeyRange { node: id, key: k.checkpoint_key.clone(), from_size: leaf_index + 1, until_size: None, leaf_index };
    tx.put_json(keys::range(id, leaf_index), &range);
    let cert_sha256 = hex::encode(crate::crypto::sha256(&k.certificate_der().map_err(unrecordable)?));
    let binding = serde_json::to_value(b).map_err(|e| VaultError::Unrecordable(e.to_string()))?;
    Ok(Some(NodeAction::Bind {
        node: id,
        checkpoint_key: k.checkpoint_key.clone(),
        session_key: k.session_key.clone(),
        share_key: k.share_key.clone(),
        certificate_sha256: cert_sha256,
        binding: Some(binding),
    }))
}

/// A member left the cluster: its keys stop counting (its checkpoint key's
/// range closes at the current size) and are forgotten.
pub(super) fn retire(tx: &mut Tx<'_>, id: u64) -> Result<bool, VaultError> {
    if bound(tx, id)?.is_none() {
        return Ok(false);
    }
    close_range(tx, id)?;
    tx.delete(keys::binding(id));
    tx.delete(audit::keys::node_key(id));
    tx.delete(audit::keys::session_key(id));
    tx.delete(audit::keys::share_key(id));
    Ok(true)
}
