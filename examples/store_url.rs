//! Choosing the session store by URL: the deployment picks it in its
//! configuration, the code stays the same.
//!
//! Run with: `cargo run -p cloakroom-examples --example store_url`, then
//! `curl -c jar -b jar http://localhost:3004/` a few times.
//!
//! The URL is the first argument, else `CLOAKROOM_STORE`, else
//! `sqlite:examples-sessions.db`:
//!
//! ```text
//! cargo run -p cloakroom-examples --example store_url -- memory:
//! cargo run -p cloakroom-examples --example store_url -- file:/tmp/cloakroom-sessions
//! CLOAKROOM_STORE=redis://127.0.0.1:6379/ \
//!     cargo run -p cloakroom-examples --example store_url --features redis
//! ```
//!
//! Each networked store is behind a cargo feature of `cloakroom`; this
//! crate forwards them under the same names:
//!
//! | URL | feature |
//! |---|---|
//! | `memory:`, `file:DIR`, `tiered:CACHE_URL\|DURABLE_URL` | none |
//! | `sqlite:PATH` | `sqlite` (on by default) |
//! | `postgres://…` | `postgres` |
//! | `mysql://…`, `mariadb://…` | `mysql` |
//! | `redis://…`, `rediss://…`, `redis+cluster://h1:p1,h2:p2` | `redis` |
//! | `memcache://host:port` | `memcached` |
//!
//! A URL whose feature is off in this build is refused before anything
//! connects, with a message naming the feature to turn on.

use std::sync::Arc;

use axum::extract::State;
use axum::{Router, routing::get};
use cloakroom::store::{self, SessionStore, StoreUrl};
use cloakroom::{ConfigError, Session, SessionError, SessionLayer};

const DEFAULT_STORE: &str = "sqlite:examples-sessions.db";

/// The store URL: the first argument, else `CLOAKROOM_STORE`, else the
/// default.
fn store_url() -> String {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CLOAKROOM_STORE").ok())
        .unwrap_or_else(|| DEFAULT_STORE.to_owned())
}

async fn count(State(kind): State<&'static str>, session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", &visits).await?;
    Ok(format!("visit {visits}, kept in the {kind} store\n"))
}

/// The app over whichever store the URL chose; `kind` names it.
fn app(store: Arc<dyn SessionStore>, kind: &'static str) -> Result<Router, ConfigError> {
    let layer = SessionLayer::new(store).build()?;
    Ok(Router::new()
        .route("/", get(count))
        .layer(layer)
        .with_state(kind))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = store_url();
    // Parsing is pure (no I/O): a typo or a missing feature stops here.
    // Print the kind, never the URL: it may hold a password.
    let kind = StoreUrl::parse(&url)?.kind();
    println!("session store: {kind}");
    let store = store::connect(&url).await?;
    let app = app(store, kind)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3004").await?;
    println!("listening on http://localhost:3004/");
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom::store::StoreUrlError;
    use cloakroom_examples::Browser;

    async fn visit_twice(url: &str) -> String {
        let kind = StoreUrl::parse(url).unwrap().kind();
        let store = store::connect(url).await.unwrap();
        let mut browser = Browser::new(app(store, kind).unwrap());
        browser.get("/").await;
        browser.get("/").await.body
    }

    #[tokio::test]
    async fn each_url_gives_its_store_the_same_app() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite:{}", dir.path().join("sessions.db").display());
        let file = format!("file:{}", dir.path().join("sessions").display());
        assert_eq!(
            visit_twice("memory:").await,
            "visit 2, kept in the memory store\n"
        );
        assert_eq!(
            visit_twice(&sqlite).await,
            "visit 2, kept in the sqlite store\n"
        );
        assert_eq!(
            visit_twice(&file).await,
            "visit 2, kept in the file store\n"
        );
    }

    #[test]
    fn a_bad_url_is_refused_before_connecting() {
        let unknown = StoreUrl::parse("gopher://localhost/sessions").unwrap_err();
        assert!(matches!(unknown, StoreUrlError::UnknownScheme(_)));
        // The message lists what is accepted.
        assert!(unknown.to_string().contains("sqlite:PATH"), "{unknown}");
        assert!(matches!(
            StoreUrl::parse("sqlite:"),
            Err(StoreUrlError::Invalid(_))
        ));
    }
}
