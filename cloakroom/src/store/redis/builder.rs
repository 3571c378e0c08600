//! Making a [`RedisStore`]: the constructors and [`RedisStoreBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::RedisStore;
use super::conn::{Client, Target};
use crate::store::StoreError;

/// Default per-command response timeout.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default timeout of one connection attempt.
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens a [`RedisStore`] with non-default settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::store::StoreError> {
/// use std::time::Duration;
/// use cloakroom::store::RedisStore;
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .with_prefix("myapp:")
///     .with_response_timeout(Duration::from_millis(500))
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
    /// a server without seeing each other's sessions. `connect` refuses a
    /// prefix [`RedisStore::with_prefix`] would refuse.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one command may wait for its reply (default 2 s). A command
    /// that times out fails with [`StoreError::Unavailable`].
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 1 s). A
    /// (re)connection makes up to three attempts.
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Connects and returns the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server (or no cluster node) can be
    /// reached, or refuses the credentials; [`StoreError::Other`] for a
    /// malformed URL, an empty list of cluster nodes or a prefix holding a
    /// brace.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        super::check_prefix(&self.prefix)?;
        let client =
            Client::connect(&self.target, self.response_timeout, self.connection_timeout).await?;
        Ok(RedisStore {
            client,
            prefix: Arc::from(self.prefix),
        })
    }
}

impl RedisStore {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_urls() {
        let b = RedisStore::builder("redis://:hunter2@127.0.0.1:6379/");
        assert!(!format!("{b:?}").contains("hunter2"));
        let b = RedisStore::cluster_builder(&["redis://:hunter2@127.0.0.1:7001/"]);
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
