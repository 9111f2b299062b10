//! Ctrl-C and SIGTERM for commands that work on workers.
//!
//! The rule: the **first** SIGINT or SIGTERM asks the command to stop. Nothing new starts (no
//! next deploy step, no next command); commands that only serve the operator (`run_command`,
//! `job status`, `job run` of a non-lifecycle target, probes) are stopped on their workers;
//! lifecycle steps already running (deploy's, and `job start|stop|restart|reload`) are left to
//! finish within their time limits, so the journal records what really happened. The
//! command then ends normally: its run is recorded as `interrupted`, its SSH masters (warm
//! ones too) closed and its temporary directories removed. A **second** signal stops at once: every local process
//! group maand started is killed, and maand exits with status 130; the next command closes the
//! run as abandoned.
//!
//! Signals are read on a thread of their own (through `signal-hook`), so no code runs inside a
//! signal handler. Commands that only read (`cat`, `logs show`, …) do not install it and keep
//! the default behaviour of Ctrl-C.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

/// Exit status of a command stopped by a signal (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// How many stop signals arrived.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);
/// Wakes everything waiting in [`stopped`].
static STOP: LazyLock<tokio::sync::watch::Sender<bool>> =
    LazyLock::new(|| tokio::sync::watch::Sender::new(false));
/// Process groups of local children still running (ssh clients, rsync, hooks).
static GROUPS: LazyLock<Mutex<BTreeSet<i32>>> = LazyLock::new(Mutex::default);

/// Starts listening for SIGINT and SIGTERM. Idempotent.
pub fn install() -> std::io::Result<()> {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| {
        result = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map(|mut signals| {
            std::thread::spawn(move || {
                for signal in signals.forever() {
                    on_signal(signal);
                }
            });
        });
    });
    result
}

fn on_signal(signal: i32) {
    let name = if signal == signal_hook::consts::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    };
    if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
        eprintln!(
            "maand: {name} received: starting nothing new, stopping what runs for the operator and letting running deploy steps finish; send it again to stop at once"
        );
        STOP.send_replace(true);
        return;
    }
    eprintln!("maand: {name} received again: stopping at once");
    for group in GROUPS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        // SAFETY: kill(2) with a negative pid signals a process group maand started; no
        // memory is involved.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    std::process::exit(EXIT_INTERRUPTED);
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// Resolves once a stop is asked for (at once if it already was).
pub async fn stopped() {
    let mut receiver = STOP.subscribe();
    // The sender lives in a static, so the channel never closes.
    let _ = receiver.wait_for(|stop| *stop).await;
}

/// Keeps the process group `group` on the list a second signal kills, until dropped.
#[must_use]
pub struct TrackedGroup(i32);

/// Puts `group` (a child spawned as the leader of its own process group) on the list a second
/// signal kills.
pub fn track_group(group: u32) -> TrackedGroup {
    let group = group as i32;
    GROUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(group);
    TrackedGroup(group)
}

impl Drop for TrackedGroup {
    fn drop(&mut self) {
        GROUPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// What to tell the operator after an interrupted command: how to carry on.
pub fn continue_hint(command: &str) -> String {
    match command {
        "deploy" => "interrupted: continue with `maand deploy --resume`".to_string(),
        other => format!("interrupted: run `maand {other}` again to do the rest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_groups_leave_the_list_when_dropped() {
        let tracked = track_group(999_999);
        assert!(GROUPS.lock().unwrap().contains(&999_999));
        drop(tracked);
        assert!(!GROUPS.lock().unwrap().contains(&999_999));
    }

    #[test]
    fn the_hint_names_resume_for_deploy() {
        assert!(continue_hint("deploy").contains("maand deploy --resume"));
        assert!(continue_hint("run_command").contains("maand run_command"));
    }
}
