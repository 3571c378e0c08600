//! Load-test servers: one binary, one setup per run.
//!
//! ```text
//! bench-server --setup cloakroom-memory --port 8101
//! ```
//!
//! Every setup listens on 127.0.0.1:PORT with the same four endpoints
//! (see /work/shared/PERFORMANCE.md):
//!
//! * `POST /login`: stores `user_id` (a u64) and `data` (a 200-byte string);
//! * `GET /read`: reads `user_id`, `401` without a session;
//! * `POST /write`: increments `counter` (read, add one, write);
//! * `GET /plain`: the session layer is installed, the session untouched.

use std::net::SocketAddr;

const PAYLOAD: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd";
const USER_ID: u64 = 42;

const SETUPS: &[&str] = &[
    "axum-baseline",
    "cloakroom-memory",
    "cloakroom-sqlite",
    "cloakroom-cookie",
    "tower-sessions-memory",
    #[cfg(feature = "redis-peers")]
    "cloakroom-redis",
    #[cfg(feature = "pg-peers")]
    "cloakroom-postgres",
    #[cfg(feature = "redis-peers")]
    "tower-sessions-redis",
    "actix-cookie",
    #[cfg(feature = "redis-peers")]
    "actix-redis",
];

fn usage() -> ! {
    eprintln!(
        "usage: bench-server --setup NAME --port N [--redis-url URL] [--pg-url URL]\n       bench-server --list\nsetups: {}",
        SETUPS.join(", ")
    );
    std::process::exit(2)
}

struct Args {
    setup: String,
    port: u16,
    redis_url: String,
    pg_url: String,
}

fn parse_args() -> Args {
    let mut setup = None;
    let mut port = None;
    let mut redis_url = "redis://127.0.0.1:6390".to_owned();
    let mut pg_url = "postgres://postgres@127.0.0.1:5432/test".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => {
                for s in SETUPS {
                    println!("{s}");
                }
                std::process::exit(0)
            }
            "--setup" => setup = it.next(),
            "--port" => port = it.next().and_then(|p| p.parse().ok()),
            "--redis-url" => redis_url = it.next().unwrap_or_else(|| usage()),
            "--pg-url" => pg_url = it.next().unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    match (setup, port) {
        (Some(setup), Some(port)) if SETUPS.contains(&setup.as_str()) => Args {
            setup,
            port,
            redis_url,
            pg_url,
        },
        _ => usage(),
    }
}

fn main() {
    assert_eq!(PAYLOAD.len(), 200);
    let args = parse_args();
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let result = if args.setup.starts_with("actix-") {
        actix_peer::run(&args.setup, addr, &args.redis_url)
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(axum_setups::run(
                &args.setup,
                addr,
                &args.redis_url,
                &args.pg_url,
            ))
    };
    if let Err(e) = result {
        eprintln!("bench-server {}: {e}", args.setup);
        std::process::exit(1);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

mod axum_setups {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};

    use super::{BoxError, PAYLOAD, USER_ID};

    pub async fn run(
        setup: &str,
        addr: SocketAddr,
        redis_url: &str,
        pg_url: &str,
    ) -> Result<(), BoxError> {
        let _ = (redis_url, pg_url);
        // Keeps the SQLite file alive while serving.
        let mut _tmp = None;
        let app: Router = match setup {
            "axum-baseline" => baseline(),
            "cloakroom-memory" => cloakroom_app(cloakroom::SessionLayer::new(
                cloakroom::store::MemoryStore::new(),
            ))?,
            "cloakroom-sqlite" => {
                let dir = tempfile::tempdir()?;
                let store = cloakroom::store::SqliteStore::open(dir.path().join("sessions.db"))?;
                _tmp = Some(dir);
                cloakroom_app(cloakroom::SessionLayer::new(store))?
            }
            "cloakroom-cookie" => {
                use cloakroom::client_side::ClientSessions;
                use cloakroom::crypto::{Keyring, MasterKey};
                let keyring = Keyring::new(vec![MasterKey::generate()])?;
                cloakroom_app(cloakroom::SessionLayer::client_side(
                    ClientSessions::new(keyring),
                ))?
            }
            #[cfg(feature = "redis-peers")]
            "cloakroom-redis" => {
                let store = cloakroom::store::RedisStore::builder(redis_url)
                    .with_prefix("bench:")
                    .connect()
                    .await?;
                cloakroom_app(cloakroom::SessionLayer::new(store))?
            }
            #[cfg(feature = "pg-peers")]
            "cloakroom-postgres" => {
                let store = cloakroom::store::PostgresStore::connect(pg_url).await?;
                cloakroom_app(cloakroom::SessionLayer::new(store))?
            }
            "tower-sessions-memory" => ts_app(tower_sessions::MemoryStore::default()),
            #[cfg(feature = "redis-peers")]
            "tower-sessions-redis" => {
                use tower_sessions_redis_store::fred::prelude::*;
                let pool = Pool::new(Config::from_url(redis_url)?, None, None, None, 6)?;
                pool.init().await?;
                ts_app(tower_sessions_redis_store::RedisStore::new(pool))
            }
            other => return Err(format!("unknown setup {other}").into()),
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!("{setup} listening on http://{addr}/");
        // Graceful on SIGTERM (what run.sh sends), so the SQLite temp
        // directory is removed on the way out.
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending().await,
                }
            })
            .await?;
        Ok(())
    }

    fn baseline() -> Router {
        async fn ok() -> &'static str {
            "ok"
        }
        async fn read() -> String {
            USER_ID.to_string()
        }
        Router::new()
            .route("/login", post(ok))
            .route("/read", get(read))
            .route("/write", post(ok))
            .route("/plain", get(ok))
    }

    async fn plain() -> &'static str {
        "ok"
    }

    // ---- cloakroom -------------------------------------------------------

    fn cloakroom_app(builder: cloakroom::SessionLayerBuilder) -> Result<Router, BoxError> {
        use cloakroom::{CookieConfig, Session, SessionConfig, SessionError};

        async fn login(session: Session) -> Result<&'static str, SessionError> {
            session.insert("user_id", &USER_ID).await?;
            session.insert("data", PAYLOAD).await?;
            Ok("ok")
        }
        async fn read(session: Session) -> Result<Response, SessionError> {
            Ok(match session.get::<u64>("user_id").await? {
                Some(id) => id.to_string().into_response(),
                None => StatusCode::UNAUTHORIZED.into_response(),
            })
        }
        async fn write(session: Session) -> Result<String, SessionError> {
            let n = session.get::<u64>("counter").await?.unwrap_or(0) + 1;
            session.insert("counter", &n).await?;
            Ok(n.to_string())
        }

        let layer = builder
            
                    .with_cookie(CookieConfig::default().with_insecure_http_for_development())
            .build()?;
        Ok(Router::new()
            .route("/login", post(login))
            .route("/read", get(read))
            .route("/write", post(write))
            .route("/plain", get(plain))
            .layer(layer))
    }

    // ---- tower-sessions --------------------------------------------------

    fn ts_app<S>(store: S) -> Router
    where
        S: tower_sessions::SessionStore + Clone,
    {
        use tower_sessions::{Session, SessionManagerLayer};

        fn fail(e: tower_sessions::session::Error) -> Response {
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
        async fn login(session: Session) -> Response {
            if let Err(e) = session.insert("user_id", USER_ID).await {
                return fail(e);
            }
            if let Err(e) = session.insert("data", PAYLOAD).await {
                return fail(e);
            }
            "ok".into_response()
        }
        async fn read(session: Session) -> Response {
            match session.get::<u64>("user_id").await {
                Ok(Some(id)) => id.to_string().into_response(),
                Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
                Err(e) => fail(e),
            }
        }
        async fn write(session: Session) -> Response {
            let n = match session.get::<u64>("counter").await {
                Ok(n) => n.unwrap_or(0) + 1,
                Err(e) => return fail(e),
            };
            match session.insert("counter", n).await {
                Ok(()) => n.to_string().into_response(),
                Err(e) => fail(e),
            }
        }

        Router::new()
            .route("/login", post(login))
            .route("/read", get(read))
            .route("/write", post(write))
            .route("/plain", get(plain))
            .layer(SessionManagerLayer::new(store).with_secure(false))
    }
}

mod actix_peer {
    use std::net::SocketAddr;

    use actix_session::storage::SessionStore;
    use actix_session::{Session, SessionMiddleware};
    use actix_web::cookie::Key;
    use actix_web::{App, HttpResponse, HttpServer, web};

    use super::{BoxError, PAYLOAD, USER_ID};

    async fn login(s: Session) -> actix_web::Result<HttpResponse> {
        s.insert("user_id", USER_ID)?;
        s.insert("data", PAYLOAD)?;
        Ok(HttpResponse::Ok().body("ok"))
    }
    async fn read(s: Session) -> actix_web::Result<HttpResponse> {
        Ok(match s.get::<u64>("user_id")? {
            Some(id) => HttpResponse::Ok().body(id.to_string()),
            None => HttpResponse::Unauthorized().finish(),
        })
    }
    async fn write(s: Session) -> actix_web::Result<HttpResponse> {
        let n = s.get::<u64>("counter")?.unwrap_or(0) + 1;
        s.insert("counter", n)?;
        Ok(HttpResponse::Ok().body(n.to_string()))
    }
    async fn plain() -> HttpResponse {
        HttpResponse::Ok().body("ok")
    }

    async fn serve<S, F>(store: F, addr: SocketAddr) -> Result<(), BoxError>
    where
        S: SessionStore + 'static,
        F: Fn() -> S + Clone + Send + 'static,
    {
        let key = Key::generate();
        eprintln!("actix listening on http://{addr}/");
        HttpServer::new(move || {
            App::new()
                .wrap(
                    SessionMiddleware::builder(store(), key.clone())
                        .cookie_secure(false)
                        .build(),
                )
                .route("/login", web::post().to(login))
                .route("/read", web::get().to(read))
                .route("/write", web::post().to(write))
                .route("/plain", web::get().to(plain))
        })
        .bind(addr)?
        .run()
        .await?;
        Ok(())
    }

    pub fn run(setup: &str, addr: SocketAddr, redis_url: &str) -> Result<(), BoxError> {
        let _ = redis_url;
        actix_web::rt::System::new().block_on(async move {
            match setup {
                "actix-cookie" => {
                    serve(actix_session::storage::CookieSessionStore::default, addr).await
                }
                #[cfg(feature = "redis-peers")]
                "actix-redis" => {
                    let store =
                        actix_session::storage::RedisSessionStore::new(redis_url.to_owned())
                            .await
                            .map_err(|e| e.to_string())?;
                    serve(move || store.clone(), addr).await
                }
                other => Err(format!("unknown setup {other}").into()),
            }
        })
    }
}
