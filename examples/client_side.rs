//! Client-side sessions: the whole record sealed in the cookie, keys that
//! rotate without signing anyone out, and "log out everywhere" through a
//! small durable revocation store.
//!
//! Run with: `cargo run -p cloakroom-examples --example client_side`, then:
//!
//! ```text
//! curl -c jar -b jar -X POST 'http://localhost:3003/login?user=alice'
//! curl -c jar -b jar http://localhost:3003/
//! head -c 3000 /dev/urandom | base64 | curl -c jar -b jar -X POST http://localhost:3003/note --data-binary @-
//! curl -c jar -b jar http://localhost:3003/cookie-size
//! curl -c jar -b jar -X POST http://localhost:3003/logout-everywhere
//! ```
//!
//! # Keys and their rotation
//!
//! The keys come from `CLOAKROOM_KEYS`: base64url keys, newest first,
//! separated by commas (`cargo run -p cloakroom-cli -- keygen` prints a new
//! one). Without it the example seals under a throwaway key and says so
//! loudly: every cookie then dies with the process.
//!
//! The newest key seals; every listed key opens, and a cookie opened by an
//! older key is sealed again under the newest in the same response. A
//! rotation from K1 to K2 takes three deployments:
//!
//! 1. `CLOAKROOM_KEYS=K1`: K1 seals and opens.
//! 2. `CLOAKROOM_KEYS=K2,K1`: K2 seals; cookies K1 sealed still open, and
//!    each is re-sealed under K2 on its next visit.
//! 3. `CLOAKROOM_KEYS=K2`, once the longest session lifetime has passed
//!    since step 2 (30 days for remember-me sessions, by default): a cookie
//!    still sealed under K1 no longer opens, and its visitor is anonymous.
//!
//! Behind a load balancer, insert `K1,K2` before step 2, so that no instance
//! meets a cookie sealed under a key it does not know yet.
//!
//! # Revocation
//!
//! A sealed cookie is valid until it expires, wherever a copy of it is.
//! `/logout-everywhere` bumps the user's revocation epoch, kept in a SQLite
//! file; every cookie sealed under an older epoch is refused from then on
//! (at once in this process, within the 30-second epoch cache in others).
//! The epoch store must be durable, since one that forgot epochs would let
//! revoked cookies back in: building the layer over a memory store fails.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::http::{HeaderMap, header::COOKIE};
use axum::{
    Router,
    routing::{get, post},
};
use cloakroom::client_side::ClientSessions;
use cloakroom::crypto::{KEYS_ENV, KeyError, Keyring, MasterKey};
use cloakroom::store::{SessionStore, SqliteStore};
use cloakroom::{ConfigError, Session, SessionError, SessionLayer};
use serde::Deserialize;

/// The default session cookie; its chunks are `__Host-id.1`, `__Host-id.2`, ...
const COOKIE_NAME: &str = "__Host-id";

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(session: Session, Query(q): Query<Login>) -> Result<String, SessionError> {
    // A real app checks a password here.
    session.login(q.user.clone()).await?;
    Ok(format!("signed in as {}\n", q.user))
}

async fn whoami(session: Session) -> Result<String, SessionError> {
    let note: Option<String> = session.get("note").await?;
    let user = session.user().await?;
    Ok(format!(
        "{}, note of {} bytes\n",
        user.as_deref().unwrap_or("anonymous"),
        note.map_or(0, |n| n.len())
    ))
}

/// Keeps the request body in the session: past one cookie's worth it is
/// spread over two cookies, past two it is refused with `413`.
async fn note(session: Session, body: String) -> Result<String, SessionError> {
    session.insert("note", &body).await?;
    Ok(format!("kept a note of {} bytes\n", body.len()))
}

/// How many session cookies this request carried, and their sealed size.
async fn cookie_size(headers: HeaderMap) -> String {
    let sizes: Vec<usize> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| {
            name.strip_prefix(COOKIE_NAME)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
        .map(|(_, value)| value.len())
        .collect();
    format!(
        "{} session cookie(s), {} bytes sealed\n",
        sizes.len(),
        sizes.iter().sum::<usize>()
    )
}

async fn logout_everywhere(session: Session) -> Result<&'static str, SessionError> {
    session.logout_everywhere().await?;
    Ok("signed out on every device\n")
}

fn app(keyring: Keyring, revocations: Arc<dyn SessionStore>) -> Result<Router, ConfigError> {
    let sessions = ClientSessions::new(keyring)
        .with_chunking(2)
        .with_revocation(revocations, Duration::from_secs(30));
    let layer = SessionLayer::client_side(sessions).build()?;
    Ok(Router::new()
        .route("/", get(whoami))
        .route("/login", post(login))
        .route("/note", post(note))
        .route("/cookie-size", get(cookie_size))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(layer))
}

/// The keys from `CLOAKROOM_KEYS`, or a throwaway key if it is not set.
fn keyring() -> Result<Keyring, KeyError> {
    match Keyring::from_env() {
        Err(KeyError::EnvNotSet) => {
            eprintln!(
                "WARNING: {KEYS_ENV} is not set: sealing cookies under a throwaway key; \
                 every session ends when this process does. Set {KEYS_ENV} in production."
            );
            Ok(Keyring::from(MasterKey::generate()))
        }
        // A key that is set but unusable is a configuration error, never
        // replaced by a throwaway one.
        found => found,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keyring = keyring()?;
    println!("sealing under key {}", keyring.newest_key_id());
    let revocations = Arc::new(SqliteStore::open("examples-revocations.db")?);
    let app = app(keyring, revocations)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3003").await?;
    println!("listening on http://localhost:3003/");
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom_examples::Browser;

    fn ring(keys: &[&MasterKey]) -> Keyring {
        Keyring::new(keys.iter().map(|&k| k.clone()).collect()).unwrap()
    }

    /// An app whose revocation epochs live in `dir`.
    fn app_in(dir: &tempfile::TempDir, keyring: Keyring) -> Router {
        let store = SqliteStore::open(dir.path().join("revocations.db")).unwrap();
        app(keyring, Arc::new(store)).unwrap()
    }

    #[tokio::test]
    async fn keys_rotate_without_signing_anyone_out() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (MasterKey::generate(), MasterKey::generate());

        // Deployment 1: [K1].
        let mut browser = Browser::new(app_in(&dir, ring(&[&k1])));
        browser.post("/login?user=alice", "").await;
        // A device that does not come back until K1 is gone.
        let mut absent = browser.clone();

        // Deployment 2: [K2, K1]. The K1 cookie still opens, and is
        // re-sealed under K2 in the same response.
        browser.redeploy(app_in(&dir, ring(&[&k2, &k1])));
        let sealed_by_k1 = browser.cookie(COOKIE_NAME).unwrap().to_owned();
        let reply = browser.get("/").await;
        assert_eq!(reply.body, "alice, note of 0 bytes\n");
        assert_eq!(reply.set_cookie_names(), [COOKIE_NAME]);
        assert_ne!(browser.cookie(COOKIE_NAME).unwrap(), sealed_by_k1);

        // Deployment 3: [K2]. The re-sealed cookie works; one K1 sealed
        // does not, and is cleared.
        browser.redeploy(app_in(&dir, ring(&[&k2])));
        assert_eq!(browser.get("/").await.body, "alice, note of 0 bytes\n");
        absent.redeploy(app_in(&dir, ring(&[&k2])));
        assert_eq!(absent.get("/").await.body, "anonymous, note of 0 bytes\n");
        assert_eq!(absent.cookie(COOKIE_NAME), None);
    }

    #[tokio::test]
    async fn a_large_record_spreads_over_two_cookies() {
        let dir = tempfile::tempdir().unwrap();
        let mut browser = Browser::new(app_in(&dir, ring(&[&MasterKey::generate()])));

        let reply = browser.post("/note", "x".repeat(5000)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.set_cookie_names(), [COOKIE_NAME, "__Host-id.1"]);
        let size = browser.get("/cookie-size").await.body;
        assert!(size.starts_with("2 session cookie(s)"), "{size}");
        assert_eq!(
            browser.get("/").await.body,
            "anonymous, note of 5000 bytes\n"
        );

        // More than two cookies hold is refused, and the session kept.
        assert_eq!(browser.post("/note", "x".repeat(12_000)).await.status, 413);
        assert_eq!(
            browser.get("/").await.body,
            "anonymous, note of 5000 bytes\n"
        );
    }

    #[tokio::test]
    async fn logout_everywhere_revokes_every_copy_of_the_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let mut phone = Browser::new(app_in(&dir, ring(&[&MasterKey::generate()])));
        phone.post("/login?user=alice", "").await;
        let mut copy = phone.clone();

        let reply = phone.post("/logout-everywhere", "").await;
        assert_eq!(reply.status, 200);
        assert_eq!(phone.cookie(COOKIE_NAME), None);
        assert_eq!(copy.get("/").await.body, "anonymous, note of 0 bytes\n");
    }

    #[test]
    fn a_volatile_revocation_store_is_refused() {
        let memory = Arc::new(cloakroom::store::MemoryStore::new());
        let refused = app(Keyring::from(MasterKey::generate()), memory);
        assert!(matches!(refused, Err(ConfigError::VolatileRevocationStore)));
    }
}
