//! This node's live load from the Broker ([`GetLoad`](wsplus_actors::broker::GetLoad)):
//! connections and rooms per listener and, with `[metrics] tenant_labels`,
//! connections per tenant, capped at `tenant_series` series.

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use wsplus_actors::broker::{Load, TenantView};

use super::family::{label, labels2, Family};

/// The Broker's answer, plus how many tenant series to export (`None`: no
/// tenant labels).
#[derive(Debug)]
pub struct LoadMetrics {
    /// The Broker's answer.
    pub load: Load,
    /// `Some(tenant_series)` when `[metrics] tenant_labels` is on.
    pub tenant_series: Option<usize>,
}

/// The `n` (listener, tenant) rows with the most connections (ties by listener,
/// then tenant, so the choice is stable between scrapes), and the connections
/// of all the other rows summed per listener.
pub fn top_tenants(
    mut rows: Vec<TenantView>,
    n: usize,
) -> (Vec<TenantView>, BTreeMap<String, usize>) {
    rows.sort_by(|a, b| {
        b.connections
            .cmp(&a.connections)
            .then_with(|| (&a.listener, &a.tenant).cmp(&(&b.listener, &b.tenant)))
    });
    let rest = rows.split_off(n.min(rows.len()));
    let mut other = BTreeMap::new();
    for r in rest {
        *other.entry(r.listener).or_default() += r.connections;
    }
    (rows, other)
}

impl Collector for LoadMetrics {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let listeners = &self.load.listeners;
        Family::gauge("connections", "Open WebSocket connections.").labelled(
            &mut out,
            listeners
                .iter()
                .map(|l| (label("listener", l.path.as_str()), l.connections as u64)),
        )?;
        Family::gauge("rooms", "Live tenant rooms (tenants with a connection).").labelled(
            &mut out,
            listeners
                .iter()
                .map(|l| (label("listener", l.path.as_str()), l.rooms as u64)),
        )?;
        let Some(n) = self.tenant_series else {
            return Ok(());
        };
        let (top, other) = top_tenants(self.load.tenants.clone(), n);
        Family::gauge(
            "tenant_connections",
            "Open connections of the tenants with the most connections.",
        )
        .labelled(
            &mut out,
            top.iter().map(|t| {
                let labels = labels2(("listener", &t.listener), ("tenant", &t.tenant));
                (labels, t.connections as u64)
            }),
        )?;
        Family::gauge(
            "tenant_connections_other",
            "Open connections of the tenants beyond metrics.tenant_series.",
        )
        .labelled(
            &mut out,
            listeners.iter().map(|l| {
                let n = other.get(&l.path).copied().unwrap_or(0);
                (label("listener", l.path.as_str()), n as u64)
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(listener: &str, tenant: &str, connections: usize) -> TenantView {
        TenantView {
            listener: listener.into(),
            tenant: tenant.into(),
            connections,
        }
    }

    #[test]
    fn top_tenants_keeps_the_busiest_and_sums_the_rest_per_listener() {
        let rows = vec![
            row("/a", "small", 1),
            row("/a", "big", 9),
            row("/b", "mid", 5),
            row("/b", "tie-b", 2),
            row("/a", "tie-a", 2),
        ];
        let (top, other) = top_tenants(rows, 3);
        let names: Vec<_> = top.iter().map(|t| t.tenant.as_str()).collect();
        assert_eq!(names, ["big", "mid", "tie-a"]);
        assert_eq!(
            other.into_iter().collect::<Vec<_>>(),
            [("/a".to_string(), 1), ("/b".to_string(), 2)]
        );
    }

    #[test]
    fn top_tenants_with_room_for_all_has_no_other() {
        let (top, other) = top_tenants(vec![row("/a", "x", 1)], 100);
        assert_eq!(top.len(), 1);
        assert!(other.is_empty());
    }
}
