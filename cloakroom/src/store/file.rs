//! Sessions as files in a directory, safe across processes on one machine.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::kit::{Stored, UserKey};

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::{MAX_RECORD_BYTES, Record};
use crate::store::{SessionStore, StoreError, StoreStats, UserSession};

/// Sessions as files in a directory, safe across processes on one machine.
///
/// # Layout
///
/// ```text
/// DIR/sessions/<hex storage key>      one file per session
/// DIR/users/<hex sha256(user)>/<hex storage key>   empty index markers
/// DIR/locks/<00..ff>.lock             256 lock files, by first key byte
/// DIR/locks/user-<00..ff>.lock        256 more, by first byte of sha256(user)
/// ```
///
/// File names come only from the SHA-256 storage key (and the SHA-256 of the
/// user name), never from anything in the request, so no cookie can name a
/// path (S5, GO-2024-2730). Each write goes to a temporary file that is then
/// renamed over the old one, so readers see the old or the new record, never
/// half of one. Writers of one key serialize on an advisory lock file
/// (`flock`), which also holds across processes sharing the directory.
/// `rotate` holds the locks of both keys, and `rotate` into a user's session
/// and `delete_by_user` of that user also hold the user's lock, so neither
/// can slip between the other's steps (S28).
/// `fsync` of the file and directory is optional ([`FileStore::with_fsync`]).
///
/// A session file is `[u64 idle_deadline][encoded record]`; `touch` rewrites
/// only the deadline's meaning, never the data.
///
/// ```no_run
/// # fn main() -> Result<(), cloakroom::store::StoreError> {
/// use cloakroom::store::FileStore;
/// let store = FileStore::open("/var/lib/myapp/sessions")?.with_fsync(true);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    fsync: bool,
}

impl FileStore {
    /// Opens (creating if needed) a store in `dir`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the directories cannot be created.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = dir.as_ref().to_owned();
        for sub in ["sessions", "users", "locks", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(io)?;
        }
        Ok(Self {
            inner: Arc::new(Inner { root, fsync: false }),
        })
    }

    /// Whether every write is flushed to disk (file and directory) before it
    /// is acknowledged (default off: survives a crash of the application,
    /// not a power loss).
    #[must_use]
    pub fn with_fsync(self, fsync: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                root: self.inner.root.clone(),
                fsync,
            }),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::other_in(BACKEND, e))?
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::unavailable_in(BACKEND, e)
}

/// How this store names itself in errors.
const BACKEND: &str = "file";

/// A temporary file's name: a hash of random bytes, so it looks like (but
/// never is) a session file.
fn tmp_name_hash(random: &[u8]) -> [u8; 32] {
    Sha256::digest(random).into()
}

fn user_dir_name(user: &str) -> String {
    UserKey::of(user).to_hex()
}

/// An exclusive advisory lock on one of the 256 lock files; released on drop.
struct KeyLock(File);

impl Drop for KeyLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Inner {
    fn session_path(&self, key: &StorageKey) -> PathBuf {
        self.root.join("sessions").join(key.to_hex())
    }

    fn marker_path(&self, user: &str, key: &StorageKey) -> PathBuf {
        self.root
            .join("users")
            .join(user_dir_name(user))
            .join(key.to_hex())
    }

    fn lock(&self, key: &StorageKey) -> Result<KeyLock, StoreError> {
        self.lock_file(&format!("{:02x}.lock", key.0[0]))
    }

    /// The locks of two keys, taken in file order so that two rotations
    /// cannot deadlock; one lock when both keys share a file (`flock` on a
    /// second descriptor of the same file would wait for ourselves).
    fn lock_pair(&self, a: &StorageKey, b: &StorageKey) -> Result<Vec<KeyLock>, StoreError> {
        let (lo, hi) = if a.0[0] <= b.0[0] { (a, b) } else { (b, a) };
        let mut locks = vec![self.lock(lo)?];
        if lo.0[0] != hi.0[0] {
            locks.push(self.lock(hi)?);
        }
        Ok(locks)
    }

    /// Held by `rotate` into one of `user`'s sessions and by
    /// `delete_by_user` of `user`; taken before any key lock.
    fn user_lock(&self, user: &str) -> Result<KeyLock, StoreError> {
        let digest = UserKey::of(user);
        self.lock_file(&format!("user-{:02x}.lock", digest.as_bytes()[0]))
    }

    fn lock_file(&self, name: &str) -> Result<KeyLock, StoreError> {
        let path = self.root.join("locks").join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(KeyLock(file))
    }

    fn read(&self, key: &StorageKey) -> Result<Option<Stored>, StoreError> {
        let file = match File::open(self.session_path(key)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut buf = Vec::new();
        let mut file = file;
        Read::by_ref(&mut file)
            .take(MAX_RECORD_BYTES as u64 + 9)
            .read_to_end(&mut buf)
            .map_err(io)?;
        if buf.len() < 8 || buf.len() > MAX_RECORD_BYTES + 8 {
            return Err(StoreError::corrupt_in(
                BACKEND,
                "session file has an impossible size",
            ));
        }
        let mut deadline = [0u8; 8];
        deadline.copy_from_slice(&buf[..8]);
        let record = Record::decode(&Bytes::from(buf).slice(8..))
            .map_err(|e| StoreError::corrupt_in(BACKEND, e))?;
        Ok(Some(Stored {
            idle_deadline: Timestamp::from_millis(u64::from_be_bytes(deadline)),
            record,
        }))
    }

    fn read_live(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Stored>, StoreError> {
        Ok(self.read(key)?.filter(|s| s.is_live(now)))
    }

    /// Write-then-rename, so a reader never sees half a record.
    fn write(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        record: &Record,
    ) -> Result<(), StoreError> {
        let encoded = record.encode();
        let mut tmp_name = [0u8; 12];
        getrandom::fill(&mut tmp_name).map_err(|e| StoreError::other_in(BACKEND, e.to_string()))?;
        let tmp = self
            .root
            .join("tmp")
            .join(StorageKey(tmp_name_hash(&tmp_name)).to_hex());
        let result = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&idle_deadline.as_millis().to_be_bytes())?;
            file.write_all(&encoded)?;
            if self.fsync {
                file.sync_all()?;
            }
            fs::rename(&tmp, self.session_path(key))?;
            if self.fsync {
                File::open(self.root.join("sessions"))?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    fn remove(&self, key: &StorageKey, old: Option<&Stored>) -> Result<(), StoreError> {
        match fs::remove_file(self.session_path(key)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(user) = old.and_then(|s| s.record.user.as_deref()) {
            self.unindex(user, key);
        }
        Ok(())
    }

    fn index(&self, user: &str, key: &StorageKey) -> Result<(), StoreError> {
        let path = self.marker_path(user, key);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        File::create(path).map(drop).map_err(io)
    }

    fn unindex(&self, user: &str, key: &StorageKey) {
        let path = self.marker_path(user, key);
        let _ = fs::remove_file(&path);
        if let Some(dir) = path.parent() {
            // Succeeds only when empty, which is what we want.
            let _ = fs::remove_dir(dir);
        }
    }

    fn indexed_keys(&self, user: &str) -> Result<Vec<StorageKey>, StoreError> {
        let dir = self.root.join("users").join(user_dir_name(user));
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let name = entry.map_err(io)?.file_name();
            if let Some(key) = name.to_str().and_then(|n| StorageKey::from_hex(n).ok()) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    fn create(&self, key: &StorageKey, record: &Record, now: Timestamp) -> Result<(), StoreError> {
        let _lock = self.lock(key)?;
        self.create_locked(key, record, now)
    }

    /// `create` for a caller that holds `key`'s lock.
    fn create_locked(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let old = self.read(key).unwrap_or(None);
        if old.as_ref().is_some_and(|s| s.is_live(now)) {
            return Err(StoreError::Conflict);
        }
        if let Some(user) = old.as_ref().and_then(|s| s.record.user.as_deref()) {
            self.unindex(user, key);
        }
        // Index first: a crash between the two leaves a stale marker (ignored
        // and cleaned by listing), never an unlisted live session.
        if let Some(user) = &record.user {
            self.index(user, key)?;
        }
        self.write(key, record.idle_deadline, record)
    }
}

#[async_trait]
impl SessionStore for FileStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (key, record) = (*key, record.clone());
        self.run(move |s| s.create(&key, &record, now)).await
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let key = *key;
        self.run(move |s| Ok(s.read_live(&key, now)?.map(Stored::into_record)))
            .await
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (key, record) = (*key, record.clone());
        self.run(move |s| {
            let _lock = s.lock(&key)?;
            let Some(current) = s.read_live(&key, now)? else {
                return Err(StoreError::NotFound);
            };
            if current.record.version != expected_version {
                return Err(StoreError::VersionConflict);
            }
            let user_changed = current.record.user != record.user;
            if user_changed && let Some(u) = &record.user {
                s.index(u, &key)?;
            }
            s.write(&key, record.idle_deadline, &record)?;
            if user_changed && let Some(u) = &current.record.user {
                s.unindex(u, &key);
            }
            Ok(())
        })
        .await
    }

    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let key = *key;
        self.run(move |s| {
            let _lock = s.lock(&key)?;
            let Some(current) = s.read_live(&key, now)? else {
                return Err(StoreError::NotFound);
            };
            // Same record bytes, new deadline header.
            s.write(&key, idle_deadline, &current.record)
        })
        .await
    }

    async fn delete(&self, key: &StorageKey, _now: Timestamp) -> Result<(), StoreError> {
        let key = *key;
        self.run(move |s| {
            let _lock = s.lock(&key)?;
            let old = s.read(&key).unwrap_or(None);
            s.remove(&key, old.as_ref())
        })
        .await
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (old_key, new_key, record) = (*old_key, *new_key, record.clone());
        self.run(move |s| {
            let _user_lock = record.user.as_deref().map(|u| s.user_lock(u)).transpose()?;
            let _locks = s.lock_pair(&old_key, &new_key)?;
            // S28: only a live record moves; a deleted or expired one is not
            // filed under a new key. Under both locks no `delete` of the old
            // key can come between this check and the removal below.
            let Some(old) = s.read_live(&old_key, now)? else {
                return Err(StoreError::NotFound);
            };
            // The new record exists before the old is gone.
            s.create_locked(&new_key, &record, now)?;
            s.remove(&old_key, Some(&old))
        })
        .await
    }

    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let user = user.to_owned();
        self.run(move |s| {
            let mut out = Vec::new();
            for key in s.indexed_keys(&user)? {
                match s.read_live(&key, now) {
                    Ok(Some(stored)) if stored.record.user.as_deref() == Some(user.as_str()) => {
                        out.push(UserSession {
                            key,
                            record: stored.into_record(),
                        });
                    }
                    // Stale marker: expired, deleted, or moved to another user.
                    Ok(_) => s.unindex(&user, &key),
                    Err(StoreError::Corrupt(_)) => s.unindex(&user, &key),
                    Err(e) => return Err(e),
                }
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
        let (user, except) = (user.to_owned(), except.copied());
        self.run(move |s| {
            // Rotations into this user's sessions wait: a finished one has
            // indexed its new key, which the listing below then finds.
            let _user_lock = s.user_lock(&user)?;
            let mut n = 0;
            for key in s.indexed_keys(&user)? {
                if Some(key) == except {
                    continue;
                }
                let _lock = s.lock(&key)?;
                match s.read(&key) {
                    Ok(Some(stored)) if stored.record.user.as_deref() == Some(user.as_str()) => {
                        if stored.is_live(now) {
                            n += 1;
                        }
                        s.remove(&key, Some(&stored))?;
                    }
                    _ => s.unindex(&user, &key),
                }
            }
            Ok(n)
        })
        .await
    }

    fn is_durable(&self) -> bool {
        // Durable: records are files written then renamed into place; nothing evicts them.
        true
    }

    async fn delete_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.run(move |s| {
            let mut n = 0;
            for entry in fs::read_dir(s.root.join("sessions")).map_err(io)? {
                let name = entry.map_err(io)?.file_name();
                let Some(key) = name.to_str().and_then(|n| StorageKey::from_hex(n).ok()) else {
                    continue;
                };
                let _lock = s.lock(&key)?;
                match s.read(&key) {
                    Ok(Some(stored)) if !stored.is_live(now) => {
                        s.remove(&key, Some(&stored))?;
                        n += 1;
                    }
                    Err(StoreError::Corrupt(_)) => {
                        tracing::warn!("removing unreadable session file");
                        s.remove(&key, None)?;
                    }
                    _ => {}
                }
            }
            // Temporary files orphaned by a crash mid-write.
            if let Ok(entries) = fs::read_dir(s.root.join("tmp")) {
                for entry in entries.flatten() {
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age.as_secs() > 3600);
                    if old {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
            Ok(n)
        })
        .await
    }

    /// Reads every session file (without locks: files are replaced by
    /// rename, so each read sees one whole record). A file that cannot be
    /// decoded is skipped, logged, and makes the counts inexact.
    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.run(move |s| {
            let mut stats = StoreStats::new(BACKEND);
            for entry in fs::read_dir(s.root.join("sessions")).map_err(io)? {
                let name = entry.map_err(io)?.file_name();
                let Some(key) = name.to_str().and_then(|n| StorageKey::from_hex(n).ok()) else {
                    continue;
                };
                match s.read(&key) {
                    Ok(Some(stored)) => stats.count(&stored.into_record(), now),
                    Ok(None) => {}
                    Err(StoreError::Corrupt(_)) => {
                        tracing::warn!("stats: skipping an unreadable session file");
                        stats.exact = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(stats)
        })
        .await
    }
}
