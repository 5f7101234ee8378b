//! Settings: the TOML configuration of docs/configuration.md, loaded with the
//! `config` crate (file, then `WSPLUS__SECTION__KEY` environment overrides) and
//! validated as a whole before anything binds. Secrets never live here: only
//! the names of the environment variables or files that hold them.

mod channels;
mod env_overrides;
mod hooks;
mod load;
mod metrics;
mod outbound;
mod problems;
mod tenants;
mod validate;
mod validate_outbound;

use serde::{Deserialize, Serialize};

pub use channels::{ChannelAccess, ChannelsSettings};
pub use hooks::{HookName, HooksSettings, WebhookEvent, WebhookSettings};
pub use load::{load, LoadError, Source, EMBEDDED_DEFAULT};
pub use metrics::{MetricsSettings, MAX_TENANT_SERIES};
pub use outbound::{BridgeAuth, BridgeEndpoint, BridgeSettings, ProxySettings};
pub use tenants::{TenantPolicy, TenantStore, TenantsSettings};
pub use validate::validate;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The client-facing HTTP server.
    pub server: ServerSettings,
    /// The admin API server.
    pub admin: AdminSettings,
    /// WebSocket listeners (paths) on the server.
    pub listeners: Vec<ListenerSettings>,
    /// Broker-wide limits.
    pub limits: LimitsSettings,
    /// Scale-out backend.
    pub cluster: ClusterSettings,
    /// What `GET /metrics` exports.
    pub metrics: MetricsSettings,
    /// HTTP CONNECT proxy for outbound connections (`connect`, bridges).
    pub proxy: ProxySettings,
    /// Outbound connections joined to local tenants (docs/client.md#bridges).
    pub bridges: Vec<BridgeSettings>,
    /// Tenant policy, records and where API changes persist.
    pub tenants: TenantsSettings,
    /// Backend endpoints hearing about sessions and channels.
    pub webhooks: Vec<WebhookSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            admin: AdminSettings::default(),
            // The embedded default's three listeners (config/default.toml).
            listeners: vec![
                ListenerSettings::default(),
                ListenerSettings {
                    path: "/ws/chat".into(),
                    mode: Mode::Message,
                    ..ListenerSettings::default()
                },
                ListenerSettings {
                    path: "/ws/channels".into(),
                    mode: Mode::Channels,
                    channels: Some(ChannelsSettings::default()),
                    ..ListenerSettings::default()
                },
            ],
            limits: LimitsSettings::default(),
            cluster: ClusterSettings::default(),
            metrics: MetricsSettings::default(),
            proxy: ProxySettings::default(),
            bridges: Vec::new(),
            tenants: TenantsSettings::default(),
            webhooks: Vec::new(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address all listeners share.
    pub bind: String,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Serve the demo page at `/demo`.
    pub demo: bool,
    /// Seconds to wait for sessions to close on shutdown.
    pub shutdown_grace_s: u64,
    /// PEM certificate chain; with `tls_key`, serve wss://.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    /// PEM private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            demo: false,
            shutdown_grace_s: 10,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Address of the admin API (separate from client traffic).
    pub bind: String,
    /// Environment variable holding the admin bearer token.
    pub token_env: String,
    /// Largest JSON request body the admin API reads; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:9090".into(),
            token_env: "WSPLUS_ADMIN_TOKEN".into(),
            max_body_bytes: 65536,
        }
    }
}

/// Frame/message mapping (`payload` | `message`).
pub type Mode = wsplus_actors::Mode;
/// Routing scope (`session` | `tenant` | `global`).
pub type Scope = wsplus_actors::Scope;

/// `[[listeners]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerSettings {
    /// URL path, unique, starting with `/`.
    pub path: String,
    /// payload | message | channels.
    pub mode: Mode,
    /// session | tenant | global.
    pub scope: Scope,
    /// Allowed `Origin` values (exact match); empty = any.
    pub allowed_origins: Vec<String>,
    /// Largest accepted frame, inclusive.
    pub max_message_bytes: usize,
    /// Server ping interval in seconds; 0 disables heartbeats.
    pub heartbeat_s: u64,
    /// Handshake authentication.
    pub auth: AuthSettings,
    /// Where the tenant comes from.
    pub tenant: TenantSettings,
    /// Session lifetime, rate and connection limits.
    pub session: SessionSettings,
    /// `[listeners.channels]` (mode = "channels" only; defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<ChannelsSettings>,
    /// Backend hooks; absent = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksSettings>,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            path: "/ws/events".into(),
            mode: Mode::Payload,
            scope: Scope::Tenant,
            allowed_origins: Vec::new(),
            max_message_bytes: 65536,
            heartbeat_s: 30,
            auth: AuthSettings::default(),
            tenant: TenantSettings::default(),
            session: SessionSettings::default(),
            channels: None,
            hooks: None,
        }
    }
}

/// Authentication mode of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No token; identity is anonymous.
    None,
    /// HS256 with a shared secret.
    Hs256,
    /// RS256/ES256 with keys from a JWKS endpoint.
    Jwks,
    /// RS256/ES256 with the keys of the registered tenant whose `issuer` is
    /// the token's `iss` (`[[tenants.registered]]`).
    Tenant,
}

/// `[listeners.auth]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// none | hs256 | jwks.
    pub mode: AuthMode,
    /// hs256: environment variable holding the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// hs256: file holding the secret (alternative to `secret_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    /// jwks: where to fetch the key set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Required `iss`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Required `aud` (string or array member), when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`, seconds.
    pub leeway_s: u64,
    /// jwks: refetch interval, seconds.
    pub jwks_refresh_s: u64,
}

impl AuthSettings {
    /// The variable `secret_env` names when not configured.
    pub fn default_secret_env() -> String {
        "WSPLUS_JWT_SECRET".into()
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Hs256,
            secret_env: Some(Self::default_secret_env()),
            secret_file: None,
            jwks_uri: None,
            issuer: None,
            audience: None,
            leeway_s: 0,
            jwks_refresh_s: 300,
        }
    }
}

/// Where a listener's tenant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantFrom {
    /// A verified claim of the token.
    Claim,
    /// A fixed value for every connection.
    Static,
}

/// `[listeners.tenant]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    /// claim | static.
    pub from: TenantFrom,
    /// The claim holding the tenant (claim mode).
    pub claim: String,
    /// The tenant of every connection (static mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_id: Option<String>,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            from: TenantFrom::Claim,
            claim: "tenant_id".into(),
            static_id: None,
        }
    }
}

/// What to do when a token expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTokenExpiry {
    /// Close with 4001.
    Disconnect,
    /// Keep the connection.
    AllowStale,
}

/// What to do when the rate limit is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRateLimit {
    /// Drop the message.
    Drop,
    /// Close with 4008.
    Close,
}

/// `[listeners.session]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// Session lifetime in seconds; 0 = unlimited. Close 4002.
    pub timeout_s: u64,
    /// disconnect | allow-stale.
    pub on_token_expiry: OnTokenExpiry,
    /// Messages per second per connection; 0 = none.
    pub rate_limit_per_s: u32,
    /// drop | close.
    pub on_rate_limit: OnRateLimit,
    /// Connections per tenant on this listener; 0 = none. HTTP 429 above.
    pub max_connections_per_tenant: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            timeout_s: 0,
            on_token_expiry: OnTokenExpiry::Disconnect,
            rate_limit_per_s: 0,
            on_rate_limit: OnRateLimit::Drop,
            max_connections_per_tenant: 0,
        }
    }
}

/// `[limits]`: broker-wide bounds (see docs/limits.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSettings {
    /// Per-connection outbound queue, in messages. Full → the room holds its
    /// publishers back until it drains (4009 after `slow_consumer_timeout_ms`).
    pub outbound_queue_messages: usize,
    /// Per-connection outbound queue, in bytes. Same policy.
    pub outbound_queue_bytes: usize,
    /// Milliseconds a session's full outbound queue may hold its room's
    /// publishers back before the session is closed with 4009.
    pub slow_consumer_timeout_ms: u64,
    /// Messages waiting in one room before publishers are held back.
    pub room_queue: usize,
    /// Open connections, all listeners; 0 = none. HTTP 503 above.
    pub max_connections: usize,
    /// Milliseconds a new TCP connection has to deliver its whole HTTP request
    /// head (the upgrade request); slower ones get 408 and are closed, so
    /// connections that never complete a request cannot pile up.
    pub request_timeout_ms: u64,
    /// Seconds sent data may stay unacknowledged, or the peer's receive window
    /// stay shut, before the kernel aborts the connection (TCP_USER_TIMEOUT).
    /// The only thing that frees a consumer that stopped reading altogether:
    /// its session can no longer run, not even its heartbeat. 0 = kernel default.
    pub send_timeout_s: u64,
    /// TCP connections open at once on the client port (sessions and
    /// handshakes in progress, spread over the workers). Beyond, new
    /// connections wait in the listen backlog. Must exceed `max_connections`.
    pub max_tcp_connections: usize,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            outbound_queue_messages: 1024,
            outbound_queue_bytes: 1 << 20,
            slow_consumer_timeout_ms: 2000,
            room_queue: 4096,
            max_connections: 0,
            request_timeout_ms: 5000,
            send_timeout_s: 60,
            max_tcp_connections: 50_000,
        }
    }
}

/// Cluster backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterBackend {
    /// One node, in-process.
    Local,
    /// Several nodes sharing a Redis.
    Redis,
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// local | redis.
    pub backend: ClusterBackend,
    /// Redis URL (redis backend): `redis://` or `rediss://` (TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Redis ACL user name (instead of one in the URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Environment variable holding the Redis password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// File holding the Redis password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// `rediss://`: a PEM file of CA certificates trusted besides the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// This node's id; empty = random per start.
    pub node_id: String,
    /// Seconds a node's lease lasts: a node that stops renewing it (crash,
    /// partition) has its tenant slots and registry entries forgotten after this.
    pub lease_s: u64,
    /// Longest wait, in milliseconds, for Redis or other nodes' admin answers.
    pub timeout_ms: u64,
    /// Messages and registry updates waiting for Redis; beyond, they are dropped
    /// (and counted).
    pub queue: usize,
    /// Bytes of messages waiting for Redis (channel names and payloads); a
    /// message that would go beyond is dropped (and counted).
    pub queue_bytes: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            backend: ClusterBackend::Local,
            redis_url: None,
            username: None,
            password_env: None,
            password_file: None,
            tls_ca_file: None,
            node_id: String::new(),
            lease_s: 15,
            timeout_ms: 2000,
            queue: 8192,
            queue_bytes: 32 << 20,
        }
    }
}
