//! Redis and Redis Cluster store (feature `redis`): [`RedisStore`].
//!
//! The data layout, what is atomic where, and the failure model are
//! documented on [`RedisStore`] itself (this module is private).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisError, Script, ScriptInvocation, ServerErrorKind, Value};

use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{SessionStore, StoreError, UserSession};

/// Default per-command response timeout.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default timeout of one connection attempt.
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Connection attempts after the first, on a (re)connect.
const RECONNECT_RETRIES: usize = 2;
/// Longest wait between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Largest millisecond value handed to Redis or Lua: exact in a Lua number
/// (a double) and far beyond any real deadline (year 287,396).
const MAX_MS: u64 = (1 << 53) - 1;
/// Most passes of a cluster `delete_by_user` over a user's index (two
/// unless sessions of the user are being created or rotated meanwhile).
const MAX_DELETE_BY_USER_PASSES: usize = 8;
/// Most per-session commands in flight at once in cluster fan-outs.
const FAN_OUT: usize = 64;

/// Opens a [`RedisStore`] with non-default settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::store::StoreError> {
/// use std::time::Duration;
/// use cloakroom::store::RedisStore;
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("myapp:")
///     .response_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    target: Target,
    prefix: String,
    response_timeout: Duration,
    connection_timeout: Duration,
}

#[derive(Clone)]
enum Target {
    Single(String),
    Cluster(Vec<String>),
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry passwords: never print them.
        let mut d = f.debug_struct("RedisStoreBuilder");
        match &self.target {
            Target::Single(_) => d.field("mode", &"single"),
            Target::Cluster(urls) => d.field("mode", &"cluster").field("nodes", &urls.len()),
        };
        d.field("prefix", &self.prefix)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

impl RedisStoreBuilder {
    fn new(target: Target) -> Self {
        Self {
            target,
            prefix: RedisStore::DEFAULT_PREFIX.to_owned(),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
        }
    }

    /// Sets the prefix of every key the store writes (default
    /// [`RedisStore::DEFAULT_PREFIX`]). Stores with different prefixes share
    /// a server without seeing each other's sessions.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one command may wait for its reply (default 2 s). A command
    /// that times out fails with [`StoreError::Unavailable`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 1 s). A
    /// (re)connection makes up to three attempts.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Connects and returns the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server (or no cluster node) can be
    /// reached, or refuses the credentials; [`StoreError::Other`] for a
    /// malformed URL or an empty list of cluster nodes.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let call_timeout = call_timeout(self.response_timeout, self.connection_timeout);
        let conn = match &self.target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(map_err)?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(self.response_timeout))
                    .set_connection_timeout(Some(self.connection_timeout))
                    .set_number_of_retries(RECONNECT_RETRIES)
                    .set_max_delay(MAX_RECONNECT_DELAY);
                let manager = bounded(
                    call_timeout,
                    ConnectionManager::new_with_config(client, config),
                )
                .await?;
                Conn::Single(manager)
            }
            Target::Cluster(urls) => {
                if urls.is_empty() {
                    return Err(StoreError::other("no Redis Cluster node URL given"));
                }
                let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .connection_timeout(self.connection_timeout)
                    .response_timeout(self.response_timeout)
                    .overall_response_timeout(Some(
                        self.response_timeout * 2 + self.connection_timeout,
                    ))
                    .retries(3)
                    .min_retry_wait(20)
                    .max_retry_wait(500)
                    .build()
                    .map_err(map_err)?;
                let conn = bounded(call_timeout, client.get_async_connection()).await?;
                Conn::Cluster(conn)
            }
        };
        Ok(RedisStore {
            conn,
            prefix: Arc::from(self.prefix),
            call_timeout,
        })
    }
}

/// The local backstop on one call: every attempt a reconnect may make, plus
/// the response, plus slack.
fn call_timeout(response: Duration, connection: Duration) -> Duration {
    let attempts = u32::try_from(RECONNECT_RETRIES + 1).unwrap_or(u32::MAX);
    connection
        .saturating_mul(attempts)
        .saturating_add(MAX_RECONNECT_DELAY.saturating_mul(attempts))
        .saturating_add(response.saturating_mul(2))
        .saturating_add(Duration::from_secs(1))
}

async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(timed_out()),
    }
}

fn timed_out() -> StoreError {
    StoreError::unavailable(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

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
///     .with_prefix("myapp:sessions:");
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
/// All deadlines are judged by the application's clock ([`Timestamp::now`]),
/// the clock that set them. Redis's own expiry deletes the data; on top of
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
    conn: Conn,
    prefix: Arc<str>,
    call_timeout: Duration,
}

/// The two connection kinds: the deployment decides which scripts can run.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
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

    /// Connects to one Redis server, e.g. `redis://127.0.0.1:6379/` or
    /// `redis://user:password@host:6379/2` (`rediss://` needs one of the
    /// `redis` crate's TLS features enabled in your build). The connection
    /// reconnects by itself after a failure.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached;
    /// [`StoreError::Other`] for a malformed URL.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Connects to a Redis Cluster through any of its nodes (the rest are
    /// discovered).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if no node can be reached or the cluster
    /// is down; [`StoreError::Other`] for a malformed URL or an empty list.
    pub async fn connect_cluster(urls: &[&str]) -> Result<Self, StoreError> {
        Self::cluster_builder(urls).connect().await
    }

    /// A builder for a single-server store with non-default settings.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Target::Single(url.to_owned()))
    }

    /// A builder for a cluster store with non-default settings.
    pub fn cluster_builder(urls: &[&str]) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Target::Cluster(
            urls.iter().map(|u| (*u).to_owned()).collect(),
        ))
    }

    /// This store with every key under `prefix` instead of
    /// [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX). The connection is shared
    /// with `self`'s clones.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether this store talks to a Redis Cluster.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    fn single(&self) -> bool {
        !self.is_cluster()
    }

    fn session_key(&self, member: &str) -> String {
        format!("{}s:{member}", self.prefix)
    }

    fn index_key(&self, user: &str) -> String {
        format!("{}u:{user}", self.prefix)
    }

    /// Runs one command or script invocation, bounded in time; a command the
    /// connection manager could not even send (connection refused) is tried
    /// once more on the connection it is re-establishing.
    async fn run(&self, op: Op<'_>) -> Result<Value, StoreError> {
        let mut retried = false;
        loop {
            let attempt = async {
                match (&self.conn, &op) {
                    (Conn::Single(c), Op::Cmd(cmd)) => cmd.query_async(&mut c.clone()).await,
                    (Conn::Cluster(c), Op::Cmd(cmd)) => cmd.query_async(&mut c.clone()).await,
                    (Conn::Single(c), Op::Script(inv)) => inv.invoke_async(&mut c.clone()).await,
                    (Conn::Cluster(c), Op::Script(inv)) => inv.invoke_async(&mut c.clone()).await,
                }
            };
            match tokio::time::timeout(self.call_timeout, attempt).await {
                Err(_) => return Err(timed_out()),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !retried && e.is_connection_refusal() => retried = true,
                Ok(Err(e)) => return Err(map_err(e)),
            }
        }
    }

    async fn cmd(&self, cmd: &Cmd) -> Result<Value, StoreError> {
        self.run(Op::Cmd(cmd)).await
    }

    async fn script(&self, inv: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        self.run(Op::Script(inv)).await
    }

    // ---- cluster-mode index maintenance (see the type docs) ----

    /// Adds `member` to `user`'s index with the given score (`ZADD GT`),
    /// pruning dead members and extending the index key's TTL.
    async fn index_add(&self, user: &str, member: &str, score: u64) -> Result<(), StoreError> {
        let mut inv = INDEX_ADD.prepare_invoke();
        inv.key(self.index_key(user))
            .arg(member)
            .arg(score.min(MAX_MS))
            .arg(now_ms());
        self.script(&inv).await.map(drop)
    }

    /// Removes `members` from `user`'s index, then re-reads each session
    /// and puts back any that is live and belongs to `user` after all (a
    /// concurrent writer may have given it to `user` in between).
    async fn index_remove(&self, user: &str, members: &[String]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(self.index_key(user)).arg(members);
        self.cmd(&zrem).await?;
        for chunk in members.chunks(FAN_OUT) {
            let rechecks = join_all(chunk.iter().map(|m| self.recheck(user, m))).await;
            rechecks.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        Ok(())
    }

    async fn recheck(&self, user: &str, member: &str) -> Result<(), StoreError> {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.session_key(member)).arg(&["u", "i", "a"]);
        let fields = match self.cmd(&hmget).await {
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
            (Some(i), Some(a)) if i.min(a) > now_ms() => self.index_add(user, member, a).await,
            _ => Ok(()),
        }
    }

    async fn list_cluster(&self, user: &str) -> Result<Vec<UserSession>, StoreError> {
        let members = self.index_members(user).await?;
        let now = now_ms();
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for chunk in members.chunks(FAN_OUT) {
            let reads = join_all(chunk.iter().map(|m| async move {
                let mut hmget = redis::cmd("HMGET");
                hmget.arg(self.session_key(m)).arg(&["u", "i", "a", "r"]);
                match self.cmd(&hmget).await {
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
                    return Err(StoreError::corrupt("session hash lacks a field"));
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
        tidy(self.index_remove(user, &stale).await, "list_by_user");
        Ok(out)
    }

    /// The members of `user`'s index, after pruning those whose absolute
    /// deadline has passed.
    async fn index_members(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let mut inv = INDEX_MEMBERS.prepare_invoke();
        inv.key(self.index_key(user)).arg(now_ms());
        array(self.script(&inv).await?)?
            .into_iter()
            .map(|v| {
                let b = opt_bytes(v)?.ok_or_else(|| StoreError::other("nil index member"))?;
                String::from_utf8(b).map_err(|_| StoreError::corrupt("index member is not text"))
            })
            .collect()
    }

    /// Rotation on a cluster, where the two session keys live in different
    /// slots and no script can hold both. S28: `create` files the new
    /// record (indexed first, like every create), then a script on the old
    /// key's slot deletes the old record only if it is live; if it was not,
    /// the new record is deleted again and the rotation is `NotFound`. So
    /// the new record exists before the old is gone, and:
    ///
    /// * a `delete` (or `delete_by_user`) that removed the old record first
    ///   makes the claim fail: nothing is left under the new key;
    /// * one that comes after the claim finds the new record, which was
    ///   written and indexed before the claim: `delete_by_user` reads the
    ///   index until it lists nothing, so it deletes the new record too
    ///   (see `delete_by_user_cluster`).
    ///
    /// Until the claim, both records are live for a moment; the new key has
    /// not been handed to anyone yet.
    async fn rotate_cluster(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
    ) -> Result<(), StoreError> {
        self.create(new_key, record).await?;
        let member = old_key.to_hex();
        let mut inv = DELETE_IF_LIVE.prepare_invoke();
        inv.key(self.session_key(&member)).arg(now_ms());
        let claimed = match self.script(&inv).await.and_then(array) {
            Ok(reply) => reply,
            Err(e) => {
                // Whether the old record went is unknown: take back the new
                // one rather than risk two live sessions.
                if let Err(undo) = self.delete(new_key).await {
                    tracing::warn!(error = %undo, "could not take back a half-done Redis Cluster rotation");
                }
                return Err(e);
            }
        };
        let mut it = claimed.into_iter();
        if int(&it.next().unwrap_or(Value::Nil))? != 1 {
            // Deleted or expired meanwhile: the rotation must not revive it.
            self.delete(new_key).await?;
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
            tidy(self.index_remove(&user, &[member]).await, "rotate");
        }
        Ok(())
    }

    /// `delete_by_user` on a cluster: passes over the user's index until it
    /// lists no member but `except`. One pass deletes what it finds; the
    /// next one finds what a rotation racing the first pass filed under a
    /// new key (it indexes the new key before it claims the old one, so the
    /// new key is listed by the time the first pass finds the old record
    /// gone). An index that lists no other member means no other live
    /// session (type docs), and any rotation still under way has lost its
    /// old record, so it takes its new one back.
    async fn delete_by_user_cluster(
        &self,
        user: &str,
        except: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        let except = except.map(StorageKey::to_hex);
        let mut deleted = 0u64;
        for _ in 0..MAX_DELETE_BY_USER_PASSES {
            let members: Vec<String> = self
                .index_members(user)
                .await?
                .into_iter()
                .filter(|m| Some(m) != except.as_ref())
                .collect();
            if members.is_empty() {
                return Ok(deleted);
            }
            deleted += self.delete_by_user_pass(user, &members).await?;
        }
        Err(StoreError::unavailable(
            "delete_by_user: the user's sessions kept changing; try again",
        ))
    }

    /// One pass of [`delete_by_user_cluster`](Self::delete_by_user_cluster)
    /// over `members`; returns how many live sessions it deleted.
    async fn delete_by_user_pass(&self, user: &str, members: &[String]) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut deleted = 0u64;
        for chunk in members.chunks(FAN_OUT) {
            let results = join_all(chunk.iter().map(|m| async move {
                let mut inv = DELETE_IF_USER.prepare_invoke();
                inv.key(self.session_key(m)).arg(user).arg(now);
                self.script(&inv).await.and_then(|v| int(&v))
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
        tidy(self.index_remove(user, members).await, "delete_by_user");
        Ok(deleted)
    }
}

enum Op<'a> {
    Cmd(&'a Cmd),
    Script(&'a ScriptInvocation<'a>),
}

/// The values a write sends, prepared once.
struct Write<'a> {
    member: String,
    record: Bytes,
    version: String,
    idle_exact: u64,
    absolute: u64,
    expires: u64,
    user: Option<&'a str>,
}

impl<'a> Write<'a> {
    fn of(key: &StorageKey, r: &'a Record) -> Self {
        Self {
            member: key.to_hex(),
            record: r.encode(),
            version: r.version.to_string(),
            idle_exact: r.idle_deadline.as_millis(),
            absolute: ms(r.absolute_deadline),
            expires: ms(r.expires_at()),
            user: r.user.as_deref(),
        }
    }

    /// Whether the record is still live by the application's clock.
    fn live(&self, now: u64) -> bool {
        self.expires > now
    }

    /// ARGV[1..=11], shared by the create, save and rotate scripts.
    fn args(&self, inv: &mut ScriptInvocation<'_>, now: u64, prefix: &str, single: bool) {
        inv.arg(&self.record[..])
            .arg(&self.version)
            .arg(self.idle_exact)
            .arg(self.absolute)
            .arg(self.expires)
            .arg(now)
            .arg(flag(self.user.is_some()))
            .arg(self.user.unwrap_or(""))
            .arg(&self.member)
            .arg(prefix)
            .arg(flag(single));
    }
}

/// Cluster index upkeep after the operation itself has succeeded: a failure
/// leaves at most an extra index member, which is harmless and cleaned
/// lazily, so it is logged rather than reported as the operation failing.
fn tidy(r: Result<(), StoreError>, op: &'static str) {
    if let Err(e) = r {
        tracing::warn!(op, error = %e, "Redis Cluster index upkeep failed; cleaned lazily");
    }
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

fn ms(t: Timestamp) -> u64 {
    t.as_millis().min(MAX_MS)
}

fn now_ms() -> u64 {
    ms(Timestamp::now())
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let w = Write::of(key, record);
        let now = now_ms();
        let single = self.single();
        // Cluster: the index member goes in before the session exists.
        let indexed = !single && w.live(now) && w.user.is_some();
        if indexed && let Some(user) = w.user {
            self.index_add(user, &w.member, w.absolute).await?;
        }
        let mut inv = CREATE.prepare_invoke();
        inv.key(self.session_key(&w.member));
        if single && let Some(user) = w.user {
            inv.key(self.index_key(user));
        }
        w.args(&mut inv, now, &self.prefix, single);
        let created = int(&self.script(&inv).await?)? == 1;
        if indexed && let Some(user) = w.user {
            let r = if created {
                self.index_add(user, &w.member, w.absolute).await
            } else {
                self.index_remove(user, std::slice::from_ref(&w.member))
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

    async fn load(&self, key: &StorageKey) -> Result<Option<Record>, StoreError> {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.session_key(&key.to_hex())).arg(&["r", "i"]);
        let [r, i] = fields::<2>(self.cmd(&hmget).await?)?;
        let (Some(r), Some(i)) = (r, i) else {
            return Ok(None);
        };
        let record = decode(r, parse_ms(&i)?)?;
        // Redis's TTL normally got there first; this covers clock skew.
        Ok(record.is_live(Timestamp::now()).then_some(record))
    }

    async fn save(
        &self,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let w = Write::of(key, record);
        let single = self.single();
        let expected = expected_version.to_string();
        let mut indexed = false;
        let mut now;
        let old_user = loop {
            now = now_ms();
            let mut inv = SAVE.prepare_invoke();
            inv.key(self.session_key(&w.member));
            if single && let Some(user) = w.user {
                inv.key(self.index_key(user));
            }
            w.args(&mut inv, now, &self.prefix, single);
            inv.arg(&expected).arg(flag(indexed));
            let reply = array(self.script(&inv).await?)?;
            let mut reply = reply.into_iter();
            let status = reply.next().map(opt_bytes).transpose()?.flatten();
            let outcome = match status.as_deref() {
                Some(b"K") => break reply.next().map(opt_bytes).transpose()?.flatten(),
                Some(b"N") => StoreError::NotFound,
                Some(b"V") => StoreError::VersionConflict,
                Some(b"I") if !indexed => {
                    // Cluster: the session is about to belong to this user
                    // (or live longer): index it first, then write.
                    if let Some(user) = w.user {
                        self.index_add(user, &w.member, w.absolute).await?;
                    }
                    indexed = true;
                    continue;
                }
                _ => return Err(StoreError::other("unexpected reply from the save script")),
            };
            // The write did not happen: a member added for it is stale.
            if indexed && let Some(user) = w.user {
                let r = self
                    .index_remove(user, std::slice::from_ref(&w.member))
                    .await;
                tidy(r, "save");
            }
            return Err(outcome);
        };
        if single {
            return Ok(());
        }
        // Cluster: the save is done; what follows is index upkeep, whose
        // failure leaves only an extra member behind (type docs).
        let old_user = old_user.and_then(|u| String::from_utf8(u).ok());
        let live = w.live(now);
        if let Some(user) = w.user
            && live
            && old_user.as_deref() != Some(user)
        {
            tidy(self.index_add(user, &w.member, w.absolute).await, "save");
        }
        if let Some(old) = old_user
            && (!live || w.user != Some(old.as_str()))
        {
            let r = self
                .index_remove(&old, std::slice::from_ref(&w.member))
                .await;
            tidy(r, "save");
        }
        Ok(())
    }

    async fn touch(&self, key: &StorageKey, idle_deadline: Timestamp) -> Result<(), StoreError> {
        let mut inv = TOUCH.prepare_invoke();
        inv.key(self.session_key(&key.to_hex()))
            .arg(idle_deadline.as_millis())
            .arg(ms(idle_deadline))
            .arg(now_ms());
        if int(&self.script(&inv).await?)? == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        let member = key.to_hex();
        let mut inv = DELETE.prepare_invoke();
        inv.key(self.session_key(&member))
            .arg(&member)
            .arg(&*self.prefix)
            .arg(flag(self.single()));
        let old_user = opt_bytes(self.script(&inv).await?)?;
        if !self.single()
            && let Some(user) = old_user.and_then(|u| String::from_utf8(u).ok())
        {
            tidy(self.index_remove(&user, &[member]).await, "delete");
        }
        Ok(())
    }

    async fn rotate(
        &self,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
    ) -> Result<(), StoreError> {
        if !self.single() {
            return self.rotate_cluster(old_key, new_key, record).await;
        }
        let w = Write::of(new_key, record);
        let mut inv = ROTATE.prepare_invoke();
        inv.key(self.session_key(&old_key.to_hex()))
            .key(self.session_key(&w.member));
        if let Some(user) = w.user {
            inv.key(self.index_key(user));
        }
        w.args(&mut inv, now_ms(), &self.prefix, true);
        inv.arg(old_key.to_hex());
        match int(&self.script(&inv).await?)? {
            1 => Ok(()),
            0 => Err(StoreError::Conflict),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn list_by_user(&self, user: &str) -> Result<Vec<UserSession>, StoreError> {
        if !self.single() {
            return self.list_cluster(user).await;
        }
        let mut inv = LIST.prepare_invoke();
        inv.key(self.index_key(user))
            .arg(user)
            .arg(now_ms())
            .arg(&*self.prefix);
        let flat = array(self.script(&inv).await?)?;
        let mut out = Vec::with_capacity(flat.len() / 3);
        let mut it = flat.into_iter();
        while let (Some(m), Some(r), Some(i)) = (it.next(), it.next(), it.next()) {
            let (Some(m), Some(r), Some(i)) = (opt_bytes(m)?, opt_bytes(r)?, opt_bytes(i)?) else {
                return Err(StoreError::other("nil in the list script's reply"));
            };
            let member = String::from_utf8(m)
                .map_err(|_| StoreError::corrupt("index member is not text"))?;
            out.push(UserSession {
                key: parse_member(&member)?,
                record: decode(r, parse_ms(&i)?)?,
            });
        }
        Ok(out)
    }

    async fn delete_by_user(
        &self,
        user: &str,
        except: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        if !self.single() {
            return self.delete_by_user_cluster(user, except).await;
        }
        let mut inv = DELETE_BY_USER.prepare_invoke();
        inv.key(self.index_key(user))
            .arg(user)
            .arg(except.map(StorageKey::to_hex).unwrap_or_default())
            .arg(now_ms())
            .arg(&*self.prefix);
        let n = int(&self.script(&inv).await?)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        // Redis expires sessions natively and every index prunes and expires
        // itself (type docs): nothing is left that is cheap to find.
        Ok(0)
    }
}

// ---- replies ----

fn decode(bytes: Vec<u8>, idle_deadline: u64) -> Result<Record, StoreError> {
    let mut record = Record::decode(&Bytes::from(bytes)).map_err(StoreError::corrupt)?;
    record.idle_deadline = Timestamp::from_millis(idle_deadline);
    Ok(record)
}

fn parse_ms(bytes: &[u8]) -> Result<u64, StoreError> {
    opt_ms(Some(bytes)).ok_or_else(|| StoreError::corrupt("deadline field is not a number"))
}

fn opt_ms(bytes: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(bytes?).ok()?.parse().ok()
}

fn parse_member(member: &str) -> Result<StorageKey, StoreError> {
    StorageKey::from_hex(member)
        .map_err(|_| StoreError::corrupt("index member is not a storage key"))
}

fn unexpected(what: &Value) -> StoreError {
    // Only the shape, never the content: replies may hold session data.
    let shape = match what {
        Value::Nil => "nil",
        Value::Int(_) => "integer",
        Value::BulkString(_) => "bulk string",
        Value::Array(_) => "array",
        Value::SimpleString(_) => "simple string",
        Value::Okay => "OK",
        Value::Map(_) => "map",
        Value::Set(_) => "set",
        Value::Double(_) => "double",
        Value::Boolean(_) => "boolean",
        _ => "other",
    };
    StoreError::other(format!("unexpected {shape} reply from Redis"))
}

fn opt_bytes(v: Value) -> Result<Option<Vec<u8>>, StoreError> {
    match v {
        // RESP3 turns a Lua `false` into a boolean rather than a nil.
        Value::Nil | Value::Boolean(false) => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        other => Err(unexpected(&other)),
    }
}

fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::Boolean(b) => Ok(i64::from(*b)),
        Value::Nil => Ok(0),
        other => Err(unexpected(other)),
    }
}

fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(&other)),
    }
}

/// The `N` fields of an `HMGET` reply.
fn fields<const N: usize>(v: Value) -> Result<[Option<Vec<u8>>; N], StoreError> {
    let values = array(v)?;
    if values.len() != N {
        return Err(StoreError::other(
            "HMGET answered with the wrong field count",
        ));
    }
    let mut out: [Option<Vec<u8>>; N] = std::array::from_fn(|_| None);
    for (slot, v) in out.iter_mut().zip(values) {
        *slot = opt_bytes(v)?;
    }
    Ok(out)
}

fn map_err(e: RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return StoreError::unavailable(e);
    }
    match e.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound | ErrorKind::AuthenticationFailed => {
            StoreError::unavailable(e)
        }
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => StoreError::unavailable(e),
        _ if e.code() == Some("WRONGTYPE") => StoreError::corrupt(e),
        _ if e.is_unrecoverable_error() => StoreError::unavailable(e),
        _ => StoreError::other(e),
    }
}

/// Polls every future to completion concurrently, on the caller's task.
async fn join_all<F: Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

// ---- scripts ----
//
// Conventions: times are Unix milliseconds as decimal strings, compared with
// `tonumber` (exact: every value handed to Lua is below 2^53, except the
// exact idle deadline, which is only stored). A field that is missing or not
// a number makes a session count as dead. `single` scripts may touch keys
// they compute from the prefix; cluster ones touch only their KEYS.

const LIB: &str = r"
local function is_live(i, a, now)
  local ni, na = tonumber(i), tonumber(a)
  if not ni or not na then return false end
  return math.min(ni, na) > tonumber(now)
end
local function index_add(k, member, score, now, gt)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  if gt then
    redis.call('ZADD', k, 'GT', score, member)
  else
    redis.call('ZADD', k, score, member)
  end
  local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIREAT', k, string.format('%.0f', tonumber(top[2])))
  end
end
local function hash_fields(k, ...)
  if redis.call('TYPE', k)['ok'] ~= 'hash' then return nil end
  return redis.call('HMGET', k, ...)
end
";

/// The write shared by create, save and rotate: ARGV as in `Write::args`,
/// `k` the session key, `ik` the user's index key (single server only).
const WRITE: &str = r"
local function write(k, ik)
  redis.call('HSET', k, 'r', ARGV[1], 'v', ARGV[2], 'i', ARGV[3], 'a', ARGV[4])
  if ARGV[7] == '1' then
    redis.call('HSET', k, 'u', ARGV[8])
    if ARGV[11] == '1' then index_add(ik, ARGV[9], ARGV[4], ARGV[6], false) end
  else
    redis.call('HDEL', k, 'u')
  end
  redis.call('PEXPIREAT', k, ARGV[5])
end
";

/// KEYS: session[, index]. ARGV: `Write::args`. Returns 1 (created or
/// nothing to store) or 0 (a live record is there).
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{WRITE}{}",
        r"
local cur = hash_fields(KEYS[1], 'i', 'a', 'u')
if redis.call('EXISTS', KEYS[1]) == 1 then
  if cur and is_live(cur[1], cur[2], ARGV[6]) then return 0 end
  redis.call('DEL', KEYS[1])
  if ARGV[11] == '1' and cur and cur[3] then
    redis.call('ZREM', ARGV[10] .. 'u:' .. cur[3], ARGV[9])
  end
end
if tonumber(ARGV[5]) <= tonumber(ARGV[6]) then return 1 end
write(KEYS[1], KEYS[2])
return 1
"
    ))
});

/// KEYS: session[, index]. ARGV: `Write::args`, 12 expected version,
/// 13 whether the (cluster) caller already indexed the new user.
/// Returns {'N'} not found, {'V'} version conflict, {'I'} index first
/// (cluster), or {'K', old user}.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{WRITE}{}",
        r"
local single = ARGV[11] == '1'
local cur = hash_fields(KEYS[1], 'v', 'u', 'i', 'a')
if not cur or not cur[1] or not is_live(cur[3], cur[4], ARGV[6]) then return {'N'} end
if cur[1] ~= ARGV[12] then return {'V'} end
local old = cur[2]
local keeps_user = ARGV[7] == '1' and old == ARGV[8]
local live = tonumber(ARGV[5]) > tonumber(ARGV[6])
if not single and ARGV[7] == '1' and ARGV[13] ~= '1' and live then
  if not keeps_user or tonumber(ARGV[4]) > tonumber(cur[4]) then return {'I'} end
end
if single and old and (not keeps_user or not live) then
  redis.call('ZREM', ARGV[10] .. 'u:' .. old, ARGV[9])
end
if not live then
  redis.call('DEL', KEYS[1])
  return {'K', old}
end
write(KEYS[1], KEYS[2])
return {'K', old}
"
    ))
});

/// KEYS: session. ARGV: 1 idle deadline (exact), 2 idle deadline (clamped),
/// 3 now. Returns 1, or 0 if there is no live record.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{}",
        r"
local cur = hash_fields(KEYS[1], 'i', 'a')
if not cur or not is_live(cur[1], cur[2], ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'i', ARGV[1])
local at = ARGV[2]
if tonumber(cur[2]) < tonumber(at) then at = cur[2] end
redis.call('PEXPIREAT', KEYS[1], at)
return 1
"
    ))
});

/// KEYS: session. ARGV: 1 member, 2 prefix, 3 single. Returns the user the
/// session had, if any.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{}",
        r"
local cur = hash_fields(KEYS[1], 'u')
redis.call('DEL', KEYS[1])
local u = cur and cur[1]
if u and ARGV[3] == '1' then redis.call('ZREM', ARGV[2] .. 'u:' .. u, ARGV[1]) end
return u
"
    ))
});

/// Single server only. KEYS: old session, new session[, new user's index].
/// ARGV: `Write::args` for the new record, 12 old member. Returns 1, 0 if a
/// live record holds the new key, or -1 if no live record holds the old one
/// (S28: a destroyed or expired session is not filed anew); on 0 and -1
/// nothing changed.
static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{WRITE}{}",
        r"
local old = hash_fields(KEYS[1], 'u', 'i', 'a')
if not old or not is_live(old[2], old[3], ARGV[6]) then return -1 end
local taken = hash_fields(KEYS[2], 'i', 'a', 'u')
if redis.call('EXISTS', KEYS[2]) == 1 then
  if taken and is_live(taken[1], taken[2], ARGV[6]) then return 0 end
  redis.call('DEL', KEYS[2])
  if taken and taken[3] then redis.call('ZREM', ARGV[10] .. 'u:' .. taken[3], ARGV[9]) end
end
redis.call('DEL', KEYS[1])
if old[1] then redis.call('ZREM', ARGV[10] .. 'u:' .. old[1], ARGV[12]) end
if tonumber(ARGV[5]) <= tonumber(ARGV[6]) then return 1 end
write(KEYS[2], KEYS[3])
return 1
"
    ))
});

/// Single server only. KEYS: index. ARGV: 1 user, 2 now, 3 prefix.
/// Drops stale members; returns member, record, idle deadline for each live
/// session of the user, flattened.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{}",
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local d = hash_fields(ARGV[3] .. 's:' .. m, 'u', 'i', 'a', 'r')
  if not d or d[1] ~= ARGV[1] then
    redis.call('ZREM', KEYS[1], m)
  elseif d[4] and is_live(d[2], d[3], ARGV[2]) then
    out[#out + 1] = m
    out[#out + 1] = d[4]
    out[#out + 1] = d[2]
  end
end
return out
"
    ))
});

/// Single server only. KEYS: index. ARGV: 1 user, 2 excepted member or '',
/// 3 now, 4 prefix. Returns how many live sessions it deleted.
static DELETE_BY_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{}",
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local n = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[4] .. 's:' .. m
  local d = hash_fields(k, 'u', 'i', 'a')
  if not d or d[1] ~= ARGV[1] then
    redis.call('ZREM', KEYS[1], m)
  elseif m ~= ARGV[2] then
    if is_live(d[2], d[3], ARGV[3]) then n = n + 1 end
    redis.call('DEL', k)
    redis.call('ZREM', KEYS[1], m)
  end
end
return n
"
    ))
});

/// Cluster. KEYS: session. ARGV: 1 now. Deletes the session if it is live:
/// returns {1, its user or ''}, or {0} (missing or dead; nothing changed).
static DELETE_IF_LIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{}",
        r"
local d = hash_fields(KEYS[1], 'u', 'i', 'a')
if not d or not is_live(d[2], d[3], ARGV[1]) then return {0} end
redis.call('DEL', KEYS[1])
return {1, d[1] or ''}
"
    ))
});

/// Cluster. KEYS: index. ARGV: 1 member, 2 score, 3 now.
static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{}",
        r"
index_add(KEYS[1], ARGV[1], ARGV[2], ARGV[3], true)
return 1
"
    ))
});

/// Cluster. KEYS: index. ARGV: 1 now. Prunes, then returns the members.
static INDEX_MEMBERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
",
    )
});

/// Cluster. KEYS: session. ARGV: 1 user, 2 now. Deletes the session if it
/// belongs to the user: returns 1 (it was live), 0 (it was dead) or -1 (not
/// the user's, or missing).
static DELETE_IF_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LIB}{}",
        r"
local d = hash_fields(KEYS[1], 'u', 'i', 'a')
if not d or d[1] ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
if is_live(d[2], d[3], ARGV[2]) then return 1 end
return 0
"
    ))
});

#[cfg(test)]
mod tests {
    use redis::aio::MultiplexedConnection;

    use super::*;
    use crate::id::SessionId;
    use crate::store::conformance::skip_service;

    use crate::store::test_services::{redis_cluster_urls as cluster_urls, redis_url};

    /// A prefix of its own per store, so tests run in parallel on one server.
    fn random_prefix() -> String {
        format!(
            "cloakroom-test:{}:",
            &SessionId::generate().storage_key().to_hex()[..16]
        )
    }

    async fn single_store() -> Result<RedisStore, StoreError> {
        Ok(RedisStore::connect(&redis_url())
            .await?
            .with_prefix(random_prefix()))
    }

    async fn cluster_store() -> Result<RedisStore, StoreError> {
        let urls = cluster_urls();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        Ok(RedisStore::connect_cluster(&urls)
            .await?
            .with_prefix(random_prefix()))
    }

    /// The store under test and plain connections to every node that can
    /// hold its keys, or `None` (test skipped) if the service is down.
    async fn setup(cluster: bool) -> Option<(RedisStore, Vec<MultiplexedConnection>)> {
        let (service, store, urls) = if cluster {
            ("redis-cluster", cluster_store().await, cluster_urls())
        } else {
            ("redis", single_store().await, vec![redis_url()])
        };
        let store = match store {
            Ok(s) => s,
            Err(e) => {
                skip_service(service, &e);
                return None;
            }
        };
        let mut nodes = Vec::new();
        for url in urls {
            let client = redis::Client::open(url.as_str()).unwrap();
            nodes.push(client.get_multiplexed_async_connection().await.unwrap());
        }
        Some((store, nodes))
    }

    /// Runs `cmd` on the node that holds `key` (the others answer MOVED).
    async fn on_key(nodes: &[MultiplexedConnection], key: &str, cmd: &Cmd) -> Value {
        for node in nodes {
            let mut c = node.clone();
            let exists: Result<i64, _> = redis::cmd("EXISTS").arg(key).query_async(&mut c).await;
            if exists == Ok(1) {
                return cmd.query_async(&mut c).await.unwrap();
            }
        }
        Value::Nil
    }

    /// Every key under the prefix, with everything Redis would reveal about
    /// it: its name, its DUMP, and its contents by type.
    async fn everything(nodes: &[MultiplexedConnection], prefix: &str) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for node in nodes {
            let mut c = node.clone();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut c)
                .await
                .unwrap();
            for key in keys {
                let mut bytes = key.clone().into_bytes();
                let dump: Vec<u8> = redis::cmd("DUMP")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                bytes.extend(dump);
                let kind: String = redis::cmd("TYPE")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let parts: Vec<Vec<u8>> = match kind.as_str() {
                    "hash" => redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .unwrap(),
                    "zset" => redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query_async(&mut c)
                        .await
                        .unwrap(),
                    "string" => vec![
                        redis::cmd("GET")
                            .arg(&key)
                            .query_async(&mut c)
                            .await
                            .unwrap(),
                    ],
                    other => panic!("unexpected key type {other}"),
                };
                bytes.extend(parts.concat());
                out.push((key, bytes));
            }
        }
        out
    }

    fn record_for(user: Option<&str>) -> Record {
        let mut r = Record::new(
            Timestamp::now(),
            Duration::from_secs(1800),
            Duration::from_secs(43_200),
        );
        r.version = 1;
        r.user = user.map(str::to_owned);
        r.insert("cart", "three items").unwrap();
        r.device.user_agent = Some("redis-test/1".into());
        r
    }

    fn fresh_user() -> String {
        format!(
            "redis-test-{}",
            &SessionId::generate().storage_key().to_hex()[..12]
        )
    }

    fn bytes_of(v: Value) -> Vec<u8> {
        opt_bytes(v).unwrap().unwrap_or_default()
    }

    fn int_of(v: &Value) -> i64 {
        match v {
            Value::BulkString(b) => std::str::from_utf8(b).unwrap().parse().unwrap(),
            other => int(other).unwrap(),
        }
    }

    /// The documented layout, and touch writing only `i` and the TTL.
    async fn layout(cluster: bool) {
        let Some((store, nodes)) = setup(cluster).await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        let user = fresh_user();
        let rec = record_for(Some(&user));
        store.create(&key, &rec).await.unwrap();

        let skey = format!("{}s:{}", store.prefix(), key.to_hex());
        let ikey = format!("{}u:{user}", store.prefix());
        let hget = |f: &str| {
            let mut c = redis::cmd("HGET");
            c.arg(&skey).arg(f);
            c
        };
        assert_eq!(
            bytes_of(on_key(&nodes, &skey, &hget("r")).await),
            rec.encode().to_vec()
        );
        assert_eq!(bytes_of(on_key(&nodes, &skey, &hget("v")).await), b"1");
        assert_eq!(
            bytes_of(on_key(&nodes, &skey, &hget("u")).await),
            user.as_bytes()
        );
        assert_eq!(
            int_of(&on_key(&nodes, &skey, &hget("i")).await),
            i64::try_from(rec.idle_deadline.as_millis()).unwrap()
        );
        assert_eq!(
            int_of(&on_key(&nodes, &skey, &hget("a")).await),
            i64::try_from(rec.absolute_deadline.as_millis()).unwrap()
        );
        let mut pexpiretime = redis::cmd("PEXPIRETIME");
        pexpiretime.arg(&skey);
        assert_eq!(
            int_of(&on_key(&nodes, &skey, &pexpiretime).await),
            i64::try_from(rec.expires_at().as_millis()).unwrap(),
            "the session expires natively at expires_at"
        );
        let mut zscore = redis::cmd("ZSCORE");
        zscore.arg(&ikey).arg(key.to_hex());
        assert_eq!(
            int_of(&on_key(&nodes, &ikey, &zscore).await),
            i64::try_from(rec.absolute_deadline.as_millis()).unwrap(),
            "the index member is scored by the absolute deadline"
        );
        let mut ipexpiretime = redis::cmd("PEXPIRETIME");
        ipexpiretime.arg(&ikey);
        assert_eq!(
            int_of(&on_key(&nodes, &ikey, &ipexpiretime).await),
            i64::try_from(rec.absolute_deadline.as_millis()).unwrap(),
            "the index expires with its last session's absolute deadline"
        );

        let later = rec.idle_deadline.saturating_add(Duration::from_secs(600));
        store.touch(&key, later).await.unwrap();
        assert_eq!(
            bytes_of(on_key(&nodes, &skey, &hget("r")).await),
            rec.encode().to_vec(),
            "touch must not rewrite the record"
        );
        assert_eq!(
            int_of(&on_key(&nodes, &skey, &hget("i")).await),
            i64::try_from(later.as_millis()).unwrap()
        );
        assert_eq!(
            int_of(&on_key(&nodes, &skey, &pexpiretime).await),
            i64::try_from(later.as_millis()).unwrap(),
            "touch moves the TTL"
        );
        store.delete(&key).await.unwrap();
        assert!(
            everything(&nodes, store.prefix()).await.is_empty(),
            "delete leaves nothing behind"
        );
    }

    #[tokio::test]
    async fn layout_single_server() {
        layout(false).await;
    }

    #[tokio::test]
    async fn layout_cluster() {
        layout(true).await;
    }

    /// Deadlines are judged by the application's clock even when Redis's TTL
    /// says the key is still there (clock skew).
    async fn skew(cluster: bool) {
        let Some((store, nodes)) = setup(cluster).await else {
            return;
        };
        let key = SessionId::generate().storage_key();
        let user = fresh_user();
        store.create(&key, &record_for(Some(&user))).await.unwrap();
        let skey = format!("{}s:{}", store.prefix(), key.to_hex());
        let past = Timestamp::now()
            .saturating_sub(Duration::from_secs(5))
            .as_millis();
        let mut hset = redis::cmd("HSET");
        hset.arg(&skey).arg("i").arg(past);
        on_key(&nodes, &skey, &hset).await;
        assert!(
            store.load(&key).await.unwrap().is_none(),
            "load of an expired record"
        );
        assert!(matches!(
            store
                .touch(
                    &key,
                    Timestamp::now().saturating_add(Duration::from_secs(60))
                )
                .await,
            Err(StoreError::NotFound)
        ));
        let mut next = record_for(Some(&user));
        next.version = 2;
        assert!(matches!(
            store.save(&key, &next, 1).await,
            Err(StoreError::NotFound)
        ));
        assert!(store.list_by_user(&user).await.unwrap().is_empty());
        // Dead by our clock, so a create may take the key over.
        store.create(&key, &record_for(Some(&user))).await.unwrap();
        assert!(store.load(&key).await.unwrap().is_some());
        assert_eq!(store.delete_by_user(&user, None).await.unwrap(), 1);
        assert!(everything(&nodes, store.prefix()).await.is_empty());
    }

    #[tokio::test]
    async fn skew_single_server() {
        skew(false).await;
    }

    #[tokio::test]
    async fn skew_cluster() {
        skew(true).await;
    }

    /// An expired record is not written at all, and corrupt data is reported
    /// as such and can be overwritten or deleted.
    async fn odd_data(cluster: bool) {
        let Some((store, nodes)) = setup(cluster).await else {
            return;
        };
        let mut dead = record_for(Some(&fresh_user()));
        dead.idle_deadline = Timestamp::now().saturating_sub(Duration::from_secs(1));
        store
            .create(&SessionId::generate().storage_key(), &dead)
            .await
            .unwrap();
        assert!(
            everything(&nodes, store.prefix()).await.is_empty(),
            "an expired record was stored"
        );

        let key = SessionId::generate().storage_key();
        store.create(&key, &record_for(None)).await.unwrap();
        let skey = format!("{}s:{}", store.prefix(), key.to_hex());
        let mut hset = redis::cmd("HSET");
        hset.arg(&skey).arg("r").arg("not a record");
        on_key(&nodes, &skey, &hset).await;
        assert!(matches!(
            store.load(&key).await,
            Err(StoreError::Corrupt(_))
        ));

        let mut set = redis::cmd("SET");
        set.arg(&skey).arg("a plain string");
        on_key(&nodes, &skey, &set).await;
        assert!(matches!(
            store.load(&key).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.touch(&key, Timestamp::now()).await,
            Err(StoreError::NotFound)
        ));
        store.create(&key, &record_for(None)).await.unwrap();
        assert!(store.load(&key).await.unwrap().is_some());
        on_key(&nodes, &skey, &set).await;
        store.delete(&key).await.unwrap();
        assert!(everything(&nodes, store.prefix()).await.is_empty());
        assert_eq!(store.delete_expired().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn odd_data_single_server() {
        odd_data(false).await;
    }

    #[tokio::test]
    async fn odd_data_cluster() {
        odd_data(true).await;
    }

    /// Cluster: sessions spread over the nodes, and the index never loses a
    /// live session while listings (which drop stale members) race with
    /// creates and user changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_index_survives_races() {
        let Some((store, nodes)) = setup(true).await else {
            return;
        };
        let user = fresh_user();
        let other = fresh_user();
        let keys: Vec<StorageKey> = (0..40)
            .map(|_| SessionId::generate().storage_key())
            .collect();
        let writer = {
            let store = store.clone();
            let keys = keys.clone();
            let (user, other) = (user.clone(), other.clone());
            tokio::spawn(async move {
                for (n, key) in keys.iter().enumerate() {
                    if n % 2 == 0 {
                        store.create(key, &record_for(Some(&user))).await.unwrap();
                    } else {
                        // Created for someone else, then handed to `user`.
                        let rec = record_for(Some(&other));
                        store.create(key, &rec).await.unwrap();
                        let mut mine = rec.clone();
                        mine.user = Some(user.clone());
                        mine.version = 2;
                        store.save(key, &mine, 1).await.unwrap();
                    }
                }
            })
        };
        let lister = {
            let store = store.clone();
            let user = user.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    store.list_by_user(&user).await.unwrap();
                    store.delete_by_user(&user, None).await.unwrap();
                }
            })
        };
        writer.await.unwrap();
        lister.await.unwrap();
        // Every key the lister did not delete must still be indexed.
        let mut live = Vec::new();
        for key in &keys {
            if store.load(key).await.unwrap().is_some() {
                live.push(*key);
            }
        }
        let mut listed: Vec<StorageKey> = store
            .list_by_user(&user)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.key)
            .collect();
        listed.sort();
        live.sort();
        assert_eq!(listed, live, "every live session of the user is listed");
        assert!(store.list_by_user(&other).await.unwrap().is_empty());
        assert_eq!(
            store.delete_by_user(&user, None).await.unwrap(),
            live.len() as u64
        );

        // The keys really are spread over several nodes.
        let spread = (0..20)
            .map(|_| SessionId::generate().storage_key())
            .collect::<Vec<_>>();
        for key in &spread {
            store.create(key, &record_for(None)).await.unwrap();
        }
        let mut used = 0;
        for node in &nodes {
            let mut c = node.clone();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", store.prefix()))
                .query_async(&mut c)
                .await
                .unwrap();
            used += usize::from(!keys.is_empty());
        }
        assert!(used >= 2, "sessions should land on several cluster nodes");
        for key in &spread {
            store.delete(key).await.unwrap();
        }
        assert!(everything(&nodes, store.prefix()).await.is_empty());
    }

    #[test]
    fn debug_hides_urls() {
        let b = RedisStore::builder("redis://:hunter2@127.0.0.1:6379/");
        assert!(!format!("{b:?}").contains("hunter2"));
        let b = RedisStore::cluster_builder(&["redis://:hunter2@127.0.0.1:7001/"]);
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn connect_failure_is_unavailable_and_hides_password() {
        let port = free_port();
        let url = format!("redis://:hunter2@127.0.0.1:{port}/");
        let started = std::time::Instant::now();
        let err = RedisStore::builder(&url)
            .connection_timeout(Duration::from_millis(300))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = RedisStore::connect("not a url").await.unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "got {err:?}");
        let err = RedisStore::connect_cluster(&[]).await.unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "got {err:?}");
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
