//! Demo app processes on loopback: started, killed, paused and restarted
//! by the harness, each on its own port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// One demo process.
#[derive(Debug)]
pub struct Instance {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    bin: PathBuf,
    store: String,
    log: PathBuf,
}

/// A free TCP port on loopback.
///
/// # Errors
///
/// If no port can be bound.
pub fn spare_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Instance {
    /// Starts `bin serve --store STORE` on a spare port, logging to
    /// `dir/demo-NAME.log`, and waits until `/healthz` answers.
    ///
    /// # Errors
    ///
    /// If it cannot be started or does not answer within 30 s.
    pub async fn start(bin: &Path, store: &str, dir: &Path, name: &str) -> Result<Self, String> {
        let mut me = Self {
            port: spare_port()?,
            child: None,
            bin: bin.to_owned(),
            store: store.to_owned(),
            log: dir.join(format!("demo-{name}.log")),
        };
        me.spawn().await?;
        Ok(me)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// (Re)starts the process on its port and waits for `/healthz`.
    ///
    /// # Errors
    ///
    /// If it cannot be started or does not answer within 30 s.
    pub async fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .args(["serve", "--addr", &format!("127.0.0.1:{}", self.port)])
            .args(["--store", &self.store])
            .env("RUST_LOG", "warn")
            .env_remove("CLOAKROOM_STORE")
            .env_remove("CLOAKROOM_ADDR")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if healthy(self.port).await {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!(
                    "demo exited ({status}) at start; see {}",
                    self.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "demo on port {} did not answer /healthz within 30 s; see {}",
            self.port,
            self.log.display()
        ))
    }

    /// SIGKILL, and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to this process only.
    ///
    /// # Errors
    ///
    /// If it is not running or `kill` fails.
    pub async fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.pid().ok_or("the demo is not running")?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .await
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {pid} failed"))
        }
    }

    /// Whether the process has exited by itself (a crash).
    pub fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Whether its log shows a panic (a caught one included: a handler
    /// that panicked is a bug even if the process lived on).
    pub fn panicked(&self) -> bool {
        std::fs::read(&self.log)
            .is_ok_and(|bytes| bytes.windows(b"panicked".len()).any(|w| w == b"panicked"))
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// Whether `GET /healthz` on `port` answers 200 within a second.
pub async fn healthy(port: u16) -> bool {
    let Ok(http) = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
    else {
        return false;
    };
    http.get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Runs `cmd` with `sh -c`, bounded by `limit`.
///
/// # Errors
///
/// If it fails, exits non-zero or runs over.
pub async fn shell(cmd: &str, limit: Duration) -> Result<(), String> {
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{cmd}: {e}"))?;
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!("`{cmd}` exited with {s}")),
        Ok(Err(e)) => Err(format!("`{cmd}`: {e}")),
        Err(_) => Err(format!("`{cmd}` ran over {limit:?}")),
    }
}
