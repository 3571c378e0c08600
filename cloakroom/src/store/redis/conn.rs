//! The connection: single server or cluster, chosen once at connect time,
//! and how one command or script runs on it (bounded in time, retried once
//! after a refused connection).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, RedisError, ScriptInvocation, ServerErrorKind, Value};

use super::scripts::Call;
use super::{BACKEND, RedisStore, cluster, single};
use crate::expiry::Timestamp;
use crate::id::StorageKey;
use crate::record::Record;
use crate::store::{StoreError, UserSession};

/// Connection attempts after the first, on a (re)connect.
const RECONNECT_RETRIES: usize = 2;
/// Longest wait between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Most per-session commands in flight at once in cluster fan-outs.
const FAN_OUT: usize = 64;

/// Where a builder connects to.
#[derive(Clone)]
pub(super) enum Target {
    Single(String),
    Cluster(Vec<String>),
}

/// The two connection kinds: the deployment decides which scripts can run.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection and the local time limit on each call over it. Cheap to
/// clone (clones share the connection).
#[derive(Clone)]
pub(super) struct Client {
    conn: Conn,
    call_timeout: Duration,
}

impl Client {
    /// Connects to `target` with the given per-command and per-attempt
    /// timeouts.
    pub(super) async fn connect(
        target: &Target,
        response_timeout: Duration,
        connection_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let call_timeout = call_timeout(response_timeout, connection_timeout);
        let conn = match target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(map_err)?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(connection_timeout))
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
                    return Err(StoreError::other_in(
                        BACKEND,
                        "no Redis Cluster node URL given",
                    ));
                }
                let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .connection_timeout(connection_timeout)
                    .response_timeout(response_timeout)
                    .overall_response_timeout(Some(response_timeout * 2 + connection_timeout))
                    .retries(3)
                    .min_retry_wait(20)
                    .max_retry_wait(500)
                    .build()
                    .map_err(map_err)?;
                let conn = bounded(call_timeout, client.get_async_connection()).await?;
                Conn::Cluster(conn)
            }
        };
        Ok(Self { conn, call_timeout })
    }

    /// Whether this is a Redis Cluster connection.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// How the index-keeping operations run on this deployment: the one
    /// place the single/cluster choice is made.
    pub(super) fn topology(&self) -> &'static dyn Topology {
        match self.conn {
            Conn::Single(_) => &single::SingleServer,
            Conn::Cluster(_) => &cluster::Cluster,
        }
    }

    /// Runs one command.
    pub(super) async fn cmd(&self, cmd: &Cmd) -> Result<Value, StoreError> {
        self.run(Op::Cmd(cmd)).await
    }

    /// Runs one script (`EVALSHA`, falling back to `EVAL`).
    pub(super) async fn script(&self, call: &Call) -> Result<Value, StoreError> {
        let inv = call.invocation();
        self.run(Op::Script(&inv)).await
    }

    /// Runs a script prepared outside this module (the login throttle's).
    pub(super) async fn invoke(&self, inv: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        self.run(Op::Script(inv)).await
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
}

/// A primary to run a scan on: `None` is the one server of a single-server
/// connection.
pub(super) type Node = Option<(String, u16)>;

impl Client {
    /// Every primary holding keys: the one server, or each cluster primary
    /// (read from `CLUSTER NODES`; failed and address-less nodes left out).
    pub(super) async fn primaries(&self) -> Result<Vec<Node>, StoreError> {
        if let Conn::Single(_) = self.conn {
            return Ok(vec![None]);
        }
        let mut nodes = redis::cmd("CLUSTER");
        nodes.arg("NODES");
        let text = match self.cmd(&nodes).await? {
            Value::BulkString(b) => {
                String::from_utf8(b).map_err(|e| StoreError::other_in(BACKEND, e))?
            }
            Value::VerbatimString { text, .. } => text,
            Value::SimpleString(s) => s,
            _ => return Err(super::reply::other("CLUSTER NODES answered with no text")),
        };
        Ok(parse_primaries(&text).into_iter().map(Some).collect())
    }

    /// Runs one command on `node` (see [`Client::primaries`]).
    pub(super) async fn cmd_on(&self, node: &Node, cmd: &Cmd) -> Result<Value, StoreError> {
        match (&self.conn, node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let mut c = c.clone();
                let attempt = c.route_command(cmd.clone(), routing);
                match tokio::time::timeout(self.call_timeout, attempt).await {
                    Err(_) => Err(timed_out()),
                    Ok(r) => r.map_err(map_err),
                }
            }
            _ => self.cmd(cmd).await,
        }
    }
}

/// The primaries' `host`/`port` in a `CLUSTER NODES` answer: lines of
/// `id ip:port@cport[,hostname] flags master-id ...`.
fn parse_primaries(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            let is_primary = flags.split(',').any(|f| f == "master")
                && !flags
                    .split(',')
                    .any(|f| matches!(f, "fail" | "noaddr" | "handshake"));
            if !is_primary {
                return None;
            }
            let hostport = addr.split(['@', ',']).next()?;
            let (host, port) = hostport.rsplit_once(':')?;
            let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            (!host.is_empty()).then(|| (host.to_owned(), port))
        })
        .collect()
}

enum Op<'a> {
    Cmd(&'a Cmd),
    Script(&'a ScriptInvocation<'a>),
}

/// The operations that touch the per-user index, which a single server
/// keeps inside the session scripts and a cluster keeps with separate
/// commands (see [`RedisStore`]'s docs). One implementation per deployment.
#[async_trait]
pub(super) trait Topology: Send + Sync {
    async fn create(
        &self,
        store: &RedisStore,
        key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn save(
        &self,
        store: &RedisStore,
        key: &StorageKey,
        record: &Record,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn delete(
        &self,
        store: &RedisStore,
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn rotate(
        &self,
        store: &RedisStore,
        old_key: &StorageKey,
        new_key: &StorageKey,
        record: &Record,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    async fn list_by_user(
        &self,
        store: &RedisStore,
        user: &str,
        now: Timestamp,
    ) -> Result<Vec<UserSession>, StoreError>;

    async fn delete_by_user(
        &self,
        store: &RedisStore,
        user: &str,
        except: Option<&StorageKey>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
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
    StoreError::unavailable_in(
        BACKEND,
        std::io::Error::new(std::io::ErrorKind::TimedOut, "Redis did not answer in time"),
    )
}

/// Sorts a client error into the store's categories (type docs,
/// "Failures").
fn map_err(e: RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return StoreError::unavailable_in(BACKEND, e);
    }
    match e.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound | ErrorKind::AuthenticationFailed => {
            StoreError::unavailable_in(BACKEND, e)
        }
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => StoreError::unavailable_in(BACKEND, e),
        _ if e.code() == Some("WRONGTYPE") => StoreError::corrupt_in(BACKEND, e),
        _ if e.is_unrecoverable_error() => StoreError::unavailable_in(BACKEND, e),
        _ => StoreError::other_in(BACKEND, e),
    }
}

/// `items` in batches of at most [`FAN_OUT`], the most per-session
/// commands a cluster fan-out keeps in flight at once (a multi-key command
/// cannot span slots, so a cluster reads and deletes session by session).
pub(super) fn batches<T>(items: &[T]) -> std::slice::Chunks<'_, T> {
    items.chunks(FAN_OUT)
}

/// Polls every future to completion concurrently, on the caller's task;
/// the outputs come in the futures' order.
pub(super) async fn join_all<F: Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
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

#[cfg(test)]
mod primaries_tests {
    use super::parse_primaries;

    #[test]
    fn cluster_nodes_primaries() {
        let text = "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,node-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7004@17004 slave a1 0 0 1 connected
d4 127.0.0.1:7003@17003 master,fail - 0 0 3 connected
e5 :0@0 master,noaddr - 0 0 3 connected
";
        assert_eq!(
            parse_primaries(text),
            [
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }
}
