//! A single-page app on `http://localhost:5173` calling this API on
//! `http://localhost:3006` with the session cookie: CORS with an exact
//! origin allowlist and credentials, and CSRF protection that trusts
//! exactly that origin.
//!
//! Run with: `cargo run -p cloakroom-examples --example cors_spa`, then
//! (as the app's `fetch(..., { credentials: "include" })` would):
//!
//! ```text
//! curl -i -X OPTIONS http://localhost:3006/api/notes -H 'Origin: http://localhost:5173' -H 'Access-Control-Request-Method: POST'
//! curl -i -c jar -b jar -X POST http://localhost:3006/api/notes -H 'Origin: http://localhost:5173' -H 'Sec-Fetch-Site: same-site' -d 'hello'
//! curl -i -c jar -b jar -X POST http://localhost:3006/api/notes -H 'Origin: https://evil.example' -H 'Sec-Fetch-Site: cross-site' -d 'forged'
//! ```
//!
//! The last one is refused (403) and gets no `Access-Control-Allow-Origin`.
//! The layers, outermost first: CORS (answers preflights without touching
//! the session), sessions, CSRF (finds the session in the request).
//! `credentialed_cors(&["*"])` is an error: browsers refuse a wildcard with
//! credentials, and echoing any origin would let every site read the API.
//! Development over plain HTTP needs the session cookie without `Secure`
//! and its `__Host-` prefix; in production keep the defaults and HTTPS.

use axum::{Router, routing::get};
use cloakroom::csrf::{CsrfLayer, credentialed_cors};
use cloakroom::store::MemoryStore;
use cloakroom::{CookieConfig, Session, SessionError, SessionLayer};

/// The single-page app's origin, exactly as its browser sends it.
const SPA_ORIGIN: &str = "http://localhost:5173";

async fn add_note(session: Session, body: String) -> Result<String, SessionError> {
    let mut notes: Vec<String> = session.get("notes").await?.unwrap_or_default();
    notes.push(body);
    session.insert("notes", &notes).await?;
    Ok(format!("{} notes\n", notes.len()))
}

async fn notes(session: Session) -> Result<String, SessionError> {
    let notes: Vec<String> = session.get("notes").await?.unwrap_or_default();
    Ok(notes.join("\n"))
}

fn app() -> Result<Router, Box<dyn std::error::Error>> {
    let cookie = CookieConfig::default()
        .with_name("id")
        .with_insecure_http_for_development();
    let sessions = SessionLayer::new(MemoryStore::new())
        .with_cookie(cookie)
        .build()?;
    Ok(Router::new()
        .route("/api/notes", get(notes).post(add_note))
        .layer(CsrfLayer::new().with_trusted_origin(SPA_ORIGIN)?)
        .layer(sessions)
        .layer(credentialed_cors(&[SPA_ORIGIN])?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3006").await?;
    println!("listening on http://localhost:3006 for the app on {SPA_ORIGIN}");
    axum::serve(listener, app()?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, Response, StatusCode};
    use tower::ServiceExt;

    async fn send(app: &Router, method: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri("/api/notes")
            .header("host", "localhost:3006");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app.clone()
            .oneshot(req.body(Body::from("hello")).expect("a request"))
            .await
            .expect("infallible")
    }

    #[tokio::test]
    async fn the_app_may_send_and_read_others_may_not() -> Result<(), Box<dyn std::error::Error>> {
        let app = app()?;
        let preflight = send(
            &app,
            "OPTIONS",
            &[
                ("origin", SPA_ORIGIN),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
        let h = preflight.headers();
        assert_eq!(h["access-control-allow-origin"], SPA_ORIGIN);
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(
            h.get_all("vary")
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("origin")))
        );

        let from_app = [("origin", SPA_ORIGIN), ("sec-fetch-site", "same-site")];
        let ok = send(&app, "POST", &from_app).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["access-control-allow-origin"], SPA_ORIGIN);

        let evil = [
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ];
        let refused = send(&app, "POST", &evil).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        Ok(())
    }

    #[test]
    fn a_wildcard_with_credentials_is_refused() {
        assert!(credentialed_cors(&["*"]).is_err());
        assert!(credentialed_cors(&["http://localhost:5173/"]).is_err());
    }
}
