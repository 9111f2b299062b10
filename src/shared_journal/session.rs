//! Owns the one PostgreSQL connection of a command and the thread it lives on.
//!
//! The synchronous `postgres` client drives its socket with a private tokio runtime: calling it,
//! or dropping it, from inside another tokio runtime (the deploy executor records steps from
//! async tasks) panics. So the client lives on a dedicated thread that no runtime owns, and
//! callers hand it work through a channel and wait for the answer — from sync code or from
//! inside the executor alike. The connection is also the session holding the bucket's advisory
//! lock: when it ends (the command exits, is killed, or the server goes away) the server
//! releases the lock.

use super::{JournalUrl, SharedJournalError};
use std::sync::mpsc;

type Work = Box<dyn FnOnce(&mut postgres::Client) + Send>;

/// A live connection to the shared journal, served by its own thread.
pub(super) struct Session {
    url: JournalUrl,
    work: mpsc::Sender<Work>,
}

impl Session {
    /// Connects (waiting at most the URL's connect timeout); fails as
    /// [`SharedJournalError::Unreachable`].
    pub fn connect(url: &JournalUrl) -> Result<Session, SharedJournalError> {
        let config = url.config();
        let tls = super::tls::client_config(url, &config)?;
        let (work, queue) = mpsc::channel::<Work>();
        let (ready, connected) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("maand-shared-journal".into())
            .spawn(move || {
                let connected = match tls {
                    Some(tls) => config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)),
                    None => config.connect(postgres::NoTls),
                };
                let mut client = match connected {
                    Ok(client) => client,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                for job in queue {
                    job(&mut client);
                }
            })
            .map_err(|error| SharedJournalError::Thread(error.to_string()))?;
        match connected.recv() {
            Ok(Ok(())) => Ok(Session {
                url: url.clone(),
                work,
            }),
            Ok(Err(source)) => Err(SharedJournalError::Unreachable {
                url: url.to_string(),
                source,
            }),
            Err(_) => Err(thread_ended(url)),
        }
    }

    pub fn url(&self) -> &JournalUrl {
        &self.url
    }

    /// Runs `job` on the connection's thread and waits for its result.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> Result<T, SharedJournalError> + Send + 'static,
    ) -> Result<T, SharedJournalError> {
        self.submit(job)?.wait()
    }

    /// Hands `job` to the connection's thread and returns at once, so the caller can work
    /// meanwhile (a pull applies one page while the next is fetched).
    pub fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> Result<T, SharedJournalError> + Send + 'static,
    ) -> Result<Pending<T>, SharedJournalError> {
        let (answer, result) = mpsc::sync_channel(1);
        self.work
            .send(Box::new(move |client| {
                let _ = answer.send(job(client));
            }))
            .map_err(|_| thread_ended(&self.url))?;
        Ok(Pending {
            result,
            url: self.url.clone(),
        })
    }
}

/// The result of a submitted job, once the connection's thread has run it.
pub(super) struct Pending<T> {
    result: mpsc::Receiver<Result<T, SharedJournalError>>,
    url: JournalUrl,
}

impl<T> Pending<T> {
    pub fn wait(self) -> Result<T, SharedJournalError> {
        self.result.recv().map_err(|_| thread_ended(&self.url))?
    }
}

fn thread_ended(url: &JournalUrl) -> SharedJournalError {
    SharedJournalError::ConnectionLost {
        url: url.to_string(),
        reason: "the connection thread ended".into(),
    }
}
