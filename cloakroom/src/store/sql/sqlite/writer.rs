//! The single writer thread: every write of a [`SqliteStore`](super::SqliteStore)
//! queues here as a [`Job`], and whatever has queued up commits in one
//! transaction (group commit).

use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::id::StorageKey;
use crate::store::StoreError;

use super::unavailable;
use crate::store::sql::{REAP_BATCH, Row};

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 512;

pub(super) enum WriteOp {
    Create {
        key: StorageKey,
        row: Row,
    },
    Save {
        key: StorageKey,
        row: Row,
        expected: i64,
    },
    Touch {
        key: StorageKey,
        idle_deadline: i64,
    },
    Delete {
        key: StorageKey,
    },
    Rotate {
        old: StorageKey,
        new: StorageKey,
        row: Row,
    },
    DeleteByUser {
        user: String,
        except: Option<StorageKey>,
    },
    ReapBatch,
}

pub(super) enum Reply {
    Done,
    Count(u64),
}

pub(super) struct Job {
    pub(super) op: WriteOp,
    /// The caller's "now", in milliseconds: what the job judges liveness by.
    pub(super) now: i64,
    pub(super) reply: oneshot::Sender<Result<Reply, StoreError>>,
}

pub(super) fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

/// Runs a batch in one transaction; if the transaction itself fails, runs
/// each job in a transaction of its own so one bad write cannot fail the
/// others.
fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    let n = batch.len();
    let results: Result<Vec<Result<Reply, StoreError>>, rusqlite::Error> = (|| {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(n);
        for job in &batch {
            out.push(apply(&tx, &job.op, job.now)?);
        }
        tx.commit()?;
        Ok(out)
    })();
    match results {
        Ok(results) => {
            metrics::histogram!("cloakroom_sqlite_batch_size").record(n as f64);
            for (job, result) in batch.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(e) if n > 1 => {
            tracing::warn!(error = %e, jobs = n, "SQLite group commit failed; retrying writes one by one");
            for job in batch {
                run_batch(conn, vec![job]);
            }
        }
        Err(e) => {
            if let Some(job) = batch.into_iter().next() {
                let _ = job.reply.send(Err(unavailable(e)));
            }
        }
    }
}

/// Inserts `row` under `key` unless a live row is there; returns whether it
/// was written. An expired row under the key is replaced.
fn insert_if_absent(
    tx: &Connection,
    key: &StorageKey,
    row: &Row,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT INTO cloakroom_sessions
                 (key, version, user, idle_deadline, absolute_deadline, expires_at, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (key) DO UPDATE SET
                 version = excluded.version, user = excluded.user,
                 idle_deadline = excluded.idle_deadline,
                 absolute_deadline = excluded.absolute_deadline,
                 expires_at = excluded.expires_at, record = excluded.record
             WHERE cloakroom_sessions.expires_at <= ?8",
        )?
        .execute(params![
            &key.0[..],
            row.version,
            row.user,
            row.idle_deadline,
            row.absolute_deadline,
            row.expires_at,
            &row.record[..],
            now
        ])?;
    Ok(n == 1)
}

fn apply(tx: &Connection, op: &WriteOp, now: i64) -> rusqlite::Result<Result<Reply, StoreError>> {
    Ok(match op {
        WriteOp::Create { key, row } => {
            if insert_if_absent(tx, key, row, now)? {
                Ok(Reply::Done)
            } else {
                Err(StoreError::Conflict)
            }
        }
        WriteOp::Save { key, row, expected } => {
            let n = tx
                .prepare_cached(
                    "UPDATE cloakroom_sessions SET
                         version = ?2, user = ?3, idle_deadline = ?4,
                         absolute_deadline = ?5, expires_at = ?6, record = ?7
                     WHERE key = ?1 AND expires_at > ?8 AND version = ?9",
                )?
                .execute(params![
                    &key.0[..],
                    row.version,
                    row.user,
                    row.idle_deadline,
                    row.absolute_deadline,
                    row.expires_at,
                    &row.record[..],
                    now,
                    expected
                ])?;
            if n == 1 {
                Ok(Reply::Done)
            } else {
                let live: Option<i64> = tx
                    .prepare_cached(
                        "SELECT version FROM cloakroom_sessions WHERE key = ?1 AND expires_at > ?2",
                    )?
                    .query_row(params![&key.0[..], now], |r| r.get(0))
                    .optional()?;
                Err(if live.is_some() {
                    StoreError::VersionConflict
                } else {
                    StoreError::NotFound
                })
            }
        }
        WriteOp::Touch { key, idle_deadline } => {
            let n = tx
                .prepare_cached(
                    "UPDATE cloakroom_sessions
                     SET idle_deadline = ?2, expires_at = MIN(?2, absolute_deadline)
                     WHERE key = ?1 AND expires_at > ?3",
                )?
                .execute(params![&key.0[..], idle_deadline, now])?;
            if n == 1 {
                Ok(Reply::Done)
            } else {
                Err(StoreError::NotFound)
            }
        }
        WriteOp::Delete { key } => {
            tx.prepare_cached("DELETE FROM cloakroom_sessions WHERE key = ?1")?
                .execute(params![&key.0[..]])?;
            Ok(Reply::Done)
        }
        WriteOp::Rotate { old, new, row } => {
            // Same transaction: the new row exists before the old is gone,
            // and nobody sees a moment with neither or both. S28: the old
            // row must be live, or a rotation racing a destroy would file
            // the destroyed session under a new key. The savepoint undoes
            // the delete if the new key is taken, without touching the other
            // writes of this group commit.
            tx.execute_batch("SAVEPOINT cloakroom_rotate")?;
            let moved = tx
                .prepare_cached(
                    "DELETE FROM cloakroom_sessions WHERE key = ?1 AND expires_at > ?2",
                )?
                .execute(params![&old.0[..], now])?;
            let outcome = if moved == 0 {
                Err(StoreError::NotFound)
            } else if insert_if_absent(tx, new, row, now)? {
                Ok(Reply::Done)
            } else {
                Err(StoreError::Conflict)
            };
            if outcome.is_err() {
                tx.execute_batch("ROLLBACK TO cloakroom_rotate")?;
            }
            tx.execute_batch("RELEASE cloakroom_rotate")?;
            outcome
        }
        WriteOp::DeleteByUser { user, except } => {
            let except: Vec<u8> = except.map(|k| k.0.to_vec()).unwrap_or_default();
            let mut stmt = tx.prepare_cached(
                "DELETE FROM cloakroom_sessions WHERE user = ?1 AND key != ?2 RETURNING expires_at",
            )?;
            let mut rows = stmt.query(params![user, except])?;
            let mut live = 0u64;
            while let Some(r) = rows.next()? {
                if r.get::<_, i64>(0)? > now {
                    live += 1;
                }
            }
            Ok(Reply::Count(live))
        }
        WriteOp::ReapBatch => {
            let n = tx
                .prepare_cached(
                    "DELETE FROM cloakroom_sessions WHERE key IN
                         (SELECT key FROM cloakroom_sessions WHERE expires_at <= ?1 LIMIT ?2)",
                )?
                .execute(params![now, REAP_BATCH])?;
            Ok(Reply::Count(n as u64))
        }
    })
}
