//! The history of one run and its check.
//!
//! Every request the load generator sends is recorded as acknowledged (the
//! demo answered the status that means done) or not (an error status, a
//! timeout, a refused connection: it may or may not have taken effect).
//! Sessions are named by their cookie value. The check afterwards:
//!
//! * **lost**: an acknowledged write that is not readable, with its value,
//!   in a session that was not acknowledged as ended afterwards;
//! * **resurrected**: a session acknowledged as ended whose data (or user)
//!   is readable again.
//!
//! A session whose ending was sent but not acknowledged is *uncertain*: it
//! may or may not have ended, so neither rule applies to it; it is counted.

use std::collections::BTreeMap;

use serde_json::Value;

/// What is known of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Acknowledged as started (a login, or a new anonymous session the
    /// demo issued in answer to a write), not acknowledged as ended.
    Live,
    /// An ending (logout, logout-everywhere) was acknowledged.
    Ended,
    /// An ending was sent but not acknowledged: it may have happened.
    Uncertain,
}

/// One session's record in the history.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// The user that owns it (each load worker has one at a time).
    pub owner: usize,
    /// Whether it was signed in (a login) rather than anonymous.
    pub signed_in: bool,
    /// Acknowledged writes: key to value.
    pub writes: BTreeMap<String, String>,
    /// What is known of its end.
    pub state: SessionState,
}

/// Everything the load generator learned, by session cookie.
#[derive(Debug, Default)]
pub struct History {
    sessions: BTreeMap<String, SessionEntry>,
}

impl History {
    /// A new session, acknowledged as started.
    pub fn started(&mut self, cookie: &str, owner: usize, signed_in: bool) {
        self.sessions
            .entry(cookie.to_owned())
            .or_insert(SessionEntry {
                owner,
                signed_in,
                writes: BTreeMap::new(),
                state: SessionState::Live,
            });
    }

    /// An acknowledged write of `value` under `key` in `cookie`'s session.
    pub fn wrote(&mut self, cookie: &str, owner: usize, key: &str, value: &str) {
        self.started(cookie, owner, false);
        if let Some(s) = self.sessions.get_mut(cookie) {
            s.writes.insert(key.to_owned(), value.to_owned());
        }
    }

    /// `cookie`'s session was ended (`acknowledged`) or may have been.
    pub fn ended(&mut self, cookie: &str, acknowledged: bool) {
        if let Some(s) = self.sessions.get_mut(cookie) {
            s.state = end_state(&s.state, acknowledged);
        }
    }

    /// Every signed-in session of user `owner` was ended (or may have
    /// been): logout-everywhere.
    pub fn ended_all_of(&mut self, owner: usize, acknowledged: bool) {
        for s in self.sessions.values_mut() {
            if s.owner == owner && s.signed_in {
                s.state = end_state(&s.state, acknowledged);
            }
        }
    }

    /// The sessions, by cookie.
    pub fn sessions(&self) -> &BTreeMap<String, SessionEntry> {
        &self.sessions
    }
}

fn end_state(now: &SessionState, acknowledged: bool) -> SessionState {
    match (now, acknowledged) {
        (_, true) | (SessionState::Ended, false) => SessionState::Ended,
        (_, false) => SessionState::Uncertain,
    }
}

/// What a read of one session at the end of the run showed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `GET /api/data`: the session's values (an empty object for an
    /// unknown session).
    pub data: serde_json::Map<String, Value>,
    /// `GET /api/me` answered 200: the session is signed in.
    pub signed_in: bool,
}

/// The check's result.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Acknowledged writes checked (in sessions not ended).
    pub writes_checked: u64,
    /// Acknowledged writes missing or changed.
    pub lost: u64,
    /// Sessions that held at least one lost write.
    pub sessions_losing: u64,
    /// Sessions acknowledged as ended.
    pub ended_checked: u64,
    /// Of those, readable again (data or user).
    pub resurrected: u64,
    /// Sessions whose ending is uncertain (not checked).
    pub uncertain: u64,
}

/// Checks one session's entry against what was read back.
pub fn check_session(entry: &SessionEntry, seen: &Observed, verdict: &mut Verdict) {
    match entry.state {
        SessionState::Uncertain => verdict.uncertain += 1,
        SessionState::Ended => {
            verdict.ended_checked += 1;
            if seen.signed_in || !seen.data.is_empty() {
                verdict.resurrected += 1;
            }
        }
        SessionState::Live => {
            let mut lost_here = 0;
            for (key, value) in &entry.writes {
                verdict.writes_checked += 1;
                if seen.data.get(key).and_then(Value::as_str) != Some(value.as_str()) {
                    lost_here += 1;
                }
            }
            if lost_here > 0 {
                verdict.lost += lost_here;
                verdict.sessions_losing += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observed(data: Value, signed_in: bool) -> Observed {
        let Value::Object(data) = data else {
            panic!("test data must be an object")
        };
        Observed { data, signed_in }
    }

    fn verdict_of(h: &History, cookie: &str, seen: &Observed) -> Verdict {
        let mut v = Verdict::default();
        check_session(&h.sessions()[cookie], seen, &mut v);
        v
    }

    #[test]
    fn acknowledged_writes_must_be_read_back() {
        let mut h = History::default();
        h.started("a", 0, true);
        h.wrote("a", 0, "k1", "v1");
        h.wrote("a", 0, "k2", "v2");
        let all = verdict_of(&h, "a", &observed(json!({"k1": "v1", "k2": "v2"}), true));
        assert_eq!((all.writes_checked, all.lost), (2, 0));
        let one_gone = verdict_of(&h, "a", &observed(json!({"k1": "v1"}), true));
        assert_eq!((one_gone.lost, one_gone.sessions_losing), (1, 1));
        let changed = verdict_of(&h, "a", &observed(json!({"k1": "v1", "k2": "x"}), true));
        assert_eq!(changed.lost, 1);
        // Extra keys (an unacknowledged write that did land) are fine.
        let extra = verdict_of(
            &h,
            "a",
            &observed(json!({"k1": "v1", "k2": "v2", "k3": "v3"}), true),
        );
        assert_eq!(extra.lost, 0);
    }

    #[test]
    fn ended_sessions_must_stay_ended() {
        let mut h = History::default();
        h.started("a", 0, true);
        h.wrote("a", 0, "k1", "v1");
        h.ended("a", true);
        let gone = verdict_of(&h, "a", &observed(json!({}), false));
        assert_eq!((gone.ended_checked, gone.resurrected, gone.lost), (1, 0, 0));
        let back = verdict_of(&h, "a", &observed(json!({"k1": "v1"}), false));
        assert_eq!(back.resurrected, 1);
        let user_back = verdict_of(&h, "a", &observed(json!({}), true));
        assert_eq!(user_back.resurrected, 1);
    }

    #[test]
    fn unacknowledged_endings_are_uncertain_and_not_checked() {
        let mut h = History::default();
        h.started("a", 0, true);
        h.wrote("a", 0, "k1", "v1");
        h.ended("a", false);
        let v = verdict_of(&h, "a", &observed(json!({}), false));
        assert_eq!((v.uncertain, v.lost, v.resurrected), (1, 0, 0));
        // A later acknowledged ending makes it certain.
        h.ended("a", true);
        assert_eq!(h.sessions()["a"].state, SessionState::Ended);
        // An unacknowledged one after an acknowledged one changes nothing.
        h.ended("a", false);
        assert_eq!(h.sessions()["a"].state, SessionState::Ended);
    }

    #[test]
    fn logout_everywhere_ends_only_that_users_signed_in_sessions() {
        let mut h = History::default();
        h.started("a", 0, true);
        h.started("b", 0, true);
        h.started("anon", 0, false);
        h.started("other", 1, true);
        h.ended_all_of(0, true);
        let s = h.sessions();
        assert_eq!(s["a"].state, SessionState::Ended);
        assert_eq!(s["b"].state, SessionState::Ended);
        assert_eq!(s["anon"].state, SessionState::Live);
        assert_eq!(s["other"].state, SessionState::Live);
    }
}
