//! Login throttling. Wrong passwords for a user make *that user's* next
//! attempts slower (from any address); too many from one address for one
//! user, or for any users, are refused with 429 for a while. A real user at
//! another address is therefore slowed, never locked out, and every refusal
//! ends `lockout` after the last failure.
//!
//! An attempt is counted *before* its password is checked ([`LoginGuard::reserve`]:
//! decide and count in one atomic step), so a burst of parallel guesses gets
//! no more checks than the same guesses one after another.
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

/// The decision, from the three counters (pair, address, user). The Redis
/// `RESERVE` script applies its refusal rule (the two limits) atomically.
pub fn decide(pair: Seen, addr: Seen, user: Seen) -> Verdict {
    for (c, limit) in [(pair, PAIR_LIMIT), (addr, ADDRESS_LIMIT)] {
        if c.n >= limit {
            // Rounded up: a client that waits this long is let in.
            return Verdict::Refuse(c.left.as_millis().div_ceil(1000).max(1) as u64);
        }
    }
    if user.n < SLOW_AFTER {
        return Verdict::Proceed(Duration::ZERO);
    }
    let delay = Duration::from_millis(100u64 << (user.n - SLOW_AFTER).min(8)).min(MAX_DELAY);
    Verdict::Proceed(delay)
}

/// Reserves an attempt: reads the three counters (pair, address, user) and
/// the time left on each and, unless the pair or the address is at its
/// limit (ARGV 2 and 3: the refusal of `decide`), counts the attempt on
/// each, restarting its window (ARGV 1 ms) — in one atomic step, so that
/// parallel attempts cannot all pass. `decide` computes the verdict from the
/// same snapshot.
const RESERVE: &str = r#"
local out = {}
for i, k in ipairs(KEYS) do
  out[#out+1] = tonumber(redis.call('GET', k) or '0')
  out[#out+1] = redis.call('PTTL', k)
end
if out[1] >= tonumber(ARGV[2]) or out[3] >= tonumber(ARGV[3]) then return out end
for i, k in ipairs(KEYS) do
  redis.call('INCR', k)
  redis.call('PEXPIRE', k, ARGV[1])
end
return out
"#;

/// Takes back one count from each key (never below zero); ARGV 1: how many
/// leading keys are cleared instead.
const RELEASE: &str = r#"
for i, k in ipairs(KEYS) do
  if i <= tonumber(ARGV[1]) then redis.call('DEL', k)
  elseif redis.call('DECR', k) <= 0 then redis.call('DEL', k) end
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
    fn keys(user: &str, ip: IpAddr) -> [String; 3] {
        [pair_key(user, ip), addr_key(ip), user_key(user)]
    }

    /// Decides on an attempt and, unless refused, counts it as a failure in
    /// advance — one atomic step, before any password is checked, so a
    /// parallel burst passes the limits no more than a sequential one.
    /// Afterwards: [`succeeded`](Self::succeeded) on the right password; a
    /// wrong one stays counted; an attempt that was never checked (the
    /// password pool was full, the store failed) is
    /// [`release`](Self::release)d.
    pub async fn reserve(&self, user: &str, ip: IpAddr) -> Verdict {
        match &self.counters {
            Counters::Memory(m) => self.reserve_in(m, user, ip, Instant::now()),
            Counters::Redis(conn) => {
                let mut conn = conn.clone();
                let script = redis::Script::new(RESERVE);
                let mut inv = script.prepare_invoke();
                for k in &Self::keys(user, ip) {
                    inv.key(redis_key(k));
                }
                inv.arg(self.lockout.as_millis().max(1) as u64)
                    .arg(PAIR_LIMIT)
                    .arg(ADDRESS_LIMIT);
                match inv.invoke_async::<Vec<i64>>(&mut conn).await {
                    Ok(v) if v.len() == 6 => {
                        let seen = [0, 1, 2].map(|i| Seen {
                            n: u32::try_from(v[2 * i]).unwrap_or(u32::MAX),
                            left: Duration::from_millis(u64::try_from(v[2 * i + 1]).unwrap_or(0)),
                        });
                        decide(seen[0], seen[1], seen[2])
                    }
                    other => {
                        // Redis is down: the user lookup fails next anyway.
                        tracing::warn!(error = ?other.err(), "login counters unavailable");
                        Verdict::Proceed(Duration::ZERO)
                    }
                }
            }
        }
    }

    fn reserve_in(
        &self,
        m: &Mutex<HashMap<String, Count>>,
        user: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Verdict {
        let keys = Self::keys(user, ip);
        let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_ENTRIES {
            let lockout = self.lockout;
            map.retain(|_, c| now.duration_since(c.last) < lockout);
        }
        let [a, b, c] = keys.each_ref().map(|k| self.seen(&map, k, now));
        let verdict = decide(a, b, c);
        if let Verdict::Proceed(_) = verdict {
            for (key, seen) in keys.into_iter().zip([a, b, c]) {
                map.insert(
                    key,
                    Count {
                        n: seen.n + 1,
                        last: now,
                    },
                );
            }
        }
        verdict
    }

    /// Takes back a reservation whose password was never checked.
    pub async fn release(&self, user: &str, ip: IpAddr) {
        self.take_back(user, ip, 0, "login reservation not released")
            .await
    }

    /// The right password: the user's and the pair's failures are forgotten,
    /// and the address gets its reservation back.
    pub async fn succeeded(&self, user: &str, ip: IpAddr) {
        self.take_back(user, ip, 2, "login counters not cleared")
            .await
    }

    /// Clears the first `clear` of (pair, user, address) and takes one count
    /// back from the others.
    async fn take_back(&self, user: &str, ip: IpAddr, clear: usize, what: &str) {
        let keys = [pair_key(user, ip), user_key(user), addr_key(ip)];
        match &self.counters {
            Counters::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                for (i, k) in keys.iter().enumerate() {
                    let gone = i < clear
                        || map.get_mut(k).is_some_and(|c| {
                            c.n = c.n.saturating_sub(1);
                            c.n == 0
                        });
                    if gone {
                        map.remove(k);
                    }
                }
            }
            Counters::Redis(conn) => {
                let mut conn = conn.clone();
                let script = redis::Script::new(RELEASE);
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(redis_key(k));
                }
                inv.arg(clear);
                if let Err(e) = inv.invoke_async::<i64>(&mut conn).await {
                    tracing::warn!(error = %e, "{what}");
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

    impl LoginGuard {
        fn reserve_at(&self, user: &str, ip: IpAddr, now: Instant) -> Verdict {
            let Counters::Memory(m) = &self.counters else {
                unreachable!("memory only")
            };
            self.reserve_in(m, user, ip, now)
        }
    }

    fn seen(n: u32) -> Seen {
        Seen {
            n,
            left: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_decision_refuses_pairs_and_addresses_and_slows_users() {
        let none = Seen::default();
        assert_eq!(decide(none, none, none), Verdict::Proceed(Duration::ZERO));
        assert_eq!(decide(seen(PAIR_LIMIT), none, none), Verdict::Refuse(30));
        assert_eq!(
            decide(seen(PAIR_LIMIT - 1), seen(ADDRESS_LIMIT - 1), none),
            Verdict::Proceed(Duration::ZERO)
        );
        assert_eq!(decide(none, seen(ADDRESS_LIMIT), none), Verdict::Refuse(30));
        assert_eq!(
            decide(none, none, seen(SLOW_AFTER)),
            Verdict::Proceed(Duration::from_millis(100))
        );
        assert_eq!(
            decide(none, none, seen(SLOW_AFTER + 20)),
            Verdict::Proceed(MAX_DELAY)
        );
        // A lapsing refusal still says at least one second.
        let almost = Seen {
            n: PAIR_LIMIT,
            left: Duration::from_millis(10),
        };
        assert_eq!(decide(almost, none, none), Verdict::Refuse(1));
        // Never less than what is left: 1.5 s left says 2.
        let part = Seen {
            n: PAIR_LIMIT,
            left: Duration::from_millis(1_500),
        };
        assert_eq!(decide(part, none, none), Verdict::Refuse(2));
    }

    #[tokio::test]
    async fn slows_then_refuses_the_pair_but_not_the_user_elsewhere() {
        let g = LoginGuard::new(Duration::from_secs(60));
        let now = Instant::now();
        // Each reservation counts as a failure until the password is right.
        for _ in 0..SLOW_AFTER {
            assert_eq!(
                g.reserve_at("ann", A, now),
                Verdict::Proceed(Duration::ZERO)
            );
        }
        assert_eq!(
            g.reserve_at("ann", A, now),
            Verdict::Proceed(Duration::from_millis(100))
        );
        for _ in SLOW_AFTER + 1..PAIR_LIMIT {
            assert!(matches!(g.reserve_at("ann", A, now), Verdict::Proceed(_)));
        }
        assert!(matches!(g.reserve_at("ann", A, now), Verdict::Refuse(_)));
        // Same user, other address: slowed (capped), not refused.
        assert_eq!(g.reserve_at("ANN", B, now), Verdict::Proceed(MAX_DELAY));
        // The refusal ends.
        assert!(matches!(
            g.reserve_at("ann", A, now + Duration::from_secs(61)),
            Verdict::Proceed(_)
        ));
        g.succeeded("ann", B).await;
        assert_eq!(
            g.reserve_at("ann", B, now),
            Verdict::Proceed(Duration::ZERO)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parallel_burst_passes_no_more_attempts_than_the_limit() {
        let g = std::sync::Arc::new(LoginGuard::new(Duration::from_secs(60)));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.reserve("ann", A).await })
            })
            .collect();
        let mut passed = 0;
        for t in tasks {
            if matches!(t.await.expect("join"), Verdict::Proceed(_)) {
                passed += 1;
            }
        }
        assert_eq!(passed, PAIR_LIMIT);
    }

    #[tokio::test]
    async fn an_attempt_never_checked_is_given_back() {
        let g = LoginGuard::new(Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..3 * PAIR_LIMIT {
            assert_eq!(
                g.reserve_at("ann", A, now),
                Verdict::Proceed(Duration::ZERO)
            );
            g.release("ann", A).await;
        }
    }

    #[tokio::test]
    async fn one_address_guessing_many_users_is_refused() {
        let g = LoginGuard::new(Duration::from_secs(60));
        for i in 0..ADDRESS_LIMIT {
            assert!(matches!(
                g.reserve(&format!("user{i}"), A).await,
                Verdict::Proceed(_)
            ));
        }
        assert!(matches!(
            g.reserve("someone-else", A).await,
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            g.reserve("someone-else", B).await,
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
