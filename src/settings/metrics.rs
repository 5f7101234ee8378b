//! `[metrics]`: what `GET /metrics` exports beyond the fixed, bounded series.

use serde::{Deserialize, Serialize};

/// Most per-tenant series `tenant_series` may ask for.
pub const MAX_TENANT_SERIES: usize = 10_000;

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Export `wsplus_tenant_connections{listener,tenant}`. Off by default: one
    /// series per tenant is unbounded cardinality for Prometheus.
    pub tenant_labels: bool,
    /// With `tenant_labels`: how many (listener, tenant) series at most, the
    /// ones with the most connections; the rest are summed per listener into
    /// `wsplus_tenant_connections_other{listener}`.
    pub tenant_series: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            tenant_labels: false,
            tenant_series: 100,
        }
    }
}
