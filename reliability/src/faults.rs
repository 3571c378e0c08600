//! `reliability faults`: two demo instances on one store, a load generator
//! recording every acknowledged answer, one fault injected mid-run, and
//! the history checked afterwards (see [`crate::history`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Counters, Demo, Reply};
use crate::history::{History, Observed, Verdict, check_session};
use crate::instances::{Instance, shell};
use crate::rng::Rng;

/// What to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// No fault: the baseline.
    None,
    /// SIGKILL the second demo instance mid-request, then start it again.
    KillApp,
    /// SIGSTOP the second demo instance, then SIGCONT it.
    PauseApp,
    /// Run `--down`, wait `--hold`, run `--up` (a store restart or pause
    /// the calling script owns).
    Command,
}

/// Options of `reliability faults`.
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// The demo binary (`target/debug/cloakroom` or `target/release/cloakroom`).
    #[arg(long)]
    pub demo_bin: PathBuf,
    /// The store both instances share (a `--store` URL of the demo).
    #[arg(long)]
    pub store: String,
    /// Name of the store in the report.
    #[arg(long)]
    pub label: String,
    /// The fault.
    #[arg(long, value_enum, default_value = "none")]
    pub fault: Fault,
    /// Name of the fault in the report (default: the `--fault` value).
    #[arg(long)]
    pub fault_name: Option<String>,
    /// Shell command starting the fault (`--fault command`).
    #[arg(long, default_value = "")]
    pub down: String,
    /// Shell command ending the fault (`--fault command`).
    #[arg(long, default_value = "")]
    pub up: String,
    /// Concurrent clients, each with its own user and two devices.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Seconds of load before the fault.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds the fault lasts.
    #[arg(long, default_value_t = 2.0)]
    pub hold: f64,
    /// Seconds of load after recovery.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Stop the load after this many requests, whatever the time.
    #[arg(long, default_value_t = 200_000)]
    pub max_requests: u64,
    /// Per-request time limit, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Longest wait for recovery after the fault ends, in seconds.
    #[arg(long, default_value_t = 60)]
    pub recover_within: u64,
    /// This store cannot keep acknowledged writes through this fault (say
    /// why): lost writes are reported, not a failure. Resurrections still
    /// fail the run.
    #[arg(long)]
    pub loss_expected: Option<String>,
    /// Directory for the demo logs.
    #[arg(long, default_value = "target/reliability")]
    pub work_dir: PathBuf,
    /// Append the result as one Markdown table row to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    sent: u64,
    acknowledged: u64,
    unavailable: u64,
    no_answer: u64,
    replaced: u64,
    recovery: Option<Duration>,
    verdict: Verdict,
    unverified: u64,
}

struct Shared {
    demo: Demo,
    history: Mutex<History>,
    stop: AtomicBool,
    max_requests: u64,
    tag: String,
    replaced: std::sync::atomic::AtomicU64,
}

const PASSWORD: &str = "reliability-harness";

/// Runs one store under one fault and checks its history.
///
/// # Errors
///
/// A description of what failed: lost or resurrected sessions (unless
/// loss is expected), a crashed instance, no recovery.
pub async fn run(args: &FaultArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.work_dir).map_err(|e| e.to_string())?;
    let fault_name = args.fault_name.clone().unwrap_or_else(|| {
        args.fault
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_owned())
    });
    let slug: String = format!("{}-{fault_name}", args.label)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut a = Instance::start(
        &args.demo_bin,
        &args.store,
        &args.work_dir,
        &format!("{slug}-a"),
    )
    .await?;
    let mut b = Instance::start(
        &args.demo_bin,
        &args.store,
        &args.work_dir,
        &format!("{slug}-b"),
    )
    .await?;
    let counters = Arc::new(Counters::default());
    let demo = Demo::new(
        vec![a.base(), b.base()],
        Duration::from_millis(args.timeout_ms),
        counters.clone(),
    )?;
    let shared = Arc::new(Shared {
        demo: demo.clone(),
        history: Mutex::new(History::default()),
        stop: AtomicBool::new(false),
        max_requests: args.max_requests,
        tag: Rng::new()?.tag(),
        replaced: std::sync::atomic::AtomicU64::new(0),
    });
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let shared = shared.clone();
        let mut rng = Rng::new()?;
        workers.push(tokio::spawn(
            async move { worker(&shared, w, &mut rng).await },
        ));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let recovery = inject(args, &mut b, &demo).await;
    let recovery = match recovery {
        Ok(r) => r,
        Err(e) => {
            shared.stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.map_err(|e| format!("a load worker failed: {e}"))?;
    }
    let load_time = started.elapsed();
    for inst in [&mut a, &mut b] {
        if let Some(status) = inst.exited() {
            return Err(format!(
                "a demo instance died by itself ({status}); see {}",
                inst.log().display()
            ));
        }
        if inst.panicked() {
            return Err(format!(
                "a demo instance panicked; see {}",
                inst.log().display()
            ));
        }
    }
    let (sent, acknowledged, unavailable, no_answer) = counters.snapshot();
    let mut outcome = Outcome {
        sent,
        acknowledged,
        unavailable,
        no_answer,
        replaced: shared.replaced.load(Ordering::Relaxed),
        recovery,
        ..Outcome::default()
    };
    let history = std::mem::take(&mut *shared.history.lock().map_err(|_| "history poisoned")?);
    check(&demo, &history, &mut outcome).await;
    a.kill().await;
    b.kill().await;
    report(args, &fault_name, &outcome, load_time)
}

/// Injects the fault; returns the time from its end until every instance
/// acknowledged a store write again (`None` for no fault).
async fn inject(
    args: &FaultArgs,
    b: &mut Instance,
    demo: &Demo,
) -> Result<Option<Duration>, String> {
    let hold = Duration::from_secs_f64(args.hold);
    let limit = Duration::from_secs(60);
    // Recovery is timed from the moment the fault is lifted: a restarted
    // server's or app's start-up counts.
    let ended;
    match args.fault {
        Fault::None => return Ok(None),
        Fault::KillApp => {
            b.kill().await;
            tokio::time::sleep(hold).await;
            ended = Instant::now();
            b.spawn().await?;
        }
        Fault::PauseApp => {
            b.signal("STOP").await?;
            tokio::time::sleep(hold).await;
            ended = Instant::now();
            b.signal("CONT").await?;
        }
        Fault::Command => {
            shell(&args.down, limit).await?;
            tokio::time::sleep(hold).await;
            ended = Instant::now();
            shell(&args.up, limit).await?;
        }
    }
    let bound = Duration::from_secs(args.recover_within);
    for instance in 0..demo.bases.len() {
        loop {
            let r = demo
                .send_uncounted(
                    instance,
                    Method::PUT,
                    "/api/data/probe",
                    None,
                    Some(&json!(1)),
                )
                .await;
            if r.is(204) {
                break;
            }
            if ended.elapsed() > bound {
                return Err(format!(
                    "instance {instance} did not recover within {bound:?} after the fault"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(Some(ended.elapsed()))
}

/// One client: a user with up to two signed-in devices, writing distinct
/// keys through both instances at once (90% of steps), putting a device
/// aside (4%), logging out (4%), logging out everywhere (2%).
async fn worker(s: &Shared, w: usize, rng: &mut Rng) {
    // After logging out everywhere the worker signs up as a new user, so
    // that the sessions it put aside under the old one stay checkable.
    let mut generation = 0;
    let mut owner = w * 1_000_000;
    let mut user = format!("r{}w{w}g0", s.tag);
    for i in 0..s.demo.bases.len() {
        register(s, i, &user).await;
    }
    let mut devices: Vec<String> = Vec::new();
    let mut seq = 0u64;
    let backoff = Duration::from_millis(50);
    while !s.stop.load(Ordering::Relaxed) && s.demo.counters().snapshot().0 < s.max_requests {
        if devices.len() < 2 {
            let i = rng.below(2);
            let body = json!({"username": user, "password": PASSWORD});
            let r = s
                .demo
                .send(i, Method::POST, "/api/login", None, Some(&body))
                .await;
            match (&r.new_cookie, r.is(200)) {
                (Some(c), true) => {
                    lock(s).started(c, owner, true);
                    devices.push(c.clone());
                }
                // A restarted instance has lost its in-memory accounts.
                _ if r.is(401) => register(s, i, &user).await,
                _ => tokio::time::sleep(backoff).await,
            }
            continue;
        }
        let d = rng.below(2);
        let roll = rng.below(100);
        if roll < 4 {
            // Put the device aside: its session stays signed in, untouched,
            // and is checked at the end.
            devices.remove(d);
        } else if roll < 94 {
            let keys: Vec<String> = (0..2).map(|j| format!("k{w}-{}", seq + j)).collect();
            seq += 2;
            let values: Vec<String> = keys
                .iter()
                .map(|k| format!("{}-{k}-{}", s.tag, rng.next()))
                .collect();
            let cookie = devices[d].clone();
            let (r0, r1) = tokio::join!(
                put(s, 0, &cookie, &keys[0], &values[0]),
                put(s, 1, &cookie, &keys[1], &values[1]),
            );
            let any_failed = !(r0.is(204) && r1.is(204));
            for (r, (k, v)) in [r0, r1].iter().zip(keys.iter().zip(&values)) {
                if !r.is(204) {
                    continue;
                }
                let target = r.new_cookie.clone().unwrap_or_else(|| cookie.clone());
                lock(s).wrote(&target, owner, k, v);
                if target != cookie {
                    // The store did not know the session: the demo began a
                    // new anonymous one. The old one's writes are checked.
                    s.replaced.fetch_add(1, Ordering::Relaxed);
                    devices[d] = target;
                }
            }
            if any_failed {
                tokio::time::sleep(backoff).await;
            }
        } else if roll < 98 {
            let cookie = devices.remove(d);
            let r = s
                .demo
                .send(
                    rng.below(2),
                    Method::POST,
                    "/api/logout",
                    Some(&cookie),
                    Some(&json!({})),
                )
                .await;
            lock(s).ended(&cookie, r.is(204));
        } else {
            let cookie = devices[d].clone();
            let r = s
                .demo
                .send(
                    rng.below(2),
                    Method::POST,
                    "/api/logout-everywhere",
                    Some(&cookie),
                    Some(&json!({})),
                )
                .await;
            if r.is(401) {
                // Not signed in: this device's session was replaced by an
                // anonymous one (see above), or lost.
                devices.remove(d);
            } else {
                lock(s).ended_all_of(owner, r.is(204));
                devices.clear();
                generation += 1;
                owner += 1;
                user = format!("r{}w{w}g{generation}", s.tag);
                for i in 0..s.demo.bases.len() {
                    register(s, i, &user).await;
                }
            }
        }
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, History> {
    // A worker that panicked holding the lock left a consistent history:
    // every update is one insert.
    s.history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn register(s: &Shared, instance: usize, user: &str) {
    let body = json!({"username": user, "password": PASSWORD});
    // 201, or 409 where the instances share their accounts (SQLite).
    s.demo
        .send(instance, Method::POST, "/api/register", None, Some(&body))
        .await;
}

async fn put(s: &Shared, instance: usize, cookie: &str, key: &str, value: &str) -> Reply {
    s.demo
        .send(
            instance,
            Method::PUT,
            &format!("/api/data/{key}"),
            Some(cookie),
            Some(&Value::from(value)),
        )
        .await
}

/// Reads every session of the history back and checks it.
async fn check(demo: &Demo, history: &History, outcome: &mut Outcome) {
    for (n, (cookie, entry)) in history.sessions().iter().enumerate() {
        let Some(seen) = observe(demo, n, cookie).await else {
            outcome.unverified += 1;
            continue;
        };
        check_session(entry, &seen, &mut outcome.verdict);
    }
}

/// `GET /api/data` and `GET /api/me` for `cookie`, retried while the store
/// answers 503 or nothing (bounded).
async fn observe(demo: &Demo, n: usize, cookie: &str) -> Option<Observed> {
    let mut data = None;
    let mut me = None;
    for _ in 0..40 {
        if data.is_none() {
            let r = demo
                .send_uncounted(n, Method::GET, "/api/data", Some(cookie), None)
                .await;
            if r.is(200) {
                data = match r.json() {
                    Some(Value::Object(m)) => Some(m),
                    _ => return None,
                };
            }
        }
        if me.is_none() {
            let r = demo
                .send_uncounted(n + 1, Method::GET, "/api/me", Some(cookie), None)
                .await;
            if r.is(200) || r.is(401) {
                me = Some(r.is(200));
            }
        }
        if let (Some(data), Some(signed_in)) = (&data, me) {
            let mut data = data.clone();
            data.remove("probe");
            return Some(Observed { data, signed_in });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

fn report(args: &FaultArgs, fault: &str, o: &Outcome, load_time: Duration) -> Result<(), String> {
    let v = &o.verdict;
    let recovery = o
        .recovery
        .map_or_else(|| "–".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    let promise = match (&args.loss_expected, v.lost) {
        (Some(why), n) if n > 0 => format!("loss expected: {why}"),
        (Some(why), _) => format!("none lost this run (loss possible: {why})"),
        (None, _) => "lost 0, resurrected 0".to_owned(),
    };
    let row = format!(
        "| {} | {fault} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {recovery} | {:.1} s | {promise} |",
        args.label,
        o.sent,
        o.acknowledged,
        o.unavailable,
        o.no_answer,
        v.writes_checked,
        v.lost,
        v.ended_checked,
        v.resurrected,
        v.uncertain,
        o.replaced,
        load_time.as_secs_f64(),
    );
    println!(
        "{} / {fault}: sent {} acknowledged {} (503: {}, no answer: {}); writes checked {} lost {} in {} sessions; ended checked {} resurrected {}; uncertain {}; replaced {}; unverified {}; recovery {recovery}",
        args.label,
        o.sent,
        o.acknowledged,
        o.unavailable,
        o.no_answer,
        v.writes_checked,
        v.lost,
        v.sessions_losing,
        v.ended_checked,
        v.resurrected,
        v.uncertain,
        o.replaced,
        o.unverified,
    );
    if let Some(path) = &args.report {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        writeln!(f, "{row}").map_err(|e| e.to_string())?;
    }
    let mut failures = Vec::new();
    if v.writes_checked == 0 || v.ended_checked == 0 {
        failures.push("the history checked nothing (no acknowledged writes or endings)".to_owned());
    }
    if o.unverified > 0 {
        failures.push(format!("{} sessions could not be read back", o.unverified));
    }
    if v.resurrected > 0 {
        failures.push(format!("{} ended sessions readable again", v.resurrected));
    }
    if v.lost > 0 && args.loss_expected.is_none() {
        failures.push(format!("{} acknowledged writes lost", v.lost));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} / {fault}: {}", args.label, failures.join("; ")))
    }
}
