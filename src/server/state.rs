//! Shared, read-only server state handed to every HTTP worker (`web::Data`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use wsplus_actors::channels::history::HistoryLimits;
use wsplus_actors::channels::presence::PresenceMode;
use wsplus_actors::{Broker, Counters, ListenerId, ListenerPolicy, OnRateLimit, OnTokenExpiry};

use crate::auth::Authenticator;
use crate::error::Rejections;
use crate::settings::{self, ListenerSettings, Settings};

/// One listener as the upgrade handler sees it.
#[derive(Debug)]
pub struct Listener {
    /// What the actors enforce.
    pub policy: Arc<ListenerPolicy>,
    /// The listener's settings as configured.
    pub settings: ListenerSettings,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Allowed `Origin` values; empty = any.
    pub allowed_origins: HashSet<String>,
    /// The listener's backend hooks (`[listeners.hooks]`), if any.
    pub hooks: Option<Arc<crate::hooks::HookClient>>,
    /// What its sessions are given to reach the backend (message hook,
    /// webhooks), if anything.
    pub session_hooks: Option<Arc<dyn wsplus_actors::session::SessionHooks>>,
    /// Channels mode only: its policy and refresh verifier.
    pub channels: Option<crate::channels::ChannelsListener>,
}

/// State shared by all workers.
#[derive(Debug)]
pub struct AppState {
    /// The cluster backend (readiness, node id).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The broker.
    pub broker: Addr<Broker>,
    /// Process counters.
    pub counters: Arc<Counters>,
    /// Handshake rejections by reason.
    pub rejections: Arc<Rejections>,
    /// Listeners by id.
    pub listeners: Vec<Listener>,
    /// Listener ids by path.
    pub by_path: HashMap<String, ListenerId>,
    /// What `GET /metrics` exports.
    pub metrics: settings::MetricsSettings,
    /// Every bridge's live state (admin API, metrics).
    pub bridges: Arc<crate::bridge::BridgeRegistry>,
    /// Tenant records: admission at the handshake, the admin API's changes.
    pub tenants: Arc<crate::tenants::TenantRegistry>,
    /// `[[webhooks]]` (metrics; channel events).
    pub webhooks: Arc<crate::hooks::Webhooks>,
}

impl Listener {
    /// The claim the tenant is read from, when it is read from a claim (named
    /// in an `invalid_tenant` refusal so a token issuer sees what is expected).
    pub fn tenant_claim(&self) -> Option<&str> {
        // Tenant mode: the issuer names the tenant; the claim may only agree.
        let claim_mode = self.settings.tenant.from == settings::TenantFrom::Claim
            && !matches!(
                self.settings.auth.mode,
                settings::AuthMode::None | settings::AuthMode::Tenant
            );
        claim_mode.then_some(self.settings.tenant.claim.as_str())
    }
}

impl AppState {
    /// The listener at `path`, if any.
    pub fn listener(&self, path: &str) -> Option<&Listener> {
        self.by_path
            .get(path)
            .map(|id| &self.listeners[usize::from(id.0)])
    }
}

/// Builds the actors' policy of `listeners[index]` from validated settings.
pub fn policy(index: usize, l: &ListenerSettings, s: &Settings) -> ListenerPolicy {
    let secs = |n: u64| (n > 0).then(|| Duration::from_secs(n));
    ListenerPolicy {
        id: ListenerId(index as u16),
        path: l.path.as_str().into(),
        mode: l.mode,
        scope: l.scope,
        max_message_bytes: l.max_message_bytes,
        heartbeat: secs(l.heartbeat_s),
        session_timeout: secs(l.session.timeout_s),
        on_token_expiry: match l.session.on_token_expiry {
            settings::OnTokenExpiry::Disconnect => OnTokenExpiry::Disconnect,
            settings::OnTokenExpiry::AllowStale => OnTokenExpiry::AllowStale,
        },
        rate_limit_per_s: l.session.rate_limit_per_s,
        on_rate_limit: match l.session.on_rate_limit {
            settings::OnRateLimit::Drop => OnRateLimit::Drop,
            settings::OnRateLimit::Close => OnRateLimit::Close,
        },
        max_connections_per_tenant: l.session.max_connections_per_tenant,
        outbound_queue_messages: s.limits.outbound_queue_messages,
        outbound_queue_bytes: s.limits.outbound_queue_bytes,
        history: l.channels.as_ref().and_then(|c| {
            let p = c.policy();
            p.history().then_some(HistoryLimits {
                size: p.history_size,
                ttl: p.history_ttl,
            })
        }),
        presence: l.channels.as_ref().map_or(PresenceMode::Off, |c| {
            PresenceMode::new(c.presence, c.join_leave)
        }),
    }
}
