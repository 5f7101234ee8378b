//! The two text formats of a scrape, chosen by the request's `Accept` header.
//!
//! The admin API serves the Prometheus text format. prometheus-client writes
//! OpenMetrics text, which Prometheus (2.5+) asks for first; everything else
//! (`curl`, HTTP libraries sending `Accept: */*`, `text/plain`) gets the
//! classic Prometheus text format 0.0.4, derived from the OpenMetrics text:
//! counter families are named with their `_total` suffix, `# UNIT` and `# EOF`
//! are dropped. Samples, label escaping and `# HELP` text are the same in both
//! formats, so nothing else changes. A request without `Accept` gets the
//! Prometheus text format too, as docs/metrics.md says.

/// A scrape's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4` (the Prometheus text format).
    Prometheus,
}

/// The media type of OpenMetrics text.
const OPENMETRICS: &str = "application/openmetrics-text";

impl Format {
    /// The format for a request's `Accept` header value (`None`: no header).
    /// OpenMetrics when it is listed with a quality above zero that no
    /// `text/plain` entry beats, or when there is no header at all.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let (mut openmetrics, mut plain) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                OPENMETRICS => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= plain {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of a scrape in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The body in this format, from the OpenMetrics text of [`super::render`].
    pub fn body(self, openmetrics: String) -> String {
        match self {
            Format::OpenMetrics => openmetrics,
            Format::Prometheus => to_prometheus_text(&openmetrics),
        }
    }
}

/// The Prometheus text format 0.0.4 of an OpenMetrics exposition made of
/// counters and gauges (the only types this server writes).
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_the_format() {
        use Format::*;
        let cases = [
            (None, Prometheus),
            (Some("*/*"), Prometheus),
            (Some("text/plain"), Prometheus),
            (Some("text/plain; version=0.0.4"), Prometheus),
            (Some("application/json"), Prometheus),
            (Some("application/openmetrics-text"), OpenMetrics),
            // What Prometheus 2.x sends.
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                OpenMetrics,
            ),
            (Some("text/plain;q=1, application/openmetrics-text;q=0.5"), Prometheus),
            (Some("application/openmetrics-text;q=0"), Prometheus),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn counters_are_named_with_total_and_openmetrics_markers_dropped() {
        let om = "\
# HELP wsplus_connections Open connections.
# TYPE wsplus_connections gauge
wsplus_connections{listener=\"/a\"} 3
# HELP wsplus_closes Close frames sent.
# TYPE wsplus_closes counter
wsplus_closes_total{code=\"4003\"} 1
# HELP wsplus_uptime_seconds Seconds since start.
# TYPE wsplus_uptime_seconds gauge
# UNIT wsplus_uptime_seconds seconds
wsplus_uptime_seconds 5
# EOF
";
        let want = "\
# HELP wsplus_connections Open connections.
# TYPE wsplus_connections gauge
wsplus_connections{listener=\"/a\"} 3
# HELP wsplus_closes_total Close frames sent.
# TYPE wsplus_closes_total counter
wsplus_closes_total{code=\"4003\"} 1
# HELP wsplus_uptime_seconds Seconds since start.
# TYPE wsplus_uptime_seconds gauge
wsplus_uptime_seconds 5
";
        assert_eq!(Format::Prometheus.body(om.to_owned()), want);
        assert_eq!(Format::OpenMetrics.body(om.to_owned()), om);
    }
}
