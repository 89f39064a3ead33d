//! The C2SP `tlog-tiles` layout of the audit tree, as pure arithmetic: which
//! resource a path names, whether a tree of a given size has it, and which
//! stored tree nodes (or leaves) it is made of. A tile of level `l` holds
//! hashes of tree level `8·l`, so each of its hashes is one stored
//! `a/node/<8·l><index>` (docs/STORAGE.md): no tile needs hashing.

/// Hashes in a full tile, entries in a full entry bundle.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels a tile spans.
pub const TILE_HEIGHT: u32 = 8;

/// What a `tile/...` path (after `tile/`) names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// `<L>/<N>[.p/<W>]`: hashes of tree level 8·L.
    Hashes { level: u8, index: u64, width: u64 },
    /// `entries/<N>[.p/<W>]`: leaves.
    Entries { index: u64, width: u64 },
}

impl Tile {
    pub fn width(&self) -> u64 {
        match *self {
            Tile::Hashes { width, .. } | Tile::Entries { width, .. } => width,
        }
    }
    pub fn is_partial(&self) -> bool {
        self.width() < TILE_WIDTH
    }

    /// The tree level of this tile's hashes (0 for entries and level-0 tiles).
    pub fn tree_level(&self) -> u32 {
        match *self {
            Tile::Hashes { level, .. } => u32::from(level) * TILE_HEIGHT,
            Tile::Entries { .. } => 0,
        }
    }

    /// The tree-node (or leaf) indices this tile serves, at [`Tile::tree_level`].
    pub fn node_range(&self) -> std::ops::Range<u64> {
        let (index, width) = match *self {
            Tile::Hashes { index, width, .. } | Tile::Entries { index, width } => (index, width),
        };
        let start = index * TILE_WIDTH; // parse() bounds index so this does not overflow
        start..start + width
    }

    /// Whether a tree of `size` leaves has this resource: every hash in it is
    /// of a complete subtree within the first `size` leaves. (A partial tile of
    /// an earlier, smaller tree stays servable: it is a prefix of what is there.)
    pub fn exists_in(&self, size: u64) -> bool {
        if self.tree_level() >= 64 {
            return false; // a subtree of 2^64 leaves is beyond any u64 size
        }
        let end = u128::from(self.node_range().end);
        let span = 1u128 << self.tree_level();
        end * span <= u128::from(size)
    }

    /// The spec's path of this resource, after `tile/`.
    pub fn path(&self) -> String {
        let (head, index) = match *self {
            Tile::Hashes { level, index, .. } => (level.to_string(), index),
            Tile::Entries { index, .. } => ("entries".to_string(), index),
        };
        let mut p = format!("{head}/{}", encode_index(index));
        if self.is_partial() {
            p.push_str(&format!(".p/{}", self.width()));
        }
        p
    }

    /// Parses a path after `tile/`, strictly as the spec writes it (no leading
    /// zeroes in `L` or `W`, 3-digit elements, `x` on all but the last).
    pub fn parse(path: &str) -> Option<Tile> {
        let (head, rest) = path.split_once('/')?;
        let (n, width) = match rest.split_once(".p/") {
            Some((n, w)) => {
                let w = decimal(w)?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return None;
                }
                (n, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let index = decode_index(n)?;
        if head == "entries" {
            return Some(Tile::Entries { index, width });
        }
        let level = decimal(head)?;
        if level > 63 {
            return None;
        }
        Some(Tile::Hashes { level: level as u8, index, width })
    }

    /// The level-`level + 1` tile that holds this full tile's hash, and the
    /// position of that hash in it. None for entries.
    pub fn parent(&self) -> Option<(Tile, u64)> {
        match *self {
            Tile::Hashes { level, index, .. } => {
                Some((Tile::Hashes { level: level.checked_add(1)?, index: index / TILE_WIDTH, width: TILE_WIDTH }, index % TILE_WIDTH))
            }
            Tile::Entries { .. } => None,
        }
    }
}

/// A decimal with no leading zeroes (but "0").
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// The tile index as zero-padded 3-digit path elements, all but the last
/// prefixed with `x`: 1234067 → `x001/x234/067`.
pub fn encode_index(mut n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// The inverse of [`encode_index`]; only its exact output is accepted. The
/// index is bounded so that `index · 256` fits in a u64.
pub fn decode_index(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split('/').collect();
    let (last, init) = parts.split_last()?;
    let mut n: u64 = 0;
    for (i, p) in init.iter().enumerate() {
        let digits = p.strip_prefix('x')?;
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) || (i == 0 && digits == "000") {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    if last.len() != 3 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n = n.checked_mul(1000)?.checked_add(last.parse().ok()?)?;
    if n > u64::MAX / TILE_WIDTH - 1 {
        return None;
    }
    Some(n)
}

/// An entry bundle's framing of one leaf: big-endian uint16 length, then the
/// bytes. None for a leaf of more than 65 535 bytes, which the format cannot
/// carry.
pub fn frame_entry(out: &mut Vec<u8>, leaf: &[u8]) -> Option<()> {
    let len = u16::try_from(leaf.len()).ok()?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(leaf);
    Some(())
}

/// The leaves of an entry bundle, or None if it is not exactly a sequence of framed entries.
pub fn unframe_entries(mut bundle: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bundle.is_empty() {
        let len = usize::from(u16::from_be_bytes(bundle.get(..2)?.try_into().ok()?));
        out.push(bundle.get(2..2 + len)?);
        bundle = &bundle[2 + len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's example, and the edges of the encoding.
    #[test]
    fn indices_encode_as_the_spec_writes_them() {
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(5), "005");
        assert_eq!(encode_index(999), "999");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(1_000_000), "x001/x000/000");
        for n in [0, 1, 999, 1000, 1234067, 70_000 / 256, u64::MAX / 256 - 1] {
            assert_eq!(decode_index(&encode_index(n)), Some(n), "{n}");
        }
        for bad in ["", "1", "01", "0000", "x001", "001/234", "x000/001", "x01/234", "x001/x234/67", "y001/234", "x001/x234/0a7", "-01"] {
            assert_eq!(decode_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_parse_strictly() {
        assert_eq!(Tile::parse("0/x001/x234/067"), Some(Tile::Hashes { level: 0, index: 1234067, width: 256 }));
        assert_eq!(Tile::parse("1/000.p/17"), Some(Tile::Hashes { level: 1, index: 0, width: 17 }));
        assert_eq!(Tile::parse("entries/273.p/112"), Some(Tile::Entries { index: 273, width: 112 }));
        assert_eq!(Tile::parse("entries/x001/000"), Some(Tile::Entries { index: 1000, width: 256 }));
        for bad in ["00/000", "64/000", "0/000.p/0", "0/000.p/256", "0/000.p/017", "0/000.p/", "0/0", "entries/000.p/1/x", "0"] {
            assert_eq!(Tile::parse(bad), None, "{bad}");
        }
        for t in [Tile::Hashes { level: 2, index: 1234067, width: 256 }, Tile::Entries { index: 7, width: 3 }] {
            assert_eq!(Tile::parse(&t.path()), Some(t));
        }
    }

    /// The spec's example: a tree of 70 000 leaves is 273 full level-0 tiles, a
    /// partial one of width 112, one full level-1 tile, a partial one of width
    /// 17 and a partial level-2 tile of width 1; a tree of 256, one full
    /// level-0 tile and a level-1 tile of width 1.
    #[test]
    fn the_spec_example_trees_have_the_spec_tiles() {
        let h = |level, index, width| Tile::Hashes { level, index, width };
        let s = 70_000;
        assert!(h(0, 272, 256).exists_in(s) && !h(0, 273, 256).exists_in(s));
        assert!(h(0, 273, 112).exists_in(s) && !h(0, 273, 113).exists_in(s));
        assert!(Tile::Entries { index: 273, width: 112 }.exists_in(s));
        assert!(h(1, 0, 256).exists_in(s) && !h(1, 1, 256).exists_in(s));
        assert!(h(1, 1, 17).exists_in(s) && !h(1, 1, 18).exists_in(s));
        assert!(h(2, 0, 1).exists_in(s) && !h(2, 0, 2).exists_in(s) && !h(3, 0, 1).exists_in(s));
        assert!(h(0, 0, 256).exists_in(256) && h(1, 0, 1).exists_in(256) && !h(0, 1, 1).exists_in(256));
        assert!(!h(63, u64::MAX / 256 - 1, 255).exists_in(u64::MAX));
        assert_eq!(h(1, 300, 256).parent(), Some((h(2, 1, 256), 44)));
    }

    #[test]
    fn entries_frame_with_a_u16_length() {
        let mut b = Vec::new();
        frame_entry(&mut b, b"{}").unwrap();
        frame_entry(&mut b, b"").unwrap();
        assert_eq!(b, [0, 2, b'{', b'}', 0, 0]);
        assert_eq!(unframe_entries(&b), Some(vec![b"{}".as_slice(), b"".as_slice()]));
        assert!(frame_entry(&mut b, &vec![0; 65_536]).is_none());
        assert!(unframe_entries(&[0, 3, 1]).is_none());
    }
}
