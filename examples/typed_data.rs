//! Typed session data: one struct kept whole in the session under one key,
//! extracted by handlers as a plain value and written back in one piece.
//!
//! Run with: `cargo run -p cloakroom-examples --example typed_data`, then:
//!
//! ```text
//! curl -c jar -b jar -X POST 'http://localhost:3006/cart/add?item=apple'
//! curl -c jar -b jar -X POST 'http://localhost:3006/cart/add?item=pear&quantity=3'
//! curl -c jar -b jar http://localhost:3006/cart
//! curl -c jar -b jar -X POST http://localhost:3006/cart/clear
//! ```
//!
//! `SessionData<Cart>` reads the cart (its `Default` if the session has
//! none) before the handler runs; `save` puts the changed cart back into
//! the session, and the layer stores it after the handler returns. A value
//! under `"cart"` that is not a `Cart` is a `500`, never a silent reset.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::{
    Json, Router,
    routing::{get, post},
};
use cloakroom::store::MemoryStore;
use cloakroom::{SessionData, SessionError, SessionLayer, SessionValue};
use serde::{Deserialize, Serialize};

/// Item names and their quantities.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cart {
    items: BTreeMap<String, u32>,
}

impl SessionValue for Cart {
    const KEY: &'static str = "cart";
}

#[derive(Deserialize)]
struct Add {
    item: String,
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

async fn show(cart: SessionData<Cart>) -> Json<Cart> {
    Json(cart.into_inner())
}

async fn add(
    mut cart: SessionData<Cart>,
    Query(add): Query<Add>,
) -> Result<Json<Cart>, SessionError> {
    let quantity = cart.items.entry(add.item).or_default();
    *quantity = quantity.saturating_add(add.quantity);
    cart.write_back().await?;
    Ok(Json(cart.into_inner()))
}

async fn clear(cart: SessionData<Cart>) -> Result<&'static str, SessionError> {
    cart.remove().await?;
    Ok("cart emptied\n")
}

fn app() -> Router {
    Router::new()
        .route("/cart", get(show))
        .route("/cart/add", post(add))
        .route("/cart/clear", post(clear))
        .layer(SessionLayer::new(MemoryStore::new()))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3006").await?;
    println!("listening on http://localhost:3006/");
    axum::serve(listener, app()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom_examples::Browser;

    #[tokio::test]
    async fn the_cart_is_read_updated_and_kept_whole() {
        let app = app();
        let mut browser = Browser::new(app.clone());
        assert_eq!(browser.get("/cart").await.body, r#"{"items":{}}"#);

        browser.post("/cart/add?item=pear", "").await;
        browser.post("/cart/add?item=apple&quantity=2", "").await;
        let reply = browser.post("/cart/add?item=pear", "").await;
        assert_eq!(reply.body, r#"{"items":{"apple":2,"pear":2}}"#);
        assert_eq!(
            browser.get("/cart").await.body,
            r#"{"items":{"apple":2,"pear":2}}"#
        );

        // Another visitor has a cart of their own.
        let mut other = Browser::new(app);
        assert_eq!(other.get("/cart").await.body, r#"{"items":{}}"#);

        browser.post("/cart/clear", "").await;
        assert_eq!(browser.get("/cart").await.body, r#"{"items":{}}"#);
    }

    #[tokio::test]
    async fn a_bad_query_is_refused_and_changes_nothing() {
        let mut browser = Browser::new(app());
        browser.post("/cart/add?item=apple", "").await;
        let reply = browser.post("/cart/add?item=apple&quantity=-1", "").await;
        assert_eq!(reply.status, 400);
        assert_eq!(browser.get("/cart").await.body, r#"{"items":{"apple":1}}"#);
    }
}
