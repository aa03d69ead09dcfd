//! Failed logins, counted per account name and per source address in a
//! sliding window; past the limit, logins are refused with
//! `TOOMANYREQUESTS` before any password is checked. Per node: an attacker
//! spreading guesses over N nodes gets N times the budget, which the
//! limits leave small anyway.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failed logins allowed per account name in `window`.
    pub per_account: u32,
    /// Failed logins allowed per source address in `window`.
    pub per_address: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            per_account: 10,
            per_address: 50,
            window: Duration::from_secs(300),
        }
    }
}

/// Bound on tracked keys, so a flood of distinct names cannot grow memory.
const MAX_TRACKED: usize = 100_000;

pub(super) struct Limiter {
    limits: LoginLimits,
    failures: Mutex<HashMap<Key, Vec<Instant>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

impl Limiter {
    pub(super) fn new(limits: LoginLimits) -> Limiter {
        Limiter {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds until a retry may succeed)` when either key is over
    /// its limit.
    pub(super) fn blocked(&self, account: &str, addr: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("limiter lock");
        let mut worst: Option<Duration> = None;
        for (key, limit) in self.keys(account, addr) {
            if let Some(times) = map.get_mut(&key) {
                times.retain(|t| now.duration_since(*t) < self.limits.window);
                if times.len() >= limit as usize {
                    let oldest = times[times.len() - limit as usize];
                    let wait = self.limits.window - now.duration_since(oldest);
                    worst = Some(worst.map_or(wait, |w| w.max(wait)));
                }
            }
        }
        worst.map(|w| w.as_secs().max(1))
    }

    pub(super) fn failed(&self, account: &str, addr: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("limiter lock");
        if map.len() >= MAX_TRACKED {
            let window = self.limits.window;
            map.retain(|_, times| {
                times
                    .last()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        for (key, _) in self.keys(account, addr) {
            let times = map.entry(key).or_default();
            times.push(now);
            // Only the newest `limit` entries matter.
            if times.len() > 1024 {
                times.drain(..times.len() - 1024);
            }
        }
    }

    /// A successful login clears the account's failures (not the
    /// address's: one good password must not reset a spray's count).
    pub(super) fn succeeded(&self, account: &str) {
        self.failures
            .lock()
            .expect("limiter lock")
            .remove(&Key::Account(account.to_string()));
    }

    fn keys(&self, account: &str, addr: Option<IpAddr>) -> Vec<(Key, u32)> {
        let mut keys = vec![(Key::Account(account.to_string()), self.limits.per_account)];
        if let Some(a) = addr {
            keys.push((Key::Address(a), self.limits.per_address));
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_account_and_address() {
        let l = Limiter::new(LoginLimits {
            per_account: 3,
            per_address: 5,
            window: Duration::from_secs(60),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.blocked("alice", Some(a)).is_none());
            l.failed("alice", Some(a));
        }
        let wait = l.blocked("alice", Some(a)).expect("alice is blocked");
        assert!((1..=60).contains(&wait), "{wait}");
        // Another account from the same address still has budget...
        assert!(l.blocked("bob", Some(a)).is_none());
        l.failed("bob", Some(a));
        l.failed("bob", Some(a));
        // ...until the address's limit (5) is reached.
        assert!(l.blocked("carol", Some(a)).is_some());
        assert!(
            l.blocked("carol", Some("10.0.0.2".parse().unwrap()))
                .is_none()
        );
        // Success clears the account, not the address.
        l.succeeded("alice");
        assert!(l.blocked("alice", None).is_none());
        assert!(l.blocked("alice", Some(a)).is_some());
    }
}
