//! A visit counter: the smallest useful session.
//!
//! Run with: `cargo run -p cloakroom-examples --example counter`, then open
//! <http://localhost:3001/> (browsers accept the `Secure` cookie on
//! `localhost`; use `curl -c jar -b jar http://localhost:3001/` from a shell —
//! curl, too, treats `localhost` as secure).

use axum::{Router, routing::get};
use cloakroom::{Session, SessionError, SessionLayer, store::MemoryStore};

async fn count(session: Session) -> Result<String, SessionError> {
    let visits: u64 = session.get("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", &visits).await?;
    Ok(format!("You have visited {visits} time(s).\n"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(count))
        .layer(SessionLayer::new(MemoryStore::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://localhost:3001/");
    axum::serve(listener, app).await
}
