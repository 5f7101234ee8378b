//! Token-bucket rate limiter, one per connection (burst = rate).

use std::time::Instant;

/// A token bucket refilled continuously at `rate` tokens per second, holding at
/// most `rate` tokens.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_s: u32) -> Self {
        Self::new_at(rate_per_s, Instant::now())
    }

    /// A full bucket with an explicit clock (tests).
    pub fn new_at(rate_per_s: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate_per_s),
            tokens: f64::from(rate_per_s),
            last: now,
        }
    }

    /// Takes one token if available.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// Takes one token at `now` if available.
    pub fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new_at(5, t0);
        for _ in 0..5 {
            assert!(b.try_take_at(t0));
        }
        assert!(!b.try_take_at(t0));
        assert!(b.try_take_at(t0 + Duration::from_millis(200)));
        assert!(!b.try_take_at(t0 + Duration::from_millis(200)));
        // never more than the burst
        let later = t0 + Duration::from_secs(100);
        for _ in 0..5 {
            assert!(b.try_take_at(later));
        }
        assert!(!b.try_take_at(later));
    }
}
