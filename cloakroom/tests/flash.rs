//! Flash messages through the layer, on a server store (memory) and in
//! sealed cookies: add → next request reads → gone, `now`, `peek`,
//! `keep`, redirects and errors keep, concurrent adds merge, the cap.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use cloakroom::client_side::ClientSessions;
use cloakroom::crypto::{Keyring, MasterKey};
use cloakroom::flash::{Flash, Level, MAX_FLASH_BYTES, MAX_FLASH_MESSAGES, MAX_FLASH_TEXT_BYTES};
use cloakroom::store::MemoryStore;
use cloakroom::{Session, SessionError, SessionLayer};
use support::pausing::PausingStore;
use support::{Reply, send};

fn show(messages: &[cloakroom::flash::FlashMessage]) -> String {
    messages
        .iter()
        .map(|m| format!("{}:{}", m.level, m.text))
        .collect::<Vec<_>>()
        .join("|")
}

type Answer = Result<(StatusCode, String), SessionError>;

fn routes() -> Router {
    Router::new()
        .route(
            "/add/{text}",
            post(|flash: Flash, Path(text): Path<String>| async move {
                flash.info(text).await?;
                Ok::<_, SessionError>("added")
            }),
        )
        .route(
            "/add-big/{n}",
            post(|flash: Flash, Path(n): Path<usize>| async move {
                for i in 0..n {
                    flash
                        .add(Level::Warning, format!("{i:03}{}", "x".repeat(600)))
                        .await?;
                }
                Ok::<_, SessionError>("added")
            }),
        )
        .route("/take", get(|f: Flash| take(f, StatusCode::OK)))
        .route(
            "/take-redirect",
            get(|f: Flash| take(f, StatusCode::SEE_OTHER)),
        )
        .route(
            "/take-error",
            get(|f: Flash| take(f, StatusCode::UNPROCESSABLE_ENTITY)),
        )
        .route(
            "/peek",
            get(|flash: Flash| async move { Ok::<_, SessionError>(show(&flash.peek().await?)) }),
        )
        .route(
            "/now",
            get(|session: Session| async move {
                let flash = session.flash();
                flash.now(Level::Error, "now").await?;
                flash.success("later").await?;
                let first = show(&flash.messages().await?);
                let second = show(&flash.messages().await?);
                Ok::<_, SessionError>(format!("{first}/{second}"))
            }),
        )
        .route(
            "/take-keep",
            get(|flash: Flash| async move {
                flash.now(Level::Debug, "seen-now").await?;
                let shown = show(&flash.messages().await?);
                flash.keep().await?;
                Ok::<_, SessionError>(shown)
            }),
        )
        .route(
            "/keys",
            get(|session: Session| async move {
                session.insert("plain", &1).await?;
                Ok::<_, SessionError>(session.keys().await?.join(","))
            }),
        )
}

async fn take(flash: Flash, status: StatusCode) -> Answer {
    Ok((status, show(&flash.messages().await?)))
}

fn server_app() -> Router {
    routes().layer(SessionLayer::new(MemoryStore::new()))
}

fn sealed_app() -> Router {
    let keyring = Keyring::parse(&MasterKey::generate().to_base64url()).unwrap();
    routes().layer(
        SessionLayer::client_side(ClientSessions::new(keyring))
            .build()
            .unwrap(),
    )
}

fn apps() -> [(&'static str, Router); 2] {
    [("server", server_app()), ("sealed", sealed_app())]
}

/// A browser's cookie jar for one session cookie.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
}

impl Browser {
    async fn send(&mut self, app: &Router, method: &str, uri: &str) -> Reply {
        let reply = send(app, method, uri, self.cookie.as_deref()).await;
        for c in &reply.set_cookies {
            let pair = c.split(';').next().unwrap().to_owned();
            self.cookie = (!c.contains("Max-Age=0")).then_some(pair);
        }
        reply
    }

    async fn body(&mut self, app: &Router, method: &str, uri: &str) -> String {
        let reply = self.send(app, method, uri).await;
        assert!(
            reply.status.is_success() || reply.status.is_redirection(),
            "{reply:?}"
        );
        reply.body
    }
}

#[tokio::test]
async fn added_messages_are_read_once_by_the_next_request() {
    for (mode, app) in apps() {
        let mut b = Browser::default();
        assert_eq!(b.body(&app, "GET", "/take").await, "", "{mode}");
        b.body(&app, "POST", "/add/one").await;
        b.body(&app, "POST", "/add/two").await;
        assert!(b.cookie.is_some(), "{mode}: an add starts a session");
        assert_eq!(
            b.body(&app, "GET", "/take").await,
            "info:one|info:two",
            "{mode}"
        );
        assert_eq!(b.body(&app, "GET", "/take").await, "", "{mode}: consumed");
    }
}

#[tokio::test]
async fn now_is_for_this_request_and_add_for_the_next() {
    for (mode, app) in apps() {
        let mut b = Browser::default();
        assert_eq!(b.body(&app, "GET", "/now").await, "error:now/", "{mode}");
        assert_eq!(
            b.body(&app, "GET", "/take").await,
            "success:later",
            "{mode}"
        );
    }
}

#[tokio::test]
async fn peek_leaves_messages_in_place() {
    for (mode, app) in apps() {
        let mut b = Browser::default();
        b.body(&app, "POST", "/add/one").await;
        assert_eq!(b.body(&app, "GET", "/peek").await, "info:one", "{mode}");
        assert_eq!(b.body(&app, "GET", "/peek").await, "info:one", "{mode}");
        assert_eq!(b.body(&app, "GET", "/take").await, "info:one", "{mode}");
        assert_eq!(b.body(&app, "GET", "/peek").await, "", "{mode}");
    }
}

#[tokio::test]
async fn keep_keeps_what_was_read_for_one_more_request() {
    for (mode, app) in apps() {
        let mut b = Browser::default();
        b.body(&app, "POST", "/add/one").await;
        assert_eq!(
            b.body(&app, "GET", "/take-keep").await,
            "info:one|debug:seen-now",
            "{mode}"
        );
        assert_eq!(
            b.body(&app, "GET", "/take").await,
            "info:one|debug:seen-now",
            "{mode}: kept, the now message too"
        );
        assert_eq!(b.body(&app, "GET", "/take").await, "", "{mode}");
    }
}

#[tokio::test]
async fn a_redirect_or_an_error_does_not_consume() {
    for (mode, app) in apps() {
        let mut b = Browser::default();
        b.body(&app, "POST", "/add/one").await;
        let r = b.send(&app, "GET", "/take-redirect").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::SEE_OTHER, "info:one"),
            "{mode}"
        );
        let r = b.send(&app, "GET", "/take-error").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{mode}");
        assert_eq!(r.body, "info:one", "{mode}");
        assert_eq!(
            b.body(&app, "GET", "/take").await,
            "info:one",
            "{mode}: still there"
        );
        assert_eq!(b.body(&app, "GET", "/take").await, "", "{mode}");
    }
}

#[tokio::test]
async fn flash_values_are_hidden_from_keys() {
    for (mode, app) in apps() {
        let mut b = Browser::default();
        b.body(&app, "POST", "/add/one").await;
        assert_eq!(b.body(&app, "GET", "/keys").await, "plain", "{mode}");
    }
}

/// Two instances on one store: A loads, B adds and saves, then A saves and
/// meets a version conflict. The per-key merge keeps both messages.
#[tokio::test]
async fn two_concurrent_adds_both_survive() {
    let store = Arc::new(PausingStore::default());
    let a = routes().layer(SessionLayer::new(store.clone()));
    let b = routes().layer(SessionLayer::new(store.clone()));
    let mut browser = Browser::default();
    browser.body(&a, "POST", "/add/first").await;
    assert_eq!(browser.body(&a, "GET", "/take").await, "info:first");
    let cookie = browser.cookie.clone();

    store.load.arm();
    let slow = tokio::spawn({
        let (a, cookie) = (a.clone(), cookie.clone());
        async move { send(&a, "POST", "/add/from-a", cookie.as_deref()).await }
    });
    store.load.reached.notified().await;
    let fast = send(&b, "POST", "/add/from-b", cookie.as_deref()).await;
    assert_eq!(fast.status, StatusCode::OK);
    store.load.resume.notify_one();
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);

    let both = browser.body(&b, "GET", "/take").await;
    assert_eq!(
        both, "info:from-b|info:from-a",
        "ordered by when they were added"
    );
}

#[tokio::test]
async fn pending_messages_are_capped_oldest_dropped() {
    for (mode, app) in apps() {
        let mut b = Browser::default();
        // 3 requests of 7 oversized messages: the sealed cookie must hold.
        for _ in 0..3 {
            let r = b.send(&app, "POST", "/add-big/7").await;
            assert_eq!(r.status, StatusCode::OK, "{mode}: {}", r.body);
            assert!(b.cookie.as_ref().unwrap().len() < 4096, "{mode}");
        }
        let body = b.body(&app, "GET", "/take").await;
        let texts: Vec<&str> = body.split('|').collect();
        assert!(
            !texts.is_empty() && texts.len() <= MAX_FLASH_MESSAGES,
            "{mode}"
        );
        let total: usize = texts.iter().map(|t| t.len()).sum();
        assert!(total <= MAX_FLASH_BYTES, "{mode}: {total}");
        for t in &texts {
            assert!(
                t.len() <= "warning:".len() + MAX_FLASH_TEXT_BYTES,
                "{mode}: cut"
            );
        }
        assert!(
            texts.last().unwrap().starts_with("warning:006"),
            "{mode}: newest kept"
        );
        assert_eq!(b.body(&app, "GET", "/take").await, "", "{mode}");
    }
}
