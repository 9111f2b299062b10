//! An append-only, hash-chained event journal stored in one SQLite table.
//!
//! This crate owns the journal table and nothing else: it stores opaque, versioned event
//! payloads, numbers them without gaps, chains them with SHA-256 and checks the chain. It knows
//! nothing about what the events mean, and it never opens, commits or rolls back a caller's
//! transaction — appends run inside the caller's transaction so projections can be updated
//! atomically with the events that produce them.
//!
//! # Using it
//!
//! ```
//! use rusqlite::{Connection, TransactionBehavior};
//!
//! # fn main() -> Result<(), journal::JournalError> {
//! let mut conn = Connection::open_in_memory()?;
//! journal::install(&conn)?;
//!
//! let seen = journal::head(&conn)?; // decide what to append from the state at `seen`...
//! let event = journal::NewEvent {
//!     run_id: "run-1".into(),
//!     time_ms: 1_700_000_000_000,
//!     kind: "greeting".into(),
//!     schema_version: 1,
//!     payload: journal::encode(&("hello", 42u32))?,
//! };
//! let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
//! let seqs = journal::append(&tx, seen, &[event])?; // Conflict if someone appended since `seen`
//! // ...update projections with `tx` here...
//! tx.commit()?;
//! assert_eq!(seqs, vec![1]);
//!
//! for stored in journal::events_from(&conn, 0) {
//!     let stored = stored?;
//!     let (word, number): (String, u32) = journal::decode(&stored.payload)?;
//!     assert_eq!((stored.seq, word.as_str(), number), (1, "hello", 42));
//! }
//! assert!(journal::verify(&conn)?.is_intact());
//! # Ok(())
//! # }
//! ```
//!
//! # Storage
//!
//! ```sql
//! journal(seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, time_ms INTEGER NOT NULL,
//!         kind TEXT NOT NULL, schema_version INTEGER NOT NULL, payload BLOB NOT NULL,
//!         prev_hash BLOB NOT NULL, hash BLOB NOT NULL)
//! ```
//!
//! with indexes on `(run_id)` and `(kind, seq)`. [`install`] creates it, idempotently.
//!
//! # Guarantees
//!
//! * **Gapless numbering.** Sequence numbers start at 1 and each append takes `head + 1 ..`.
//!   [`append`] checks the caller's `expected_head` inside the caller's transaction and fails
//!   with [`JournalError::Conflict`] (writing nothing) if another writer got there first. With
//!   `BEGIN IMMEDIATE` transactions, concurrent writers on separate connections serialise on
//!   SQLite's write lock and never produce a gap or a duplicate.
//! * **Append-only inside SQLite.** Triggers refuse every `UPDATE` and `DELETE` of journal
//!   rows. They stop mistakes and casual edits, not an adversary: anyone who can write the file
//!   can drop them (see [`APPEND_ONLY_TRIGGERS`]; [`install`] recreates dropped triggers).
//!   Inserts are not policed by a trigger — a `BEFORE INSERT` trigger, even one that checks
//!   nothing, halves bulk append throughput — so a hand-written `INSERT` that skips a number,
//!   or an `INSERT OR REPLACE` onto an existing seq (SQLite does not fire delete triggers for
//!   the rows it replaces), is not refused; [`verify`] reports both.
//! * **Hash chain.** Each row stores `prev_hash` (the previous row's `hash`, or
//!   [`GENESIS_HASH`] — 32 zero bytes — for seq 1) and
//!   `hash = SHA-256("journal-event-v1\0" ‖ seq ‖ len‖prev_hash ‖ len‖run_id ‖ time_ms ‖ len‖kind ‖ schema_version ‖ len‖payload)`,
//!   where every integer (the three columns and each `len`) is 8 bytes big-endian, `len` is the
//!   byte length of the field that follows, and text is its stored UTF-8 bytes. The length
//!   prefixes make the framing unambiguous: no two different rows hash the same input.
//!
//! # What `verify` detects, and what it cannot
//!
//! [`verify`] streams through the rows and reports the first sequence number where the table
//! stops being an intact journal:
//!
//! * a row edited in any column (type change, any byte of any value) — the stored hash no longer
//!   matches, reported at that row;
//! * rows deleted before the head — a gap, reported at the first missing number;
//! * rows reordered, swapped or replaced — the hash (which covers `seq`) or the `prev_hash` link
//!   no longer matches, reported at the first affected row; a replacement row whose own hash
//!   was recomputed is caught one row later, where the next `prev_hash` no longer links.
//!
//! A bare walk **cannot** detect changes that leave a self-consistent chain behind:
//!
//! * deleting rows from the tail (truncation): a shorter journal is still a valid journal;
//! * rewriting the tail, or the whole history, with recomputed hashes: SHA-256 is public, so
//!   whoever can edit the file can recompute every hash after the edit.
//!
//! To catch those, anchor the journal outside the database: call [`anchor`] (after a commit,
//! or periodically) and keep the returned [`Anchor`] (`seq:hash`, e.g. in a file on another host,
//! a printed report, a signed log). Later, [`verify_anchored`] checks the chain and that the
//! journal still reaches the anchored seq with the anchored hash; since each hash covers its
//! predecessor, a match proves every event up to the anchor is unchanged.
//!
//! # Copies of one journal
//!
//! A journal can be kept in two stores row for row — say a shared server that is the truth and
//! a local SQLite cache. [`chain_after`] computes the rows [`append`] would store after a given
//! head, so the other store can write exactly them first; [`append_chained`] then stores rows
//! chained elsewhere, refusing ([`JournalError::Conflict`], [`JournalError::BrokenLink`]) any
//! batch that does not extend this journal's head link by link, so two copies can never
//! silently diverge. [`check_extends`] is the same check without storing.
//!
//! # Payloads
//!
//! Payloads are opaque bytes. [`encode`]/[`decode`] use bincode 2 through serde (standard
//! configuration); `kind` and `schema_version` travel in their own columns so a reader can pick
//! the right type — and upcast old versions — before decoding.

mod append;
mod chain;
mod codec;
mod error;
mod event;
mod read;
mod schema;
mod verify;

pub use append::{append, append_chained, chain_after, check_extends, head, head_link};
pub use chain::GENESIS_HASH;
pub use codec::{decode, encode};
pub use error::JournalError;
pub use event::{NewEvent, StoredEvent};
pub use read::{event, events_from, events_of_kind, events_of_run, EventIter, PAGE_ROWS};
pub use schema::{install, APPEND_ONLY_TRIGGERS};
pub use verify::{anchor, verify, verify_anchored, Anchor, Corruption, VerifyReport};
