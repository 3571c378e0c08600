//! The per-user index memcached does not have: one item per user listing
//! the storage keys of that user's sessions, kept with bounded `gets`/`cas`
//! loops, and `list_by_user` / `delete_by_user` built on it. Entries are
//! not removed when a session goes; readers judge each entry against its
//! session and write the index back without the stale ones (see the
//! [`MemcachedStore`] docs for what this does and does not guarantee).

use std::collections::HashSet;
use std::time::Duration;

use super::MemcachedStore;
use super::client::{Item, MAX_CAS_ATTEMPTS, backoff, contention};
use super::item::{
    EXPIRED_EXPTIME, IndexEntry, decode_index, decode_session, encode_index, index_exptime,
};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::store::kit::Stored;
use crate::store::{StoreError, UserSession};

/// Most passes of one `delete_by_user` over a user's index (see
/// `delete_by_user_blocking`) before giving up with `Unavailable`.
const MAX_DELETE_BY_USER_PASSES: usize = 8;
/// An index entry whose session is missing (or belongs to someone else) is
/// only dropped once it is this old: the entry is written before the session
/// item, so a young entry may belong to a `create` still under way.
const INDEX_GRACE: Duration = Duration::from_secs(60);
/// An index write that finds more entries than this first checks each
/// entry's session and drops the stale ones.
const INDEX_COMPACT_AT: usize = 64;

/// What a look at an indexed session found.
enum Seen {
    /// A live session of this user.
    Live(Stored),
    /// The entry is stale: drop it.
    Stale,
    /// Not (yet) a live session of this user, but too young to drop.
    Young,
}

fn judge(entry: &IndexEntry, item: Option<&Item>, user: &str, now: Timestamp) -> Seen {
    let stored = item.map(|i| decode_session(&i.value));
    match stored {
        Some(Ok(s)) if s.is_live(now) && s.record.user.as_deref() == Some(user) => Seen::Live(s),
        Some(Err(_)) => {
            tracing::warn!("dropping an unreadable memcached session from a user index");
            Seen::Stale
        }
        _ if entry.absolute_deadline <= now || now.since(entry.indexed_at) >= INDEX_GRACE => {
            Seen::Stale
        }
        _ => Seen::Young,
    }
}

impl MemcachedStore {
    pub(super) fn list_blocking(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let Some(index) = self.fetch(&self.index_key(user))? else {
            return Ok(Vec::new());
        };
        let entries = decode_index(&index.value)?;
        let skeys: Vec<String> = entries.iter().map(|e| self.session_key(&e.key)).collect();
        let items = self.fetch_many(&skeys)?;
        let mut out = Vec::new();
        let mut stale = HashSet::new();
        for (entry, skey) in entries.iter().zip(&skeys) {
            match judge(entry, items.get(skey), user, now) {
                Seen::Live(stored) => out.push(UserSession {
                    key: entry.key,
                    record: stored.into_record(),
                }),
                Seen::Stale => {
                    stale.insert((entry.key, entry.indexed_at));
                }
                Seen::Young => {}
            }
        }
        // Listing already sees every stale entry for what it is; dropping
        // them is housekeeping and must not fail the listing.
        if let Err(e) = self.index_remove(user, &stale, Some(index), now) {
            tracing::debug!(error = %e, "memcached user index cleanup failed");
        }
        Ok(out)
    }

    /// Passes over the user's index until it lists no other entry, or a
    /// quiet pass (nothing deleted, no item changed under it) is followed by
    /// the very same listing. S28: a rotation indexes and writes its new
    /// record before it claims the old one, so when a pass finds the old
    /// record claimed away, the next listing holds the new key and the next
    /// pass deletes it; entries that stay missing (young ones are kept for
    /// a minute) end the loop once nothing changes any more.
    pub(super) fn delete_by_user_blocking(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let mut last: Option<(Vec<StorageKey>, bool)> = None;
        for _ in 0..MAX_DELETE_BY_USER_PASSES {
            let Some(index) = self.fetch(&self.index_key(user))? else {
                return Ok(deleted);
            };
            let entries: Vec<IndexEntry> = decode_index(&index.value)?
                .into_iter()
                .filter(|e| Some(&e.key) != except)
                .collect();
            let mut keys: Vec<StorageKey> = entries.iter().map(|e| e.key).collect();
            keys.sort();
            if keys.is_empty() || last.as_ref().is_some_and(|(k, quiet)| *quiet && *k == keys) {
                return Ok(deleted);
            }
            let (n, quiet) = self.delete_by_user_pass(user, &entries, now)?;
            deleted += n;
            last = Some((keys, quiet));
        }
        Err(contention("delete_by_user"))
    }

    /// One pass of `delete_by_user` over `entries`: how many live sessions
    /// it deleted, and whether it was quiet (deleted nothing and met no
    /// item that changed between its read and its `cas`).
    fn delete_by_user_pass(
        &self,
        user: &str,
        entries: &[IndexEntry],
        now: Timestamp,
    ) -> Result<(u64, bool), StoreError> {
        let skeys: Vec<String> = entries.iter().map(|e| self.session_key(&e.key)).collect();
        let mut items = self.fetch_many(&skeys)?;
        let mut deleted = 0;
        let mut quiet = true;
        let mut stale = HashSet::new();
        for (entry, skey) in entries.iter().zip(&skeys) {
            let mut item = items.remove(skey);
            let mut attempt = 0;
            loop {
                let Some(current) = item.take() else {
                    // Gone (or never written): drop once the entry is old.
                    if matches!(judge(entry, None, user, now), Seen::Stale) {
                        stale.insert((entry.key, entry.indexed_at));
                    }
                    break;
                };
                let stored = match decode_session(&current.value) {
                    Ok(s) if s.record.user.as_deref() == Some(user) => s,
                    Ok(_) => {
                        // Someone else's now: not ours to delete.
                        if matches!(judge(entry, None, user, now), Seen::Stale) {
                            stale.insert((entry.key, entry.indexed_at));
                        }
                        break;
                    }
                    Err(_) => {
                        stale.insert((entry.key, entry.indexed_at));
                        break;
                    }
                };
                // Delete only what was read: an empty, already expired item,
                // written under the token.
                quiet = false;
                if self.cas(skey, &[], EXPIRED_EXPTIME, current.cas)? {
                    if stored.is_live(now) {
                        deleted += 1;
                    }
                    stale.insert((entry.key, entry.indexed_at));
                    break;
                }
                attempt += 1;
                if attempt >= MAX_CAS_ATTEMPTS {
                    return Err(contention("delete_by_user"));
                }
                backoff(attempt);
                item = self.fetch(skey)?;
            }
        }
        if let Err(e) = self.index_remove(user, &stale, None, now) {
            tracing::debug!(error = %e, "memcached user index cleanup failed");
        }
        Ok((deleted, quiet))
    }

    /// Adds (or refreshes) `key`'s entry in `user`'s index. Reads only when
    /// the entry is already there with this deadline.
    pub(super) fn index_upsert(
        &self,
        user: &str,
        key: &StorageKey,
        absolute_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let ikey = self.index_key(user);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let item = self.fetch(&ikey)?;
            let mut entries = match &item {
                None => Vec::new(),
                Some(i) => decode_index(&i.value).unwrap_or_else(|_| {
                    tracing::warn!("replacing an unreadable memcached user index");
                    Vec::new()
                }),
            };
            if entries
                .iter()
                .any(|e| e.key == *key && e.absolute_deadline == absolute_deadline)
            {
                return Ok(());
            }
            entries.retain(|e| e.key != *key && e.absolute_deadline > now);
            if entries.len() >= INDEX_COMPACT_AT {
                self.compact(user, &mut entries, now)?;
            }
            entries.push(IndexEntry {
                key: *key,
                absolute_deadline,
                indexed_at: now,
            });
            let value = encode_index(&entries);
            let exp = index_exptime(&entries);
            let written = match &item {
                None => self.add(&ikey, &value, exp)?,
                Some(i) => self.cas(&ikey, &value, exp, i.cas)?,
            };
            if written {
                return Ok(());
            }
            backoff(attempt);
        }
        Err(contention("user index update"))
    }

    /// Drops the entries of a large index whose sessions are stale.
    fn compact(
        &self,
        user: &str,
        entries: &mut Vec<IndexEntry>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let skeys: Vec<String> = entries.iter().map(|e| self.session_key(&e.key)).collect();
        let items = self.fetch_many(&skeys)?;
        let mut keep = Vec::with_capacity(entries.len());
        for (entry, skey) in entries.iter().zip(&skeys) {
            if !matches!(judge(entry, items.get(skey), user, now), Seen::Stale) {
                keep.push(*entry);
            }
        }
        *entries = keep;
        Ok(())
    }

    /// Removes the given entries (key and write time, so an entry rewritten
    /// meanwhile survives) and any past their absolute deadline from
    /// `user`'s index. `first` is an already fetched copy of the index.
    fn index_remove(
        &self,
        user: &str,
        stale: &HashSet<(StorageKey, Timestamp)>,
        mut first: Option<Item>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let ikey = self.index_key(user);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let item = match first.take() {
                Some(i) => i,
                None => match self.fetch(&ikey)? {
                    Some(i) => i,
                    None => return Ok(()),
                },
            };
            let entries = decode_index(&item.value)?;
            let kept: Vec<IndexEntry> = entries
                .iter()
                .filter(|e| !stale.contains(&(e.key, e.indexed_at)) && e.absolute_deadline > now)
                .copied()
                .collect();
            if kept.len() == entries.len() {
                return Ok(());
            }
            // An emptied index is written already expired rather than
            // deleted, so that the removal stays conditional on the token.
            if self.cas(&ikey, &encode_index(&kept), index_exptime(&kept), item.cas)? {
                return Ok(());
            }
            backoff(attempt);
        }
        Err(contention("user index cleanup"))
    }
}
