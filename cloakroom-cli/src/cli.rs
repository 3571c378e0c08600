//! The command line: `cloakroom [serve] [--addr ADDR] [--store STORE]
//! [--secure-cookies] [--mode server|cookie|token] [--keys KEYS]`, and
//! `cloakroom keygen`.

use std::net::SocketAddr;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{DemoError, DemoOptions, KeySource, SessionMode, StoreSpec, build_app};

/// cloakroom: web sessions for Rust. Without a subcommand, runs the demo
/// web app (as `serve` does).
#[derive(Debug, Parser)]
#[command(
    name = "cloakroom",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demo web app.
    Serve(ServeArgs),
    /// Print a new random key for CLOAKROOM_KEYS (32 bytes, base64url).
    Keygen {
        /// Print a new Ed25519 access-token signing key instead: its seed
        /// (for --signing-key-file) and its public JWK.
        #[arg(long)]
        jwk: bool,
    },
    /// Delete expired sessions from a store now (the app's reaper does
    /// this periodically).
    Purge {
        /// Store URL: memory:, sqlite:PATH, file:DIR, postgres://…, mysql://…,
        /// redis://…, redis+cluster://…, memcache://…, mongodb://…,
        /// dynamodb+http://…, tiered:CACHE|DURABLE.
        #[arg(long, env = "CLOAKROOM_STORE")]
        store: String,
    },
    /// Count a store's live sessions: signed in, anonymous, token families.
    Stats {
        /// Store URL (as for `purge`).
        #[arg(long, env = "CLOAKROOM_STORE")]
        store: String,
        /// Print the counts as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Create the DynamoDB table a `dynamodb+http://host:port/TABLE` store
    /// needs (string keys pk/sk, on-demand billing) and enable its TTL on
    /// the `ttl` attribute. Idempotent.
    DynamodbCreateTable {
        /// Store URL: dynamodb+http://host:port/TABLE.
        #[arg(long, env = "CLOAKROOM_STORE")]
        store: String,
    },
    /// List or end one user's sessions in a store ("your devices", from
    /// the operator's side).
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Measure create/load/save/touch latency of a store (p50, p99, ops/s).
    StoreBench {
        /// Store URL (as for `purge`).
        #[arg(long)]
        store: String,
        /// Sessions to create (each then loaded, saved and touched once).
        #[arg(long, default_value_t = 2000)]
        sessions: usize,
        /// Concurrent workers.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

/// `cloakroom sessions …`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List a user's live sessions: handle, kind, created, last seen, IP,
    /// user agent.
    List {
        /// Store URL (as for `purge`).
        #[arg(long, env = "CLOAKROOM_STORE")]
        store: String,
        /// The user (as passed to `Session::login`).
        #[arg(long)]
        user: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End one session of a user by handle, or all of them.
    Revoke {
        /// Store URL (as for `purge`).
        #[arg(long, env = "CLOAKROOM_STORE")]
        store: String,
        /// The user.
        #[arg(long)]
        user: String,
        /// The handle to end (from `sessions list`).
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        handle: Option<String>,
        /// End every session of the user.
        #[arg(long)]
        all: bool,
    },
}

/// Where the demo keeps session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Server-side sessions: the cookie holds an ID, records live in the store.
    Server,
    /// Client-side sessions: the record is sealed in the cookie.
    Cookie,
    /// Token sessions: Bearer access tokens and rotating refresh tokens.
    Token,
}

/// Options of the demo web app.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CLOAKROOM_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Where sessions and users live: sqlite:PATH or memory:.
    #[arg(long, env = "CLOAKROOM_STORE", default_value = crate::DEFAULT_STORE)]
    pub store: StoreSpec,
    /// Keep the Secure `__Host-id` cookie, for running behind a TLS proxy.
    /// Without it the demo uses the plain-HTTP development cookie `id`.
    #[arg(long, env = "CLOAKROOM_SECURE_COOKIES", value_parser = BoolishValueParser::new())]
    pub secure_cookies: bool,
    /// Server-side sessions (default) or client-side sealed cookies.
    #[arg(long, env = "CLOAKROOM_MODE", value_enum, default_value = "server")]
    pub mode: ModeArg,
    /// Keys for sealed cookies and --encrypt-store: comma-separated base64url keys, newest first
    /// (make one with `cloakroom keygen`). Without it, cookie mode uses
    /// --key-file, creating it if needed.
    #[arg(long, env = "CLOAKROOM_KEYS", hide_env_values = true)]
    pub keys: Option<String>,
    /// Server mode: seal every session record with the keys (--keys, else
    /// --key-file) before it reaches the store, so a dump of the store
    /// reveals no session data.
    #[arg(long, env = "CLOAKROOM_ENCRYPT_STORE", value_parser = BoolishValueParser::new())]
    pub encrypt_store: bool,
    /// Key file used by cookie mode and --encrypt-store when no keys are
    /// given.
    #[arg(
        long,
        env = "CLOAKROOM_KEY_FILE",
        default_value = "cloakroom-demo.keys"
    )]
    pub key_file: std::path::PathBuf,
    /// Token mode's access-token signing key (an Ed25519 seed), created if
    /// missing.
    #[arg(
        long,
        env = "CLOAKROOM_SIGNING_KEY_FILE",
        default_value = "cloakroom-demo.signing-key"
    )]
    pub signing_key_file: std::path::PathBuf,
}

impl Cli {
    /// The `serve` options, whether given with or without the subcommand.
    #[must_use]
    pub fn into_serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => args,
            Some(
                Command::Keygen { .. }
                | Command::Purge { .. }
                | Command::DynamodbCreateTable { .. }
                | Command::Sessions(_)
                | Command::StoreBench { .. }
                | Command::Stats { .. },
            )
            | None => self.serve,
        }
    }
}

impl ServeArgs {
    /// The app options these arguments ask for.
    #[must_use]
    pub fn demo_options(&self) -> DemoOptions {
        DemoOptions {
            store: self.store.clone(),
            secure_cookies: self.secure_cookies,
            mode: match self.mode {
                ModeArg::Server => SessionMode::Server,
                ModeArg::Cookie => SessionMode::Cookie {
                    keys: self.keys.clone(),
                    key_file: self.key_file.clone(),
                },
                ModeArg::Token => SessionMode::Token {
                    keys: self.keys.clone(),
                    key_file: self.key_file.clone(),
                    signing_key_file: self.signing_key_file.clone(),
                },
            },
            encrypt_at_rest: self.encrypt_store.then(|| KeySource {
                keys: self.keys.clone(),
                key_file: self.key_file.clone(),
            }),
            ..DemoOptions::default()
        }
    }
}

/// Runs the demo until Ctrl-C (or SIGTERM), then finishes the requests in
/// flight and returns.
///
/// # Errors
///
/// [`DemoError`] if the stores cannot be opened, the address is taken, or
/// serving fails.
pub async fn serve(args: ServeArgs) -> Result<(), DemoError> {
    let opts = args.demo_options();
    let (app, handles) = build_app(&opts).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|source| DemoError::Bind {
            addr: args.addr,
            source,
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(store = %opts.store, secure_cookies = opts.secure_cookies, mode = opts.mode.name(), "cloakroom demo listening on http://{addr}/");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    drop(handles);
    tracing::info!("cloakroom demo stopped");
    Ok(())
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C; stop the process another way");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down; finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("cloakroom").chain(args.iter().copied()))
            .map(Cli::into_serve_args)
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_with_and_without_subcommand() -> Result<(), clap::Error> {
        for args in [&[][..], &["serve"][..]] {
            let a = parse(args)?;
            // The environment may set these; only check when it does not.
            if std::env::var_os("CLOAKROOM_ADDR").is_none() {
                assert_eq!(a.addr, SocketAddr::from(([127, 0, 0, 1], 3000)));
            }
            if std::env::var_os("CLOAKROOM_STORE").is_none() {
                assert_eq!(a.store, StoreSpec::Sqlite("cloakroom-demo.db".into()));
            }
            if std::env::var_os("CLOAKROOM_SECURE_COOKIES").is_none() {
                assert!(!a.secure_cookies);
            }
        }
        Ok(())
    }

    #[test]
    fn options() -> Result<(), clap::Error> {
        let a = parse(&[
            "--addr",
            "0.0.0.0:8080",
            "--store",
            "memory:",
            "--secure-cookies",
        ])?;
        assert_eq!(a.addr, SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert_eq!(a.store, StoreSpec::Memory);
        assert!(a.secure_cookies);
        let b = parse(&["serve", "--store", "sqlite:/tmp/x.db"])?;
        assert_eq!(b.store, StoreSpec::Sqlite("/tmp/x.db".into()));
        Ok(())
    }

    #[test]
    fn bad_store_is_a_usage_error_naming_the_forms() {
        let Err(e) = parse(&["--store", "gopher://localhost"]) else {
            panic!("an unknown store must be refused");
        };
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(
            msg.contains("sqlite:PATH") && msg.contains("memory:"),
            "{msg}"
        );
    }

    #[test]
    fn bad_addr_is_a_usage_error() {
        let Err(e) = parse(&["--addr", "localhost"]) else {
            panic!("an address without a port must be refused");
        };
        assert_eq!(e.exit_code(), 2);
    }
}
