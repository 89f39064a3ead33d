//! The item-head statement: what proves a bundle's trail is the item's whole
//! trail (docs/AUDIT_FORMATS.md, "Item-head statement").
//!
//! A signed note whose text is seven lines:
//!
//! ```text
//! custody/item-head/v1
//! <origin>            the checkpoint's origin
//! <item>              the item id, 32 lowercase hex
//! <size>              the checkpoint's size, decimal
//! <root>              the checkpoint's root, base64
//! <records>           how many records about the item the first <size> leaves hold, decimal
//! <head>              the leaf index of the last of them, decimal
//! ```
//!
//! Each node signs it with its checkpoint key only from its own applied
//! state: its own tree has that root at that size, and its own index of the
//! item's records counts that many below that size, the last at that index.
//! A court accepts it on the checkpoint's rule, a strict majority of the keys
//! valid at that size, and then needs exactly that many distinct records
//! about the item in the bundle, the last at that index: leaving any out is
//! then impossible without a majority of the nodes lying.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::bundle::{keys_at, TrustedKey};
use crate::merkle::Hash;
use crate::note::{verify_note_quorum, Note};

/// The first line of every item-head statement (never a checkpoint's origin:
/// a checkpoint's second line is a size, this one's an origin).
pub const ITEM_HEAD_CONTEXT: &str = "custody/item-head/v1";

/// What the statement says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemHead {
    pub origin: String,
    pub item: String,
    pub size: u64,
    pub root: Hash,
    /// Records about the item among the first `size` leaves, the deposit included.
    pub records: u64,
    /// The leaf index of the last of them.
    pub head: u64,
}

/// Decimal without sign or leading zeros (`0` alone is zero).
fn decimal(s: &str, what: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(format!("{what} `{s}` is not a decimal number without leading zeros"));
    }
    s.parse().map_err(|_| format!("{what} `{s}` is too large"))
}

impl ItemHead {
    /// The signed text, ending in a newline.
    pub fn to_text(&self) -> String {
        format!("{ITEM_HEAD_CONTEXT}\n{}\n{}\n{}\n{}\n{}\n{}\n", self.origin, self.item, self.size, BASE64.encode(self.root), self.records, self.head)
    }

    /// Parses the text exactly: seven lines, each in its one form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let body = text.strip_suffix('\n').ok_or("the text does not end in a newline")?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [context, origin, item, size, root, records, head] = lines[..] else {
            return Err(format!("{} lines, not the 7 of an item-head statement", lines.len()));
        };
        if context != ITEM_HEAD_CONTEXT {
            return Err(format!("not an item-head statement (first line `{context}`)"));
        }
        if origin.is_empty() {
            return Err("empty origin".into());
        }
        if item.len() != 32 || !item.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("item `{item}` is not 32 lowercase hex digits"));
        }
        let root: Hash = BASE64.decode(root).ok().and_then(|r| r.try_into().ok()).ok_or("the root is not 32 bytes of base64")?;
        let h = ItemHead {
            origin: origin.to_string(),
            item: item.to_string(),
            size: decimal(size, "size")?,
            root,
            records: decimal(records, "records")?,
            head: decimal(head, "head")?,
        };
        if h.to_text() != text {
            return Err("not in its one canonical form".into());
        }
        if h.records == 0 || h.head >= h.size {
            return Err(format!("{} records ending at leaf {} cannot be in a tree of size {}", h.records, h.head, h.size));
        }
        Ok(h)
    }
}

/// Verifies an item-head note against the trusted keys valid at its size:
/// a strict majority of them must have signed it, and a signature line whose
/// name and key id match a trusted key must verify (others are ignored). Returns the statement, its signers and
/// how many keys were valid.
pub fn verify_item_head(note: &str, keys: &[TrustedKey]) -> Result<(ItemHead, Vec<String>, usize), String> {
    let parsed = Note::parse(note).map_err(|e| e.to_string())?;
    let head = ItemHead::parse(&parsed.text)?;
    let valid = keys_at(keys, head.size);
    if valid.is_empty() {
        return Err(format!("no trusted key may sign for size {}", head.size));
    }
    // The checkpoint's rule: a line whose name and key id match a trusted key
    // must verify, a line of any other key id is ignored (C2SP signed-note),
    // and a strict majority of the keys valid at that size must have signed.
    let verified = verify_note_quorum(note, &valid).map_err(|e| format!("{e} (keys valid at size {})", head.size))?;
    Ok((head, verified.signers().to_vec(), valid.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::{sign_note, Signer};

    fn head() -> ItemHead {
        ItemHead { origin: "custody.vault/c1".into(), item: "0123456789abcdef0123456789abcdef".into(), size: 40, root: [7; 32], records: 5, head: 38 }
    }

    #[test]
    fn the_text_round_trips_and_only_its_one_form_parses() {
        let h = head();
        let text = h.to_text();
        assert_eq!(ItemHead::parse(&text).unwrap(), h);
        for bad in [
            text.replace("\n5\n", "\n05\n"),
            text.replace("custody/item-head/v1", "custody/item-head/v2"),
            text.replace("0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789abcdef"),
            text.trim_end().to_string(),
            format!("{text}extra\n"),
            text.replace("\n38\n", "\n40\n"),
            text.replace("\n5\n", "\n0\n"),
        ] {
            assert!(ItemHead::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_majority_of_the_keys_valid_at_its_size_must_sign() {
        let signers: Vec<Signer> = (1..=3u8).map(|i| Signer::from_seed(&format!("custody.vault/c1/node-{i}"), &[i; 32]).unwrap()).collect();
        let keys: Vec<TrustedKey> = signers.iter().map(|s| TrustedKey::always(s.verifier_key())).collect();
        let text = head().to_text();
        let two = sign_note(&text, &[&signers[0], &signers[1]]).unwrap();
        let (h, by, valid) = verify_item_head(&two, &keys).unwrap();
        assert_eq!((h, by.len(), valid), (head(), 2, 3));
        let one = sign_note(&text, &[&signers[2]]).unwrap();
        assert!(verify_item_head(&one, &keys).unwrap_err().contains("2 needed"));
        // Keys that may sign only from a later size do not count.
        let late: Vec<TrustedKey> = keys.iter().map(|k| TrustedKey { from_size: 41, ..k.clone() }).collect();
        assert!(verify_item_head(&two, &late).is_err());
        // A checkpoint signed by the same keys is no item-head statement.
        let cp = sign_note("custody.vault/c1\n40\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", &[&signers[0], &signers[1]]).unwrap();
        assert!(verify_item_head(&cp, &keys).is_err());
    }
}
