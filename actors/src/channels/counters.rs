//! Channel gauges and refresh and recovery counters, read by metrics
//! (`wsplus_channels`, `wsplus_subscriptions`, `wsplus_history_publications`,
//! `wsplus_refreshes_total`, `wsplus_recoveries_total`).
//! Relaxed atomics, like every other counter.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Gauges of one listener's channels on this node.
#[derive(Debug, Default)]
pub struct ChannelGauges {
    channels: AtomicI64,
    subscriptions: AtomicI64,
    history: AtomicI64,
}

impl ChannelGauges {
    /// Channels with at least one local subscriber: `+1` / `-1`.
    pub fn add_channels(&self, delta: i64) {
        self.channels.fetch_add(delta, Ordering::Relaxed);
    }

    /// Subscriptions: `+1` / `-1`.
    pub fn add_subscriptions(&self, delta: i64) {
        self.subscriptions.fetch_add(delta, Ordering::Relaxed);
    }

    /// Publications kept in this node's history: `+n` / `-n`.
    pub fn add_history(&self, delta: i64) {
        self.history.fetch_add(delta, Ordering::Relaxed);
    }

    /// Publications kept in this node's history.
    pub fn history(&self) -> u64 {
        self.history.load(Ordering::Relaxed).max(0) as u64
    }

    /// Channels with at least one local subscriber.
    pub fn channels(&self) -> u64 {
        self.channels.load(Ordering::Relaxed).max(0) as u64
    }

    /// Local subscriptions.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::Relaxed).max(0) as u64
    }
}

/// How a `refresh` ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RefreshResult {
    /// The token was accepted.
    Ok,
    /// The token did not verify (any handshake reason).
    InvalidToken,
    /// The token verified but named another tenant or subject.
    IdentityChanged,
}

impl RefreshResult {
    /// Every result, in counter order.
    pub const ALL: [RefreshResult; 3] = [
        RefreshResult::Ok,
        RefreshResult::InvalidToken,
        RefreshResult::IdentityChanged,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshResult::Ok => "ok",
            RefreshResult::InvalidToken => "invalid_token",
            RefreshResult::IdentityChanged => "identity_changed",
        }
    }

    fn index(self) -> usize {
        match self {
            RefreshResult::Ok => 0,
            RefreshResult::InvalidToken => 1,
            RefreshResult::IdentityChanged => 2,
        }
    }
}

/// An outcome counted by [`ByResult`]: its slot among `N`.
pub trait Outcome: Copy {
    /// The slot, below the counter's `N`.
    fn index(self) -> usize;
}

impl Outcome for RefreshResult {
    fn index(self) -> usize {
        RefreshResult::index(self)
    }
}

impl Outcome for RecoveryResult {
    fn index(self) -> usize {
        RecoveryResult::index(self)
    }
}

/// One relaxed counter per outcome `R`, process-wide.
#[derive(Debug)]
pub struct ByResult<R, const N: usize>([AtomicU64; N], std::marker::PhantomData<R>);

impl<R, const N: usize> Default for ByResult<R, N> {
    fn default() -> Self {
        Self(
            std::array::from_fn(|_| AtomicU64::new(0)),
            std::marker::PhantomData,
        )
    }
}

impl<R: Outcome, const N: usize> ByResult<R, N> {
    /// Counts one.
    pub fn add(&self, r: R) {
        self.0[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many ended with `r`.
    pub fn get(&self, r: R) -> u64 {
        self.0[r.index()].load(Ordering::Relaxed)
    }
}

/// Refreshes by result.
pub type RefreshCounters = ByResult<RefreshResult, 3>;

/// How a `subscribe` with `since` ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RecoveryResult {
    /// `recovered: true`: every missed publication was still kept.
    Recovered,
    /// `recovered: false`: another epoch, or publications no longer kept.
    NotRecovered,
}

impl RecoveryResult {
    /// Every result, in counter order.
    pub const ALL: [RecoveryResult; 2] = [RecoveryResult::Recovered, RecoveryResult::NotRecovered];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryResult::Recovered => "recovered",
            RecoveryResult::NotRecovered => "not_recovered",
        }
    }

    fn index(self) -> usize {
        match self {
            RecoveryResult::Recovered => 0,
            RecoveryResult::NotRecovered => 1,
        }
    }
}

/// Subscribes with `since` by result.
pub type RecoveryCounters = ByResult<RecoveryResult, 2>;
