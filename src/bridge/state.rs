//! What each bridge is doing, readable at any time without touching the
//! bridges themselves: atomics the bridge tasks bump, and the last error behind
//! a mutex taken only when an error is recorded or the state is read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::settings::{BridgeEndpoint, BridgeSettings};

/// The live state of one bridge.
#[derive(Debug)]
pub struct BridgeState {
    name: String,
    /// The upstream URL with the token (and any userinfo) redacted.
    url: String,
    into: Option<BridgeEndpoint>,
    from: Option<BridgeEndpoint>,
    connected: AtomicBool,
    /// Unix seconds of the current connection's start; 0 when disconnected.
    connected_since: AtomicU64,
    reconnects: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    dropped: AtomicU64,
    echoes: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of a bridge's state (admin API, metrics).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BridgeView {
    /// The bridge's name.
    pub name: String,
    /// Upstream URL, token redacted.
    pub url: String,
    /// True while the upstream connection is up.
    pub connected: bool,
    /// Unix seconds since which the current connection is up.
    pub connected_since: Option<u64>,
    /// The most recent connection error (kept after a successful reconnect).
    pub last_error: Option<String>,
    /// Dial attempts after the first one.
    pub reconnects: u64,
    /// Frames received upstream and published into the local tenant.
    pub messages_in: u64,
    /// Local messages sent upstream.
    pub messages_out: u64,
    /// Messages lost because a bridge queue was full, or the local tenant
    /// was refused (disabled, or unregistered under `policy = "registered"`).
    pub dropped: u64,
    /// Frames recognised as the echo of a message this bridge sent upstream.
    pub echoes_dropped: u64,
    /// Local tenant frames are published into.
    pub into: Option<BridgeEndpoint>,
    /// Local tenant whose messages go upstream.
    pub from: Option<BridgeEndpoint>,
}

/// One counter of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// See [`BridgeView::reconnects`].
    Reconnects,
    /// See [`BridgeView::messages_in`].
    MessagesIn,
    /// See [`BridgeView::messages_out`].
    MessagesOut,
    /// See [`BridgeView::dropped`].
    Dropped,
    /// See [`BridgeView::echoes_dropped`].
    Echoes,
}

impl BridgeState {
    /// A disconnected bridge with zero counters; `url` must already be redacted.
    pub fn new(settings: &BridgeSettings, url: String) -> Self {
        Self {
            name: settings.name.clone(),
            url,
            into: settings.into.clone(),
            from: settings.from.clone(),
            connected: AtomicBool::new(false),
            connected_since: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            echoes: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn counter(&self, c: Counter) -> &AtomicU64 {
        match c {
            Counter::Reconnects => &self.reconnects,
            Counter::MessagesIn => &self.messages_in,
            Counter::MessagesOut => &self.messages_out,
            Counter::Dropped => &self.dropped,
            Counter::Echoes => &self.echoes,
        }
    }

    /// Adds one to `c`.
    pub fn bump(&self, c: Counter) {
        self.counter(c).fetch_add(1, Ordering::Relaxed);
    }

    /// The current value of `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.counter(c).load(Ordering::Relaxed)
    }

    /// True while connected upstream.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Marks the upstream connection up or down.
    pub fn set_connected(&self, up: bool) {
        let since = if up {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        } else {
            0
        };
        self.connected_since.store(since, Ordering::Relaxed);
        self.connected.store(up, Ordering::Relaxed);
    }

    /// Records an error (text that never holds a secret: client errors show
    /// redacted URLs only).
    pub fn set_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// A consistent-enough snapshot (each field read once, relaxed).
    pub fn view(&self) -> BridgeView {
        let since = self.connected_since.load(Ordering::Relaxed);
        BridgeView {
            name: self.name.clone(),
            url: self.url.clone(),
            connected: self.is_connected(),
            connected_since: (since > 0).then_some(since),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            reconnects: self.get(Counter::Reconnects),
            messages_in: self.get(Counter::MessagesIn),
            messages_out: self.get(Counter::MessagesOut),
            dropped: self.get(Counter::Dropped),
            echoes_dropped: self.get(Counter::Echoes),
            into: self.into.clone(),
            from: self.from.clone(),
        }
    }
}

/// Every configured bridge's state, in configuration order. Shared by the
/// bridge tasks (writers) and the admin API and metrics (readers).
#[derive(Debug, Default)]
pub struct BridgeRegistry {
    bridges: Vec<Arc<BridgeState>>,
}

impl BridgeRegistry {
    /// A registry of these states.
    pub fn new(bridges: Vec<Arc<BridgeState>>) -> Self {
        Self { bridges }
    }

    /// Each bridge's state.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<BridgeState>> {
        self.bridges.iter()
    }

    /// Snapshots of every bridge.
    pub fn views(&self) -> Vec<BridgeView> {
        self.bridges.iter().map(|b| b.view()).collect()
    }

    /// The state of the bridge called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<BridgeState>> {
        self.bridges.iter().find(|b| b.name == name)
    }
}
