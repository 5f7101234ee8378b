//! Per-hook counters of one listener: calls, denials, failures by kind and a
//! latency histogram, kept in atomics on the call path and read by the
//! metrics collector at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::settings::HookName;

use super::HookError;

/// Upper bounds of the latency buckets, in seconds (`+Inf` is implicit).
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The counters of one hook.
#[derive(Debug, Default)]
pub struct HookCounters {
    calls: AtomicU64,
    denied: AtomicU64,
    failures: [AtomicU64; HookError::KINDS.len()],
    /// Non-cumulative bucket counts; the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// A snapshot of [`HookCounters`].
#[derive(Debug, Clone, PartialEq)]
pub struct HookSnapshot {
    /// Calls started (refused ones included).
    pub calls: u64,
    /// `allow: false` answers.
    pub denied: u64,
    /// Failures per kind, in [`HookError::KINDS`] order.
    pub failures: Vec<u64>,
    /// `(upper bound, count)` per bucket, non-cumulative, `f64::MAX` last.
    pub buckets: Vec<(f64, u64)>,
    /// Observations (answered or failed calls that reached the backend).
    pub count: u64,
    /// Total latency in seconds.
    pub sum_s: f64,
}

impl HookCounters {
    /// Counts a call starting.
    pub fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a denial.
    pub fn deny(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failure.
    pub fn fail(&self, e: HookError) {
        self.failures[e.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one round trip's latency.
    pub fn observe(&self, took: Duration) {
        let s = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> HookSnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        HookSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            failures: self
                .failures
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .collect(),
            count: counts.iter().sum(),
            buckets: BUCKETS
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(counts)
                .collect(),
            sum_s: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// The counters of every hook of one listener.
#[derive(Debug, Default)]
pub struct HookStats {
    hooks: [HookCounters; HookName::ALL.len()],
}

impl HookStats {
    /// The counters of `hook`.
    pub fn of(&self, hook: HookName) -> &HookCounters {
        &self.hooks[hook.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets() {
        let s = HookStats::default();
        let c = s.of(HookName::Message);
        c.call();
        c.call();
        c.deny();
        c.fail(HookError::Timeout);
        c.observe(Duration::from_micros(300));
        c.observe(Duration::from_secs(10));
        let snap = c.snapshot();
        assert_eq!((snap.calls, snap.denied, snap.count), (2, 1, 2));
        assert_eq!(snap.failures[HookError::Timeout.index()], 1);
        assert_eq!(snap.buckets[0], (0.0005, 1));
        assert_eq!(*snap.buckets.last().unwrap(), (f64::MAX, 1));
        assert!((snap.sum_s - 10.0003).abs() < 1e-9);
        assert_eq!(s.of(HookName::Connect).snapshot().calls, 0);
    }
}
