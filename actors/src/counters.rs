//! Lock-free counters shared by the actors and read by stats and metrics.
//!
//! Plain relaxed atomics: increments on the hot path cost one uncontended-ish
//! atomic add, and readers (admin stats, Prometheus scrapes) never block writers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::close::CloseCode;
use crate::ids::ListenerId;

/// Why a message was not delivered.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DropReason {
    /// The sender exceeded its rate limit (`on_rate_limit = drop`).
    RateLimit,
    /// A recipient's outbound queue was full (the recipient is closed with 4009).
    SlowConsumer,
    /// A room's inbound queue was full (global fan-out under overload).
    RoomBacklog,
    /// A message for or from other nodes was lost: the backplane queue was full
    /// or the backplane (Redis) unreachable. Cross-node delivery is at most once.
    Backplane,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 4] = [
        DropReason::RateLimit,
        DropReason::SlowConsumer,
        DropReason::RoomBacklog,
        DropReason::Backplane,
    ];

    /// Label value used in stats and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::RateLimit => "rate_limit",
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::RoomBacklog => "room_backlog",
            DropReason::Backplane => "backplane",
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::RateLimit => 0,
            DropReason::SlowConsumer => 1,
            DropReason::RoomBacklog => 2,
            DropReason::Backplane => 3,
        }
    }
}

/// Stripes of a [`StripedCounter`]; more than the worker threads of a small machine.
const STRIPES: usize = 8;

/// One stripe on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A counter that sessions on every worker thread increment per message: each
/// thread adds to its own cache line and readers sum them, so sessions on
/// different cores do not bounce one line between them per delivery. Relaxed
/// throughout: a total read while others add is a snapshot, never a fence.
#[derive(Debug, Default)]
pub struct StripedCounter([Stripe; STRIPES]);

impl StripedCounter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0[this_thread_stripe()]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }

    /// The total so far.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// The stripe of the calling thread, assigned round-robin on first use.
fn this_thread_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// Messages accepted from clients.
    pub messages_in: StripedCounter,
    /// Messages pushed to recipients' queues (or written back in session scope).
    pub deliveries: StripedCounter,
    /// Channels and subscriptions (channels-mode listeners).
    pub channels: crate::channels::counters::ChannelGauges,
}

/// Process-wide counters.
#[derive(Debug)]
pub struct Counters {
    started: Instant,
    listeners: Vec<ListenerCounters>,
    messages_out: StripedCounter,
    dropped: [AtomicU64; DropReason::ALL.len()],
    closes: [AtomicU64; CloseCode::ALL.len()],
    heartbeat_timeouts: AtomicU64,
    /// In-band token refreshes by result (channels mode).
    pub refreshes: crate::channels::counters::RefreshCounters,
    /// Subscribes with `since` by result (channels mode, history).
    pub recoveries: crate::channels::counters::RecoveryCounters,
    backpressure_micros: AtomicU64,
}

impl Counters {
    /// Counters for `listeners` listeners, all zero.
    pub fn new(listeners: usize) -> Self {
        Self {
            started: Instant::now(),
            listeners: (0..listeners)
                .map(|_| ListenerCounters::default())
                .collect(),
            messages_out: StripedCounter::default(),
            dropped: Default::default(),
            closes: Default::default(),
            heartbeat_timeouts: AtomicU64::new(0),
            refreshes: Default::default(),
            recoveries: Default::default(),
            backpressure_micros: AtomicU64::new(0),
        }
    }

    /// The counters of one listener.
    ///
    /// # Panics
    /// On an id the server never created; ids come from the listener table.
    pub fn listener(&self, id: ListenerId) -> &ListenerCounters {
        &self.listeners[usize::from(id.0)]
    }

    /// All listeners' counters, by id.
    pub fn listeners(&self) -> &[ListenerCounters] {
        &self.listeners
    }

    /// Seconds since start.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts `n` frames written to sockets.
    pub fn add_messages_out(&self, n: u64) {
        self.messages_out.add(n);
    }

    /// Frames written to sockets.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.get()
    }

    /// Messages accepted from clients, all listeners.
    pub fn messages_in(&self) -> u64 {
        self.listeners.iter().map(|l| l.messages_in.get()).sum()
    }

    /// Counts one dropped message.
    pub fn add_dropped(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Dropped messages for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }

    /// Dropped messages, all reasons.
    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.dropped(*r)).sum()
    }

    /// Counts one close frame sent.
    pub fn add_close(&self, code: CloseCode) {
        self.closes[code.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Close frames sent with this code.
    pub fn closes(&self, code: CloseCode) -> u64 {
        self.closes[code.index()].load(Ordering::Relaxed)
    }

    /// Counts one session dropped because its peer stopped answering pings
    /// (no close frame is sent to a dead peer, so no close code counts it).
    pub fn add_heartbeat_timeout(&self) {
        self.heartbeat_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions dropped by the heartbeat.
    pub fn heartbeat_timeouts(&self) -> u64 {
        self.heartbeat_timeouts.load(Ordering::Relaxed)
    }

    /// Counts time a room held its publishers back (a member's queue full).
    pub fn add_backpressure(&self, held: Duration) {
        let micros = u64::try_from(held.as_micros()).unwrap_or(u64::MAX);
        self.backpressure_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// Seconds rooms held their publishers back, summed over rooms.
    pub fn backpressure_seconds(&self) -> f64 {
        self.backpressure_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// Per-session message counts, written by the Session and read by admin queries.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Messages received from the client.
    pub messages_in: AtomicU64,
    /// Messages written to the client.
    pub messages_out: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_out_sums_every_thread() {
        let c = std::sync::Arc::new(Counters::new(1));
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add_messages_out(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        c.add_messages_out(5);
        assert_eq!(c.messages_out(), 12_005);
    }
}
