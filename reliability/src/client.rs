//! One HTTP request to a demo instance, with a bounded time, reduced to
//! what the history needs: the status (or none, for a transport error),
//! the new session cookie if one was set, and the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};

/// The demo's cookie name on plain HTTP.
pub const COOKIE_NAME: &str = "id";

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status, or `None` if no answer came (refused, reset, timed out).
    pub status: Option<StatusCode>,
    /// The value of a `Set-Cookie: id=…` that sets a session (not one that
    /// clears it).
    pub new_cookie: Option<String>,
    /// The body (empty without an answer).
    pub body: Vec<u8>,
}

impl Reply {
    /// Whether the status is `code`.
    pub fn is(&self, code: u16) -> bool {
        self.status.map(|s| s.as_u16()) == Some(code)
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Request counters shared by every task of a run.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Answered 2xx.
    pub acknowledged: AtomicU64,
    /// Answered 503 (the store-failure response).
    pub unavailable: AtomicU64,
    /// No answer at all.
    pub no_answer: AtomicU64,
}

impl Counters {
    fn count(&self, reply: &Reply) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        match reply.status {
            Some(s) if s.is_success() => {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Some(StatusCode::SERVICE_UNAVAILABLE) => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {}
            None => {
                self.no_answer.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `(sent, acknowledged, unavailable, no_answer)` now.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.acknowledged.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
            self.no_answer.load(Ordering::Relaxed),
        )
    }
}

/// A client for the demo instances of one run.
#[derive(Debug, Clone)]
pub struct Demo {
    http: Client,
    /// `http://127.0.0.1:PORT` of each instance.
    pub bases: Arc<Vec<String>>,
    counters: Arc<Counters>,
}

impl Demo {
    /// A client for `bases`, each request bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// If the HTTP client cannot be built.
    pub fn new(
        bases: Vec<String>,
        timeout: Duration,
        counters: Arc<Counters>,
    ) -> Result<Self, String> {
        let http = Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            bases: Arc::new(bases),
            counters,
        })
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sends `method path` to instance `instance` (modulo the count), with
    /// the session `cookie` and a JSON `body`; counted.
    pub async fn send(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Reply {
        let reply = self
            .send_uncounted(instance, method, path, cookie, body)
            .await;
        self.counters.count(&reply);
        reply
    }

    /// As [`Demo::send`], not counted (for probes and the final check).
    pub async fn send_uncounted(
        &self,
        instance: usize,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Reply {
        let base = &self.bases[instance % self.bases.len()];
        // What a browser sends on the demo page's own fetches: the demo's
        // CSRF layer refuses a cookie-bearing write with no Fetch Metadata
        // and no token.
        let mut req = self
            .http
            .request(method, format!("{base}{path}"))
            .header("sec-fetch-site", "same-origin");
        if let Some(c) = cookie {
            req = req.header(reqwest::header::COOKIE, format!("{COOKIE_NAME}={c}"));
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let Ok(res) = req.send().await else {
            return Reply {
                status: None,
                new_cookie: None,
                body: Vec::new(),
            };
        };
        let status = res.status();
        let new_cookie = res
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session_cookie_value);
        match res.bytes().await {
            Ok(body) => Reply {
                status: Some(status),
                new_cookie,
                body: body.to_vec(),
            },
            // The body did not arrive whole: not an answer.
            Err(_) => Reply {
                status: None,
                new_cookie: None,
                body: Vec::new(),
            },
        }
    }
}

/// The value a `Set-Cookie` header sets for the session cookie, unless it
/// clears it (empty value or `Max-Age=0`).
pub fn session_cookie_value(set_cookie: &str) -> Option<String> {
    let mut parts = set_cookie.split(';').map(str::trim);
    let (name, value) = parts.next()?.split_once('=')?;
    if name != COOKIE_NAME || value.is_empty() {
        return None;
    }
    let clears = parts.any(|p| p.eq_ignore_ascii_case("max-age=0"));
    (!clears).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_values() {
        assert_eq!(
            session_cookie_value("id=abc; Path=/; HttpOnly").as_deref(),
            Some("abc")
        );
        assert_eq!(session_cookie_value("id=; Path=/; Max-Age=0"), None);
        assert_eq!(session_cookie_value("id=abc; Max-Age=0"), None);
        assert_eq!(session_cookie_value("other=abc"), None);
        assert_eq!(session_cookie_value("garbage"), None);
    }
}
