//! Owns the two shapes of an event: what a caller appends ([`NewEvent`]) and what the journal
//! hands back ([`StoredEvent`]), plus the conversion of an SQLite row into the latter.
//! It never decides sequence numbers or hashes (that is `append`'s job) and never judges
//! integrity beyond "can this row be represented" (that is `verify`'s job).

use rusqlite::types::ValueRef;

/// An event to append. The journal assigns `seq`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Groups the events of one command/operation; any text, may be empty.
    pub run_id: String,
    /// Caller-supplied timestamp in milliseconds; the journal does not read the clock.
    pub time_ms: i64,
    /// Names the payload type, e.g. `"deploy.step_started"`.
    pub kind: String,
    /// Version of the payload layout for this `kind`, so old events stay decodable.
    pub schema_version: u16,
    /// Opaque bytes, usually produced by [`crate::encode`].
    pub payload: Vec<u8>,
}

/// An event as stored, with its position and chain links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the journal; the first event is 1 and there are no gaps.
    pub seq: u64,
    /// See [`NewEvent::run_id`].
    pub run_id: String,
    /// See [`NewEvent::time_ms`].
    pub time_ms: i64,
    /// See [`NewEvent::kind`].
    pub kind: String,
    /// See [`NewEvent::schema_version`].
    pub schema_version: u16,
    /// See [`NewEvent::payload`].
    pub payload: Vec<u8>,
    /// Hash of the event at `seq - 1`, or [`crate::GENESIS_HASH`] for seq 1.
    pub prev_hash: [u8; 32],
    /// Hash of this event (see the crate documentation for the exact framing).
    pub hash: [u8; 32],
}

/// Column list in the order [`StoredRow::read`] expects.
pub(crate) const COLUMNS: &str =
    "seq, run_id, time_ms, kind, schema_version, payload, prev_hash, hash";

/// A row's columns borrowed straight from SQLite, after checking each has its storage class.
/// Text is kept as raw bytes so `verify` can hash exactly what is stored, valid UTF-8 or not.
pub(crate) struct StoredRow<'r> {
    pub seq: i64,
    pub run_id: &'r [u8],
    pub time_ms: i64,
    pub kind: &'r [u8],
    pub schema_version: i64,
    pub payload: &'r [u8],
    pub prev_hash: &'r [u8],
    pub hash: &'r [u8],
}

/// Why a stored row cannot be represented: the column and the problem, in words.
#[derive(Debug)]
pub(crate) struct RowDefect {
    pub column: &'static str,
    pub problem: String,
}

impl RowDefect {
    pub fn into_error(self, seq: i64) -> crate::JournalError {
        crate::JournalError::MalformedRow {
            seq,
            column: self.column,
            problem: self.problem,
        }
    }
}

impl<'r> StoredRow<'r> {
    /// Reads a row selected with [`COLUMNS`]. Fails only with SQLite errors (outer) or a wrong
    /// storage class (inner), which can only come from editing the table outside this crate.
    pub fn read(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<Result<Self, RowDefect>> {
        let seq = row.get::<_, i64>(0)?;
        let values = [
            row.get_ref(1)?,
            row.get_ref(2)?,
            row.get_ref(3)?,
            row.get_ref(4)?,
            row.get_ref(5)?,
            row.get_ref(6)?,
            row.get_ref(7)?,
        ];
        Ok(Self::typed(seq, values))
    }

    fn typed(seq: i64, values: [ValueRef<'r>; 7]) -> Result<Self, RowDefect> {
        let [run_id, time_ms, kind, schema_version, payload, prev_hash, hash] = values;
        Ok(StoredRow {
            seq,
            run_id: text("run_id", run_id)?,
            time_ms: integer("time_ms", time_ms)?,
            kind: text("kind", kind)?,
            schema_version: integer("schema_version", schema_version)?,
            payload: blob("payload", payload)?,
            prev_hash: blob("prev_hash", prev_hash)?,
            hash: blob("hash", hash)?,
        })
    }

    pub fn image(&self) -> crate::chain::RowImage<'r> {
        crate::chain::RowImage {
            seq: self.seq,
            prev_hash: self.prev_hash,
            run_id: self.run_id,
            time_ms: self.time_ms,
            kind: self.kind,
            schema_version: self.schema_version,
            payload: self.payload,
        }
    }

    /// Checks the values fit the public types (positive seq, UTF-8 text, u16 schema version,
    /// 32-byte hashes) and copies them out.
    pub fn to_event(&self) -> Result<StoredEvent, RowDefect> {
        Ok(StoredEvent {
            seq: positive_seq(self.seq)?,
            run_id: utf8("run_id", self.run_id)?,
            time_ms: self.time_ms,
            kind: utf8("kind", self.kind)?,
            schema_version: u16::try_from(self.schema_version).map_err(|_| RowDefect {
                column: "schema_version",
                problem: format!("is {}, outside 0..=65535", self.schema_version),
            })?,
            payload: self.payload.to_vec(),
            prev_hash: hash32("prev_hash", self.prev_hash)?,
            hash: hash32("hash", self.hash)?,
        })
    }
}

/// Reads and converts one row in a single step, for the readers.
pub(crate) fn stored_event(row: &rusqlite::Row<'_>) -> Result<StoredEvent, crate::JournalError> {
    let seq = row.get::<_, i64>(0)?;
    StoredRow::read(row)?
        .and_then(|stored| stored.to_event())
        .map_err(|defect| defect.into_error(seq))
}

/// Checks the `seq` and `hash` of a row that another row will link to.
pub(crate) fn chain_link(seq: i64, hash: ValueRef<'_>) -> Result<(u64, [u8; 32]), RowDefect> {
    Ok((positive_seq(seq)?, hash32("hash", blob("hash", hash)?)?))
}

fn positive_seq(seq: i64) -> Result<u64, RowDefect> {
    u64::try_from(seq)
        .ok()
        .filter(|&seq| seq >= 1)
        .ok_or_else(|| RowDefect {
            column: "seq",
            problem: format!("is {seq}, but sequence numbers start at 1"),
        })
}

fn storage_class(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

fn wrong_class(column: &'static str, value: ValueRef<'_>, wanted: &str) -> RowDefect {
    RowDefect {
        column,
        problem: format!("holds {} where {wanted} is expected", storage_class(value)),
    }
}

fn text<'r>(column: &'static str, value: ValueRef<'r>) -> Result<&'r [u8], RowDefect> {
    match value {
        ValueRef::Text(bytes) => Ok(bytes),
        other => Err(wrong_class(column, other, "TEXT")),
    }
}

fn blob<'r>(column: &'static str, value: ValueRef<'r>) -> Result<&'r [u8], RowDefect> {
    match value {
        ValueRef::Blob(bytes) => Ok(bytes),
        other => Err(wrong_class(column, other, "BLOB")),
    }
}

fn integer(column: &'static str, value: ValueRef<'_>) -> Result<i64, RowDefect> {
    match value {
        ValueRef::Integer(number) => Ok(number),
        other => Err(wrong_class(column, other, "INTEGER")),
    }
}

fn utf8(column: &'static str, bytes: &[u8]) -> Result<String, RowDefect> {
    String::from_utf8(bytes.to_vec()).map_err(|err| RowDefect {
        column,
        problem: format!("is not valid UTF-8 ({err})"),
    })
}

fn hash32(column: &'static str, bytes: &[u8]) -> Result<[u8; 32], RowDefect> {
    bytes.try_into().map_err(|_| RowDefect {
        column,
        problem: format!("is {} bytes long, a SHA-256 hash is 32", bytes.len()),
    })
}
