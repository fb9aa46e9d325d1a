//! A token bucket: admission limits per node (registrations, WebSocket
//! upgrades) and frame budgets per agent session.

use std::sync::Mutex;
use std::time::Instant;

pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(per_sec: u32, burst: u32) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket {
            rate: f64::from(per_sec.max(1)),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token, or answers how many whole seconds to wait.
    pub fn admit(&self) -> Result<(), u64> {
        self.admit_at(Instant::now())
    }

    pub fn admit_at(&self, now: Instant) -> Result<(), u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - s.0) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let b = Bucket::new(2, 3);
        let t = Instant::now();
        assert!(b.admit_at(t).is_ok());
        assert!(b.admit_at(t).is_ok());
        assert!(b.admit_at(t).is_ok());
        assert_eq!(b.admit_at(t), Err(1));
        // Half a second refills one token at 2/s.
        assert!(b.admit_at(t + Duration::from_millis(500)).is_ok());
        assert!(b.admit_at(t + Duration::from_millis(500)).is_err());
    }
}
