//! Login throttling. Wrong passwords for a user make *that user's* next
//! attempts slower (from any address); too many from one address for one
//! user, or for any users, are refused with 429 for a while. A real user at
//! another address is therefore slowed, never locked out, and every refusal
//! ends `lockout` after the last failure.
//!
//! The counters live in this process (embedded mode: one node) or in Redis
//! (Redis mode), so that failures on one node count on every node and an
//! attacker gains nothing by spreading guesses over the load balancer.

use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures (user, address) before that pair is refused.
pub const PAIR_LIMIT: u32 = 10;
/// Failures from one address (any users) before it is refused.
pub const ADDRESS_LIMIT: u32 = 50;
/// Failures of one user (any address) before answers slow down.
pub const SLOW_AFTER: u32 = 3;
const MAX_DELAY: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Copy)]
struct Count {
    n: u32,
    last: Instant,
}

/// A counter as the decision sees it: failures, and how long until they lapse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub n: u32,
    pub left: Duration,
}

enum Counters {
    Memory(Mutex<HashMap<String, Count>>),
    Redis(ConnectionManager),
}

pub struct LoginGuard {
    lockout: Duration,
    counters: Counters,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead after this delay.
    Proceed(Duration),
    /// Refuse; retry after this many seconds.
    Refuse(u64),
}

fn pair_key(user: &str, ip: IpAddr) -> String {
    format!("p|{}|{ip}", user.to_lowercase())
}
fn user_key(user: &str) -> String {
    format!("u|{}", user.to_lowercase())
}
fn addr_key(ip: IpAddr) -> String {
    format!("a|{ip}")
}

/// The decision, from the three counters (pair, address, user).
pub fn decide(pair: Seen, addr: Seen, user: Seen) -> Verdict {
    for (c, limit) in [(pair, PAIR_LIMIT), (addr, ADDRESS_LIMIT)] {
        if c.n >= limit {
            return Verdict::Refuse(c.left.as_secs().max(1));
        }
    }
    if user.n < SLOW_AFTER {
        return Verdict::Proceed(Duration::ZERO);
    }
    let delay = Duration::from_millis(100u64 << (user.n - SLOW_AFTER).min(8)).min(MAX_DELAY);
    Verdict::Proceed(delay)
}

/// Reads three counters and the time left on each (Redis keeps them with a TTL).
const READ: &str = r#"
local out = {}
for i, k in ipairs(KEYS) do
  out[#out+1] = tonumber(redis.call('GET', k) or '0')
  out[#out+1] = redis.call('PTTL', k)
end
return out
"#;

/// Counts a failure on each key; the window restarts with every failure.
const FAIL: &str = r#"
for i, k in ipairs(KEYS) do
  redis.call('INCR', k)
  redis.call('PEXPIRE', k, ARGV[1])
end
return 1
"#;

fn redis_key(k: &str) -> String {
    format!("ecp:login:{k}")
}

impl LoginGuard {
    /// Counters in this process (one node).
    pub fn new(lockout: Duration) -> LoginGuard {
        LoginGuard {
            lockout,
            counters: Counters::Memory(Mutex::new(HashMap::new())),
        }
    }

    /// Counters in Redis, shared by every node.
    pub fn shared(lockout: Duration, conn: ConnectionManager) -> LoginGuard {
        LoginGuard {
            lockout,
            counters: Counters::Redis(conn),
        }
    }

    fn seen(&self, map: &HashMap<String, Count>, key: &str, now: Instant) -> Seen {
        match map.get(key) {
            Some(c) if now.duration_since(c.last) < self.lockout => Seen {
                n: c.n,
                left: self.lockout.saturating_sub(now.duration_since(c.last)),
            },
            _ => Seen::default(),
        }
    }

    /// The counters `decide` reads: (pair, address, user).
    fn check_keys(user: &str, ip: IpAddr) -> [String; 3] {
        [pair_key(user, ip), addr_key(ip), user_key(user)]
    }

    fn seen_in(
        &self,
        m: &Mutex<HashMap<String, Count>>,
        keys: &[String; 3],
        now: Instant,
    ) -> [Seen; 3] {
        let map = m.lock().unwrap_or_else(|p| p.into_inner());
        keys.each_ref().map(|k| self.seen(&map, k, now))
    }

    pub async fn check(&self, user: &str, ip: IpAddr) -> Verdict {
        let keys = Self::check_keys(user, ip);
        let seen = match &self.counters {
            Counters::Memory(m) => self.seen_in(m, &keys, Instant::now()),
            Counters::Redis(conn) => {
                let mut conn = conn.clone();
                let script = redis::Script::new(READ);
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(redis_key(k));
                }
                match inv.invoke_async::<Vec<i64>>(&mut conn).await {
                    Ok(v) if v.len() == 6 => [0, 1, 2].map(|i| Seen {
                        n: u32::try_from(v[2 * i]).unwrap_or(u32::MAX),
                        left: Duration::from_millis(u64::try_from(v[2 * i + 1]).unwrap_or(0)),
                    }),
                    other => {
                        // Redis is down: the user lookup fails next anyway.
                        tracing::warn!(error = ?other.err(), "login counters unavailable");
                        [Seen::default(); 3]
                    }
                }
            }
        };
        decide(seen[0], seen[1], seen[2])
    }

    #[cfg(test)]
    fn check_at(&self, user: &str, ip: IpAddr, now: Instant) -> Verdict {
        let Counters::Memory(m) = &self.counters else {
            unreachable!("memory only")
        };
        let [a, b, c] = self.seen_in(m, &Self::check_keys(user, ip), now);
        decide(a, b, c)
    }

    pub async fn failed(&self, user: &str, ip: IpAddr) {
        let keys = [pair_key(user, ip), user_key(user), addr_key(ip)];
        match &self.counters {
            Counters::Memory(m) => {
                let now = Instant::now();
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() > MAX_ENTRIES {
                    let lockout = self.lockout;
                    map.retain(|_, c| now.duration_since(c.last) < lockout);
                }
                for key in keys {
                    let n = self.seen(&map, &key, now).n;
                    map.insert(
                        key,
                        Count {
                            n: n + 1,
                            last: now,
                        },
                    );
                }
            }
            Counters::Redis(conn) => {
                let mut conn = conn.clone();
                let script = redis::Script::new(FAIL);
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(redis_key(k));
                }
                inv.arg(self.lockout.as_millis().max(1) as u64);
                if let Err(e) = inv.invoke_async::<i64>(&mut conn).await {
                    tracing::warn!(error = %e, "login failure not counted");
                }
            }
        }
    }

    pub async fn succeeded(&self, user: &str, ip: IpAddr) {
        let keys = [pair_key(user, ip), user_key(user)];
        match &self.counters {
            Counters::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                for k in &keys {
                    map.remove(k);
                }
            }
            Counters::Redis(conn) => {
                let mut conn = conn.clone();
                let keys: Vec<String> = keys.iter().map(|k| redis_key(k)).collect();
                if let Err(e) = redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<i64>(&mut conn)
                    .await
                {
                    tracing::warn!(error = %e, "login counters not cleared");
                }
            }
        }
    }
}

/// Password rules for new passwords: 8–128 characters with a letter, a digit
/// and another character.
pub fn password_rules(p: &str) -> Result<(), String> {
    let n = p.chars().count();
    let letter = p.chars().any(char::is_alphabetic);
    let digit = p.chars().any(|c| c.is_ascii_digit());
    let other = p.chars().any(|c| !c.is_alphanumeric());
    if !(8..=128).contains(&n) || !letter || !digit || !other {
        return Err("a password needs 8 to 128 characters, with at least one letter, one digit and one other character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[tokio::test]
    async fn slows_then_refuses_the_pair_but_not_the_user_elsewhere() {
        let g = LoginGuard::new(Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..SLOW_AFTER {
            assert_eq!(g.check_at("ann", A, now), Verdict::Proceed(Duration::ZERO));
            g.failed("ann", A).await;
        }
        assert_eq!(
            g.check_at("ann", A, now),
            Verdict::Proceed(Duration::from_millis(100))
        );
        for _ in SLOW_AFTER..PAIR_LIMIT {
            g.failed("ann", A).await;
        }
        assert!(matches!(g.check_at("ann", A, now), Verdict::Refuse(_)));
        // Same user, other address: slowed (capped), not refused.
        assert_eq!(g.check_at("ANN", B, now), Verdict::Proceed(MAX_DELAY));
        // The refusal ends.
        assert!(matches!(
            g.check_at("ann", A, now + Duration::from_secs(61)),
            Verdict::Proceed(_)
        ));
        g.succeeded("ann", B).await;
        assert_eq!(g.check_at("ann", B, now), Verdict::Proceed(Duration::ZERO));
    }

    #[tokio::test]
    async fn one_address_guessing_many_users_is_refused() {
        let g = LoginGuard::new(Duration::from_secs(60));
        for i in 0..ADDRESS_LIMIT {
            g.failed(&format!("user{i}"), A).await;
        }
        assert!(matches!(
            g.check("someone-else", A).await,
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            g.check("someone-else", B).await,
            Verdict::Proceed(_)
        ));
    }

    #[test]
    fn password_rules_are_explained() {
        assert!(password_rules("test-admin-pass-1").is_ok());
        for bad in [
            "short-1",
            "no-digits-here",
            "1234567890!",
            "lettersand123",
            &"a1-".repeat(50),
        ] {
            let e = password_rules(bad).expect_err(bad);
            assert!(e.contains("8 to 128"), "{e}");
        }
    }
}
