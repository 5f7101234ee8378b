//! Writing one metric family (descriptor and samples) into a scrape, with label
//! values escaped. Every collector of this module goes through [`Family`], so
//! names, types and escaping are handled in one place.

use std::borrow::Cow;
use std::fmt::Write;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
    MetricEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// A label value escaped as the text formats require (`\\`, `\"`, `\n`).
/// prometheus-client 0.24 writes label values verbatim, and some of ours come
/// from outside (tenant ids are token claims): unescaped, a `"` or a newline in
/// a tenant id would forge or break series.
#[derive(Debug, Clone)]
pub struct Escaped<'a>(pub Cow<'a, str>);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, out: &mut LabelValueEncoder) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => out.write_str("\\\\")?,
                '"' => out.write_str("\\\"")?,
                '\n' => out.write_str("\\n")?,
                c => out.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// One `name="value"` label pair.
pub type Label<'a> = (&'static str, Escaped<'a>);

/// A one-label set, e.g. `label("reason", "expired")`.
pub fn label<'a>(key: &'static str, value: impl Into<Cow<'a, str>>) -> [Label<'a>; 1] {
    [(key, Escaped(value.into()))]
}

/// A two-label set.
pub fn labels2<'a>(
    (k1, v1): (&'static str, &'a str),
    (k2, v2): (&'static str, &'a str),
) -> [Label<'a>; 2] {
    [(k1, Escaped(v1.into())), (k2, Escaped(v2.into()))]
}

/// Counter or gauge (non-negative integers, or seconds as a float).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// The descriptor of a metric family: name (without the `wsplus_` prefix the
/// registry adds, and without the `_total` suffix counters get), help, type.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    unit: Option<Unit>,
}

impl Family {
    /// A counter family (`wsplus_<name>_total`).
    pub fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Counter,
            unit: None,
        }
    }

    /// A gauge family (`wsplus_<name>`).
    pub fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: Kind::Gauge,
            unit: None,
        }
    }

    /// Declares the unit, appended to the name (`uptime` → `uptime_seconds`).
    pub fn unit(mut self, unit: Unit) -> Self {
        self.unit = Some(unit);
        self
    }

    fn metric_type(&self) -> MetricType {
        match self.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        }
    }

    fn value(&self, out: MetricEncoder, v: u64) -> std::fmt::Result {
        match self.kind {
            Kind::Counter => ConstCounter::new(v).encode(out),
            Kind::Gauge => ConstGauge::new(v).encode(out),
        }
    }

    /// Writes the family with one unlabelled sample.
    pub fn single(&self, out: &mut DescriptorEncoder, v: u64) -> std::fmt::Result {
        let m =
            out.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.metric_type())?;
        self.value(m, v)
    }

    /// Writes the family with one unlabelled fractional sample (seconds: CPU
    /// time, a start time, time held back).
    pub fn single_f64(&self, out: &mut DescriptorEncoder, v: f64) -> std::fmt::Result {
        let m =
            out.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.metric_type())?;
        match self.kind {
            Kind::Counter => ConstCounter::new(v).encode(m),
            Kind::Gauge => ConstGauge::new(v).encode(m),
        }
    }

    /// Writes the family with one sample per label set. The descriptor is
    /// written even when `samples` is empty, so the family is always declared.
    pub fn labelled<L: EncodeLabelSet>(
        &self,
        out: &mut DescriptorEncoder,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> std::fmt::Result {
        let mut m =
            out.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.metric_type())?;
        for (labels, v) in samples {
            self.value(m.encode_family(&labels)?, v)?;
        }
        Ok(())
    }
}
