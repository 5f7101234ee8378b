//! The Redis store's side of the registry: loading at start, then following
//! changes made on other nodes (the version counter is read every
//! [`FOLLOW_INTERVAL`]; see `store/redis.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Store, TenantRegistry};
use crate::tenants::store::{RedisStore, StoreError, FOLLOW_INTERVAL};
use crate::tenants::TenantSpec;

impl TenantRegistry {
    /// With `store = "redis"`: connects, loads the records (an error stops the
    /// server) and starts following other nodes' changes. Nothing to do for
    /// SQLite. Runs before the server serves; must run inside the actix `System`.
    pub async fn connect(self: &Arc<Self>) -> Result<(), StoreError> {
        let Store::Redis { target, conn } = &self.store else {
            return Ok(());
        };
        let (store, version, records) = RedisStore::open(target).await?;
        let _ = conn.set(store.clone());
        self.replace(records).await;
        log::info!("tenant records loaded from redis version={version}");
        let registry = Arc::downgrade(self);
        actix_rt::spawn(async move {
            let mut seen = version;
            let mut failing = false;
            loop {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                match registry.follow(&store, seen).await {
                    Ok(v) => {
                        if failing {
                            log::info!("tenant records: redis answers again");
                        }
                        failing = false;
                        seen = v;
                    }
                    Err(e) if !failing => {
                        failing = true;
                        log::warn!("{e}; enforcing the records this node has");
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(())
    }

    /// Reloads the records when the version moved past `seen`; returns the
    /// version now applied. Holds the change lock, so a change of this node
    /// is never overwritten by an older load.
    async fn follow(&self, store: &RedisStore, seen: u64) -> Result<u64, StoreError> {
        if store.version().await? == seen {
            return Ok(seen);
        }
        let mut api = self.api.lock().await;
        let (version, records) = store.load().await?;
        let changed = replace_all(&mut api, records);
        self.view
            .send_replace(Arc::new(super::View::build(&self.config, &api)));
        for id in changed {
            self.kick_if_refused(&id);
        }
        Ok(version)
    }

    /// Installs `records` as the API records (at start).
    async fn replace(&self, records: Vec<TenantSpec>) {
        let mut api = self.api.lock().await;
        replace_all(&mut api, records);
        self.view
            .send_replace(Arc::new(super::View::build(&self.config, &api)));
    }
}

/// Replaces `api` with `records`; returns the ids whose record changed.
fn replace_all(api: &mut HashMap<String, TenantSpec>, records: Vec<TenantSpec>) -> Vec<String> {
    let next: HashMap<String, TenantSpec> =
        records.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut changed: Vec<String> = next
        .iter()
        .filter(|(id, spec)| api.get(*id) != Some(spec))
        .map(|(id, _)| id.clone())
        .collect();
    changed.extend(api.keys().filter(|id| !next.contains_key(*id)).cloned());
    *api = next;
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_reports_added_changed_and_removed_ids() {
        let mut api: HashMap<String, TenantSpec> = ["a", "b", "c"]
            .into_iter()
            .map(|id| (id.to_owned(), TenantSpec::new(id)))
            .collect();
        let mut b = TenantSpec::new("b");
        b.enabled = false;
        let mut changed = replace_all(
            &mut api,
            vec![TenantSpec::new("a"), b, TenantSpec::new("d")],
        );
        changed.sort();
        assert_eq!(changed, ["b", "c", "d"]);
        assert_eq!(api.len(), 3);
    }
}
