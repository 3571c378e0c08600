//! Sign-in with ID rotation, remember-me and sign-out, on the embedded
//! SQLite store with a reaper.
//!
//! Run with: `cargo run -p cloakroom-examples --example login`, then:
//!
//! ```text
//! curl -c jar -b jar -X POST 'http://localhost:3002/login?user=alice&remember=1'
//! curl -c jar -b jar http://localhost:3002/
//! curl -c jar -b jar -X POST http://localhost:3002/logout
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::{
    Router,
    routing::{get, post},
};
use cloakroom::store::{SqliteStore, spawn_reaper};
use cloakroom::{LoginOptions, Session, SessionError, SessionLayer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Login {
    user: String,
    #[serde(default)]
    remember: u8,
}

async fn login(session: Session, Query(q): Query<Login>) -> Result<String, SessionError> {
    // A real app checks a password here.
    session
        .login_with(q.user.clone(), LoginOptions::remember_me(q.remember == 1))
        .await?;
    Ok(format!("signed in as {}\n", q.user))
}

async fn whoami(session: Session) -> Result<String, SessionError> {
    Ok(match session.info().await? {
        Some(info) if info.user.is_some() => format!(
            "{} since {} (idle expiry {})\n",
            info.user.unwrap_or_default(),
            info.created_at,
            info.idle_expires_at
        ),
        _ => "anonymous\n".to_owned(),
    })
}

async fn logout(session: Session) -> Result<&'static str, SessionError> {
    session.logout().await?;
    Ok("signed out\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(SqliteStore::open("cloakroom-example.db")?);
    let _reaper = spawn_reaper(store.clone(), Duration::from_secs(60));
    let app = Router::new()
        .route("/", get(whoami))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    println!("listening on http://localhost:3002/");
    axum::serve(listener, app).await?;
    Ok(())
}
