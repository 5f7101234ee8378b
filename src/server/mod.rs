//! The server: builds the actors and the two HTTP servers (client traffic and
//! admin) from settings and already-bound sockets, and shuts them down in order.

pub mod access_log;
mod assets;
pub mod conn;
mod demo;
pub mod dev;
mod listen;
pub mod preflight;
pub mod socket;
pub mod state;
pub mod tls;
pub mod upgrade;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter};
use actix_web::{web, App};
use wsplus_actors::broker::{BrokerConfig, Shutdown};
use wsplus_actors::{Broker, Counters};

use crate::admin;
use crate::auth::{Authenticator, SetupError};
use crate::bridge::{self, BridgeError, BridgeRegistry, Bridges};
use crate::cluster::{Cluster, ClusterError, RedisTarget, TargetError};
use crate::env::Env;
use crate::error::Rejections;
use crate::hooks::{self, HookClient, Webhooks};
use crate::settings::{Settings, Source};
use crate::tenants::TenantRegistry;
use state::{AppState, Listener};

/// The least time shutdown gives open connections to write what they have
/// queued (close frames with 1001) before dropping them.
const CLOSE_FLUSH: Duration = Duration::from_millis(100);

/// Most open connections on the admin port.
const ADMIN_CONNECTIONS: usize = 1024;

/// The two sockets the server listens on, bound before start so tests can use
/// port 0 and `serve` can fail early.
#[derive(Debug)]
pub struct Sockets {
    /// Client traffic (all listeners).
    pub http: TcpListener,
    /// Admin API.
    pub admin: TcpListener,
}

impl Sockets {
    /// Binds `server.bind` and `admin.bind`; an error names the one that failed.
    pub fn bind(settings: &Settings) -> Result<Self, BindError> {
        let bind = |key: &'static str, port: &'static str, addr: &str| {
            socket::bind_listener(addr).map_err(|source| BindError {
                key,
                port,
                addr: addr.to_owned(),
                source,
            })
        };
        Ok(Self {
            http: bind("server.bind", "client", &settings.server.bind)?,
            admin: bind("admin.bind", "admin", &settings.admin.bind)?,
        })
    }
}

/// A port that could not be bound: which key, which port, which address.
#[derive(Debug, thiserror::Error)]
#[error("{key}: cannot bind {addr} (the {port} port): {source}")]
pub struct BindError {
    /// `server.bind` or `admin.bind`.
    pub key: &'static str,
    /// "client" or "admin".
    pub port: &'static str,
    /// The address as configured.
    pub addr: String,
    /// What the operating system said.
    pub source: std::io::Error,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An authenticator could not be built (missing secret...).
    #[error(transparent)]
    Auth(#[from] SetupError),
    /// A socket or TLS problem.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The cluster backend could not start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The cluster's Redis settings are unusable (password, CA file).
    #[error(transparent)]
    Redis(#[from] TargetError),
    /// `server.tls_cert` / `server.tls_key` unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A bridge (or the proxy) is unusable.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// The default configuration without its secret, served beyond loopback:
    /// the development default (which would generate one) does not apply.
    #[error(
        "{source} (the default configuration generates a development secret only when \
         server.bind is a loopback address; it is {bind})"
    )]
    NotLoopback {
        /// The missing secret.
        source: SetupError,
        /// `server.bind`.
        bind: String,
    },
    /// Problems found before building anything, one line each (see
    /// [`preflight`]).
    #[error("{}", .0.join("\n"))]
    Preflight(Vec<String>),
    /// `server.bind` or `admin.bind` could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The tenant store cannot be read or written.
    #[error(transparent)]
    Tenants(#[from] crate::tenants::StoreError),
    /// A hook or webhook secret is missing.
    #[error(transparent)]
    Hooks(#[from] crate::hooks::HooksSetupError),
}

/// A running broker.
pub struct Running {
    /// The Broker actor.
    pub broker: Addr<Broker>,
    /// Process counters.
    pub counters: Arc<Counters>,
    /// Handshake rejection counters.
    pub rejections: Arc<Rejections>,
    /// Where client traffic is accepted.
    pub http_addr: SocketAddr,
    /// Where the admin API is served.
    pub admin_addr: SocketAddr,
    /// What to print on stdout in the development default (URLs with
    /// tokens, the demo page, the admin `curl` line); see [`dev`].
    pub dev_announcement: Option<dev::Announcement>,
    /// The admin token generated for this run, when none was configured.
    pub generated_admin_token: Option<String>,
    /// True when the client port speaks TLS (wss://).
    pub secure: bool,
    /// The cluster backend (local or Redis).
    pub cluster: Arc<Cluster>,
    /// Every bridge's live state.
    pub bridges: Arc<BridgeRegistry>,
    bridge_tasks: Bridges,
    http: listen::PortHandle,
    admin: listen::PortHandle,
    grace: Duration,
    /// The rooms' arbiters, then one per global listener's router.
    _arbiters: Vec<Arbiter>,
}

/// Starts the broker on `sockets`. Must run inside an actix `System`.
pub async fn start(
    settings: Settings,
    source: Source,
    sockets: Sockets,
    env: Env,
) -> Result<Running, StartError> {
    Plan::new(settings, source, env)?.start(sockets).await
}

/// Everything the server needs that can fail without a socket: TLS files,
/// secrets, JWKS fetchers and bridges. `serve` builds it
/// before binding, so a missing secret never leaves a port bound.
pub struct Plan {
    settings: Settings,
    env: Env,
    workers: usize,
    tls: Option<rustls::ServerConfig>,
    listeners: Vec<Listener>,
    by_path: HashMap<String, wsplus_actors::ListenerId>,
    /// True when this run generated a secret (the development default).
    dev: bool,
    bridges: bridge::Prepared,
    tenants: Arc<TenantRegistry>,
    webhooks: Arc<Webhooks>,
    /// The cluster's Redis (`None`: a single node).
    redis: Option<RedisTarget>,
}

impl Plan {
    /// Checks and builds what `settings` describe. Must run inside an actix
    /// `System` (a jwks listener starts fetching its keys here).
    pub fn new(mut settings: Settings, source: Source, env: Env) -> Result<Self, StartError> {
        // Every problem at once, as `check-config` reports them.
        let problems = preflight::check(&settings, &source, &env, preflight::Secrets::Check);
        if !problems.is_empty() {
            return Err(StartError::Preflight(
                problems.into_iter().map(|p| p.line).collect(),
            ));
        }
        let dev_default = dev::allowed(&settings, &source);
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let tls = tls::server_config(&settings.server)?;
        let redis = RedisTarget::from_settings(&settings.cluster, &env)?;
        let tenants = Arc::new(TenantRegistry::open(&settings.tenants, redis.as_ref())?);
        let mut listeners = Vec::with_capacity(settings.listeners.len());
        let mut by_path = HashMap::new();
        let webhooks = Arc::new(Webhooks::new(&settings.webhooks, &env)?);
        for (i, l) in settings.listeners.iter().enumerate() {
            let auth = Authenticator::new(i, l, &env, dev_default, &tenants)
                .map_err(|e| preflight::missing_secret(e, &settings, &source))?;
            let auth = Arc::new(auth);
            let policy = Arc::new(state::policy(i, l, &settings));
            by_path.insert(l.path.clone(), policy.id);
            let hooks = hook_client(i, l, &env)?;
            let session_hooks = hooks::ListenerHooks::new(l.mode, hooks.as_ref(), &webhooks)
                .map(|h| Arc::new(h) as Arc<dyn wsplus_actors::session::SessionHooks>);
            let channels = crate::channels::ChannelsListener::new(l, &auth, hooks.as_ref());
            listeners.push(Listener {
                policy,
                settings: l.clone(),
                allowed_origins: l.allowed_origins.iter().cloned().collect(),
                hooks,
                session_hooks,
                channels,
                auth,
            });
        }

        // The demo page is on in the development default only.
        let dev = listeners.iter().any(|l| l.auth.generated_secret());
        if dev {
            settings.server.demo = true;
        }
        let policies: Vec<_> = listeners.iter().map(|l| l.policy.clone()).collect();
        let bridges = bridge::prepare(&settings, &env, &policies)?;
        Ok(Self {
            settings,
            env,
            workers,
            tls,
            listeners,
            by_path,
            dev,
            bridges,
            tenants,
            webhooks,
            redis,
        })
    }

    /// Starts the actors and both HTTP servers on `sockets`.
    pub async fn start(self, sockets: Sockets) -> Result<Running, StartError> {
        let Self {
            settings,
            env,
            workers,
            tls,
            listeners,
            by_path,
            dev,
            bridges,
            tenants,
            webhooks,
            redis,
        } = self;
        // Tenant records from Redis must be in place before any handshake.
        tenants.connect().await?;
        let secure = tls.is_some();
        let http_addr = sockets.http.local_addr()?;
        let admin_addr = sockets.admin.local_addr()?;
        let (admin_cfg, generated_admin_token) = admin::AdminConfig::from_settings(&settings, &env);
        let dev_announcement = dev.then(|| {
            let admin_token = match &generated_admin_token {
                Some(t) => dev::AdminToken::Generated(t),
                None => dev::AdminToken::FromEnv(&settings.admin.token_env),
            };
            let at = dev::Addresses {
                http: http_addr,
                admin: admin_addr,
                secure,
            };
            dev::Announcement {
                warning: dev::warning(&listeners),
                text: dev::announcement(&listeners, at, admin_token),
            }
        });
        let policies: Vec<_> = listeners.iter().map(|l| l.policy.clone()).collect();
        let counters = Arc::new(Counters::new(listeners.len()));
        let rejections = Arc::new(Rejections::default());
        let room_arbiters: Vec<Arbiter> = (0..workers).map(|_| Arbiter::new()).collect();
        // A global flood keeps its router busy: on a thread of its own, it
        // does not delay the joins of rooms that would share its arbiter.
        let router_arbiters: Vec<Arbiter> = policies
            .iter()
            .filter(|p| p.scope == wsplus_actors::Scope::Global)
            .map(|_| Arbiter::new())
            .collect();
        let cluster = Arc::new(
            Cluster::start(
                &settings,
                redis.as_ref(),
                &policies,
                counters.clone(),
                &webhooks,
            )
            .await?,
        );
        let broker = Broker::new(
            policies,
            counters.clone(),
            BrokerConfig {
                room_queue: settings.limits.room_queue,
                broker_queue: settings.limits.room_queue,
                max_sessions: settings.limits.max_connections,
                arbiters: room_arbiters.iter().map(|a| a.handle()).collect(),
                router_arbiters: router_arbiters.iter().map(|a| a.handle()).collect(),
                backplane: cluster.backplane(),
                slow_consumer_timeout: Duration::from_millis(
                    settings.limits.slow_consumer_timeout_ms,
                ),
                channel_limits: tenants.clone(),
                ..BrokerConfig::default()
            },
        )
        .start();
        cluster.attach(&broker);
        tenants.attach(broker.clone().recipient());
        let bridge_registry = bridges.registry();
        let bridge_tasks = bridges.start(&broker, &tenants);
        webhooks.start();

        let app_state = web::Data::new(AppState {
            cluster: cluster.clone(),
            broker: broker.clone(),
            counters: counters.clone(),
            rejections: rejections.clone(),
            listeners,
            by_path,
            metrics: settings.metrics.clone(),
            bridges: bridge_registry.clone(),
            tenants,
            webhooks,
        });
        let grace = Duration::from_secs(settings.server.shutdown_grace_s);

        let client_state = app_state.clone();
        let demo = demo::Demo::from_settings(&settings);
        let conn_limits = socket::ConnectionLimits::new(&settings.limits, workers);
        socket::warn_if_unsupported(conn_limits.send_timeout);
        let client_port = listen::PortConfig {
            port: conn::Port::Client,
            workers,
            per_worker: conn_limits.per_worker,
            request_timeout: conn_limits.request_timeout,
            send_timeout: conn_limits.send_timeout,
            open: conn::Connections::default(),
        };
        let (http, http_handle) =
            listen::serve(sockets.http, tls, client_port.clone(), move || {
                App::new()
                    .app_data(client_state.clone())
                    .wrap(access_log::logger())
                    .configure(assets::configure)
                    .configure(|cfg| demo::configure(cfg, demo))
                    .default_service(web::to(upgrade::upgrade))
            })?;

        let admin_cfg = web::Data::new(admin_cfg);
        let admin_state = app_state.clone();
        let admin_settings = settings.admin.clone();
        let admin_port = listen::PortConfig {
            port: conn::Port::Admin,
            workers: 1,
            // Admin clients are few; the cap only keeps a flood from taking
            // every file descriptor.
            per_worker: ADMIN_CONNECTIONS,
            open: conn::Connections::default(),
            ..client_port.clone()
        };
        let (admin, admin_handle) = listen::serve(sockets.admin, None, admin_port, move || {
            App::new()
                .app_data(admin_state.clone())
                .app_data(admin_cfg.clone())
                .wrap(actix_web::middleware::from_fn(admin::require_token))
                .wrap(access_log::logger())
                .configure(|cfg| admin::configure(cfg, &admin_settings))
        })?;

        let running = Running {
            broker,
            counters,
            rejections,
            http_addr,
            admin_addr,
            dev_announcement,
            generated_admin_token,
            secure,
            cluster,
            bridges: bridge_registry,
            bridge_tasks,
            http: http_handle,
            admin: admin_handle,
            grace,
            _arbiters: room_arbiters.into_iter().chain(router_arbiters).collect(),
        };
        actix_rt::spawn(http);
        actix_rt::spawn(admin);
        log::info!(
            "listening on {http_addr}{} (admin on {admin_addr})",
            if secure { " with TLS" } else { "" }
        );
        Ok(running)
    }
}

/// The hook client of `listeners[index]`, when it has `[listeners.hooks]`.
fn hook_client(
    index: usize,
    l: &crate::settings::ListenerSettings,
    env: &Env,
) -> Result<Option<Arc<HookClient>>, StartError> {
    let Some(h) = &l.hooks else {
        return Ok(None);
    };
    let signer = hooks::Signer::from_source(h.secret_env.as_deref(), h.secret_file.as_deref(), env)
        .map_err(|problem| hooks::HooksSetupError::Secret {
            key: format!("listeners[{index}].hooks"),
            problem,
        })?;
    Ok(Some(Arc::new(HookClient::new(
        h,
        signer,
        l.max_message_bytes,
    ))))
}

impl Running {
    /// A cloneable handle that can shut this server down from anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            cluster: self.cluster.clone(),
            bridges: self.bridge_tasks.clone(),
            broker: self.broker.clone(),
            http: self.http.clone(),
            admin: self.admin.clone(),
            grace: self.grace,
        }
    }
}

/// Shuts a running server down: stop accepting, stop the bridges (upstream
/// links closed with 1001), close every session with 1001, wait for them (at
/// most `shutdown_grace_s`), stop both HTTP servers.
#[derive(Clone)]
pub struct ShutdownHandle {
    cluster: Arc<Cluster>,
    bridges: Bridges,
    broker: Addr<Broker>,
    http: listen::PortHandle,
    admin: listen::PortHandle,
    grace: Duration,
}

impl ShutdownHandle {
    /// Runs the shutdown sequence; returns when both servers have stopped.
    pub async fn shutdown(&self) {
        log::info!(
            "shutting down: closing sessions with 1001 (grace {}s)",
            self.grace.as_secs()
        );
        let deadline = tokio::time::Instant::now() + self.grace;
        self.http.stop_accepting().await;
        self.bridges.stop(self.grace).await;
        if let Ok(all_gone) = self.broker.send(Shutdown).await {
            if tokio::time::timeout_at(deadline, all_gone).await.is_err() {
                log::warn!("shutdown grace elapsed with sessions still open");
            }
        }
        self.cluster.leave().await;
        // Even with no grace, close frames already queued get a moment to be
        // written; a connection that is done ends at once, so this is a cap.
        let left = || {
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(CLOSE_FLUSH)
        };
        if !self.http.stop(left()).await {
            log::warn!("shutdown grace elapsed with client connections open; dropped");
        }
        if !self.admin.stop(left()).await {
            log::warn!("shutdown grace elapsed with admin requests in progress; dropped");
        }
        log::info!("shutdown complete");
    }
}
