//! Login throttling, per node. Wrong passwords for a user make *that user's*
//! next attempts slower (from any address); too many from one address for
//! one user, or for any users, are refused with 429 for a while. A real user
//! at another address is therefore slowed, never locked out, and every
//! refusal ends after `lockout`.

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

pub struct LoginGuard {
    lockout: Duration,
    state: Mutex<HashMap<String, Count>>,
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

impl LoginGuard {
    pub fn new(lockout: Duration) -> LoginGuard {
        LoginGuard {
            lockout,
            state: Mutex::new(HashMap::new()),
        }
    }

    fn count(&self, map: &HashMap<String, Count>, key: &str, now: Instant) -> (u32, Instant) {
        match map.get(key) {
            Some(c) if now.duration_since(c.last) < self.lockout => (c.n, c.last),
            _ => (0, now),
        }
    }

    pub fn check(&self, user: &str, ip: IpAddr) -> Verdict {
        self.check_at(user, ip, Instant::now())
    }

    pub fn check_at(&self, user: &str, ip: IpAddr, now: Instant) -> Verdict {
        let map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (key, limit) in [
            (pair_key(user, ip), PAIR_LIMIT),
            (addr_key(ip), ADDRESS_LIMIT),
        ] {
            let (n, last) = self.count(&map, &key, now);
            if n >= limit {
                let left = self.lockout.saturating_sub(now.duration_since(last));
                return Verdict::Refuse(left.as_secs().max(1));
            }
        }
        let (n, _) = self.count(&map, &user_key(user), now);
        if n < SLOW_AFTER {
            return Verdict::Proceed(Duration::ZERO);
        }
        let delay = Duration::from_millis(100u64 << (n - SLOW_AFTER).min(8)).min(MAX_DELAY);
        Verdict::Proceed(delay)
    }

    pub fn failed(&self, user: &str, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_ENTRIES {
            let lockout = self.lockout;
            map.retain(|_, c| now.duration_since(c.last) < lockout);
        }
        for key in [pair_key(user, ip), user_key(user), addr_key(ip)] {
            let (n, _) = self.count(&map, &key, now);
            map.insert(
                key,
                Count {
                    n: n + 1,
                    last: now,
                },
            );
        }
    }

    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&pair_key(user, ip));
        map.remove(&user_key(user));
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

    #[test]
    fn slows_then_refuses_the_pair_but_not_the_user_elsewhere() {
        let g = LoginGuard::new(Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..SLOW_AFTER {
            assert_eq!(g.check_at("ann", A, now), Verdict::Proceed(Duration::ZERO));
            g.failed("ann", A);
        }
        assert_eq!(
            g.check_at("ann", A, now),
            Verdict::Proceed(Duration::from_millis(100))
        );
        for _ in SLOW_AFTER..PAIR_LIMIT {
            g.failed("ann", A);
        }
        assert!(matches!(g.check_at("ann", A, now), Verdict::Refuse(_)));
        // Same user, other address: slowed (capped), not refused.
        assert_eq!(g.check_at("ANN", B, now), Verdict::Proceed(MAX_DELAY));
        // The refusal ends.
        assert!(matches!(
            g.check_at("ann", A, now + Duration::from_secs(61)),
            Verdict::Proceed(_)
        ));
        g.succeeded("ann", B);
        assert_eq!(g.check_at("ann", B, now), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn one_address_guessing_many_users_is_refused() {
        let g = LoginGuard::new(Duration::from_secs(60));
        for i in 0..ADDRESS_LIMIT {
            g.failed(&format!("user{i}"), A);
        }
        assert!(matches!(g.check("someone-else", A), Verdict::Refuse(_)));
        assert!(matches!(g.check("someone-else", B), Verdict::Proceed(_)));
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
