//! The Lua scripts, one file each under `lua/`, and the positions of their
//! `KEYS` and `ARGV`, named once here.
//!
//! Conventions: times are Unix milliseconds as decimal strings, compared with
//! `tonumber` (exact: every value handed to Lua is below 2^53, see
//! [`kit::lua_millis`], except the exact idle deadline, which is only
//! stored). A field that is missing or not a number makes a session count as
//! dead. Single-server scripts may touch keys they compute from the prefix;
//! cluster ones touch only their `KEYS`.
//!
//! Each script's module names its positions `KEY_*` and `ARG_*` (1-based,
//! as Lua counts) and makes a [`Call`] that is filled by those names.

use std::sync::LazyLock;

use bytes::Bytes;
use redis::{Script, ScriptInvocation, ToRedisArgs};

use crate::id::StorageKey;
use crate::record::Record;
use crate::store::kit;

/// Helpers every script but `index_members` starts with: `is_live`,
/// `index_add`, `hash_fields`.
const LIB: &str = include_str!("lua/lib.lua");
/// `write(k, ik)`, shared by create, save and rotate: ARGV as in [`write`].
const WRITE: &str = include_str!("lua/write.lua");

/// A script made of `parts`, each starting on a line of its own.
fn assemble(parts: &[&str]) -> Script {
    let code: String = parts.iter().map(|p| format!("\n{p}")).collect();
    Script::new(&code)
}

/// A script's flag argument.
pub(super) fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// One script invocation, its `KEYS` and `ARGV` filled by position name.
pub(super) struct Call {
    script: &'static Script,
    argc: usize,
    keys: Vec<Option<Vec<u8>>>,
    argv: Vec<Option<Vec<u8>>>,
}

impl Call {
    fn new(script: &'static LazyLock<Script>, argc: usize) -> Self {
        Self {
            script: LazyLock::force(script),
            argc,
            keys: Vec::new(),
            argv: vec![None; argc],
        }
    }

    /// Sets `KEYS[pos]`.
    pub(super) fn key(&mut self, pos: usize, key: impl ToRedisArgs) -> &mut Self {
        put(&mut self.keys, pos, key);
        self
    }

    /// Sets `ARGV[pos]`.
    pub(super) fn arg(&mut self, pos: usize, value: impl ToRedisArgs) -> &mut Self {
        put(&mut self.argv, pos, value);
        self
    }

    /// `ARGV[pos]` as it will be sent.
    #[cfg(test)]
    pub(super) fn argv(&self, pos: usize) -> Option<&[u8]> {
        self.argv.get(pos.checked_sub(1)?)?.as_deref()
    }

    /// The invocation to send: keys and arguments in position order.
    pub(super) fn invocation(&self) -> ScriptInvocation<'static> {
        debug_assert!(
            self.argv.len() == self.argc && self.argv.iter().all(Option::is_some),
            "every ARGV position of the script is set"
        );
        debug_assert!(
            self.keys.iter().all(Option::is_some),
            "KEYS are set without gaps"
        );
        let mut inv = self.script.prepare_invoke();
        for k in self.keys.iter().flatten() {
            inv.key(k);
        }
        for a in self.argv.iter().flatten() {
            inv.arg(a);
        }
        inv
    }
}

/// Sets the 1-based slot `pos` to `value`, which is one argument.
fn put(slots: &mut Vec<Option<Vec<u8>>>, pos: usize, value: impl ToRedisArgs) {
    let index = pos.saturating_sub(1);
    if slots.len() <= index {
        slots.resize(index + 1, None);
    }
    slots[index] = Some(value.to_redis_args().concat());
}

/// The `ARGV` of `write(k, ik)` (`lua/write.lua`), positions 1 to [`LEN`](write::LEN)
/// of the create, save and rotate scripts; filled by [`Write::fill`].
pub(super) mod write {
    /// The record, [`Record::encode`](crate::record::Record::encode)d (field `r`).
    pub(crate) const ARG_RECORD: usize = 1;
    /// Its version (field `v`).
    pub(crate) const ARG_VERSION: usize = 2;
    /// The exact idle deadline (field `i`; only stored, never compared).
    pub(crate) const ARG_IDLE_EXACT: usize = 3;
    /// The absolute deadline, clamped (field `a`; the index member's score).
    pub(crate) const ARG_ABSOLUTE: usize = 4;
    /// When the record expires, clamped (`PEXPIREAT`).
    pub(crate) const ARG_EXPIRES: usize = 5;
    /// The application's clock.
    pub(crate) const ARG_NOW: usize = 6;
    /// `'1'` if the record has a user.
    pub(crate) const ARG_HAS_USER: usize = 7;
    /// The user, or `''` (field `u`).
    pub(crate) const ARG_USER: usize = 8;
    /// The session's hex storage key (the index member).
    pub(crate) const ARG_MEMBER: usize = 9;
    /// The store's key prefix.
    pub(crate) const ARG_PREFIX: usize = 10;
    /// `'1'` on a single server: the script keeps the index itself.
    pub(crate) const ARG_SINGLE: usize = 11;
    /// How many positions the write uses.
    pub(crate) const LEN: usize = 11;
}

/// The values a write sends, prepared once.
pub(super) struct Write<'a> {
    pub(super) member: String,
    record: Bytes,
    version: u64,
    idle_exact: u64,
    pub(super) absolute: u64,
    expires: u64,
    pub(super) user: Option<&'a str>,
}

impl<'a> Write<'a> {
    pub(super) fn of(key: &StorageKey, r: &'a Record) -> Self {
        Self {
            member: key.to_hex(),
            record: r.encode(),
            version: r.version,
            idle_exact: r.idle_deadline.as_millis(),
            absolute: kit::lua_millis(r.absolute_deadline),
            expires: kit::lua_millis(r.expires_at()),
            user: r.user.as_deref(),
        }
    }

    /// Whether the record is still live by the application's clock.
    pub(super) fn live(&self, now: u64) -> bool {
        self.expires > now
    }

    /// Sets the [`write`] positions of `call`.
    pub(super) fn fill(&self, call: &mut Call, now: u64, prefix: &str, single: bool) {
        call.arg(write::ARG_RECORD, &self.record[..])
            .arg(write::ARG_VERSION, self.version)
            .arg(write::ARG_IDLE_EXACT, self.idle_exact)
            .arg(write::ARG_ABSOLUTE, self.absolute)
            .arg(write::ARG_EXPIRES, self.expires)
            .arg(write::ARG_NOW, now)
            .arg(write::ARG_HAS_USER, flag(self.user.is_some()))
            .arg(write::ARG_USER, self.user.unwrap_or(""))
            .arg(write::ARG_MEMBER, &self.member)
            .arg(write::ARG_PREFIX, prefix)
            .arg(write::ARG_SINGLE, flag(single));
    }
}

/// Declares one script's module: its code, its `Call` and its positions.
macro_rules! script {
    ($(#[$doc:meta])* $name:ident = [$($part:expr),*] + $file:literal, argc $argc:expr; $($pos:item)*) => {
        $(#[$doc])*
        pub(super) mod $name {
            #[allow(unused_imports)]
            use super::{LIB, WRITE, write};

            pub(crate) static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
                super::assemble(&[$($part,)* include_str!(concat!("lua/", $file))])
            });
            /// How many `ARGV` positions the script reads.
            pub(crate) const ARGC: usize = $argc;

            /// A call of this script, to be filled by the names below.
            pub(crate) fn call() -> super::Call {
                super::Call::new(&SCRIPT, ARGC)
            }

            $($pos)*
        }
    };
}

script! {
    /// Inserts only if no live record is there. Replies 1 (created, or
    /// nothing to store) or 0 (a live record is there).
    create = [LIB, WRITE] + "create.lua", argc write::LEN;
    /// The session.
    pub(crate) const KEY_SESSION: usize = 1;
    /// The user's index (single server only).
    pub(crate) const KEY_INDEX: usize = 2;
}

script! {
    /// Compare-and-swap. Replies `{'N'}` not found, `{'V'}` version
    /// conflict, `{'I'}` index first (cluster), or `{'K', old user}`.
    save = [LIB, WRITE] + "save.lua", argc write::LEN + 2;
    /// The session.
    pub(crate) const KEY_SESSION: usize = 1;
    /// The user's index (single server only).
    pub(crate) const KEY_INDEX: usize = 2;
    /// The version the caller expects to find.
    pub(crate) const ARG_EXPECTED_VERSION: usize = write::LEN + 1;
    /// `'1'` if the (cluster) caller has already indexed the new user.
    pub(crate) const ARG_INDEXED: usize = write::LEN + 2;
}

script! {
    /// Moves the idle deadline and TTL of a live record. Replies 1, or 0 if
    /// there is no live record.
    touch = [LIB] + "touch.lua", argc 3;
    /// The session.
    pub(crate) const KEY_SESSION: usize = 1;
    /// The idle deadline, exact (stored).
    pub(crate) const ARG_IDLE_EXACT: usize = 1;
    /// The idle deadline, clamped (compared, `PEXPIREAT`).
    pub(crate) const ARG_IDLE_CLAMPED: usize = 2;
    /// The application's clock.
    pub(crate) const ARG_NOW: usize = 3;
}

script! {
    /// Deletes a session (and, on a single server, its index member).
    /// Replies the user the session had, if any.
    delete = [LIB] + "delete.lua", argc 3;
    /// The session.
    pub(crate) const KEY_SESSION: usize = 1;
    /// The session's hex storage key.
    pub(crate) const ARG_MEMBER: usize = 1;
    /// The store's key prefix.
    pub(crate) const ARG_PREFIX: usize = 2;
    /// `'1'` on a single server.
    pub(crate) const ARG_SINGLE: usize = 3;
}

script! {
    /// Single server only. Replies 1, 0 if a live record holds the new key,
    /// or -1 if no live record holds the old one (S28: a destroyed or
    /// expired session is not filed anew); on 0 and -1 nothing changed.
    rotate = [LIB, WRITE] + "rotate.lua", argc write::LEN + 1;
    /// The old session.
    pub(crate) const KEY_OLD: usize = 1;
    /// The new session (the [`write`] is of its record).
    pub(crate) const KEY_NEW: usize = 2;
    /// The new user's index, if it has a user.
    pub(crate) const KEY_INDEX: usize = 3;
    /// The old session's hex storage key.
    pub(crate) const ARG_OLD_MEMBER: usize = write::LEN + 1;
}

script! {
    /// Single server only. Drops stale members; replies member, record,
    /// idle deadline for each live session of the user, flattened.
    list = [LIB] + "list.lua", argc 3;
    /// The user's index.
    pub(crate) const KEY_INDEX: usize = 1;
    /// The user.
    pub(crate) const ARG_USER: usize = 1;
    /// The application's clock.
    pub(crate) const ARG_NOW: usize = 2;
    /// The store's key prefix.
    pub(crate) const ARG_PREFIX: usize = 3;
}

script! {
    /// Single server only. Replies how many live sessions it deleted.
    delete_by_user = [LIB] + "delete_by_user.lua", argc 4;
    /// The user's index.
    pub(crate) const KEY_INDEX: usize = 1;
    /// The user.
    pub(crate) const ARG_USER: usize = 1;
    /// The excepted member, or `''`.
    pub(crate) const ARG_EXCEPT: usize = 2;
    /// The application's clock.
    pub(crate) const ARG_NOW: usize = 3;
    /// The store's key prefix.
    pub(crate) const ARG_PREFIX: usize = 4;
}

script! {
    /// Cluster. Deletes the session if it is live: replies `{1, its user or
    /// ''}`, or `{0}` (missing or dead; nothing changed).
    delete_if_live = [LIB] + "delete_if_live.lua", argc 1;
    /// The session.
    pub(crate) const KEY_SESSION: usize = 1;
    /// The application's clock.
    pub(crate) const ARG_NOW: usize = 1;
}

script! {
    /// Cluster. Adds a member (`ZADD GT`), pruning dead members and
    /// extending the index key's TTL.
    index_add = [LIB] + "index_add.lua", argc 3;
    /// The user's index.
    pub(crate) const KEY_INDEX: usize = 1;
    /// The session's hex storage key.
    pub(crate) const ARG_MEMBER: usize = 1;
    /// Its score: the session's absolute deadline, clamped.
    pub(crate) const ARG_SCORE: usize = 2;
    /// The application's clock.
    pub(crate) const ARG_NOW: usize = 3;
}

script! {
    /// Cluster. Prunes, then replies the members.
    index_members = [] + "index_members.lua", argc 1;
    /// The user's index.
    pub(crate) const KEY_INDEX: usize = 1;
    /// The application's clock.
    pub(crate) const ARG_NOW: usize = 1;
}

script! {
    /// Cluster. Deletes the session if it belongs to the user: replies 1 (it
    /// was live), 0 (it was dead) or -1 (not the user's, or missing).
    delete_if_user = [LIB] + "delete_if_user.lua", argc 2;
    /// The session.
    pub(crate) const KEY_SESSION: usize = 1;
    /// The user.
    pub(crate) const ARG_USER: usize = 1;
    /// The application's clock.
    pub(crate) const ARG_NOW: usize = 2;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::expiry::Timestamp;

    /// Every script with its Lua text, in the order it is assembled.
    fn all() -> Vec<(&'static str, &'static Script, usize, String)> {
        macro_rules! entry {
            ($m:ident, $($part:expr),*) => {
                (stringify!($m), &*$m::SCRIPT, $m::ARGC, [$($part),*].concat())
            };
        }
        vec![
            entry!(create, LIB, WRITE, include_str!("lua/create.lua")),
            entry!(save, LIB, WRITE, include_str!("lua/save.lua")),
            entry!(touch, LIB, include_str!("lua/touch.lua")),
            entry!(delete, LIB, include_str!("lua/delete.lua")),
            entry!(rotate, LIB, WRITE, include_str!("lua/rotate.lua")),
            entry!(list, LIB, include_str!("lua/list.lua")),
            entry!(delete_by_user, LIB, include_str!("lua/delete_by_user.lua")),
            entry!(delete_if_live, LIB, include_str!("lua/delete_if_live.lua")),
            entry!(index_add, LIB, include_str!("lua/index_add.lua")),
            entry!(index_members, include_str!("lua/index_members.lua")),
            entry!(delete_if_user, LIB, include_str!("lua/delete_if_user.lua")),
        ]
    }

    /// The highest `NAME[n]` the Lua text reads.
    fn highest(lua: &str, name: &str) -> usize {
        lua.match_indices(&format!("{name}["))
            .filter_map(|(at, m)| {
                let rest = &lua[at + m.len()..];
                rest[..rest.find(']')?].parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn every_script_reads_exactly_its_named_arguments() {
        for (name, _, argc, lua) in all() {
            assert_eq!(highest(&lua, "ARGV"), argc, "{name}: ARGC");
        }
        assert_eq!(highest(WRITE, "ARGV"), write::LEN);
        assert_eq!(
            highest(include_str!("lua/rotate.lua"), "KEYS"),
            rotate::KEY_INDEX
        );
        assert_eq!(
            highest(include_str!("lua/save.lua"), "KEYS"),
            save::KEY_INDEX
        );
    }

    #[test]
    fn script_text_is_locked() {
        // SHA-1 of each script as sent (EVALSHA): a change to a script
        // must be deliberate, and servers running old and new code side by
        // side then hold both.
        let expected = [
            ("create", "8e26bb756064c1feeefbcc09e1df3d0ba8e5d39f"),
            ("save", "7175e38ece891b226e9685df069e963621a8814d"),
            ("touch", "c1f0f17d0a24f52da26eef68dcdc4d2a36bc74ed"),
            ("delete", "eb81e178f35c8fc939d2ccc228a66f3ee7fddf94"),
            ("rotate", "332fe19b38cfb4b8ba96f40a08c601c51ebd9bf3"),
            ("list", "1e3e5e4828cac422651b824d93385ebf94393d2c"),
            ("delete_by_user", "3063cabdfe57a5d4724099e1c38fd446ceadacad"),
            ("delete_if_live", "3b5e9dca43d5899df5bc9637f438e95811e217dc"),
            ("index_add", "12b250ccdda4f7705a5c20b99887067923b81704"),
            ("index_members", "9dc04f4cfa0c6e5f3ea2c97c37f66552cae89089"),
            ("delete_if_user", "f1f46042e375eadfcad2c385c179c2d4e0091d12"),
        ];
        for ((name, script, _, _), (want_name, hash)) in all().into_iter().zip(expected) {
            assert_eq!(name, want_name);
            assert_eq!(script.get_hash(), hash, "{name}");
        }
    }

    #[test]
    fn a_write_fills_its_named_positions() {
        let mut r = Record::new(
            Timestamp::from_millis(1_000),
            Duration::from_secs(10),
            Duration::from_secs(100),
        );
        r.version = 7;
        r.user = Some("alice".into());
        let key = StorageKey([9; 32]);
        let w = Write::of(&key, &r);
        let mut call = save::call();
        w.fill(&mut call, 5_000, "p:", false);
        call.arg(save::ARG_EXPECTED_VERSION, 6_u64)
            .arg(save::ARG_INDEXED, flag(true));
        let at = |pos| call.argv(pos).map(<[u8]>::to_vec);
        assert_eq!(at(write::ARG_RECORD), Some(r.encode().to_vec()));
        assert_eq!(at(write::ARG_VERSION).as_deref(), Some(&b"7"[..]));
        assert_eq!(at(write::ARG_IDLE_EXACT).as_deref(), Some(&b"11000"[..]));
        assert_eq!(at(write::ARG_ABSOLUTE).as_deref(), Some(&b"101000"[..]));
        assert_eq!(at(write::ARG_EXPIRES).as_deref(), Some(&b"11000"[..]));
        assert_eq!(at(write::ARG_NOW).as_deref(), Some(&b"5000"[..]));
        assert_eq!(at(write::ARG_HAS_USER).as_deref(), Some(&b"1"[..]));
        assert_eq!(at(write::ARG_USER).as_deref(), Some(&b"alice"[..]));
        assert_eq!(at(write::ARG_MEMBER), Some(key.to_hex().into_bytes()));
        assert_eq!(at(write::ARG_PREFIX).as_deref(), Some(&b"p:"[..]));
        assert_eq!(at(write::ARG_SINGLE).as_deref(), Some(&b"0"[..]));
        assert_eq!(at(save::ARG_EXPECTED_VERSION).as_deref(), Some(&b"6"[..]));
        assert_eq!(at(save::ARG_INDEXED).as_deref(), Some(&b"1"[..]));
        assert_eq!(at(save::ARGC + 1), None);

        r.user = None;
        r.absolute_deadline = Timestamp::from_millis(u64::MAX);
        let w = Write::of(&key, &r);
        let mut call = create::call();
        w.fill(&mut call, 5_000, "p:", true);
        assert_eq!(call.argv(write::ARG_HAS_USER), Some(&b"0"[..]));
        assert_eq!(call.argv(write::ARG_USER), Some(&b""[..]));
        assert_eq!(call.argv(write::ARG_SINGLE), Some(&b"1"[..]));
        assert_eq!(
            call.argv(write::ARG_ABSOLUTE),
            Some(kit::LUA_MAX_MS.to_string().as_bytes()),
            "deadlines handed to Lua are clamped"
        );
    }
}
