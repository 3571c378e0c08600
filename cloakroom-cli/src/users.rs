//! The demo's user accounts: username and Argon2 password hash.
//!
//! With `sqlite:PATH` the accounts live in the same file as the sessions,
//! in their own table, through the demo's own connection:
//!
//! ```sql
//! CREATE TABLE demo_users(
//!     username      TEXT PRIMARY KEY,
//!     password_hash TEXT NOT NULL,
//!     created_at    INTEGER NOT NULL  -- Unix seconds
//! );
//! ```
//!
//! With `memory:` they live in a map and vanish with the process.
//! Usernames are compared exactly (case-sensitive).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

/// A failure of the user store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserStoreError {
    /// [`UserStore::create`]: the username is already registered.
    #[error("username already taken")]
    Taken,
    /// The SQLite database failed.
    #[error("user database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task running the query panicked or was cancelled.
    #[error("user database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Where the demo's accounts live. Cheap to clone (clones share the data).
#[derive(Debug, Clone)]
pub enum UserStore {
    /// A map in process memory.
    Memory(Arc<Mutex<HashMap<String, String>>>),
    /// The `demo_users` table of a SQLite file. One connection, used from
    /// Tokio's blocking pool.
    Sqlite(Arc<Mutex<Connection>>),
}

impl Default for UserStore {
    fn default() -> Self {
        Self::memory()
    }
}

impl UserStore {
    /// An empty in-memory store.
    #[must_use]
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// Opens (creating if needed) the `demo_users` table in the SQLite file
    /// at `path`, in WAL mode with a 5 s busy timeout so that it shares the
    /// file with the session store.
    ///
    /// # Errors
    ///
    /// [`UserStoreError::Sqlite`] if the file cannot be opened or set up.
    pub async fn open_sqlite(path: &Path) -> Result<Self, UserStoreError> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_millis(5000))?;
            let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS demo_users(
                    username TEXT PRIMARY KEY,
                    password_hash TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                )",
            )?;
            Ok(conn)
        })
        .await??;
        Ok(Self::Sqlite(Arc::new(Mutex::new(conn))))
    }

    /// Registers `username` with `password_hash`.
    ///
    /// # Errors
    ///
    /// [`UserStoreError::Taken`] if the name exists; a database failure
    /// otherwise.
    pub async fn create(&self, username: &str, password_hash: &str) -> Result<(), UserStoreError> {
        match self {
            Self::Memory(map) => {
                let mut map = lock(map);
                if map.contains_key(username) {
                    return Err(UserStoreError::Taken);
                }
                map.insert(username.to_owned(), password_hash.to_owned());
                Ok(())
            }
            Self::Sqlite(conn) => {
                let conn = conn.clone();
                let username = username.to_owned();
                let hash = password_hash.to_owned();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let inserted = tokio::task::spawn_blocking(move || {
                    lock(&conn).execute(
                        "INSERT INTO demo_users(username, password_hash, created_at)
                         VALUES (?1, ?2, ?3) ON CONFLICT(username) DO NOTHING",
                        params![username, hash, now],
                    )
                })
                .await??;
                if inserted == 0 {
                    return Err(UserStoreError::Taken);
                }
                Ok(())
            }
        }
    }

    /// Replaces the password hash of the registered `username`; returns
    /// whether the user exists.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<bool, UserStoreError> {
        match self {
            Self::Memory(map) => Ok(lock(map)
                .get_mut(username)
                .map(|h| *h = password_hash.to_owned())
                .is_some()),
            Self::Sqlite(conn) => {
                let conn = conn.clone();
                let username = username.to_owned();
                let hash = password_hash.to_owned();
                let updated = tokio::task::spawn_blocking(move || {
                    lock(&conn).execute(
                        "UPDATE demo_users SET password_hash = ?2 WHERE username = ?1",
                        params![username, hash],
                    )
                })
                .await??;
                Ok(updated > 0)
            }
        }
    }

    /// The password hash of `username`, or `None` if no such user.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn password_hash(&self, username: &str) -> Result<Option<String>, UserStoreError> {
        match self {
            Self::Memory(map) => Ok(lock(map).get(username).cloned()),
            Self::Sqlite(conn) => {
                let conn = conn.clone();
                let username = username.to_owned();
                let hash = tokio::task::spawn_blocking(move || {
                    lock(&conn)
                        .query_row(
                            "SELECT password_hash FROM demo_users WHERE username = ?1",
                            [username],
                            |row| row.get(0),
                        )
                        .optional()
                })
                .await??;
                Ok(hash)
            }
        }
    }

    /// How many users are registered.
    ///
    /// # Errors
    ///
    /// A database failure.
    pub async fn count(&self) -> Result<u64, UserStoreError> {
        match self {
            Self::Memory(map) => Ok(lock(map).len() as u64),
            Self::Sqlite(conn) => {
                let conn = conn.clone();
                let n: i64 = tokio::task::spawn_blocking(move || {
                    lock(&conn).query_row("SELECT COUNT(*) FROM demo_users", [], |row| row.get(0))
                })
                .await??;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    }
}

/// Locks a mutex; a panic while it was held leaves no broken invariant in
/// a map or a connection, so a poisoned lock is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(store: UserStore) -> Result<(), UserStoreError> {
        assert_eq!(store.count().await?, 0);
        assert_eq!(store.password_hash("alice").await?, None);
        store.create("alice", "h1").await?;
        assert!(matches!(
            store.create("alice", "h2").await,
            Err(UserStoreError::Taken)
        ));
        assert_eq!(store.password_hash("alice").await?.as_deref(), Some("h1"));
        assert_eq!(store.password_hash("Alice").await?, None);
        store.create("Alice", "h3").await?;
        assert_eq!(store.count().await?, 2);
        Ok(())
    }

    #[tokio::test]
    async fn memory_store() -> Result<(), UserStoreError> {
        exercise(UserStore::memory()).await
    }

    #[tokio::test]
    async fn sqlite_store_persists() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("users.db");
        exercise(UserStore::open_sqlite(&path).await?).await?;
        let reopened = UserStore::open_sqlite(&path).await?;
        assert_eq!(reopened.count().await?, 2);
        assert_eq!(
            reopened.password_hash("alice").await?.as_deref(),
            Some("h1")
        );
        Ok(())
    }
}
