//! Bridges (docs/client.md#bridges): persistent outbound WebSocket connections
//! joined to local tenants.
//!
//! Each `[[bridges]]` entry runs as up to three tasks on the server's runtime:
//! the connection loop (`runner.rs`: dial with the shared client, reconnect with
//! backoff and full jitter), the `into` publisher and the `from` membership
//! (`local.rs`). Their queues are bounded; a full one drops and counts. Their
//! state is in a [`BridgeRegistry`] the admin API and metrics read.
//!
//! Started with the server ([`prepare`] checks everything before anything
//! binds, [`Prepared::start`] spawns), stopped first on shutdown
//! ([`Bridges::stop`]: upstream links closed with 1001, memberships left).
//! The no-echo rule is in [`echo`].

mod backoff;
pub mod echo;
mod local;
mod runner;
pub mod state;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::sync::{mpsc, watch};
use wsplus_actors::protocol::bridge_stamp;
use wsplus_actors::{Broker, ListenerPolicy, TenantId};

pub use state::{BridgeRegistry, BridgeState, BridgeView};

use crate::client::{self, ClientOptions, Dialer, ProxyRules, TokenSource};
use crate::env::Env;
use crate::settings::{BridgeAuth, BridgeEndpoint, BridgeSettings, ClusterBackend, Settings};
use crate::tenants::TenantRegistry;
use backoff::Backoff;
use echo::{EchoFilter, SharedFilter};
use local::{Forwarder, LocalEnd, LocalTarget, MemberId};
use runner::{IntoEnd, Runner};

/// Why the bridges cannot start. Never holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The outbound client rejected a bridge's settings (unset token or
    /// header variable, unreadable CA file...).
    #[error("bridges[{index}] ({name}): {source}")]
    Setup {
        /// Position in `[[bridges]]`.
        index: usize,
        /// The bridge's name.
        name: String,
        /// What is wrong.
        source: client::SetupError,
    },
    /// `[proxy]` or the proxy environment variables are unusable.
    #[error(transparent)]
    Proxy(#[from] client::proxy::ProxySettingError),
    /// `into`/`from` names a listener that does not exist (settings were not
    /// validated).
    #[error("bridges[{index}].{key}.listener: no listener has path {path:?}")]
    UnknownListener {
        /// Position in `[[bridges]]`.
        index: usize,
        /// `into` or `from`.
        key: &'static str,
        /// The path asked for.
        path: String,
    },
}

/// One bridge ready to start.
struct Plan {
    settings: BridgeSettings,
    dialer: Dialer,
    state: Arc<BridgeState>,
    into: Option<LocalEnd>,
    from: Option<LocalEnd>,
}

/// Bridges checked and ready to start.
pub struct Prepared {
    plans: Vec<Plan>,
    /// Nodes share tenants: a bridge of the same name may run on each.
    clustered: bool,
    registry: Arc<BridgeRegistry>,
}

/// Checks every bridge against the listeners (`policies`, indexed by listener
/// id) and builds its dialer: variables, token source, CA file and proxy.
pub fn prepare(
    settings: &Settings,
    env: &Env,
    policies: &[Arc<ListenerPolicy>],
) -> Result<Prepared, BridgeError> {
    let proxy = if settings.bridges.is_empty() {
        ProxyRules::direct()
    } else {
        ProxyRules::resolve(&settings.proxy, env)?
    };
    let mut plans = Vec::with_capacity(settings.bridges.len());
    for (index, b) in settings.bridges.iter().enumerate() {
        let dialer =
            Dialer::new(&client_options(b), &proxy, env).map_err(|source| BridgeError::Setup {
                index,
                name: b.name.clone(),
                source,
            })?;
        let resolve = |key: &'static str, e: &Option<BridgeEndpoint>| {
            e.as_ref()
                .map(|e| local_end(policies, e).ok_or_else(|| unknown(index, key, e)))
                .transpose()
        };
        let into = resolve("into", &b.into)?;
        let from = resolve("from", &b.from)?;
        let state = Arc::new(BridgeState::new(b, dialer.shown_url()));
        plans.push(Plan {
            settings: b.clone(),
            dialer,
            state,
            into,
            from,
        });
    }
    let registry = Arc::new(BridgeRegistry::new(
        plans.iter().map(|p| p.state.clone()).collect(),
    ));
    Ok(Prepared {
        plans,
        registry,
        clustered: settings.cluster.backend == ClusterBackend::Redis,
    })
}

fn unknown(index: usize, key: &'static str, e: &BridgeEndpoint) -> BridgeError {
    BridgeError::UnknownListener {
        index,
        key,
        path: e.listener.clone(),
    }
}

fn local_end(policies: &[Arc<ListenerPolicy>], e: &BridgeEndpoint) -> Option<LocalEnd> {
    let policy = policies.iter().find(|p| *p.path == *e.listener)?;
    Some(LocalEnd {
        policy: policy.clone(),
        tenant: TenantId::new(e.tenant.as_str()),
    })
}

/// The shared client's options for a bridge.
fn client_options(b: &BridgeSettings) -> ClientOptions {
    let token = match (b.auth, &b.token_env, &b.token_file) {
        (BridgeAuth::None, _, _) => TokenSource::None,
        (BridgeAuth::Jwt, Some(var), _) => TokenSource::Env(var.clone()),
        (BridgeAuth::Jwt, None, Some(file)) => TokenSource::File(PathBuf::from(file)),
        // Validation requires one of them; without, the dialer reports the
        // variable as unset.
        (BridgeAuth::Jwt, None, None) => TokenSource::Env(String::new()),
    };
    ClientOptions {
        token,
        headers: b
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        subprotocol: Some(b.subprotocol.clone()).filter(|s| !s.is_empty()),
        heartbeat: (b.heartbeat_s > 0).then(|| Duration::from_secs(b.heartbeat_s)),
        tls_ca_file: Some(PathBuf::from(&b.tls_ca_file)).filter(|_| !b.tls_ca_file.is_empty()),
        max_message_bytes: b.max_message_bytes,
        ..ClientOptions::new(b.url.clone())
    }
}

impl Prepared {
    /// The state registry (to hand to the admin API and metrics).
    pub fn registry(&self) -> Arc<BridgeRegistry> {
        self.registry.clone()
    }

    /// Spawns every bridge's tasks on the current (actix) runtime. Their
    /// local ends serve a tenant only while `tenants` admits it.
    pub fn start(self, broker: &Addr<Broker>, tenants: &Arc<TenantRegistry>) -> Bridges {
        let (stop_tx, stop) = watch::channel(false);
        for plan in self.plans {
            start_one(plan, self.clustered, broker, tenants, &stop);
        }
        // Only the tasks hold receivers now: `closed()` tells when all ended.
        drop(stop);
        Bridges {
            stop: Arc::new(stop_tx),
        }
    }
}

fn start_one(
    plan: Plan,
    clustered: bool,
    broker: &Addr<Broker>,
    tenants: &Arc<TenantRegistry>,
    stop: &watch::Receiver<bool>,
) {
    let Plan {
        settings: b,
        dialer,
        state,
        into,
        from,
    } = plan;
    let id = MemberId::new();
    let (up_tx, up_rx) = mpsc::channel(b.queue);
    let same_tenant = matches!((&b.into, &b.from), (Some(i), Some(f)) if i == f);
    let came_down: Option<SharedFilter> =
        (same_tenant && clustered).then(|| Rc::new(RefCell::new(EchoFilter::new(b.queue))));
    let target = |end| LocalTarget {
        broker: broker.clone(),
        end,
        tenants: tenants.clone(),
        name: b.name.clone(),
        state: state.clone(),
    };
    let into = into.map(|end| {
        let (tx, rx) = mpsc::channel(b.queue);
        let mode = end.policy.mode;
        let stamp = bridge_stamp(&b.name, end.tenant.as_str());
        actix_rt::spawn(local::publish_into(
            rx,
            target(end),
            id.clone(),
            stop.clone(),
        ));
        IntoEnd {
            mode,
            stamp,
            queue: tx,
        }
    });
    if let Some(end) = from {
        let forwarder = Forwarder {
            target: target(end),
            id,
            mode: b.mode,
            upstream: up_tx.clone(),
            retry: Duration::from_secs(b.reconnect_max_s),
            came_down: came_down.clone(),
        };
        actix_rt::spawn(local::forward_from(forwarder, stop.clone()));
    }
    let runner = Runner {
        name: b.name.clone(),
        dialer,
        state,
        backoff: Backoff::new(
            Duration::from_millis(b.reconnect_min_ms),
            Duration::from_secs(b.reconnect_max_s),
        ),
        healthy_after: Duration::from_secs(b.reconnect_max_s),
        into,
        upstream: up_rx,
        echo: same_tenant.then(|| EchoFilter::new(b.queue)),
        came_down,
        stop: stop.clone(),
    };
    actix_rt::spawn(async move {
        // The upstream queue stays open for the runner's whole life, with or
        // without a `from` membership feeding it.
        let _keep_open = up_tx;
        runner.run().await;
    });
}

/// Running bridges: a handle that stops them all. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bridges {
    stop: Arc<watch::Sender<bool>>,
}

impl Bridges {
    /// Tells every bridge to stop (links closed with 1001, memberships left)
    /// and waits for their tasks, at most `grace`.
    pub async fn stop(&self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.stop.closed())
            .await
            .is_err()
        {
            log::warn!("bridges still running after {}s", grace.as_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_limits_what_its_upstream_may_send() {
        let mut b = BridgeSettings::default();
        assert_eq!(
            client_options(&b).max_message_bytes,
            crate::client::DEFAULT_MAX_MESSAGE_BYTES
        );
        assert_eq!(crate::client::DEFAULT_MAX_MESSAGE_BYTES, 1 << 20);
        b.max_message_bytes = 4096;
        assert_eq!(client_options(&b).max_message_bytes, 4096);
    }
}
