//! Idle and absolute expiry, remember-me, touch throttling, and the clock.
//!
//! Every session has two deadlines, both kept in the record and enforced on
//! the server (S19, S20); the cookie's own `Expires` is never trusted:
//!
//! * the **idle deadline** moves forward with activity: `last_seen +
//!   idle_timeout` (default 30 minutes);
//! * the **absolute deadline** is fixed at creation: `created_at +
//!   absolute_timeout` (default 12 hours). Activity never extends it.
//!
//! A session is live while `now` is before both. Remember-me sessions use a
//! longer pair of timeouts, stored in the record, and a persistent cookie.
//! To spare the store a write on every read, the idle deadline is pushed
//! forward at most once per [`Expiry::touch_interval`] (default 60 s).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// From milliseconds since the Unix epoch.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The current wall-clock time.
    #[must_use]
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// `self + d`, saturating.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_millis(d)))
    }

    /// `self - d`, saturating at the epoch.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_millis(d)))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// As a [`SystemTime`].
    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// RFC 3339 in UTC with millisecond precision, e.g.
    /// `2026-11-21T10:00:00.000Z`.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        let secs = self.0 / 1000;
        let ms = self.0 % 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Howard Hinnant's algorithm, restricted to dates after the epoch.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Self(t.duration_since(UNIX_EPOCH).map_or(0, duration_millis))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where the session layer reads the time. Tests swap in a [`MockClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use mock_clock::MockClock;

/// The test clock (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
mod mock_clock {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::{Clock, Timestamp, duration_millis};

    /// A clock that moves only when told to; for tests of expiry.
    ///
    /// ```
    /// use cloakroom::{Clock, MockClock};
    /// use std::time::Duration;
    ///
    /// let clock = MockClock::new();
    /// let before = clock.now();
    /// clock.advance(Duration::from_secs(31 * 60));
    /// assert_eq!(clock.now().since(before), Duration::from_secs(31 * 60));
    /// ```
    #[derive(Debug, Clone)]
    pub struct MockClock(Arc<AtomicU64>);

    impl MockClock {
        /// A mock clock starting at the current wall-clock time.
        #[must_use]
        pub fn new() -> Self {
            Self(Arc::new(AtomicU64::new(Timestamp::now().as_millis())))
        }

        /// Moves the clock forward.
        pub fn advance(&self, d: Duration) {
            self.0.fetch_add(duration_millis(d), Ordering::SeqCst);
        }
    }

    impl Default for MockClock {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Clock for MockClock {
        fn now(&self) -> Timestamp {
            Timestamp(self.0.load(Ordering::SeqCst))
        }
    }
}

/// Browsers cap cookie lifetimes at 400 days (RFC 6265bis §5.5); so do we.
pub const MAX_COOKIE_AGE: Duration = Duration::from_secs(400 * 24 * 3600);

/// Expiry policy: the timeouts for ordinary and remember-me sessions and how
/// often activity is written back.
///
/// ```
/// use cloakroom::Expiry;
/// use std::time::Duration;
///
/// let expiry = Expiry::default()
///     .with_idle_timeout(Duration::from_secs(15 * 60))
///     .with_absolute_timeout(Duration::from_secs(8 * 3600));
/// assert_eq!(expiry.idle_timeout(), Duration::from_secs(900));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    idle_timeout: Duration,
    absolute_timeout: Duration,
    remember_idle_timeout: Duration,
    remember_absolute_timeout: Duration,
    touch_interval: Duration,
    renewal: Option<(Duration, Duration)>,
}

impl Default for Expiry {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            remember_idle_timeout: Duration::from_secs(14 * 24 * 3600),
            remember_absolute_timeout: Duration::from_secs(30 * 24 * 3600),
            touch_interval: Duration::from_secs(60),
            renewal: None,
        }
    }
}

impl Expiry {
    /// Moves a server-side session to a new ID once its ID is `interval`
    /// old (S21; off by default), on the next request that uses it. The
    /// old ID keeps working for `grace` afterwards, naming the same
    /// session, so that requests already on their way with it (other tabs,
    /// parallel fetches) are not signed out; after that it is unknown.
    /// A write still in flight through the old ID when the ID moves is
    /// dropped, as for any rotation (S28). Client-side sessions ignore it
    /// (every response re-seals them under a fresh nonce).
    #[must_use]
    pub fn with_renewal(mut self, interval: Duration, grace: Duration) -> Self {
        self.renewal = Some((interval, grace));
        self
    }

    /// The renewal interval and grace, if renewal is on.
    #[must_use]
    pub fn renewal(&self) -> Option<(Duration, Duration)> {
        self.renewal
    }

    /// Idle timeout of ordinary sessions (default 30 minutes).
    #[must_use]
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Absolute timeout of ordinary sessions (default 12 hours).
    #[must_use]
    pub fn with_absolute_timeout(mut self, d: Duration) -> Self {
        self.absolute_timeout = d;
        self
    }

    /// Idle and absolute timeouts of remember-me sessions (defaults 14 and
    /// 30 days). The absolute timeout is capped at 400 days, the longest a
    /// browser keeps a cookie.
    #[must_use]
    pub fn with_remember_me(mut self, idle: Duration, absolute: Duration) -> Self {
        self.remember_idle_timeout = idle;
        self.remember_absolute_timeout = absolute.min(MAX_COOKIE_AGE);
        self
    }

    /// How stale `last_seen` may get before a read-only request writes the
    /// new idle deadline back (default 60 s). Zero touches on every request.
    #[must_use]
    pub fn with_touch_interval(mut self, d: Duration) -> Self {
        self.touch_interval = d;
        self
    }

    /// Idle timeout of ordinary sessions.
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Absolute timeout of ordinary sessions.
    #[must_use]
    pub fn absolute_timeout(&self) -> Duration {
        self.absolute_timeout
    }

    /// Touch interval.
    #[must_use]
    pub fn touch_interval(&self) -> Duration {
        self.touch_interval
    }

    /// `(idle, absolute)` for a session, by whether it is remember-me.
    #[must_use]
    pub fn timeouts(&self, remember_me: bool) -> (Duration, Duration) {
        if remember_me {
            (self.remember_idle_timeout, self.remember_absolute_timeout)
        } else {
            (self.idle_timeout, self.absolute_timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(
            Timestamp::from_millis(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(1_795_000_000_123).to_rfc3339(),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(
            Timestamp::from_millis(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
