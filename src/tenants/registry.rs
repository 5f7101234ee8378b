//! The tenant registry: the config file's records merged with the admin API's
//! changes, what a handshake of a tenant may do, and the changes themselves.
//!
//! An API record wins over the config file's record of the same id until it is
//! deleted; the config record then applies again. Every change is written to
//! the store first and applied only when that succeeded, so what the node
//! enforces is always what a restart will load.
//!
//! Handshakes read an immutable snapshot ([`View`]) from a watch channel: no
//! lock is held while a connection is admitted. Changes are serialized by one
//! async mutex. A change that leaves a tenant refused (disabled, or
//! unregistered under `policy = "registered"`) asks the Broker to close the
//! tenant's sessions with 4003.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use actix::Recipient;
use serde_json::{Map, Value};
use tokio::sync::{watch, Mutex};
use wsplus_actors::broker::KickTenant;
use wsplus_actors::channels::TenantChannelLimits;
use wsplus_actors::{CloseCode, TenantId};

use super::admission::{Admission, Refusal};
use super::record::{FieldError, Source, TenantRecord, TenantSpec};
use super::store::{RedisStore, SqliteStore, StoreError};
use crate::cluster::RedisTarget;
use crate::settings::{TenantPolicy, TenantStore, TenantsSettings};

/// Why an admin-API change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// A field of the body is missing, of the wrong type or out of range.
    #[error("{0}")]
    Invalid(FieldError),
    /// No record with this id (PATCH, DELETE).
    #[error("unknown tenant {0:?}")]
    NotFound(String),
    /// DELETE of a record that only the config file has: there is no change
    /// to delete (edit the file, or PUT/PATCH `enabled = false`).
    #[error(
        "tenant {0:?} is registered by the config file only; there is no API change to delete"
    )]
    ConfigOnly(String),
    /// Another tenant already has this issuer.
    #[error("issuer: already the issuer of tenant {0:?}")]
    IssuerTaken(String),
    /// The store could not persist the change; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The merged records at one point in time.
#[derive(Debug, Default)]
pub struct View {
    records: BTreeMap<String, TenantRecord>,
    /// issuer → tenant id.
    issuers: HashMap<String, String>,
}

impl View {
    fn build(config: &HashMap<String, TenantSpec>, api: &HashMap<String, TenantSpec>) -> Self {
        let mut records = BTreeMap::new();
        for (id, spec) in config {
            records.insert(
                id.clone(),
                TenantRecord {
                    spec: spec.clone(),
                    source: Source::Config,
                },
            );
        }
        for (id, spec) in api {
            records.insert(
                id.clone(),
                TenantRecord {
                    spec: spec.clone(),
                    source: Source::Api,
                },
            );
        }
        let issuers = records
            .values()
            .filter_map(|r| Some((r.spec.issuer.clone()?, r.spec.id.clone())))
            .collect();
        Self { records, issuers }
    }

    /// The record of `id`, if registered.
    pub fn get(&self, id: &str) -> Option<&TenantRecord> {
        self.records.get(id)
    }

    /// Every record, by id.
    pub fn records(&self) -> impl Iterator<Item = &TenantRecord> {
        self.records.values()
    }

    /// The record whose `issuer` is exactly `iss`.
    pub fn by_issuer(&self, iss: &str) -> Option<&TenantRecord> {
        self.issuers.get(iss).and_then(|id| self.records.get(id))
    }

    /// The tenant (other than `except`) whose issuer is `iss`.
    fn issuer_owner(&self, iss: &str, except: &str) -> Option<&str> {
        self.issuers
            .get(iss)
            .map(String::as_str)
            .filter(|id| *id != except)
    }
}

/// The store behind the registry.
#[derive(Debug, Clone)]
enum Store {
    Sqlite(SqliteStore),
    /// Connected by [`TenantRegistry::connect`] before the server serves.
    Redis {
        target: Box<RedisTarget>,
        conn: OnceLock<RedisStore>,
    },
}

impl Store {
    async fn put(&self, spec: &TenantSpec) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.put(spec.clone()).await,
            Store::Redis { conn, .. } => redis(conn)?.put(spec).await,
        }
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.delete(id.to_owned()).await,
            Store::Redis { conn, .. } => redis(conn)?.delete(id).await,
        }
    }
}

fn redis(conn: &OnceLock<RedisStore>) -> Result<&RedisStore, StoreError> {
    conn.get().ok_or_else(|| StoreError {
        store: "redis".into(),
        problem: "not connected".into(),
    })
}

/// The registry. One per server, shared by the upgrade handler and the admin API.
#[derive(Debug)]
pub struct TenantRegistry {
    policy: TenantPolicy,
    config: HashMap<String, TenantSpec>,
    /// API records; the lock serializes changes.
    api: Mutex<HashMap<String, TenantSpec>>,
    view: watch::Sender<Arc<View>>,
    store: Store,
    kicks: OnceLock<Recipient<KickTenant>>,
}

impl TenantRegistry {
    /// Opens the store and merges its records with the config file's. Any
    /// store problem is an error: the server must not start without them.
    /// The Redis store (`redis`: the cluster's) loads in [`Self::connect`].
    pub fn open(
        settings: &TenantsSettings,
        redis: Option<&RedisTarget>,
    ) -> Result<Self, StoreError> {
        let (store, loaded) = match (settings.store, redis) {
            (TenantStore::Sqlite, _) => {
                let (s, loaded) = SqliteStore::open(Path::new(&settings.path))?;
                (Store::Sqlite(s), loaded)
            }
            (TenantStore::Redis, Some(target)) => (
                Store::Redis {
                    target: Box::new(target.clone()),
                    conn: OnceLock::new(),
                },
                Vec::new(),
            ),
            (TenantStore::Redis, None) => {
                return Err(StoreError {
                    store: "redis".into(),
                    problem: "needs cluster.redis_url".into(),
                })
            }
        };
        let config: HashMap<_, _> = settings
            .registered
            .iter()
            .map(|s| (s.id.clone(), s.clone()))
            .collect();
        let api: HashMap<_, _> = loaded.into_iter().map(|s| (s.id.clone(), s)).collect();
        let view = View::build(&config, &api);
        Ok(Self {
            policy: settings.policy,
            config,
            api: Mutex::new(api),
            view: watch::channel(Arc::new(view)).0,
            store,
            kicks: OnceLock::new(),
        })
    }

    /// Where sessions of a tenant that became refused are sent to be closed.
    pub fn attach(&self, kicks: Recipient<KickTenant>) {
        let _ = self.kicks.set(kicks);
    }

    /// The current snapshot.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// A receiver of every new snapshot (identity-provider key caches follow it).
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    /// May `tenant` connect, and with which limits?
    pub fn admit(&self, tenant: &str) -> Result<Admission, Refusal> {
        admission(self.policy, self.view.borrow().get(tenant))
    }

    /// The tenant's `max_channels`: `None` = no tenant-wide bound (unregistered,
    /// or omitted), `Some(0)` = no limit either, `Some(n)` = at most `n`
    /// channels with subscribers.
    pub fn max_channels(&self, tenant: &str) -> Option<u64> {
        self.view
            .borrow()
            .get(tenant)
            .and_then(|r| r.spec.max_channels)
    }

    /// Creates or replaces the API record of `id` with `body` (a JSON object;
    /// its `id`, when present, must be `id`). Returns the record and whether
    /// the tenant was not registered before.
    pub async fn put(&self, id: &str, body: Value) -> Result<(TenantRecord, bool), ChangeError> {
        let spec = parse(id, into_object(body)?)?;
        let mut api = self.api.lock().await;
        let created = self.view().get(id).is_none();
        self.write(&mut api, spec).await.map(|r| (r, created))
    }

    /// Merges `body` (a JSON object; `null` removes an optional field) into the
    /// record in force of `id` and stores the result as its API record.
    pub async fn patch(&self, id: &str, body: Value) -> Result<TenantRecord, ChangeError> {
        let changes = into_object(body)?;
        let mut api = self.api.lock().await;
        let current = self
            .view()
            .get(id)
            .map(|r| r.spec.clone())
            .ok_or_else(|| ChangeError::NotFound(id.to_owned()))?;
        let Value::Object(mut merged) = serde_json::to_value(current).expect("serializable") else {
            unreachable!("a record serializes to an object")
        };
        for (k, v) in changes {
            if v.is_null() && (k == "enabled" || k == "id") {
                return Err(ChangeError::Invalid(FieldError {
                    field: static_field(&k),
                    problem: "must not be null".into(),
                }));
            }
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        let spec = parse(id, merged)?;
        self.write(&mut api, spec).await
    }

    /// Deletes the API record of `id`; the config file's record, if any, applies
    /// again and is returned.
    pub async fn delete(&self, id: &str) -> Result<Option<TenantRecord>, ChangeError> {
        let mut api = self.api.lock().await;
        if !api.contains_key(id) {
            return Err(if self.config.contains_key(id) {
                ChangeError::ConfigOnly(id.to_owned())
            } else {
                ChangeError::NotFound(id.to_owned())
            });
        }
        if let Some(iss) = self.config.get(id).and_then(|s| s.issuer.as_deref()) {
            if let Some(owner) = self.view().issuer_owner(iss, id) {
                return Err(ChangeError::IssuerTaken(owner.to_owned()));
            }
        }
        self.store.delete(id).await?;
        api.remove(id);
        self.publish(&api, id);
        Ok(self.view().get(id).cloned())
    }

    async fn write(
        &self,
        api: &mut HashMap<String, TenantSpec>,
        spec: TenantSpec,
    ) -> Result<TenantRecord, ChangeError> {
        if let Some(iss) = &spec.issuer {
            if let Some(owner) = self.view().issuer_owner(iss, &spec.id) {
                return Err(ChangeError::IssuerTaken(owner.to_owned()));
            }
        }
        self.store.put(&spec).await?;
        let id = spec.id.clone();
        api.insert(id.clone(), spec);
        self.publish(api, &id);
        Ok(self.view().get(&id).cloned().expect("just written"))
    }

    /// Installs a new snapshot and closes the sessions of `changed` when it is
    /// now refused.
    fn publish(&self, api: &HashMap<String, TenantSpec>, changed: &str) {
        self.view
            .send_replace(Arc::new(View::build(&self.config, api)));
        self.kick_if_refused(changed);
    }

    /// Asks the Broker to close `tenant`'s sessions (cluster-wide, 4003) when
    /// the registry now refuses it.
    fn kick_if_refused(&self, changed: &str) {
        if let Err(why) = self.admit(changed) {
            log::info!(
                "tenant refused from now on tenant={changed} reason={why}; closing its sessions"
            );
            if let Some(kicks) = self.kicks.get() {
                kicks.do_send(KickTenant {
                    tenant: TenantId::new(changed.to_owned()),
                    listener: None,
                    subject: None,
                    code: CloseCode::Kicked,
                });
            }
        }
    }
}

/// What the channel spaces of the tenant's sessions read: the record's
/// `max_channels` as it is now, `0` and omitted both meaning no limit (no
/// listener setting bounds a tenant's channels).
impl TenantChannelLimits for TenantRegistry {
    fn max_channels(&self, tenant: &TenantId) -> Option<usize> {
        match TenantRegistry::max_channels(self, tenant.as_str()) {
            None | Some(0) => None,
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        }
    }
}

/// The admission of a tenant with `record` under `policy`.
fn admission(policy: TenantPolicy, record: Option<&TenantRecord>) -> Result<Admission, Refusal> {
    match (policy, record) {
        (TenantPolicy::Registered, None) => Err(Refusal::Unknown),
        (TenantPolicy::Open, None) => Ok(Admission::default()),
        (_, Some(r)) if !r.spec.enabled => Err(Refusal::Disabled),
        (_, Some(r)) => Ok(Admission {
            max_connections: r
                .spec
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            rate_limit_per_s: r.spec.rate_limit_per_s,
        }),
    }
}

fn into_object(body: Value) -> Result<Map<String, Value>, ChangeError> {
    match body {
        Value::Object(m) => Ok(m),
        _ => Err(ChangeError::Invalid(FieldError {
            field: "body",
            problem: "must be a JSON object".into(),
        })),
    }
}

/// A record from a request body: `id` defaults to the path's and must equal it;
/// `source` (as a listing shows it) is ignored; every problem names its field.
fn parse(id: &str, mut body: Map<String, Value>) -> Result<TenantSpec, ChangeError> {
    match body.get("id") {
        None => {
            body.insert("id".into(), Value::String(id.to_owned()));
        }
        Some(Value::String(s)) if s == id => {}
        Some(_) => {
            return Err(ChangeError::Invalid(FieldError {
                field: "id",
                problem: "must equal the tenant id of the path".into(),
            }))
        }
    }
    body.remove("source");
    let spec: TenantSpec = serde_path_to_error::deserialize(Value::Object(body)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names unknown fields in its message; the path names the rest.
        let problem = inner
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned();
        ChangeError::Invalid(FieldError {
            field: if path == "." {
                "body"
            } else {
                static_field(&path)
            },
            problem,
        })
    })?;
    match spec.problems().into_iter().next() {
        Some(p) => Err(ChangeError::Invalid(p)),
        None => Ok(spec),
    }
}

/// The static name of a record field (`FieldError` holds `&'static str`).
fn static_field(path: &str) -> &'static str {
    const FIELDS: [&str; 7] = [
        "id",
        "enabled",
        "max_connections",
        "rate_limit_per_s",
        "max_channels",
        "issuer",
        "jwks_uri",
    ];
    FIELDS
        .iter()
        .find(|f| **f == path)
        .copied()
        .unwrap_or("body")
}

mod follow;
#[cfg(test)]
mod tests;
