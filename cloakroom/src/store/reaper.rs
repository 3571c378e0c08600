//! The background task that deletes expired records.

use std::sync::Arc;
use std::time::Duration;

use crate::expiry::{Clock, SystemClock};
use crate::store::SessionStore;

/// A running reaper; stops when dropped (or with [`Reaper::stop`]).
#[derive(Debug)]
#[must_use = "the reaper stops when this handle is dropped"]
pub struct Reaper {
    task: tokio::task::JoinHandle<()>,
}

impl Reaper {
    /// Stops the reaper.
    pub fn stop(self) {}
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a task on the current Tokio runtime that calls
/// [`SessionStore::delete_expired`] about every `interval`.
///
/// Runs are jittered by up to ±10% so that many instances sharing one
/// database do not reap in lockstep, and never overlap: the next wait starts
/// when a run ends. It judges expiry by the system clock; to reap by
/// another [`Clock`], call `delete_expired(clock.now())` on your own
/// schedule instead. Failures are logged and retried at the next run; the
/// request path never waits for the reaper.
///
/// # Panics
///
/// Panics if called outside a Tokio runtime.
pub fn spawn_reaper<S: SessionStore + ?Sized>(store: Arc<S>, interval: Duration) -> Reaper {
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(jittered(interval)).await;
            let started = std::time::Instant::now();
            match store.delete_expired(SystemClock.now()).await {
                Ok(n) => {
                    metrics::counter!("cloakroom_reaped_total").increment(n);
                    tracing::debug!(
                        deleted = n,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "reaped expired sessions"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "reaping expired sessions failed; will retry"),
            }
        }
    });
    Reaper { task }
}

fn jittered(interval: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    // A factor in [0.9, 1.1).
    let factor = 0.9 + 0.2 * f64::from(u16::from_le_bytes(b)) / 65_536.0;
    interval.mul_f64(factor)
}
