//! Owns integrity checking: walking the chain row by row, and comparing it with an anchor
//! the caller kept elsewhere. It only reads; it never repairs or rewrites anything.

use crate::append::head_link;
use crate::chain::GENESIS_HASH;
use crate::event::{chain_link, StoredRow, COLUMNS};
use crate::JournalError;
use rusqlite::{Connection, OptionalExtension};
use std::fmt;
use std::str::FromStr;

/// Outcome of [`verify`] or [`verify_anchored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows found intact before the walk stopped (all of them when `first_bad` is `None`).
    pub checked: u64,
    /// Highest sequence number in the table when the walk started.
    pub head: u64,
    /// The earliest damage found, if any; the walk stops there.
    pub first_bad: Option<Corruption>,
}

impl VerifyReport {
    /// True when no damage was found.
    pub fn is_intact(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Where the chain breaks and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The first sequence number at which the table differs from an intact journal
    /// (for a gap: the first missing number).
    pub seq: u64,
    /// Human-readable cause, naming the likely tampering.
    pub reason: String,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.reason)
    }
}

/// Walks every row in `seq` order (streaming; memory does not grow with the journal) and
/// reports the first one that is not intact: a gap in the numbering, a column with the wrong
/// type, a stored hash that does not match the row's columns, or a `prev_hash` that does not
/// match the previous row's hash.
///
/// The walk runs in one statement, so it sees one consistent snapshot even while others append.
/// See the crate documentation for what a walk without an anchor cannot detect.
pub fn verify(conn: &Connection) -> Result<VerifyReport, JournalError> {
    let max_seq: Option<i64> =
        conn.query_row("SELECT max(seq) FROM journal", [], |row| row.get(0))?;
    let Some(max_seq) = max_seq else {
        return Ok(VerifyReport {
            checked: 0,
            head: 0,
            first_bad: None,
        });
    };
    let head = u64::try_from(max_seq).unwrap_or(0);
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM journal WHERE seq <= ?1 ORDER BY seq"
    ))?;
    let mut rows = statement.query([max_seq])?;
    let mut checked = 0u64;
    let mut prev_hash = GENESIS_HASH;
    while let Some(row) = rows.next()? {
        let expected = checked + 1;
        let bad = |reason: String| {
            Ok(VerifyReport {
                checked,
                head,
                first_bad: Some(Corruption {
                    seq: expected,
                    reason,
                }),
            })
        };
        let seq = row.get::<_, i64>(0)?;
        if seq < 1 {
            return bad(format!(
                "found a row numbered {seq} before seq 1; sequence numbers start at 1 (row renumbered or inserted)"
            ));
        }
        if seq as u64 != expected {
            return bad(format!(
                "gap: expected seq {expected}, found {seq} (rows deleted, renumbered or inserted out of order)"
            ));
        }
        let stored = match StoredRow::read(row)? {
            Ok(stored) => stored,
            Err(defect) => {
                return bad(format!(
                    "column {} {} (row edited)",
                    defect.column, defect.problem
                ))
            }
        };
        if stored.hash != stored.image().hash() {
            return bad(
                "hash mismatch: the stored hash does not match the row's columns (row edited)"
                    .into(),
            );
        }
        if stored.prev_hash != prev_hash {
            return bad(if expected == 1 {
                "prev_hash of the first row is not the genesis hash of 32 zero bytes (rows replaced or inserted)".into()
            } else {
                "prev_hash does not match the previous row's hash (rows reordered, replaced or inserted)".into()
            });
        }
        if let Err(defect) = stored.to_event() {
            return bad(format!(
                "column {} {} (row rewritten with a recomputed hash)",
                defect.column, defect.problem
            ));
        }
        prev_hash.copy_from_slice(stored.hash);
        checked = expected;
    }
    Ok(VerifyReport {
        checked,
        head,
        first_bad: None,
    })
}

/// A sequence number and the hash stored at it, kept outside the database so that later
/// truncation or a wholesale rewrite of history can be detected (see [`verify_anchored`]).
///
/// Its text form (`Display`/`FromStr`) is `<seq>:<hash as 64 lowercase hex digits>`;
/// parsing ignores surrounding whitespace, so a line read from a file parses as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Sequence number of the anchored event; 0 anchors the empty journal.
    pub seq: u64,
    /// Hash of the anchored event ([`crate::GENESIS_HASH`] for seq 0).
    pub hash: [u8; 32],
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, hex::encode(self.hash))
    }
}

impl FromStr for Anchor {
    type Err = JournalError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |problem: String| JournalError::BadAnchor {
            text: text.to_owned(),
            problem,
        };
        let (seq, hash) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("no `:` separator".into()))?;
        let seq = seq
            .parse::<u64>()
            .map_err(|err| bad(format!("sequence number: {err}")))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hash, &mut bytes).map_err(|err| bad(format!("hash: {err}")))?;
        Ok(Anchor { seq, hash: bytes })
    }
}

/// The current head as an [`Anchor`]. Store it somewhere the database's editor cannot reach
/// (another file, another host, a signed log) and pass it to [`verify_anchored`] later.
pub fn anchor(conn: &Connection) -> Result<Anchor, JournalError> {
    let (seq, hash) = head_link(conn)?;
    Ok(Anchor { seq, hash })
}

/// [`verify`], then checks that the journal still reaches `anchor.seq` and that the event there
/// still has the anchored hash. Because every hash covers its predecessor, a matching hash
/// proves every event up to the anchor is unchanged; a mismatch means history up to the anchor
/// was rewritten (the report names the anchor's seq, the rewrite may have started earlier).
pub fn verify_anchored(conn: &Connection, anchor: &Anchor) -> Result<VerifyReport, JournalError> {
    let mut report = verify(conn)?;
    if !report.is_intact() || anchor.seq == 0 {
        return Ok(report);
    }
    if anchor.seq > report.head {
        report.first_bad = Some(Corruption {
            seq: report.head + 1,
            reason: format!(
                "the journal ends at seq {} but the anchor was taken at seq {}: the tail was truncated",
                report.head, anchor.seq
            ),
        });
        return Ok(report);
    }
    // anchor.seq <= head <= i64::MAX, so the conversion cannot fail.
    let seq = anchor.seq as i64;
    let stored = conn
        .query_row(
            "SELECT seq, hash FROM journal WHERE seq = ?1",
            [seq],
            |row| Ok(chain_link(seq, row.get_ref(1)?).map_err(|defect| defect.into_error(seq))),
        )
        .optional()?
        .transpose()?;
    if stored.map(|(_, hash)| hash) != Some(anchor.hash) {
        report.first_bad = Some(Corruption {
            seq: anchor.seq,
            reason:
                "the hash differs from the anchored hash: history up to this row was rewritten \
                     (hashes recomputed after an edit)"
                    .into(),
        });
    }
    Ok(report)
}
