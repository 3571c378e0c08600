//! The embedded default store: one SQLite file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::kit::{key_from, sql_millis};
use crate::store::{SessionStore, StoreError, StoreStats, UserSession};

use super::{Row, check_schema_version, decode_row, reap_in_batches, sql_version};

mod stats;
mod writer;

use writer::{Job, Reply, WriteOp, writer_loop};

/// The backend, as errors name it.
const BACKEND: &str = "sqlite";
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard SQLite works to make commits durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Survives application crashes; may lose recent commits on power loss.
    #[default]
    Normal,
    /// Survives power loss: an fsync per (group) commit.
    Full,
}

/// Opens a [`SqliteStore`] with non-default settings.
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    synchronous: Synchronous,
    max_readers: usize,
}

impl SqliteStoreBuilder {
    /// Sets durability (default [`Synchronous::Normal`]).
    pub fn with_synchronous(mut self, s: Synchronous) -> Self {
        self.synchronous = s;
        self
    }

    /// Most reads run at once, each on its own pooled connection (default
    /// 4); further reads wait for a free connection.
    pub fn with_max_readers(mut self, n: usize) -> Self {
        self.max_readers = n.max(1);
        self
    }

    /// Opens (creating if needed) the database and starts the writer thread.
    ///
    /// Blocks while the file is opened and the schema checked; call it at
    /// start-up.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the file cannot be opened or created,
    /// [`StoreError::Corrupt`] if it was written by a newer schema version.
    pub fn open(self) -> Result<SqliteStore, StoreError> {
        let writer = open_connection(&self.path, false)?;
        let sync = match self.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        writer
            .pragma_update(None, "synchronous", sync)
            .map_err(unavailable)?;
        migrate(&writer)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("cloakroom-sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(unavailable)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: self.path,
                writer: Mutex::new(tx),
                readers: Mutex::new(Vec::new()),
                max_readers: self.max_readers,
                read_permits: Arc::new(tokio::sync::Semaphore::new(self.max_readers)),
            }),
        })
    }
}

/// Sessions in one SQLite file: the embedded default. Cheap to clone.
///
/// ```no_run
/// # fn main() -> Result<(), cloakroom::store::StoreError> {
/// use cloakroom::{SessionLayer, store::SqliteStore};
///
/// let store = SqliteStore::open("sessions.db")?;
/// let layer = SessionLayer::new(store);
/// # Ok(()) }
/// ```
///
/// Expired rows are never returned; start
/// [`spawn_reaper`](crate::store::spawn_reaper) to delete them.
///
/// # How it is built
///
/// * One file in WAL mode: readers never wait for the writer.
/// * **One writer thread** owns the only writing connection. Writes from all
///   requests queue to it, and it commits whatever has queued up in a single
///   transaction (group commit): under load, one commit carries many saves,
///   and no request ever sees `database is locked` from another request of
///   this process. Each write is answered only after its transaction
///   commits.
/// * Reads run on a small pool of read-only connections on Tokio's blocking
///   threads.
/// * The schema is created (and versioned in `cloakroom_meta`) on open,
///   indexed by expiry and by user; rows are keyed by the SHA-256 storage
///   key, so the file holds no usable session ID (S6).
///
/// Durability: by default `synchronous=NORMAL`, which in WAL mode survives a
/// crash of the application but may lose the last commits on power loss;
/// [`Synchronous::Full`] survives power loss at the cost of an fsync per
/// group commit.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Mutex<Vec<Connection>>,
    max_readers: usize,
    /// At most `max_readers` reads run at once: under load the others wait
    /// for a pooled connection instead of each opening a fresh one.
    /// The permit moves into the blocking task, so a cancelled request does
    /// not free its slot before its read is done.
    read_permits: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default
    /// settings. See [`SqliteStoreBuilder::open`].
    ///
    /// # Errors
    ///
    /// As [`SqliteStoreBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder(path).open()
    }

    /// Starts configuring a store at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.as_ref().to_owned(),
            synchronous: Synchronous::Normal,
            max_readers: 4,
        }
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues `op` for the writer, to be judged at `now`.
    async fn write(&self, op: WriteOp, now: Timestamp) -> Result<Reply, StoreError> {
        let (reply, rx) = oneshot::channel();
        {
            let tx = self
                .inner
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tx.send(Job {
                op,
                now: sql_millis(now),
                reply,
            })
            .map_err(|_| unavailable("the SQLite writer thread has stopped"))?;
        }
        rx.await
            .map_err(|_| unavailable("the SQLite writer thread has stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .inner
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| unavailable("the SQLite store is closed"))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = inner
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let conn = match conn {
                Some(c) => c,
                None => open_connection(&inner.path, true)?,
            };
            let out = f(&conn);
            let mut pool = inner
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if pool.len() < inner.max_readers {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(other)?
    }
}

fn unavailable(e: impl Into<crate::store::BoxError>) -> StoreError {
    StoreError::unavailable_in(BACKEND, e)
}

fn other(e: impl Into<crate::store::BoxError>) -> StoreError {
    StoreError::other_in(BACKEND, e)
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    // Readers open read-write but only ever run SELECTs: a read-only
    // connection to a WAL database fails when it cannot write the -shm file.
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !read_only {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(unavailable)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
    }
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS cloakroom_meta (
             name  TEXT PRIMARY KEY NOT NULL,
             value INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO cloakroom_meta (name, value) VALUES ('schema_version', 1);
         CREATE TABLE IF NOT EXISTS cloakroom_sessions (
             key               BLOB PRIMARY KEY NOT NULL,
             version           INTEGER NOT NULL,
             user              TEXT,
             idle_deadline     INTEGER NOT NULL,
             absolute_deadline INTEGER NOT NULL,
             expires_at        INTEGER NOT NULL,
             record            BLOB NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS cloakroom_sessions_expires ON cloakroom_sessions (expires_at);
         CREATE INDEX IF NOT EXISTS cloakroom_sessions_user ON cloakroom_sessions (user) WHERE user IS NOT NULL;
         COMMIT;",
    )
    .map_err(unavailable)?;
    let version: i64 = conn
        .query_row(
            "SELECT value FROM cloakroom_meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    check_schema_version(BACKEND, "SQLite", version)
}

fn expect_done(r: Result<Reply, StoreError>) -> Result<(), StoreError> {
    r.map(|_| ())
}

fn expect_count(r: Result<Reply, StoreError>) -> Result<u64, StoreError> {
    match r? {
        Reply::Count(n) => Ok(n),
        Reply::Done => Ok(0),
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        expect_done(
            self.write(
                WriteOp::Create {
                    key: *key,
                    row: Row::of(record),
                },
                now,
            )
            .await,
        )
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let key = *key;
        self.read(move |conn| {
            let row: Option<(Vec<u8>, i64)> = conn
                .prepare_cached(
                    "SELECT record, idle_deadline FROM cloakroom_sessions WHERE key = ?1 AND expires_at > ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![&key.0[..], sql_millis(now)], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(unavailable)?;
            row.map(|(bytes, idle)| decode_row(bytes, idle)).transpose()
        })
        .await
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        expect_done(
            self.write(
                WriteOp::Save {
                    key: *key,
                    row: Row::of(record),
                    expected: sql_version(expected_version),
                },
                now,
            )
            .await,
        )
    }

    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        expect_done(
            self.write(
                WriteOp::Touch {
                    key: *key,
                    idle_deadline: sql_millis(idle_deadline),
                },
                now,
            )
            .await,
        )
    }

    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        expect_done(self.write(WriteOp::Delete { key: *key }, now).await)
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        expect_done(
            self.write(
                WriteOp::Rotate {
                    old: *old_key,
                    new: *new_key,
                    row: Row::of(record),
                },
                now,
            )
            .await,
        )
    }

    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let user = user.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, record, idle_deadline FROM cloakroom_sessions
                     WHERE user = ?1 AND expires_at > ?2",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![user, sql_millis(now)], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                let (key, bytes, idle) = row.map_err(unavailable)?;
                out.push(UserSession {
                    key: key_from(&key)?,
                    record: decode_row(bytes, idle)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        expect_count(
            self.write(
                WriteOp::DeleteByUser {
                    user: user.to_owned(),
                    except: except.copied(),
                },
                now,
            )
            .await,
        )
    }

    fn is_durable(&self) -> bool {
        // Durable: records are rows in a WAL-journaled file; nothing evicts them.
        true
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        // One transaction of the writer per batch: the requests queued
        // behind it commit in between.
        reap_in_batches(&mut self.clone(), move |store| {
            Box::pin(async move { expect_count(store.write(WriteOp::ReapBatch, now).await) })
        })
        .await
    }
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.count_live(now).await
    }
}
