//! `reliability`: the harness behind `scripts/faults.sh`, `scripts/soak.sh`
//! and `scripts/bad-input.sh` (see docs/reliability.md).
//!
//! * `faults`: two demo instances on one store, load, one fault, and the
//!   history checked afterwards;
//! * `soak`: many sessions created and expired in process through the
//!   memory or SQLite store, resident memory and file size reported;
//! * `hostile`: malformed, oversized and slow clients against a running
//!   demo, checking it stays up and a session keeps its data.

mod client;
mod faults;
mod history;
mod hostile;
mod instances;
mod rng;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Reliability harness for cloakroom.
#[derive(Debug, Parser)]
#[command(name = "reliability", about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One store, one fault, history checked.
    Faults(faults::FaultArgs),
    /// Hostile clients against a demo instance.
    Hostile(hostile::HostileArgs),
    /// Sessions created and expired at a bounded rate, in repetitions.
    Soak(soak::SoakArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Cmd::Faults(args) => faults::run(args).await,
        Cmd::Hostile(args) => hostile::run(args).await,
        Cmd::Soak(args) => soak::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reliability: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
