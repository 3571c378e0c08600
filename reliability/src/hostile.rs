//! `reliability hostile`: bad input against one demo instance. Malformed,
//! duplicated, oversized and non-ASCII cookies; oversized, deeply nested
//! and malformed bodies; raw garbage; slow clients. Throughout, the demo
//! must stay up, never answer 500, and a signed-in session made before the
//! attack must keep its data and its user.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{Counters, Demo};
use crate::instances::Instance;
use crate::rng::Rng;

/// Options of `reliability hostile`.
#[derive(Debug, Clone, Args)]
pub struct HostileArgs {
    /// The demo binary.
    #[arg(long)]
    pub demo_bin: PathBuf,
    /// The demo's store.
    #[arg(long, default_value = "memory:")]
    pub store: String,
    /// Random cookie headers and random bodies to send (each).
    #[arg(long, default_value_t = 2000)]
    pub rounds: usize,
    /// Slow connections held open at once.
    #[arg(long, default_value_t = 64)]
    pub slow_clients: usize,
    /// Seconds the slow clients dribble.
    #[arg(long, default_value_t = 5.0)]
    pub slow_seconds: f64,
    /// Directory for the demo log.
    #[arg(long, default_value = "target/reliability")]
    pub work_dir: PathBuf,
}

struct Tally {
    statuses: BTreeMap<String, u64>,
    failures: Vec<String>,
}

impl Tally {
    fn note(&mut self, what: &str, status: Option<u16>) {
        let key = status.map_or_else(|| "no answer".to_owned(), |s| s.to_string());
        *self.statuses.entry(key).or_default() += 1;
        if status == Some(500) && self.failures.len() < 20 {
            self.failures.push(format!("{what}: 500"));
        }
    }
}

/// Runs every attack; fails if the demo died, answered 500, or the kept
/// session changed.
///
/// # Errors
///
/// What went wrong.
pub async fn run(args: &HostileArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.work_dir).map_err(|e| e.to_string())?;
    let mut inst = Instance::start(&args.demo_bin, &args.store, &args.work_dir, "hostile").await?;
    let demo = Demo::new(
        vec![inst.base()],
        Duration::from_secs(10),
        Counters::default().into(),
    )?;
    let port = inst.port;
    let mut rng = Rng::new()?;
    let user = format!("h{}", rng.tag());
    let creds = json!({"username": user, "password": "hostile-harness"});
    demo.send(0, Method::POST, "/api/register", None, Some(&creds))
        .await;
    let login = demo
        .send(0, Method::POST, "/api/login", None, Some(&creds))
        .await;
    let cookie = login
        .new_cookie
        .ok_or("could not sign in before the attack")?;
    let kept = json!({"precious": "data ✓", "n": [1, 2, 3]});
    if !demo
        .send(0, Method::PUT, "/api/data/kept", Some(&cookie), Some(&kept))
        .await
        .is(204)
    {
        return Err("could not write the kept value".into());
    }
    let mut t = Tally {
        statuses: BTreeMap::new(),
        failures: Vec::new(),
    };
    let started = Instant::now();
    let mut sent = 0u64;

    // Cookies: fixed shapes, then random ones.
    let big = "a".repeat(8 * 1024);
    let huge = "a".repeat(200 * 1024);
    let many: String = (0..1000).map(|i| format!("c{i}=v; ")).collect();
    let fixed: Vec<Vec<u8>> = vec![
        b"id=".to_vec(),
        b"id".to_vec(),
        b"=;;;=".to_vec(),
        b";;;;".to_vec(),
        format!("id={cookie}; id={cookie}").into_bytes(),
        format!("id=garbage; id={cookie}").into_bytes(),
        format!("id={cookie}; id=garbage").into_bytes(),
        format!("id={cookie}x").into_bytes(),
        format!("id={}", &cookie[..cookie.len().saturating_sub(1)]).into_bytes(),
        format!("id=\"{cookie}\"").into_bytes(),
        format!("id= {cookie} ").into_bytes(),
        "id=ünïcödé✓".as_bytes().to_vec(),
        b"id=\xff\xfe\x80\x81".to_vec(),
        format!("id={big}").into_bytes(),
        format!("id={huge}").into_bytes(),
        format!("{many}id={cookie}").into_bytes(),
    ];
    for c in &fixed {
        for path in ["/api/data", "/api/me"] {
            t.note("cookie", raw_get(port, path, &[c.as_slice()]).await);
            sent += 1;
        }
    }
    // The same cookie twice, in two headers.
    let two = [format!("id={cookie}").into_bytes(), b"id=other".to_vec()];
    t.note(
        "two cookie headers",
        raw_get(port, "/api/data", &[&two[0], &two[1]]).await,
    );
    sent += 1;
    for _ in 0..args.rounds {
        let len = rng.below(120);
        let bytes: Vec<u8> = (0..len).map(|_| random_header_byte(&mut rng)).collect();
        let mut c = b"id=".to_vec();
        c.extend_from_slice(&bytes);
        t.note("random cookie", raw_get(port, "/api/data", &[&c]).await);
        sent += 1;
    }
    check_kept(&demo, &cookie, &kept, &mut inst, "cookies").await?;

    // Bodies.
    let nested_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let nested_150 = format!("{}1{}", "[".repeat(150), "]".repeat(150));
    let nested_60 = format!("{}1{}", "[".repeat(60), "]".repeat(60));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", vec![b'"'; 70 * 1024]),
        (
            "application/json",
            format!("\"{}\"", "x".repeat(10 << 20)).into_bytes(),
        ),
        ("application/json", nested_deep.into_bytes()),
        ("application/json", nested_150.into_bytes()),
        ("application/json", nested_60.into_bytes()),
        ("application/json", b"{\"a\":".to_vec()),
        ("application/json", b"\xff\xfe\xfd".to_vec()),
        ("application/json", b"".to_vec()),
        ("text/plain", b"1".to_vec()),
        ("application/json; charset=utf-16", b"1".to_vec()),
        (
            "application/json",
            b"{\"\xc3\xa9\":\"\xe2\x9c\x93\"}".to_vec(),
        ),
    ];
    for (ct, body) in &bodies {
        for (method, target, with_cookie) in [
            ("PUT", "/api/data/evil", true),
            ("POST", "/api/login", false),
            ("POST", "/api/register", false),
        ] {
            let ck = with_cookie.then_some(cookie.as_str());
            t.note(target, raw_body(port, method, target, ck, ct, body).await);
            sent += 1;
        }
    }
    for _ in 0..args.rounds {
        let len = rng.below(300);
        const ALPHABET: &[u8] = b"{}[]\":,0123456789.eE+-truefalsn \\u\xc3\xa9x";
        let body: Vec<u8> = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        t.note(
            "random body",
            raw_body(
                port,
                "PUT",
                "/api/data/fuzz",
                None,
                "application/json",
                &body,
            )
            .await,
        );
        sent += 1;
    }
    // Keys in the path: long, non-ASCII, encoded.
    for key in [
        "%00",
        "%ff%fe",
        "%E2%9C%93",
        &"k".repeat(4000),
        "..%2F..%2Fetc",
        "a%20b",
    ] {
        let path = format!("/api/data/{key}");
        t.note(
            "key",
            raw_body(port, "PUT", &path, Some(&cookie), "application/json", b"1").await,
        );
        sent += 1;
    }
    check_kept(&demo, &cookie, &kept, &mut inst, "bodies").await?;

    // Raw garbage on the socket.
    for g in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\x03",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /api/data HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    ] {
        t.note("garbage", raw(port, g, Duration::from_secs(2)).await);
        sent += 1;
    }

    // Slow clients: headers dribbled a byte at a time, and a body that
    // never finishes, while a normal client must still be served.
    let slow = slow_clients(
        port,
        args.slow_clients,
        Duration::from_secs_f64(args.slow_seconds),
    );
    let served = async {
        let until = Instant::now() + Duration::from_secs_f64(args.slow_seconds);
        let mut worst = Duration::ZERO;
        let mut ok = 0u64;
        while Instant::now() < until {
            let t0 = Instant::now();
            if demo
                .send(0, Method::GET, "/api/data", Some(&cookie), None)
                .await
                .is(200)
            {
                ok += 1;
            }
            worst = worst.max(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (ok, worst)
    };
    let ((), (ok, worst)) = tokio::join!(slow, served);
    if ok == 0 || worst > Duration::from_secs(3) {
        t.failures.push(format!(
            "during the slow clients: {ok} requests served, slowest {worst:?}"
        ));
    }
    check_kept(&demo, &cookie, &kept, &mut inst, "slow clients").await?;
    println!(
        "hostile: {sent} hostile requests and {} slow clients in {:.1} s; answers {:?}; normal requests during the slow clients: {ok}, slowest {:.0} ms; the demo stayed up and the kept session kept its data",
        args.slow_clients,
        started.elapsed().as_secs_f64(),
        t.statuses,
        worst.as_secs_f64() * 1000.0
    );
    inst.kill().await;
    if t.failures.is_empty() {
        Ok(())
    } else {
        Err(t.failures.join("; "))
    }
}

fn random_header_byte(rng: &mut Rng) -> u8 {
    // Visible ASCII, space, tab, and obs-text (0x80-0xff); no CR, LF or NUL,
    // which no client library would send.
    loop {
        let b = u8::try_from(rng.below(256)).unwrap_or(b'a');
        if b == b'\t' || b >= 0x20 && b != 0x7f {
            return b;
        }
    }
}

async fn check_kept(
    demo: &Demo,
    cookie: &str,
    kept: &serde_json::Value,
    inst: &mut Instance,
    after: &str,
) -> Result<(), String> {
    if let Some(status) = inst.exited() {
        return Err(format!(
            "the demo died during the {after} ({status}); see {}",
            inst.log().display()
        ));
    }
    if inst.panicked() {
        return Err(format!(
            "the demo panicked during the {after}; see {}",
            inst.log().display()
        ));
    }
    let r = demo
        .send(0, Method::GET, "/api/data", Some(cookie), None)
        .await;
    let data = r.json().unwrap_or_default();
    if data.get("kept") != Some(kept) {
        return Err(format!(
            "after the {after}: the kept session reads {data} ({:?})",
            r.status
        ));
    }
    if !demo
        .send(0, Method::GET, "/api/me", Some(cookie), None)
        .await
        .is(200)
    {
        return Err(format!(
            "after the {after}: the kept session is no longer signed in"
        ));
    }
    Ok(())
}

async fn raw_get(port: u16, path: &str, cookies: &[&[u8]]) -> Option<u16> {
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    for c in cookies {
        req.extend_from_slice(b"Cookie: ");
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    raw(port, &req, Duration::from_secs(5)).await
}

async fn raw_body(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    ct: &str,
    body: &[u8],
) -> Option<u16> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(c) = cookie {
        req.extend_from_slice(format!("Cookie: id={c}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    raw(port, &req, Duration::from_secs(10)).await
}

/// Writes `bytes` (ignoring a reset once the server has answered) and
/// reads the status line; `None` if none came.
async fn raw(port: u16, bytes: &[u8], limit: Duration) -> Option<u16> {
    let work = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        // The server may answer 413 and close before the body is sent.
        let _ = s.write_all(bytes).await;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        let line = buf.split(|&b| b == b'\n').next()?;
        let text = std::str::from_utf8(line).ok()?;
        text.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(limit, work).await.ok().flatten()
}

async fn slow_clients(port: u16, n: usize, total: Duration) {
    let mut tasks = Vec::new();
    for i in 0..n {
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else { return };
            let start = Instant::now();
            let head: &[u8] = if i % 2 == 0 {
                b"GET /api/data HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: id=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            } else {
                b"PUT /api/data/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[1,"
            };
            for b in head.iter() {
                if start.elapsed() > total || s.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(total.saturating_sub(start.elapsed())).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
