//! The decision logic both backends share: what a failure does to a
//! counter, and how long a counter makes a client wait. The Redis script
//! (`throttle.lua`) is a line-by-line transcription of [`Rule::record`]
//! and [`Rule::wait`]; the property test in `tests/throttle.rs` holds the
//! two to the same answers.

use std::time::Duration;

/// Largest doubling exponent: `base * 2^40` is far past any sensible cap,
/// and it keeps the Lua arithmetic (doubles) exact.
const MAX_DOUBLINGS: u32 = 40;

/// How failures counted under one key turn into waiting.
///
/// A counter lives for one fixed `window` from its first failure, then
/// starts again from zero: no rule locks anyone out for longer than its
/// window (S53: lockout-DoS aware, never permanent). Within a window the
/// first `free` failures cost nothing; after that, each attempt must wait
/// `base * 2^(failures - free)` after the latest failure, capped at `cap`
/// and never past the window's end.
///
/// ```
/// use cloakroom::rate_limit::Rule;
/// use std::time::Duration;
///
/// // 5 free failures, then 1 s, 2 s, 4 s, ... at most 15 min, per hour.
/// let rule = Rule::backoff(5, Duration::from_secs(1), Duration::from_secs(900))
///     .with_window(Duration::from_secs(3600));
/// assert_eq!(rule.free(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    free: u32,
    base_ms: u64,
    cap_ms: u64,
    window_ms: u64,
}

impl Rule {
    /// `free` failures, then exponential backoff from `base` up to `cap`,
    /// over a window of one hour (see [`with_window`](Self::with_window)).
    #[must_use]
    pub fn backoff(free: u32, base: Duration, cap: Duration) -> Self {
        Self {
            free,
            base_ms: millis(base).max(1),
            cap_ms: millis(cap).max(1),
            window_ms: 3_600_000,
        }
    }

    /// At most `limit` failures per `window`; after that every attempt
    /// waits for the window's end.
    #[must_use]
    pub fn cap(limit: u32, window: Duration) -> Self {
        let window_ms = millis(window).max(1);
        Self {
            free: limit,
            base_ms: window_ms,
            cap_ms: window_ms,
            window_ms,
        }
    }

    /// Sets how long a counter lives from its first failure (at least
    /// 1 ms).
    #[must_use]
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window_ms = millis(window).max(1);
        self
    }

    /// Failures admitted before any waiting.
    #[must_use]
    pub fn free(&self) -> u32 {
        self.free
    }

    /// How long a counter lives from its first failure.
    #[must_use]
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// The four numbers the Redis script reads for this rule, in its
    /// order: free, base, cap, window (milliseconds).
    pub(crate) fn script_args(&self) -> [u64; 4] {
        [
            u64::from(self.free),
            self.base_ms,
            self.cap_ms,
            self.window_ms,
        ]
    }

    /// `counter` as it stands at `now`: a counter whose window has passed
    /// counts as a fresh one.
    fn current(&self, counter: Option<Counter>, now: u64) -> Option<Counter> {
        counter.filter(|c| now < c.start.saturating_add(self.window_ms))
    }

    /// The counter after one more failure at `now`.
    pub(crate) fn record(&self, counter: Option<Counter>, now: u64) -> Counter {
        match self.current(counter, now) {
            Some(c) => Counter {
                failures: c.failures.saturating_add(1),
                start: c.start,
                last: now,
            },
            None => Counter {
                failures: 1,
                start: now,
                last: now,
            },
        }
    }

    /// How many milliseconds an attempt at `now` must still wait (0: it is
    /// admitted).
    pub(crate) fn wait(&self, counter: Option<Counter>, now: u64) -> u64 {
        let Some(c) = self.current(counter, now) else {
            return 0;
        };
        if c.failures < self.free {
            return 0;
        }
        let doublings = (c.failures - self.free).min(MAX_DOUBLINGS);
        let delay = self
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.cap_ms);
        let until = c
            .last
            .saturating_add(delay)
            .min(c.start.saturating_add(self.window_ms));
        until.saturating_sub(now)
    }

    /// When a counter started at `start` is forgotten.
    pub(crate) fn expires_at(&self, start: u64) -> u64 {
        start.saturating_add(self.window_ms)
    }
}

/// One key's failures in its current window (times in Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counter {
    pub(crate) failures: u32,
    pub(crate) start: u64,
    pub(crate) last: u64,
}

/// The rules of a [`LoginThrottle`](super::LoginThrottle): one per scope,
/// each optional.
///
/// The defaults ([`Policy::login`]):
///
/// * **account + client**: 5 free failures, then 1 s doubling up to 15 min,
///   counters kept for an hour. This is what a single guesser meets.
/// * **account**: at most 100 failures per hour, from all clients together
///   (NIST SP 800-63B §5.2.2), then the account waits for the hour's end:
///   never longer, so an attacker can hold an account at most an hour per
///   100 guesses, and every one of them also counts against the attacker's
///   own account+client and client counters.
/// * **client** (an IPv4 address or an IPv6 /64): at most 300 failures per
///   hour over all accounts (password spraying).
///
/// A success resets the account+client counter only: a correct password
/// from one client says nothing about guesses from others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub(crate) pair: Option<Rule>,
    pub(crate) account: Option<Rule>,
    pub(crate) client: Option<Rule>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::login()
    }
}

impl Policy {
    /// The login defaults described on [`Policy`].
    #[must_use]
    pub fn login() -> Self {
        let hour = Duration::from_secs(3600);
        Self {
            pair: Some(
                Rule::backoff(5, Duration::from_secs(1), Duration::from_secs(15 * 60))
                    .with_window(hour),
            ),
            account: Some(Rule::cap(100, hour)),
            client: Some(Rule::cap(300, hour)),
        }
    }

    /// Per client only: for endpoints where the account is not the point,
    /// such as registration (whose "username taken" answers reveal which
    /// accounts exist). Default for registration: 20 attempts per client
    /// per hour, counted with [`record_failure`](super::LoginThrottle::record_failure)
    /// on every attempt.
    #[must_use]
    pub fn per_client(rule: Rule) -> Self {
        Self {
            pair: None,
            account: None,
            client: Some(rule),
        }
    }

    /// The registration default: [`per_client`](Self::per_client) with 20
    /// attempts per hour.
    #[must_use]
    pub fn registration() -> Self {
        Self::per_client(Rule::cap(20, Duration::from_secs(3600)))
    }

    /// Sets (or, with `None`, switches off) the account+client rule.
    #[must_use]
    pub fn with_account_client(mut self, rule: Option<Rule>) -> Self {
        self.pair = rule;
        self
    }

    /// Sets (or switches off) the per-account rule.
    #[must_use]
    pub fn with_account(mut self, rule: Option<Rule>) -> Self {
        self.account = rule;
        self
    }

    /// Sets (or switches off) the per-client rule.
    #[must_use]
    pub fn with_client(mut self, rule: Option<Rule>) -> Self {
        self.client = rule;
        self
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped_by_cap_and_window() {
        let rule = Rule::backoff(2, Duration::from_millis(100), Duration::from_millis(1000))
            .with_window(Duration::from_millis(10_000));
        let mut c = None;
        let mut waits = Vec::new();
        for t in 0..8 {
            c = Some(rule.record(c, t));
            waits.push(rule.wait(c, t));
        }
        assert_eq!(waits, [0, 100, 200, 400, 800, 1000, 1000, 1000]);
        // Never past the window's end, then forgotten.
        let late = Some(Counter {
            failures: 50,
            start: 0,
            last: 9_900,
        });
        assert_eq!(rule.wait(late, 9_950), 50);
        assert_eq!(rule.wait(late, 10_000), 0);
        assert_eq!(rule.record(late, 10_000).failures, 1);
    }

    #[test]
    fn cap_waits_for_the_window_end() {
        let rule = Rule::cap(3, Duration::from_millis(1000));
        let mut c = None;
        for t in 0..3 {
            assert_eq!(rule.wait(c, t), 0);
            c = Some(rule.record(c, t));
        }
        assert_eq!(rule.wait(c, 500), 500);
        assert_eq!(rule.wait(c, 1000), 0);
    }

    #[test]
    fn huge_counts_saturate() {
        let rule = Rule::backoff(0, Duration::from_secs(1), Duration::from_secs(60));
        let c = Some(Counter {
            failures: u32::MAX,
            start: 0,
            last: 0,
        });
        assert_eq!(rule.wait(c, 0), 60_000);
        assert_eq!(rule.record(c, 1).failures, u32::MAX);
    }
}
