//! What remote work reports while it runs: structured records handed to a caller-supplied
//! [`Observer`]. Callers turn records into journal events or terminal output; this module
//! never prints and never stores anything.

use std::time::Duration;

/// Which output stream of a remote command a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One fact about a remote command or transfer, in the order it happened on that worker.
/// Every `CommandStarted` is followed by exactly one `CommandFinished` or `CommandFailed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteRecord {
    /// `command` is the exact line run on the worker (for transfers: the rsync invocation).
    CommandStarted { worker: String, command: String },
    /// One line of output, without its line terminator. Invalid UTF-8 is replaced.
    OutputLine {
        worker: String,
        stream: Stream,
        line: String,
    },
    /// The command ran to its end and exited with `exit_code`.
    CommandFinished {
        worker: String,
        exit_code: i32,
        duration: Duration,
    },
    /// The command did not run to its end (timeout, lost connection); `error` says why.
    CommandFailed {
        worker: String,
        error: String,
        duration: Duration,
    },
}

/// Receives records as they happen, possibly from several workers at once.
pub trait Observer: Send + Sync {
    fn record(&self, record: RemoteRecord);
}

impl<F> Observer for F
where
    F: Fn(RemoteRecord) + Send + Sync,
{
    fn record(&self, record: RemoteRecord) {
        self(record)
    }
}
