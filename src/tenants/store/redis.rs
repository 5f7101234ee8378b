//! `tenants.store = "redis"`: admin-API tenant records in the cluster's Redis,
//! shared by every node.
//!
//! Records are one hash (`wsplus:tenants`, field = id, value = the record as
//! JSON) and a version counter (`wsplus:tenants:version`) bumped in the same
//! transaction as every change. Each node reads the counter every
//! [`FOLLOW_INTERVAL`] and reloads the hash when it moved, so a change made on
//! any node applies on every other node within a second, and a node that
//! missed changes (restarted, or cut off from Redis for a while) catches up
//! at its next read: there is no notification to lose.
//!
//! At start the records must load: Redis unreachable, or a record that is not
//! valid JSON or no longer validates, stops the server (an empty registry would
//! re-enable disabled tenants). Afterwards an unreachable Redis refuses changes
//! (503) and the node keeps enforcing the records it has.
//!
//! The store has its own connection to the cluster's Redis (the same URL,
//! credentials and TLS trust as the backplane, whose connection is private to
//! its arbiter and its bounded message queues).

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::StoreError;
use crate::cluster::RedisTarget;
use crate::tenants::TenantSpec;

/// The hash of records.
pub const HASH: &str = "wsplus:tenants";
/// The change counter.
pub const VERSION: &str = "wsplus:tenants:version";
/// How often a node looks for changes made elsewhere.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait for one Redis round trip.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis store. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

fn error(problem: impl std::fmt::Display) -> StoreError {
    StoreError {
        store: "redis".into(),
        problem: problem.to_string(),
    }
}

async fn bounded<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .map_err(|_| error(format!("no answer within {}s", TIMEOUT.as_secs())))?
        .map_err(error)
}

impl RedisStore {
    /// Connects to `target` and loads every record with the version it belongs to.
    pub async fn open(target: &RedisTarget) -> Result<(Self, u64, Vec<TenantSpec>), StoreError> {
        let client = target.client().map_err(error)?;
        let conn = bounded(client.get_connection_manager()).await?;
        let store = Self { conn };
        let (version, records) = store.load().await?;
        Ok((store, version, records))
    }

    /// The change counter.
    pub async fn version(&self) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<u64> = bounded(redis::cmd("GET").arg(VERSION).query_async(&mut c)).await?;
        Ok(v.unwrap_or(0))
    }

    /// Every record and the version they are at (read in one transaction).
    pub async fn load(&self) -> Result<(u64, Vec<TenantSpec>), StoreError> {
        let mut c = self.conn.clone();
        let (version, raw): (Option<u64>, Vec<(String, String)>) = bounded(
            redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(VERSION)
                .cmd("HGETALL")
                .arg(HASH)
                .query_async(&mut c),
        )
        .await?;
        let mut records = Vec::with_capacity(raw.len());
        for (id, json) in raw {
            let spec: TenantSpec = serde_json::from_str(&json)
                .map_err(|e| error(format!("record {id:?} is unreadable: {e}")))?;
            if spec.id != id {
                return Err(error(format!("record {id:?} holds id {:?}", spec.id)));
            }
            if let Some(p) = spec.problems().first() {
                return Err(error(format!("record {id:?} is invalid: {p}")));
            }
            records.push(spec);
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((version.unwrap_or(0), records))
    }

    /// Writes the API record `spec` and bumps the version.
    pub async fn put(&self, spec: &TenantSpec) -> Result<(), StoreError> {
        let json = serde_json::to_string(spec).map_err(error)?;
        let mut c = self.conn.clone();
        bounded(
            redis::pipe()
                .atomic()
                .hset(HASH, &spec.id, json)
                .ignore()
                .incr(VERSION, 1)
                .ignore()
                .query_async::<()>(&mut c),
        )
        .await
    }

    /// Removes the API record `id` and bumps the version.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        bounded(
            redis::pipe()
                .atomic()
                .hdel(HASH, id)
                .ignore()
                .incr(VERSION, 1)
                .ignore()
                .query_async::<()>(&mut c),
        )
        .await
    }
}
