//! Choosing a store by URL: `memory:`, `sqlite:PATH`, `postgres://…`, ….

use std::path::PathBuf;
use std::sync::Arc;

use crate::store::{SessionStore, StoreError};

/// A parsed store URL.
///
/// Choosing a store by URL: `memory:`, `sqlite:PATH`, `postgres://…`, ….
///
/// [`StoreUrl::parse`] is a pure classifier (no I/O), so a typo or a
/// missing cargo feature is reported before anything connects, with a
/// message that says what to do. [`connect`] then builds the store.
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory:` | [`MemoryStore`](crate::store::MemoryStore) | — |
/// | `sqlite:PATH` (also `sqlite://PATH`) | `SqliteStore` | `sqlite` |
/// | `file:DIR` | [`FileStore`](crate::store::FileStore) | — |
/// | `postgres://…`, `postgresql://…` | `PostgresStore` | `postgres` |
/// | `mysql://…`, `mariadb://…` | `MySqlStore` | `mysql` |
/// | `redis://…`, `rediss://…` | `RedisStore` | `redis` |
/// | `redis+cluster://h1:p1,h2:p2,…` | Redis Cluster | `redis` |
/// | `memcache://host:port` | `MemcachedStore` | `memcached` |
/// | `mongodb://host:port/DB` | `MongoStore` | `mongodb` |
/// | `dynamodb+http://host:port/TABLE` (a local endpoint) | `DynamoStore` | `dynamodb` |
/// | `tiered:CACHE_URL\|DURABLE_URL` | [`TieredStore`](crate::store::TieredStore) | — |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory:`
    Memory,
    /// `sqlite:PATH`
    Sqlite(PathBuf),
    /// `file:DIR`
    File(PathBuf),
    /// `postgres://…` (the URL as given)
    Postgres(String),
    /// `mysql://…` (a `mariadb://` URL is rewritten to `mysql://`)
    MySql(String),
    /// `redis://…` or `rediss://…`
    Redis(String),
    /// `redis+cluster://h1:p1,h2:p2` as one `redis://` URL per node
    RedisCluster(Vec<String>),
    /// `memcache://host:port`
    Memcached(String),
    /// `mongodb://…` (the driver's URL, as given)
    MongoDb(String),
    /// `dynamodb+http://host:port/TABLE`: a DynamoDB-compatible endpoint
    /// over plain HTTP (a local emulator or DynamoDB Local).
    DynamoDb {
        /// `http://host:port`
        endpoint: String,
        /// The table name.
        table: String,
    },
    /// `tiered:CACHE|DURABLE`
    Tiered {
        /// The cache in front.
        cache: Box<StoreUrl>,
        /// The durable store behind.
        durable: Box<StoreUrl>,
    },
}

/// Why a store URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// The scheme is not one cloakroom knows.
    #[error(
        "unknown session store {0:?}; use memory:, sqlite:PATH, file:DIR, postgres://…, mysql://…, redis://…, redis+cluster://h1:p1,h2:p2, memcached://host:port, mongodb://host/DB, dynamodb+http://host:port/TABLE or tiered:CACHE|DURABLE"
    )]
    UnknownScheme(String),
    /// The store exists but its cargo feature is off in this build.
    #[error(
        "the {scheme} store needs cloakroom's `{feature}` cargo feature, which this build does not enable"
    )]
    FeatureNotEnabled {
        /// The URL scheme.
        scheme: &'static str,
        /// The feature to enable.
        feature: &'static str,
    },
    /// The URL is malformed (empty path, empty host list, …).
    #[error("invalid session store URL: {0}")]
    Invalid(&'static str),
}

impl StoreUrl {
    /// Classifies `url` without connecting to anything.
    ///
    /// ```
    /// use cloakroom::store::StoreUrl;
    /// assert_eq!(StoreUrl::parse("memory:").unwrap(), StoreUrl::Memory);
    /// assert!(StoreUrl::parse("gopher://x").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreUrlError`] saying what is wrong and what is accepted.
    pub fn parse(url: &str) -> Result<Self, StoreUrlError> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| StoreUrlError::UnknownScheme(url.to_owned()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "memory" if rest.is_empty() || rest == "//" => Ok(Self::Memory),
            "memory" => Err(StoreUrlError::Invalid(
                "memory: takes nothing after the colon",
            )),
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(StoreUrlError::Invalid(
                        "sqlite: needs a file path, e.g. sqlite:sessions.db",
                    ));
                }
                if !cfg!(feature = "sqlite") {
                    return Err(StoreUrlError::FeatureNotEnabled {
                        scheme: "sqlite",
                        feature: "sqlite",
                    });
                }
                Ok(Self::Sqlite(PathBuf::from(path)))
            }
            "file" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(StoreUrlError::Invalid(
                        "file: needs a directory, e.g. file:/var/lib/app/sessions",
                    ));
                }
                Ok(Self::File(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => {
                feature("postgres", cfg!(feature = "postgres"))?;
                Ok(Self::Postgres(url.to_owned()))
            }
            "mysql" | "mariadb" => {
                feature("mysql", cfg!(feature = "mysql"))?;
                Ok(Self::MySql(format!("mysql:{rest}")))
            }
            "redis" | "rediss" => {
                feature("redis", cfg!(feature = "redis"))?;
                Ok(Self::Redis(url.to_owned()))
            }
            "redis+cluster" => {
                feature("redis", cfg!(feature = "redis"))?;
                let hosts = rest
                    .strip_prefix("//")
                    .unwrap_or(rest)
                    .trim_end_matches('/');
                let nodes: Vec<String> = hosts
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("redis://{h}/"))
                    .collect();
                if nodes.is_empty() {
                    return Err(StoreUrlError::Invalid(
                        "redis+cluster:// needs host:port,host:port,…",
                    ));
                }
                Ok(Self::RedisCluster(nodes))
            }
            "memcache" | "memcached" => {
                feature("memcached", cfg!(feature = "memcached"))?;
                Ok(Self::Memcached(format!("memcache:{rest}")))
            }
            "mongodb" => {
                feature("mongodb", cfg!(feature = "mongodb"))?;
                Ok(Self::MongoDb(url.to_owned()))
            }
            "mongodb+srv" => Err(StoreUrlError::Invalid(
                "mongodb+srv:// needs DNS SRV lookups, which cloakroom's MongoDB store leaves out; list the hosts: mongodb://h1:27017,h2:27017/DB",
            )),
            "dynamodb+http" => parse_dynamodb(rest),
            "tiered" => {
                let (cache, durable) = rest.split_once('|').ok_or(StoreUrlError::Invalid(
                    "tiered: needs CACHE_URL|DURABLE_URL",
                ))?;
                let cache = Self::parse(cache)?;
                let durable = Self::parse(durable)?;
                if matches!(cache, Self::Tiered { .. }) || matches!(durable, Self::Tiered { .. }) {
                    return Err(StoreUrlError::Invalid("tiered stores do not nest"));
                }
                Ok(Self::Tiered {
                    cache: Box::new(cache),
                    durable: Box::new(durable),
                })
            }
            _ => Err(StoreUrlError::UnknownScheme(scheme.to_owned())),
        }
    }
}

impl StoreUrl {
    /// The kind of store, for messages (never the URL, which may hold a
    /// password).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite(_) => "sqlite",
            Self::File(_) => "file",
            Self::Postgres(_) => "postgres",
            Self::MySql(_) => "mysql",
            Self::Redis(_) => "redis",
            Self::RedisCluster(_) => "redis-cluster",
            Self::Memcached(_) => "memcached",
            Self::MongoDb(_) => "mongodb",
            Self::DynamoDb { .. } => "dynamodb",
            Self::Tiered { .. } => "tiered",
        }
    }
}

/// `//host:port/TABLE` after `dynamodb+http:`.
fn parse_dynamodb(rest: &str) -> Result<StoreUrl, StoreUrlError> {
    let bad = StoreUrlError::Invalid(
        "dynamodb+http:// needs host:port/TABLE, e.g. dynamodb+http://127.0.0.1:8000/sessions",
    );
    let rest = rest.strip_prefix("//").ok_or(bad.clone())?;
    let (host, table) = rest.split_once('/').ok_or(bad.clone())?;
    let table = table.trim_end_matches('/');
    // DynamoDB's own rule for table names: 3-255 of [A-Za-z0-9_.-].
    let valid_table = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if host.is_empty() || host.contains(['@', '?', '#']) || !valid_table {
        return Err(bad);
    }
    feature("dynamodb", cfg!(feature = "dynamodb"))?;
    Ok(StoreUrl::DynamoDb {
        endpoint: format!("http://{host}"),
        table: table.to_owned(),
    })
}

fn feature(name: &'static str, enabled: bool) -> Result<(), StoreUrlError> {
    if enabled {
        Ok(())
    } else {
        Err(StoreUrlError::FeatureNotEnabled {
            scheme: name,
            feature: name,
        })
    }
}

/// Builds the store a URL names (the forms are listed on [`StoreUrl`]).
///
/// ```
/// # async fn run() -> Result<(), cloakroom::store::StoreError> {
/// let store = cloakroom::store::connect("memory:").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`StoreError::Other`] for a URL [`StoreUrl::parse`] refuses (its message
/// says what is accepted); [`StoreError::Unavailable`] if the store cannot
/// be reached or opened.
pub async fn connect(url: &str) -> Result<Arc<dyn SessionStore>, StoreError> {
    let parsed = StoreUrl::parse(url).map_err(StoreError::other)?;
    Box::pin(connect_parsed(parsed)).await
}

async fn connect_parsed(url: StoreUrl) -> Result<Arc<dyn SessionStore>, StoreError> {
    Ok(match url {
        StoreUrl::Memory => Arc::new(super::MemoryStore::new()),
        #[cfg(feature = "sqlite")]
        StoreUrl::Sqlite(path) => Arc::new(
            tokio::task::spawn_blocking(move || super::SqliteStore::open(path))
                .await
                .map_err(StoreError::other)??,
        ),
        StoreUrl::File(dir) => Arc::new(super::FileStore::open(dir)?),
        StoreUrl::Tiered { cache, durable } => {
            let cache = Box::pin(connect_parsed(*cache)).await?;
            let durable = Box::pin(connect_parsed(*durable)).await?;
            Arc::new(super::TieredStore::new(cache, durable))
        }
        #[allow(unreachable_patterns)]
        other => return connect_networked(other).await,
    })
}

#[allow(clippy::unused_async)]
async fn connect_networked(url: StoreUrl) -> Result<Arc<dyn SessionStore>, StoreError> {
    match url {
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(u) => Ok(Arc::new(super::PostgresStore::connect(&u).await?)),
        #[cfg(feature = "mysql")]
        StoreUrl::MySql(u) => Ok(Arc::new(super::MySqlStore::connect(&u).await?)),
        #[cfg(feature = "redis")]
        StoreUrl::Redis(u) => Ok(Arc::new(super::RedisStore::connect(&u).await?)),
        #[cfg(feature = "redis")]
        StoreUrl::RedisCluster(nodes) => {
            let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
            Ok(Arc::new(super::RedisStore::connect_cluster(&nodes).await?))
        }
        #[cfg(feature = "memcached")]
        StoreUrl::Memcached(u) => Ok(Arc::new(super::MemcachedStore::connect(&u).await?)),
        #[cfg(feature = "mongodb")]
        StoreUrl::MongoDb(u) => Ok(Arc::new(super::MongoStore::connect(&u).await?)),
        #[cfg(feature = "dynamodb")]
        StoreUrl::DynamoDb { endpoint, table } => Ok(Arc::new(
            super::DynamoStore::connect_endpoint(&endpoint, &table).await?,
        )),
        // Never print the URL: it may hold a password.
        other => Err(StoreError::other(format!(
            "the {} store is not available in this build",
            other.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let cases: &[(&str, StoreUrl)] = &[
            ("memory:", StoreUrl::Memory),
            ("file:/tmp/s", StoreUrl::File("/tmp/s".into())),
            ("file:///tmp/s", StoreUrl::File("/tmp/s".into())),
            #[cfg(feature = "sqlite")]
            ("sqlite:demo.db", StoreUrl::Sqlite("demo.db".into())),
            #[cfg(feature = "sqlite")]
            ("sqlite://demo.db", StoreUrl::Sqlite("demo.db".into())),
            #[cfg(feature = "postgres")]
            (
                "postgres://u@h/db",
                StoreUrl::Postgres("postgres://u@h/db".into()),
            ),
            #[cfg(feature = "mysql")]
            (
                "mariadb://root@h/test",
                StoreUrl::MySql("mysql://root@h/test".into()),
            ),
            #[cfg(feature = "redis")]
            (
                "redis+cluster://127.0.0.1:7001,127.0.0.1:7002/",
                StoreUrl::RedisCluster(vec![
                    "redis://127.0.0.1:7001/".into(),
                    "redis://127.0.0.1:7002/".into(),
                ]),
            ),
            #[cfg(feature = "mongodb")]
            (
                "mongodb://127.0.0.1:27017/app",
                StoreUrl::MongoDb("mongodb://127.0.0.1:27017/app".into()),
            ),
            #[cfg(feature = "dynamodb")]
            (
                "dynamodb+http://127.0.0.1:8000/cloakroom",
                StoreUrl::DynamoDb {
                    endpoint: "http://127.0.0.1:8000".into(),
                    table: "cloakroom".into(),
                },
            ),
            (
                "tiered:memory:|file:/tmp/d",
                StoreUrl::Tiered {
                    cache: Box::new(StoreUrl::Memory),
                    durable: Box::new(StoreUrl::File("/tmp/d".into())),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&StoreUrl::parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn refuses_with_advice() {
        for bad in [
            "",
            "gopher://x",
            "nonsense",
            "mongodb+srv://cluster.example/db",
            "dynamodb+http://127.0.0.1:8000",
            "dynamodb+http://127.0.0.1:8000/ab",
            "dynamodb+http://127.0.0.1:8000/bad name",
            "dynamodb+http:///table",
            "sqlite:",
            "file:",
            "memory:x",
            "tiered:memory:",
            "redis+cluster://",
        ] {
            let e = StoreUrl::parse(bad);
            assert!(e.is_err(), "{bad} accepted");
        }
        let msg = StoreUrl::parse("gopher://x").unwrap_err().to_string();
        assert!(
            msg.contains("postgres://") && msg.contains("memory:"),
            "{msg}"
        );
        #[cfg(not(feature = "postgres"))]
        assert_eq!(
            StoreUrl::parse("postgres://x").unwrap_err(),
            StoreUrlError::FeatureNotEnabled {
                scheme: "postgres",
                feature: "postgres"
            }
        );
    }
}
