//! Counters in Redis or Redis Cluster: one script (`throttle.lua`) per
//! slot of a decision, on the server's clock.
//!
//! Keys: `<prefix>t:{<tag>}:<scope>:<hash>`, where `<tag>` is 128 bits of
//! the account's keyed hash (account+client and account counters) or the
//! client's (client counter), so each call's keys share one hash slot, and
//! `<scope>` is `p` (account+client), `a` (account) or `c` (client). Each
//! is a hash `{n, start, last}` that expires with its window. No username
//! or address appears in a key or a value.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::{Script, Value};

use super::{Counters, Scope, Slot, short_hex};
use crate::store::{RedisStore, StoreError};

/// The script.
static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("throttle.lua")));

/// `ARGV[1]`: the operation.
const ARG_OP: usize = 1;
/// The first rule's four numbers start at `ARGV[2]`.
const ARG_FIRST_RULE: usize = 2;
/// Numbers per rule: free, base, cap, window.
const ARGS_PER_RULE: usize = 4;

/// [`Counters`] over a [`RedisStore`]'s connection.
pub(crate) struct RedisCounters {
    store: RedisStore,
}

impl RedisCounters {
    pub(crate) fn new(store: RedisStore) -> Self {
        Self { store }
    }

    /// Runs the script with `op` on the counters of `slot`; returns the
    /// longest wait (ms) and the index in `slot.counters` imposing it.
    async fn run(&self, op: &str, slot: &Slot) -> Result<(u64, Option<usize>), StoreError> {
        let mut inv = SCRIPT.prepare_invoke();
        let tag = short_hex(&slot.tag);
        let mut argv: Vec<String> = vec![String::new(); 1 + ARGS_PER_RULE * slot.counters.len()];
        if let Some(first) = argv.get_mut(ARG_OP - 1) {
            op.clone_into(first);
        }
        for (i, c) in slot.counters.iter().enumerate() {
            inv.key(format!(
                "{}t:{{{tag}}}:{}:{}",
                self.store.prefix(),
                c.scope.letter(),
                short_hex(&c.hash)
            ));
            let at = ARG_FIRST_RULE - 1 + ARGS_PER_RULE * i;
            for (j, n) in c.rule.script_args().iter().enumerate() {
                if let Some(slot) = argv.get_mut(at + j) {
                    *slot = n.to_string();
                }
            }
        }
        for a in &argv {
            inv.arg(a);
        }
        let reply = self.store.invoke_script(&inv).await?;
        let Value::Array(items) = reply else {
            return Err(StoreError::other_in(
                "redis",
                "unexpected reply from the throttle script",
            ));
        };
        let num = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        let wait = num(items.first());
        let index = usize::try_from(num(items.get(1))).unwrap_or(0);
        Ok((wait, index.checked_sub(1)))
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn wait(&self, slot: &Slot) -> Result<(u64, Option<Scope>), StoreError> {
        let (wait, index) = self.run("check", slot).await?;
        let scope = index.and_then(|i| slot.counters.get(i)).map(|c| c.scope);
        Ok((wait, scope))
    }

    async fn fail(&self, slot: &Slot) -> Result<(), StoreError> {
        self.run("fail", slot).await.map(|_| ())
    }

    async fn reset(&self, slot: &Slot) -> Result<(), StoreError> {
        self.run("reset", slot).await.map(|_| ())
    }
}
