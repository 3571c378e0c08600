//! Redis and Redis Cluster store (feature `redis`): [`RedisStore`].
//!
//! The data layout, what is atomic where, and the failure model are
//! documented on [`RedisStore`] itself (this module is private). The rooms:
//! `builder` makes a store, `conn` holds the connection and picks the
//! deployment's [`Topology`](conn::Topology), `single` and `cluster` are the
//! two ways of keeping the per-user index, `scripts` holds the Lua (in
//! `lua/`) with its named argument positions, and `reply` reads answers.

mod builder;
mod cluster;
mod conn;
mod reply;
mod scripts;
mod single;
mod stats;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use self::conn::Client;
use self::reply::{decode, fields, int, parse_ms};
use self::scripts::touch;
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, StoreStats, UserSession, kit};

pub use self::builder::RedisStoreBuilder;

/// The name errors of this store carry ([`StoreError::backend`]).
const BACKEND: &str = "redis";

/// Sessions in Redis or Redis Cluster (feature `redis`): native expiry, one
/// round trip per load and per save. Cheap to clone (clones share the
/// connection).
///
/// One type serves both deployments: [`connect`](Self::connect) talks to
/// one server (a standalone Redis or a primary; not a sharding proxy, see
/// below) through a self-reconnecting connection manager,
/// [`connect_cluster`](Self::connect_cluster) to a Redis Cluster. The two
/// differ only in what can be made atomic, described below. Needs Redis 6.2
/// or newer (or a compatible server such as Valkey).
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::store::StoreError> {
/// use cloakroom::{SessionLayer, store::RedisStore};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/")
///     .await?
///     .with_prefix("myapp:sessions:")?;
/// let layer = SessionLayer::new(store);
///
/// let cluster = RedisStore::connect_cluster(&[
///     "redis://10.0.0.1:6379/",
///     "redis://10.0.0.2:6379/",
/// ])
/// .await?;
/// # Ok(()) }
/// ```
///
/// # Data layout
///
/// Every key starts with the store's prefix (default `cloakroom:`, see
/// [`RedisStore::with_prefix`]); `{hex}` is the 64-character lowercase hex of
/// the [`StorageKey`] (SHA-256 of the session ID), so neither the ID nor
/// anything that can be presented as one is ever written (S6).
///
/// * **Session** — `{prefix}s:{hex}`, a HASH:
///   * `r`: the record in its binary format ([`Record::encode`]);
///   * `v`: its version (decimal), the compare-and-swap token;
///   * `u`: the signed-in user, absent for anonymous sessions;
///   * `i`: the idle deadline in Unix milliseconds (decimal). It is kept
///     apart from `r` so that [`touch`](SessionStore::touch) never rewrites
///     the record; [`load`](SessionStore::load) overlays it on the decoded
///     record;
///   * `a`: the absolute deadline in Unix milliseconds (capped at 2^53 − 1,
///     like every deadline handed to Redis).
///
///   The key expires natively at `PEXPIREAT` = [`Record::expires_at`] (the
///   earlier deadline), moved by every save and touch.
/// * **Per-user index** — `{prefix}u:{user}`, a ZSET whose members are the hex
///   storage keys of the user's sessions, each scored by the session's
///   *absolute* deadline (ms). That score bounds the session's life and never
///   moves on a touch, so members whose score has passed are certainly dead:
///   every index write first drops them (`ZREMRANGEBYSCORE -inf now`), and the
///   index key itself expires (`PEXPIREAT`) at its highest score, so an index
///   can never outlive its sessions.
///
/// All deadlines are judged by the caller's clock (the `now` every operation
/// is given), the clock that set them. Redis's own expiry deletes the data; on top of
/// that every read and every script re-checks the deadlines, so clock skew
/// between the application and Redis can never make an expired record load,
/// save or touch.
///
/// # Round trips and atomicity
///
/// Every session operation is one Lua script (sent as `EVALSHA`, falling back
/// to `EVAL` when the server has not cached it) or one plain command, and
/// therefore atomic on the server:
///
/// * `load`: one `HMGET`;
/// * `create`: a script that inserts only if no live record is there
///   (`Conflict` otherwise). A record whose deadline has already passed is
///   not stored, and `create` still succeeds;
/// * `save`: a script that compares `v` with the expected version
///   (`VersionConflict`), refuses a missing or expired record (`NotFound`,
///   so a save never resurrects a destroyed session) and writes `r`, `v`,
///   `u`, `i`, `a` and the TTL;
/// * `touch`: a script that sets `i` and the TTL of a live record (`NotFound`
///   otherwise) and leaves `r` and `v` alone.
///
/// What differs is the per-user index, which lives in another key:
///
/// **Single server** ([`RedisStore::connect`]): the scripts maintain the index
/// in the same atomic step, so every operation is one round trip and
/// *everything* is atomic: `create` adds the index member, `save` moves it
/// when the user changes, `delete` removes it, `rotate` creates the new
/// record, deletes the old one and moves the member in one script (nobody
/// ever sees both records or neither), and `list_by_user` /
/// `delete_by_user` are single scripts that also drop stale members. The
/// scripts reach the old user's index and the sessions named by an index
/// under keys they compute from the prefix, which a single server allows;
/// that is why they cannot run on a cluster, nor behind a proxy that shards
/// keys over several servers.
///
/// **Cluster** ([`RedisStore::connect_cluster`]): a session key and its user's
/// index key live in different hash slots, usually on different nodes, and no
/// script or `MULTI` may span them. So the session scripts touch only the
/// session key (each still atomic, as above), and the index is maintained by
/// separate commands on the index key, ordered so that **the index always
/// lists at least every live session of its user** — the property "log out
/// everywhere" depends on:
///
/// * a write that gives a session to a user (`create`, `rotate`'s new key, a
///   `save` that changes the user or raises the absolute deadline) adds the
///   index member *before* the session write and again *after* it;
/// * anyone who removes a member (the old user's index after a user change,
///   `delete`, stale members found by `list_by_user` / `delete_by_user`)
///   re-reads the session afterwards and puts the member back if the session
///   turned out to belong to that user after all.
///
/// Between those steps the index may hold *extra* members: a session that
/// was just deleted or moved to another user, a `create` that lost with
/// `Conflict`, a save that lost its race, a process that died between two
/// steps, or an index update that failed after its operation had succeeded
/// (logged, not reported as the operation failing). Extras are harmless —
/// `list_by_user` and `delete_by_user` check every member against its
/// session and act only on live sessions of that user — and are cleaned
/// lazily: by those two calls, by the score pruning on every index write,
/// and at the latest when the index key expires. `rotate`
/// is `create` on the new key followed by a script that deletes the old one
/// only if it is live (otherwise the new one is deleted again and the
/// rotation is `NotFound`, S28), so the new record exists before the old one
/// is gone, but for a moment both are live (a crash in between leaves the
/// old one to expire by itself). `delete_by_user` repeats its pass until the
/// index lists nothing more, which catches the new key of a rotation that
/// raced the first pass.
/// `list_by_user` reads the index and then each session concurrently (one
/// `HMGET` per session: a multi-key read cannot span slots).
///
/// # `delete_expired`
///
/// Redis deletes expired sessions itself and the index prunes and expires
/// itself as described, so [`delete_expired`](SessionStore::delete_expired)
/// has nothing to do: it returns `Ok(0)` without a round trip. Members of
/// sessions that died of idleness stay in their index until the next
/// `list_by_user` / `delete_by_user` of that user or their absolute deadline,
/// whichever comes first; they are never listed.
///
/// # Failures
///
/// Connection, I/O and timeout errors, and cluster states such as
/// `CLUSTERDOWN` or `TRYAGAIN`, are [`StoreError::Unavailable`]; data this
/// build cannot read (an undecodable record, a non-numeric deadline, a key of
/// the wrong type under the prefix) is [`StoreError::Corrupt`]; anything else
/// the server reports, script errors included, is [`StoreError::Other`].
///
/// No call waits forever: each command has a response timeout and each
/// connection attempt a connection timeout (see [`RedisStoreBuilder`]), and
/// each call is additionally bounded by a local timer. On a single server the
/// connection manager reconnects by itself in the background after a failure;
/// a command that finds the connection refused (so it was never sent) is
/// retried once on the fresh connection, so the first request after the
/// server comes back succeeds. The cluster client reconnects to nodes and
/// follows slot moves by itself.
///
/// # Operating notes
///
/// * Run Redis with `maxmemory-policy noeviction` (or enough memory): an
///   evicted index key would make "log out everywhere" miss sessions, and an
///   evicted session logs its user out.
/// * Persistence is Redis's business: without RDB/AOF, a restart signs
///   everyone out (safely: no session is resurrected).
/// * Do not put a hash tag (`{...}`) in the prefix of a cluster store: it
///   would pin every key to one slot, one node.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "mode",
                &if self.is_cluster() {
                    "cluster"
                } else {
                    "single"
                },
            )
            .field("prefix", &&*self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix used unless [`with_prefix`](Self::with_prefix) says
    /// otherwise.
    pub const DEFAULT_PREFIX: &'static str = "cloakroom:";

    /// This store with every key under `prefix` instead of
    /// [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX). The connection is shared
    /// with `self`'s clones.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] if `prefix` holds `{` or `}`: on a cluster a
    /// hash tag in the prefix would put every session and index in one
    /// slot, on one node.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        check_prefix(&prefix)?;
        self.prefix = Arc::from(prefix);
        Ok(self)
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether this store talks to a Redis Cluster.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        self.client.is_cluster()
    }

    /// Runs `inv` over this store's connection, bounded in time like the
    /// store's own calls: the login throttle keeps its counters here.
    pub(crate) async fn invoke_script(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<redis::Value, StoreError> {
        self.client.invoke(inv).await
    }

    fn session_key(&self, member: &str) -> String {
        format!("{}s:{member}", self.prefix)
    }

    fn index_key(&self, user: &str) -> String {
        format!("{}u:{user}", self.prefix)
    }
}

/// Refuses a key prefix with a brace (a cluster hash tag).
fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.contains(['{', '}']) {
        return Err(StoreError::other_in(
            BACKEND,
            "Redis key prefix must not hold `{` or `}` (a hash tag would put every session in one cluster slot)",
        ));
    }
    Ok(())
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.client.topology().create(self, key, record, now).await
    }

    async fn load(&self, key: &StorageKey, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.session_key(&key.to_hex())).arg(&["r", "i"]);
        let [r, i] = fields::<2>(self.client.cmd(&hmget).await?)?;
        let (Some(r), Some(i)) = (r, i) else {
            return Ok(None);
        };
        let record = decode(r, parse_ms(&i)?)?;
        // Redis's TTL normally got there first; this covers clock skew.
        Ok(record.is_live(now).then_some(record))
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.client
            .topology()
            .save(self, key, record, expected_version, now)
            .await
    }

    async fn touch(
        &self,
        key: &StorageKey,
        idle_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut call = touch::call();
        call.key(touch::KEY_SESSION, self.session_key(&key.to_hex()))
            .arg(touch::ARG_IDLE_EXACT, idle_deadline.as_millis())
            .arg(touch::ARG_IDLE_CLAMPED, kit::lua_millis(idle_deadline))
            .arg(touch::ARG_NOW, kit::lua_millis(now));
        if int(&self.client.script(&call).await?)? == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete(&self, key: &StorageKey, now: Timestamp) -> Result<(), StoreError> {
        self.client.topology().delete(self, key, now).await
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.client
            .topology()
            .rotate(self, old_key, new_key, record, now)
            .await
    }

    async fn list_by_user(
        &self,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError> {
        self.client.topology().list_by_user(self, user, now).await
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.client
            .topology()
            .delete_by_user(self, user, except, now)
            .await
    }

    async fn delete_expired(&self, _now: Timestamp) -> Result<u64, StoreError> {
        // Redis expires sessions natively and every index prunes and expires
        // itself (type docs): nothing is left that is cheap to find.
        Ok(0)
    }

    async fn stats(&self, now: Timestamp) -> Result<StoreStats, StoreError> {
        self.count_live(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::check_prefix;

    #[test]
    fn prefixes_with_a_hash_tag_are_refused() {
        assert!(check_prefix("cloakroom:").is_ok());
        assert!(check_prefix("").is_ok());
        for bad in ["{app}:", "app{", "app}:"] {
            let e = check_prefix(bad).expect_err(bad);
            assert!(e.to_string().contains("hash tag"), "{e}");
        }
    }
}
