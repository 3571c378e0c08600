//! `cloakroom`: runs the demo web app (see the `cloakroom_cli` library) and
//! the admin commands.

use std::process::ExitCode;

use clap::Parser;
use cloakroom_cli::admin;
use cloakroom_cli::cli::{Cli, Command, SessionsCommand, serve};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Bad arguments (such as an unknown --store) exit here with code 2.
    let cli = Cli::parse();
    if let Some(Command::Keygen { jwk }) = cli.command {
        return match admin::keygen(jwk) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cloakroom: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout is the admin commands' output (JSON, say).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match &cli.command {
        Some(Command::Purge { store }) => admin::purge(store)
            .await
            .map(|n| println!("deleted {n} expired sessions"))
            .map_err(|e| e.to_string()),
        Some(Command::Stats { store, json }) => admin::stats(store)
            .await
            .map(|s| println!("{}", admin::stats_report(&s, *json)))
            .map_err(|e| e.to_string()),
        Some(Command::DynamodbCreateTable { store }) => admin::dynamodb_create_table(store)
            .await
            .map(|table| println!("table {table} is ready (TTL on `ttl` enabled)"))
            .map_err(|e| e.to_string()),
        Some(Command::Sessions(SessionsCommand::List { store, user, json })) => {
            admin::sessions_list(store, user, *json)
                .await
                .map(|text| print!("{text}"))
                .map_err(|e| e.to_string())
        }
        Some(Command::Sessions(SessionsCommand::Revoke {
            store,
            user,
            handle,
            all: _,
        })) => admin::sessions_revoke(store, user, handle.as_deref())
            .await
            .map(|n| println!("ended {n} session(s)"))
            .map_err(|e| e.to_string()),
        Some(Command::StoreBench {
            store,
            sessions,
            concurrency,
        }) => admin::store_bench(store, *sessions, *concurrency)
            .await
            .map(|b| print!("{b}"))
            .map_err(|e| e.to_string()),
        _ => serve(cli.into_serve_args())
            .await
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
