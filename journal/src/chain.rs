//! Owns the hash chain: the exact bytes a row's hash covers and the genesis link.
//! Pure computation; it never reads or writes the database.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first event (seq 1): 32 zero bytes.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Domain separation tag, so a journal hash can never collide with a hash of some other
/// structure that happens to share the framing. Bumping it would invalidate every stored hash.
const DOMAIN_TAG: &[u8] = b"journal-event-v1\0";

/// The hashed columns of one row, as stored (integers as SQLite's 64-bit values, text as raw bytes).
///
/// `verify` builds this from whatever the database holds, so the framing must accept any value,
/// including out-of-range integers and hashes of the wrong length.
pub(crate) struct RowImage<'a> {
    pub seq: i64,
    pub prev_hash: &'a [u8],
    pub run_id: &'a [u8],
    pub time_ms: i64,
    pub kind: &'a [u8],
    pub schema_version: i64,
    pub payload: &'a [u8],
}

impl RowImage<'_> {
    /// SHA-256 over the domain tag and every column but `hash`, in a fixed order. Integers are
    /// 8 bytes big-endian; byte strings are prefixed by their length as 8 bytes big-endian.
    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN_TAG);
        hasher.update(self.seq.to_be_bytes());
        framed(&mut hasher, self.prev_hash);
        framed(&mut hasher, self.run_id);
        hasher.update(self.time_ms.to_be_bytes());
        framed(&mut hasher, self.kind);
        hasher.update(self.schema_version.to_be_bytes());
        framed(&mut hasher, self.payload);
        hasher.finalize().into()
    }
}

fn framed(hasher: &mut Sha256, bytes: &[u8]) {
    // usize -> u64 never truncates on supported targets (usize is at most 64 bits).
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image<'a>(run_id: &'a [u8], kind: &'a [u8]) -> RowImage<'a> {
        RowImage {
            seq: 1,
            prev_hash: &GENESIS_HASH,
            run_id,
            time_ms: 0,
            kind,
            schema_version: 1,
            payload: b"",
        }
    }

    #[test]
    fn moving_bytes_between_adjacent_text_columns_changes_the_hash() {
        // Without length prefixes ("ab","c") and ("a","bc") would hash the same.
        assert_ne!(image(b"ab", b"c").hash(), image(b"a", b"bc").hash());
    }

    #[test]
    fn the_hash_covers_the_sequence_number() {
        let first = image(b"run", b"kind");
        let moved = RowImage {
            seq: 2,
            ..image(b"run", b"kind")
        };
        assert_ne!(first.hash(), moved.hash());
    }

    #[test]
    fn the_hash_is_deterministic() {
        assert_eq!(image(b"run", b"kind").hash(), image(b"run", b"kind").hash());
    }
}
