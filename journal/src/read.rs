//! Owns reading events back: by sequence number, from a position, by run and by kind.
//! Readers page through the table so memory stays bounded however long the journal is.
//! They never write and never judge the chain (that is `verify`).

use crate::event::{stored_event, COLUMNS};
use crate::{JournalError, StoredEvent};
use rusqlite::{Connection, OptionalExtension};
use std::collections::VecDeque;

/// Rows fetched per query by [`EventIter`].
pub const PAGE_ROWS: usize = 4096;

/// Which rows an [`EventIter`] walks.
#[derive(Debug, Clone)]
enum Selection {
    All,
    Run(String),
    Kind(String),
}

/// Iterator over stored events in ascending `seq` order, fetching [`PAGE_ROWS`] rows per query.
///
/// Each page is a separate query, so no read transaction stays open between pages; events
/// appended while iterating may or may not be yielded. Events before a damaged row are yielded;
/// the damaged row yields an error, and after the first error the iterator yields nothing more.
#[derive(Debug)]
pub struct EventIter<'c> {
    conn: &'c Connection,
    selection: Selection,
    after_seq: u64,
    page: VecDeque<Result<StoredEvent, JournalError>>,
    finished: bool,
}

impl<'c> EventIter<'c> {
    fn new(conn: &'c Connection, selection: Selection, after_seq: u64) -> Self {
        EventIter {
            conn,
            selection,
            after_seq,
            page: VecDeque::new(),
            finished: false,
        }
    }

    /// Fetches the next page into `self.page`, ending it with the error if one occurs.
    fn fetch_page(&mut self) {
        let fetched = self.fetch_page_rows();
        if let Err(err) = fetched {
            self.page.push_back(Err(err));
            self.finished = true;
        }
    }

    fn fetch_page_rows(&mut self) -> Result<(), JournalError> {
        let Ok(after) = i64::try_from(self.after_seq) else {
            // No row can have a seq above i64::MAX.
            self.finished = true;
            return Ok(());
        };
        let limit = PAGE_ROWS as i64;
        let (filter, value) = match &self.selection {
            Selection::All => ("", None),
            Selection::Run(run_id) => ("run_id = ?3 AND ", Some(run_id.as_str())),
            Selection::Kind(kind) => ("kind = ?3 AND ", Some(kind.as_str())),
        };
        let sql =
            format!("SELECT {COLUMNS} FROM journal WHERE {filter}seq > ?1 ORDER BY seq LIMIT ?2");
        let mut statement = self.conn.prepare_cached(&sql)?;
        let mut rows = match value {
            None => statement.query(rusqlite::params![after, limit])?,
            Some(value) => statement.query(rusqlite::params![after, limit, value])?,
        };
        let mut fetched = 0;
        while let Some(row) = rows.next()? {
            let event = stored_event(row)?;
            self.after_seq = event.seq;
            self.page.push_back(Ok(event));
            fetched += 1;
        }
        if fetched < PAGE_ROWS {
            self.finished = true;
        }
        Ok(())
    }
}

impl Iterator for EventIter<'_> {
    type Item = Result<StoredEvent, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.finished {
            self.fetch_page();
        }
        self.page.pop_front()
    }
}

/// Every event with `seq > after_seq`, in order. `events_from(conn, 0)` replays the journal.
pub fn events_from(conn: &Connection, after_seq: u64) -> EventIter<'_> {
    EventIter::new(conn, Selection::All, after_seq)
}

/// Every event whose `run_id` is `run_id`, in order.
pub fn events_of_run<'c>(conn: &'c Connection, run_id: &str) -> EventIter<'c> {
    EventIter::new(conn, Selection::Run(run_id.to_owned()), 0)
}

/// Every event whose `kind` is `kind` and whose `seq > after_seq`, in order.
pub fn events_of_kind<'c>(conn: &'c Connection, kind: &str, after_seq: u64) -> EventIter<'c> {
    EventIter::new(conn, Selection::Kind(kind.to_owned()), after_seq)
}

/// The event at `seq`, or `None` if there is none.
pub fn event(conn: &Connection, seq: u64) -> Result<Option<StoredEvent>, JournalError> {
    let Ok(seq) = i64::try_from(seq) else {
        return Ok(None);
    };
    let mut statement =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM journal WHERE seq = ?1"))?;
    statement
        .query_row([seq], |row| Ok(stored_event(row)))
        .optional()?
        .transpose()
}
