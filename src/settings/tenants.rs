//! `[tenants]`: who may connect (`policy`), where admin-API changes to tenant
//! records persist (`store`, `path`), and the records of the config file
//! (`[[tenants.registered]]`). The records themselves are
//! [`crate::tenants::TenantSpec`]s, validated by their own rules here with
//! each problem's key prefixed by `tenants.registered[i].`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::{ClusterBackend, Settings};
use crate::tenants::TenantSpec;

/// Which verified tenants may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantPolicy {
    /// Any verified tenant; registered ones get their record's limits.
    Open,
    /// Only registered tenants; others get 403 `unknown_tenant`.
    Registered,
}

/// Where admin-API changes to tenant records persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStore {
    /// An SQLite file (`tenants.path`), for one node.
    Sqlite,
    /// The cluster's Redis (`cluster.redis_url`), shared by every node.
    Redis,
}

/// `[tenants]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsSettings {
    /// open | registered.
    pub policy: TenantPolicy,
    /// sqlite | redis.
    pub store: TenantStore,
    /// The SQLite file (store = "sqlite"); created on the first change.
    pub path: String,
    /// Records of the config file; an admin-API change to one wins until it is
    /// deleted.
    pub registered: Vec<TenantSpec>,
}

impl Default for TenantsSettings {
    fn default() -> Self {
        Self {
            policy: TenantPolicy::Open,
            store: TenantStore::Sqlite,
            path: "wsplus-tenants.db".into(),
            registered: Vec::new(),
        }
    }
}

/// Records every problem of `[tenants]` (and of listeners' tenant auth mode).
pub(super) fn validate(p: &mut Problems, s: &Settings) {
    let t = &s.tenants;
    match t.store {
        TenantStore::Sqlite if t.path.is_empty() => {
            p.push("tenants.path", "required when tenants.store = \"sqlite\"")
        }
        TenantStore::Redis if s.cluster.backend != ClusterBackend::Redis => p.push(
            "tenants.store",
            "\"redis\" needs cluster.backend = \"redis\" (it uses the cluster's Redis)",
        ),
        TenantStore::Sqlite | TenantStore::Redis => {}
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut issuers: HashMap<&str, usize> = HashMap::new();
    for (i, spec) in t.registered.iter().enumerate() {
        let at = format!("tenants.registered[{i}]");
        for problem in spec.problems() {
            p.push(&format!("{at}.{}", problem.field), &problem.problem);
        }
        if let Some(first) = ids.insert(spec.id.as_str(), i) {
            p.push(
                &format!("{at}.id"),
                &format!("duplicates tenants.registered[{first}].id {:?}", spec.id),
            );
        }
        if let Some(issuer) = &spec.issuer {
            if let Some(first) = issuers.insert(issuer.as_str(), i) {
                p.push(
                    &format!("{at}.issuer"),
                    &format!("duplicates tenants.registered[{first}].issuer (an issuer selects one tenant)"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::validate::tests::problems;

    #[test]
    fn registered_tenants_are_validated_with_their_keys() {
        let got = problems(
            r#"
            [tenants]
            policy = "registered"
            path = ""
            [[tenants.registered]]
            id = "acme"
            max_connections = 20000000
            issuer = "https://acme.example/"
            jwks_uri = "https://acme.example/jwks.json"
            [[tenants.registered]]
            id = "acme"
            issuer = "https://acme.example/"
            jwks_uri = "file:///etc/keys"
            "#,
        );
        assert_eq!(
            got,
            [
                "tenants.path: required when tenants.store = \"sqlite\"",
                "tenants.registered[0].max_connections: must be at most 10000000",
                "tenants.registered[1].jwks_uri: must be an http:// or https:// URL",
                "tenants.registered[1].id: duplicates tenants.registered[0].id \"acme\"",
                "tenants.registered[1].issuer: duplicates tenants.registered[0].issuer (an issuer selects one tenant)",
            ]
        );
    }

    #[test]
    fn the_redis_store_needs_the_redis_cluster() {
        assert_eq!(
            problems("[tenants]\nstore = \"redis\"\n"),
            ["tenants.store: \"redis\" needs cluster.backend = \"redis\" (it uses the cluster's Redis)"]
        );
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        use crate::settings::load::from_toml_with_env;
        for bad in [
            "[tenants]\npolicy = \"closed\"\n",
            "[tenants]\nstores = \"sqlite\"\n",
            "[[tenants.registered]]\nid = \"a\"\nmax_conns = 1\n",
            "[[tenants.registered]]\nenabled = true\n",
        ] {
            assert!(from_toml_with_env(bad, Vec::new()).is_err(), "{bad}");
        }
    }
}
