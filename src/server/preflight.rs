//! What must hold before anything is bound, checked in one place: `serve`
//! runs it before building the server and `check-config` runs it after
//! validating, so both report the same problems with the same lines.
//!
//! Checks today: each hs256 listener's secret (variable set or file readable,
//! unless the development default applies), the TLS certificate and key
//! (readable, a matching pair), the cluster's Redis settings (password
//! variable or file, CA file), the tenant store, and the bridges (token and
//! header variables, proxy, CA files, local listeners), the hook and webhook
//! signing secrets. A new check is one more function called from [`check`]
//! that says whether its problems concern a secret.
//!
//! Each problem says whether it concerns a secret: `check-config
//! --no-secrets` leaves those out, for CI images that have every file but no
//! secret.

use std::sync::Arc;

use super::{dev, state, tls};
use crate::auth::{self, SetupError};
use crate::bridge::{self, BridgeError};
use crate::client::proxy::ProxyConfigError;
use crate::client::SetupError as ClientSetupError;
use crate::cluster::RedisTarget;
use crate::env::Env;
use crate::settings::{AuthMode, Settings, Source, TenantStore};
use crate::tenants::TenantRegistry;

/// One problem: a line naming the key, as `serve` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line (never a secret's value).
    pub line: String,
    /// True when it is about a secret (a variable or secret file).
    pub secret: bool,
}

/// Whether secrets are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Everything is checked (`serve`, `check-config`).
    Check,
    /// Problems about secrets are left out (`check-config --no-secrets`).
    Skip,
}

/// Every problem of `settings` (already validated) that would stop `serve`.
pub fn check(settings: &Settings, source: &Source, env: &Env, secrets: Secrets) -> Vec<Problem> {
    let mut problems = Vec::new();
    problems.extend(tls_pair(settings));
    problems.extend(listener_secrets(settings, source, env));
    let redis = RedisTarget::problems(&settings.cluster, env);
    problems.extend(redis.iter().map(|e| Problem {
        line: e.to_string(),
        secret: e.is_secret(),
    }));
    problems.extend(tenant_store(settings, env));
    problems.extend(bridges(settings, env));
    problems.extend(
        crate::hooks::secret_problems(settings, env)
            .into_iter()
            .map(|e| Problem {
                line: e.to_string(),
                secret: true,
            }),
    );
    if secrets == Secrets::Skip {
        problems.retain(|p| !p.secret);
    }
    problems
}

fn tls_pair(settings: &Settings) -> Option<Problem> {
    tls::server_config(&settings.server).err().map(|e| Problem {
        line: e.to_string(),
        secret: false,
    })
}

/// Each hs256 listener's secret, unless the development default generates it.
fn listener_secrets(settings: &Settings, source: &Source, env: &Env) -> Vec<Problem> {
    if dev::allowed(settings, source) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for (i, l) in settings.listeners.iter().enumerate() {
        if l.auth.mode != AuthMode::Hs256 {
            continue;
        }
        if let Err(problem) = auth::hs256_secret(&l.auth, env) {
            let e = SetupError::Secret {
                key: format!("listeners[{i}].auth"),
                problem,
            };
            problems.push(Problem {
                line: missing_secret(e, settings, source).to_string(),
                secret: true,
            });
        }
    }
    problems
}

/// The error for a listener whose secret is missing: with the default
/// configuration, it says why the development default did not apply.
pub fn missing_secret(e: SetupError, settings: &Settings, source: &Source) -> super::StartError {
    match e {
        SetupError::Secret { .. } if *source == Source::Default => super::StartError::NotLoopback {
            source: e,
            bind: settings.server.bind.clone(),
        },
        e => super::StartError::Auth(e),
    }
}

/// The tenant store as `serve` opens it.
fn tenant_store(settings: &Settings, env: &Env) -> Option<Problem> {
    let redis = match RedisTarget::from_settings(&settings.cluster, env) {
        Ok(target) => target,
        // Reported by the Redis check; the Redis store needs those settings.
        Err(_) if settings.tenants.store == TenantStore::Redis => return None,
        Err(_) => None,
    };
    TenantRegistry::open(&settings.tenants, redis.as_ref())
        .err()
        .map(|e| Problem {
            line: super::StartError::from(e).to_string(),
            secret: false,
        })
}

/// The bridges as `serve` prepares them (the first problem only).
fn bridges(settings: &Settings, env: &Env) -> Option<Problem> {
    let policies: Vec<_> = settings
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Arc::new(state::policy(i, l, settings)))
        .collect();
    bridge::prepare(settings, env, &policies)
        .err()
        .map(|e| Problem {
            secret: bridge_secret(&e),
            line: super::StartError::from(e).to_string(),
        })
}

/// True when a bridge problem is about a secret: a token variable or file,
/// a header's `${VAR}`, a `${VAR}` in the proxy URL.
fn bridge_secret(e: &BridgeError) -> bool {
    match e {
        BridgeError::Setup { source, .. } => match source {
            ClientSetupError::TokenEnv(_)
            | ClientSetupError::TokenFile(_)
            | ClientSetupError::Header { .. } => true,
            ClientSetupError::Url(_)
            | ClientSetupError::Subprotocol(_)
            | ClientSetupError::Tls(_) => false,
        },
        BridgeError::Proxy(p) => match p.problem {
            ProxyConfigError::Template(_) => true,
            ProxyConfigError::Invalid(_) => false,
        },
        BridgeError::UnknownListener { .. } => false,
    }
}
