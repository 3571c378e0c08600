//! A Redis Cluster: a session key and its user's index key live in
//! different slots, so the session scripts touch only the session and the
//! index is kept by separate commands, ordered so that the index always
//! lists at least every live session of its user (see [`RedisStore`]'s
//! docs, "Cluster").

use async_trait::async_trait;
use redis::Value;

use super::conn::{Topology, batches, join_all};
use super::reply::{
    self, Saved, array, decode, fields, int, opt_bytes, opt_ms, parse_member, parse_ms,
};
use super::scripts::{
    Write, create, delete, delete_if_live, delete_if_user, flag, index_add, index_members, save,
};
use super::{BACKEND, RedisStore};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{StoreError, UserSession, kit};

/// Most passes of a cluster `delete_by_user` over a user's index (two
/// unless sessions of the user are being created or rotated meanwhile).
const MAX_DELETE_BY_USER_PASSES: usize = 8;

/// The index is kept beside the session scripts.
pub(super) struct Cluster;

#[async_trait]
impl Topology for Cluster {
    async fn create(
        &self,
        store: &RedisStore,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let w = Write::of(key, record);
        let ms = kit::lua_millis(now);
        // The index member goes in before the session exists.
        let indexed = w.live(ms) && w.user.is_some();
        if indexed && let Some(user) = w.user {
            store.index_add(user, &w.member, w.absolute, ms).await?;
        }
        let mut call = create::call();
        call.key(create::KEY_SESSION, store.session_key(&w.member));
        w.fill(&mut call, ms, store.prefix(), false);
        let created = int(&store.client.script(&call).await?)? == 1;
        if indexed && let Some(user) = w.user {
            let r = if created {
                store.index_add(user, &w.member, w.absolute, ms).await
            } else {
                store
                    .index_remove(user, std::slice::from_ref(&w.member), ms)
                    .await
            };
            tidy(r, "create");
        }
        if created {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn save(
        &self,
        store: &RedisStore,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let w = Write::of(key, record);
        let mut indexed = false;
        let ms = kit::lua_millis(now);
        let old_user = loop {
            let mut call = save::call();
            call.key(save::KEY_SESSION, store.session_key(&w.member));
            w.fill(&mut call, ms, store.prefix(), false);
            call.arg(save::ARG_EXPECTED_VERSION, expected_version)
                .arg(save::ARG_INDEXED, flag(indexed));
            let outcome = match reply::saved(store.client.script(&call).await?)? {
                Saved::Kept(old_user) => break old_user,
                Saved::NotFound => StoreError::NotFound,
                Saved::VersionConflict => StoreError::VersionConflict,
                Saved::IndexFirst if !indexed => {
                    // The session is about to belong to this user (or live
                    // longer): index it first, then write.
                    if let Some(user) = w.user {
                        store.index_add(user, &w.member, w.absolute, ms).await?;
                    }
                    indexed = true;
                    continue;
                }
                Saved::IndexFirst => {
                    return Err(reply::other("unexpected reply from the save script"));
                }
            };
            // The write did not happen: a member added for it is stale.
            if indexed && let Some(user) = w.user {
                let r = store
                    .index_remove(user, std::slice::from_ref(&w.member), ms)
                    .await;
                tidy(r, "save");
            }
            return Err(outcome);
        };
        // The save is done; what follows is index upkeep, whose failure
        // leaves only an extra member behind (type docs).
        let old_user = old_user.and_then(|u| String::from_utf8(u).ok());
        let live = w.live(ms);
        if let Some(user) = w.user
            && live
            && old_user.as_deref() != Some(user)
        {
            tidy(
                store.index_add(user, &w.member, w.absolute, ms).await,
                "save",
            );
        }
        if let Some(old) = old_user
            && (!live || w.user != Some(old.as_str()))
        {
            let r = store
                .index_remove(&old, std::slice::from_ref(&w.member), ms)
                .await;
            tidy(r, "save");
        }
        Ok(())
    }

    async fn delete(
        &self,
        store: &RedisStore,
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let member = key.to_hex();
        let mut call = delete::call();
        call.key(delete::KEY_SESSION, store.session_key(&member))
            .arg(delete::ARG_MEMBER, &member)
            .arg(delete::ARG_PREFIX, store.prefix())
            .arg(delete::ARG_SINGLE, flag(false));
        let old_user = opt_bytes(store.client.script(&call).await?)?;
        if let Some(user) = old_user.and_then(|u| String::from_utf8(u).ok()) {
            let ms = kit::lua_millis(now);
            tidy(store.index_remove(&user, &[member], ms).await, "delete");
        }
        Ok(())
    }

    /// S28: `create` files the new record (indexed first, like every
    /// create), then a script on the old key's slot deletes the old record
    /// only if it is live; if it was not, the new record is deleted again
    /// and the rotation is `NotFound`. So the new record exists before the
    /// old is gone, and:
    ///
    /// * a `delete` (or `delete_by_user`) that removed the old record first
    ///   makes the claim fail: nothing is left under the new key;
    /// * one that comes after the claim finds the new record, which was
    ///   written and indexed before the claim: `delete_by_user` reads the
    ///   index until it lists nothing, so it deletes the new record too.
    ///
    /// Until the claim, both records are live for a moment; the new key has
    /// not been handed to anyone yet.
    async fn rotate(
        &self,
        store: &RedisStore,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.create(store, new_key, record, now).await?;
        let ms = kit::lua_millis(now);
        let member = old_key.to_hex();
        let mut call = delete_if_live::call();
        call.key(delete_if_live::KEY_SESSION, store.session_key(&member))
            .arg(delete_if_live::ARG_NOW, ms);
        let claimed = match store.client.script(&call).await.and_then(array) {
            Ok(reply) => reply,
            Err(e) => {
                // Whether the old record went is unknown: take back the new
                // one rather than risk two live sessions.
                if let Err(undo) = self.delete(store, new_key, now).await {
                    tracing::warn!(error = %undo, "could not take back a half-done Redis Cluster rotation");
                }
                return Err(e);
            }
        };
        let mut it = claimed.into_iter();
        if int(&it.next().unwrap_or(Value::Nil))? != 1 {
            // Deleted or expired meanwhile: the rotation must not revive it.
            self.delete(store, new_key, now).await?;
            return Err(StoreError::NotFound);
        }
        let old_user = it
            .next()
            .map(opt_bytes)
            .transpose()?
            .flatten()
            .and_then(|u| String::from_utf8(u).ok())
            .filter(|u| !u.is_empty());
        if let Some(user) = old_user {
            tidy(store.index_remove(&user, &[member], ms).await, "rotate");
        }
        Ok(())
    }

    /// Reads the index and then each session concurrently (one `HMGET` per
    /// session: a multi-key read cannot span slots).
    async fn list_by_user(
        &self,
        store: &RedisStore,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let now = kit::lua_millis(now);
        let members = store.index_members(user, now).await?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for chunk in batches(&members) {
            let reads = join_all(chunk.iter().map(|m| async move {
                let mut hmget = redis::cmd("HMGET");
                hmget.arg(store.session_key(m)).arg(&["u", "i", "a", "r"]);
                match store.client.cmd(&hmget).await {
                    Ok(v) => fields::<4>(v).map(Some),
                    // A foreign key of another type: treat as stale.
                    Err(StoreError::Corrupt(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }))
            .await;
            for (member, read) in chunk.iter().zip(reads) {
                let Some([u, i, a, r]) = read? else {
                    stale.push(member.clone());
                    continue;
                };
                if u.as_deref() != Some(user.as_bytes()) {
                    stale.push(member.clone());
                    continue;
                }
                let (Some(i), Some(a), Some(r)) = (i, a, r) else {
                    return Err(StoreError::corrupt_in(
                        BACKEND,
                        "session hash lacks a field",
                    ));
                };
                let idle = parse_ms(&i)?;
                if idle.min(parse_ms(&a)?) <= now {
                    // Dead by our clock, not yet by Redis's: not listed, and
                    // its member goes when its score passes.
                    continue;
                }
                out.push(UserSession {
                    key: parse_member(member)?,
                    record: decode(r, idle)?,
                });
            }
        }
        tidy(store.index_remove(user, &stale, now).await, "list_by_user");
        Ok(out)
    }

    /// Passes over the user's index until it lists no member but `except`.
    /// One pass deletes what it finds; the next one finds what a rotation
    /// racing the first pass filed under a new key (it indexes the new key
    /// before it claims the old one, so the new key is listed by the time
    /// the first pass finds the old record gone). An index that lists no
    /// other member means no other live session (type docs), and any
    /// rotation still under way has lost its old record, so it takes its
    /// new one back.
    async fn delete_by_user(
        &self,
        store: &RedisStore,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let except = except.map(StorageKey::to_hex);
        let now = kit::lua_millis(now);
        let mut deleted = 0u64;
        for _ in 0..MAX_DELETE_BY_USER_PASSES {
            let members: Vec<String> = store
                .index_members(user, now)
                .await?
                .into_iter()
                .filter(|m| Some(m) != except.as_ref())
                .collect();
            if members.is_empty() {
                return Ok(deleted);
            }
            deleted += store.delete_by_user_pass(user, &members, now).await?;
        }
        Err(StoreError::unavailable_in(
            BACKEND,
            "delete_by_user: the user's sessions kept changing; try again",
        ))
    }
}

/// Index upkeep: the separate commands on a user's index key.
impl RedisStore {
    /// Adds `member` to `user`'s index with the given score (`ZADD GT`),
    /// pruning dead members and extending the index key's TTL.
    async fn index_add(
        &self,
        user: &str,
        member: &str,
        score: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut call = index_add::call();
        call.key(index_add::KEY_INDEX, self.index_key(user))
            .arg(index_add::ARG_MEMBER, member)
            .arg(index_add::ARG_SCORE, score.min(kit::LUA_MAX_MS))
            .arg(index_add::ARG_NOW, now);
        self.client.script(&call).await.map(drop)
    }

    /// Removes `members` from `user`'s index, then re-reads each session
    /// and puts back any that is live and belongs to `user` after all (a
    /// concurrent writer may have given it to `user` in between).
    async fn index_remove(
        &self,
        user: &str,
        members: &[String],
        now: u64,
    ) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(self.index_key(user)).arg(members);
        self.client.cmd(&zrem).await?;
        for chunk in batches(members) {
            let rechecks = join_all(chunk.iter().map(|m| self.recheck(user, m, now))).await;
            rechecks.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        Ok(())
    }

    async fn recheck(&self, user: &str, member: &str, now: u64) -> Result<(), StoreError> {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.session_key(member)).arg(&["u", "i", "a"]);
        let fields = match self.client.cmd(&hmget).await {
            Ok(v) => fields::<3>(v)?,
            // Not a session hash: nothing to put back.
            Err(StoreError::Corrupt(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let [u, i, a] = fields;
        if u.as_deref() != Some(user.as_bytes()) {
            return Ok(());
        }
        match (opt_ms(i.as_deref()), opt_ms(a.as_deref())) {
            (Some(i), Some(a)) if i.min(a) > now => self.index_add(user, member, a, now).await,
            _ => Ok(()),
        }
    }

    /// The members of `user`'s index, after pruning those whose absolute
    /// deadline has passed.
    async fn index_members(&self, user: &str, now: u64) -> Result<Vec<String>, StoreError> {
        let mut call = index_members::call();
        call.key(index_members::KEY_INDEX, self.index_key(user))
            .arg(index_members::ARG_NOW, now);
        array(self.client.script(&call).await?)?
            .into_iter()
            .map(|v| {
                let b = opt_bytes(v)?.ok_or_else(|| reply::other("nil index member"))?;
                reply::member_text(b)
            })
            .collect()
    }

    /// One pass of `delete_by_user` over `members`; returns how many live
    /// sessions it deleted.
    async fn delete_by_user_pass(
        &self,
        user: &str,
        members: &[String],
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        for chunk in batches(members) {
            let results = join_all(chunk.iter().map(|m| async move {
                let mut call = delete_if_user::call();
                call.key(delete_if_user::KEY_SESSION, self.session_key(m))
                    .arg(delete_if_user::ARG_USER, user)
                    .arg(delete_if_user::ARG_NOW, now);
                self.client.script(&call).await.and_then(|v| int(&v))
            }))
            .await;
            for r in results {
                if r? == 1 {
                    deleted += 1;
                }
            }
        }
        // Every processed member leaves the index: deleted sessions and
        // stale members alike (the re-check keeps any that a concurrent
        // writer has just given to this user).
        tidy(
            self.index_remove(user, members, now).await,
            "delete_by_user",
        );
        Ok(deleted)
    }
}

/// Index upkeep after the operation itself has succeeded: a failure leaves
/// at most an extra index member, which is harmless and cleaned lazily, so
/// it is logged rather than reported as the operation failing.
fn tidy(r: Result<(), StoreError>, op: &'static str) {
    if let Err(e) = r {
        tracing::warn!(op, error = %e, "Redis Cluster index upkeep failed; cleaned lazily");
    }
}
