//! A single server: the session scripts keep the per-user index in the same
//! atomic step, so every operation is one script (see [`RedisStore`]'s docs,
//! "Single server").

use async_trait::async_trait;

use super::RedisStore;
use super::conn::Topology;
use super::reply::{self, Saved, int, opt_bytes};
use super::scripts::{Write, create, delete, delete_by_user, flag, list, rotate, save};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{StoreError, UserSession, kit};

/// The index is kept by the scripts themselves.
pub(super) struct SingleServer;

#[async_trait]
impl Topology for SingleServer {
    async fn create(
        &self,
        store: &RedisStore,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let w = Write::of(key, record);
        let mut call = create::call();
        call.key(create::KEY_SESSION, store.session_key(&w.member));
        if let Some(user) = w.user {
            call.key(create::KEY_INDEX, store.index_key(user));
        }
        w.fill(&mut call, kit::lua_millis(now), store.prefix(), true);
        if int(&store.client.script(&call).await?)? == 1 {
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
        let mut call = save::call();
        call.key(save::KEY_SESSION, store.session_key(&w.member));
        if let Some(user) = w.user {
            call.key(save::KEY_INDEX, store.index_key(user));
        }
        w.fill(&mut call, kit::lua_millis(now), store.prefix(), true);
        call.arg(save::ARG_EXPECTED_VERSION, expected_version)
            .arg(save::ARG_INDEXED, flag(false));
        match reply::saved(store.client.script(&call).await?)? {
            Saved::Kept(_) => Ok(()),
            Saved::NotFound => Err(StoreError::NotFound),
            Saved::VersionConflict => Err(StoreError::VersionConflict),
            // Only a cluster caller is asked to index first.
            Saved::IndexFirst => Err(reply::other("unexpected reply from the save script")),
        }
    }

    async fn delete(
        &self,
        store: &RedisStore,
        key: &StorageKey,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        let member = key.to_hex();
        let mut call = delete::call();
        call.key(delete::KEY_SESSION, store.session_key(&member))
            .arg(delete::ARG_MEMBER, &member)
            .arg(delete::ARG_PREFIX, store.prefix())
            .arg(delete::ARG_SINGLE, flag(true));
        opt_bytes(store.client.script(&call).await?).map(drop)
    }

    async fn rotate(
        &self,
        store: &RedisStore,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let w = Write::of(new_key, record);
        let mut call = rotate::call();
        call.key(rotate::KEY_OLD, store.session_key(&old_key.to_hex()))
            .key(rotate::KEY_NEW, store.session_key(&w.member));
        if let Some(user) = w.user {
            call.key(rotate::KEY_INDEX, store.index_key(user));
        }
        w.fill(&mut call, kit::lua_millis(now), store.prefix(), true);
        call.arg(rotate::ARG_OLD_MEMBER, old_key.to_hex());
        match int(&store.client.script(&call).await?)? {
            1 => Ok(()),
            0 => Err(StoreError::Conflict),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn list_by_user(
        &self,
        store: &RedisStore,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        let mut call = list::call();
        call.key(list::KEY_INDEX, store.index_key(user))
            .arg(list::ARG_USER, user)
            .arg(list::ARG_NOW, kit::lua_millis(now))
            .arg(list::ARG_PREFIX, store.prefix());
        reply::listed(store.client.script(&call).await?)
    }

    async fn delete_by_user(
        &self,
        store: &RedisStore,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut call = delete_by_user::call();
        call.key(delete_by_user::KEY_INDEX, store.index_key(user))
            .arg(delete_by_user::ARG_USER, user)
            .arg(
                delete_by_user::ARG_EXCEPT,
                except.map(StorageKey::to_hex).unwrap_or_default(),
            )
            .arg(delete_by_user::ARG_NOW, kit::lua_millis(now))
            .arg(delete_by_user::ARG_PREFIX, store.prefix());
        let n = int(&store.client.script(&call).await?)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
