//! `reliability soak`: many distinct sessions created through the session
//! layer at a bounded rate, in repetitions; after each, the clock moves past
//! the idle timeout and expired sessions are deleted (what the reaper does,
//! `SessionStore::delete_expired`). Reports resident memory and the SQLite
//! file size before, at peak and after; checks the store and the save lanes
//! drain back to empty and nothing grows from the second repetition to the
//! third.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use axum::routing::put;
use clap::{Args, ValueEnum};
use cloakroom::store::{MemoryStore, SessionStore, SqliteStore};
use cloakroom::{Clock, CookieConfig, Expiry, MockClock, Session, SessionError, SessionLayer};
use tower::ServiceExt;

/// The store to soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SoakStore {
    /// `MemoryStore` (bounds raised above the run's size).
    Memory,
    /// `SqliteStore` in a temporary file.
    Sqlite,
}

/// Options of `reliability soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// The store.
    #[arg(long, value_enum)]
    pub store: SoakStore,
    /// Distinct sessions in all (split evenly over the repetitions).
    #[arg(long, default_value_t = 1_000_000)]
    pub sessions: usize,
    /// Repetitions (at least 3: growth is compared from the second to the last).
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    /// Most sessions created per second.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Directory for the SQLite file.
    #[arg(long, default_value = "target/reliability")]
    pub work_dir: PathBuf,
    /// Largest growth allowed from the second repetition to the last, in
    /// per cent of the second's peak (resident memory, file size).
    #[arg(long, default_value_t = 10.0)]
    pub max_growth_percent: f64,
}

async fn write(session: Session) -> Result<&'static str, SessionError> {
    session.insert("n", &1u32).await?;
    Ok("ok")
}

struct Sample {
    rss: u64,
    file: u64,
}

/// Runs the soak.
///
/// # Errors
///
/// A store error, records or lanes left after reaping, or growth over the
/// allowed percentage.
pub async fn run(args: &SoakArgs) -> Result<(), String> {
    if args.repetitions < 3 {
        return Err("--repetitions must be at least 3".into());
    }
    std::fs::create_dir_all(&args.work_dir).map_err(|e| e.to_string())?;
    let db = args
        .work_dir
        .join(format!("soak-{}.db", std::process::id()));
    let result = soak(args, &db).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    result
}

async fn soak(args: &SoakArgs, db: &Path) -> Result<(), String> {
    let clock = MockClock::new();
    let store: Arc<dyn SessionStore> = match args.store {
        SoakStore::Memory => Arc::new(MemoryStore::with_limits(
            args.sessions.saturating_mul(2),
            usize::MAX / 2,
        )),
        SoakStore::Sqlite => Arc::new(SqliteStore::open(db).map_err(|e| e.to_string())?),
    };
    let idle = Duration::from_secs(30 * 60);
    let layer = SessionLayer::new(store.clone())
        .with_cookie(CookieConfig::default().with_insecure_http_for_development())
        .with_expiry(Expiry::default().with_idle_timeout(idle))
        .with_clock(clock.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let app = Router::new().route("/w", put(write)).layer(layer.clone());
    let per_rep = args.sessions / args.repetitions;
    let before = sample(db).await;
    println!(
        "soak {:?}: {} sessions in {} repetitions of {per_rep}, at most {}/s",
        args.store,
        per_rep * args.repetitions,
        args.repetitions,
        args.rate
    );
    println!(
        "before: rss {} MiB, file {} MiB",
        mib(before.rss),
        mib(before.file)
    );
    let mut peaks = Vec::new();
    for rep in 1..=args.repetitions {
        let started = Instant::now();
        let (created, lanes_seen) = create(&app, &layer, per_rep, args).await?;
        let elapsed = started.elapsed();
        let peak = sample(db).await;
        clock.advance(idle + Duration::from_secs(60));
        let reaped = store
            .delete_expired(clock.now())
            .await
            .map_err(|e| format!("reaping: {e}"))?;
        let after = sample(db).await;
        let lanes = layer.save_lanes_in_use();
        // Every session expires within the absolute timeout: whatever a
        // sweep at the end of time finds was left behind.
        let left = store
            .delete_expired(
                clock
                    .now()
                    .saturating_add(Duration::from_secs(400 * 24 * 3600)),
            )
            .await
            .map_err(|e| format!("sweeping: {e}"))?;
        println!(
            "repetition {rep}: created {created} in {:.1} s ({:.0}/s); peak rss {} MiB, file {} MiB; reaped {reaped}; after: rss {} MiB, file {} MiB; records left {left}, save lanes {lanes} (most seen in flight {lanes_seen})",
            elapsed.as_secs_f64(),
            created as f64 / elapsed.as_secs_f64().max(1e-9),
            mib(peak.rss),
            mib(peak.file),
            mib(after.rss),
            mib(after.file),
        );
        if left != 0 || lanes != 0 {
            return Err(format!(
                "repetition {rep}: {left} records and {lanes} save lanes left after reaping"
            ));
        }
        if u64::try_from(created).ok() != Some(reaped) {
            return Err(format!(
                "repetition {rep}: created {created} sessions but reaped {reaped}"
            ));
        }
        peaks.push(peak);
    }
    let (second, last) = (&peaks[1], &peaks[peaks.len() - 1]);
    let grew = |a: u64, b: u64| 100.0 * (b.saturating_sub(a) as f64) / (a.max(1) as f64);
    let (rss_growth, file_growth) = (grew(second.rss, last.rss), grew(second.file, last.file));
    println!(
        "growth from repetition 2 to {}: rss {rss_growth:.1}%, file {file_growth:.1}%",
        args.repetitions
    );
    if rss_growth > args.max_growth_percent || file_growth > args.max_growth_percent {
        return Err(format!(
            "grew more than {}% from repetition 2 to {}",
            args.max_growth_percent, args.repetitions
        ));
    }
    Ok(())
}

/// Creates `n` sessions, one request each, at most `rate` a second and
/// `concurrency` at once; every tenth gets two more saves at once (through
/// the group-commit lane). Returns the number created and the most save
/// lanes seen open at once.
async fn create(
    app: &Router,
    layer: &SessionLayer,
    n: usize,
    args: &SoakArgs,
) -> Result<(usize, usize), String> {
    let mut lanes_seen = 0;
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut created = 0;
    for i in 0..n {
        // The rate bound: request i waits for its slot.
        let due = Duration::from_secs_f64(i as f64 / args.rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let app = app.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let cookie = request(&app, None).await?;
            if i % 10 == 0 {
                let (a, b) =
                    tokio::join!(request(&app, Some(&cookie)), request(&app, Some(&cookie)));
                a?;
                b?;
            }
            Ok::<(), String>(())
        });
        if i % 64 == 0 {
            lanes_seen = lanes_seen.max(layer.save_lanes_in_use());
        }
        while let Some(done) = tasks.try_join_next() {
            done.map_err(|e| e.to_string())??;
            created += 1;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
        created += 1;
    }
    Ok((created, lanes_seen))
}

/// One `PUT /w`; returns the session cookie (`name=value`).
async fn request(app: &Router, cookie: Option<&str>) -> Result<String, String> {
    let mut req = Request::builder().method(Method::PUT).uri("/w");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let req = req.body(Body::empty()).map_err(|e| e.to_string())?;
    let res = app.clone().oneshot(req).await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("PUT /w answered {}", res.status()));
    }
    match (cookie, res.headers().get(header::SET_COOKIE)) {
        (Some(c), _) => Ok(c.to_owned()),
        (None, Some(v)) => v
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .ok_or_else(|| "unreadable Set-Cookie".to_owned()),
        (None, None) => Err("no session cookie for a new session".into()),
    }
}

async fn sample(db: &Path) -> Sample {
    let file = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).map_or(0, |m| m.len()))
        .sum();
    Sample {
        rss: rss_bytes(),
        file,
    }
}

/// This process's resident set size (`VmRSS`), 0 where unknown.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 20))
}
