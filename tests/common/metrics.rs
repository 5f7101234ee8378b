//! Scraping `GET /metrics` and reading it back with a strict OpenMetrics text
//! parser (the subset the server writes: counters, gauges, histograms), so a malformed
//! line, a sample outside its family, a duplicate series or a missing `# EOF`
//! fails the test instead of being skipped.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::admin::{Req, Response};
use crate::{poll_until, ADMIN_TOKEN};

/// `GET /metrics` on `admin` with `Authorization: Bearer <token>`, or with no
/// `Authorization` header at all.
pub async fn get_metrics(admin: SocketAddr, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    Req::new("GET", "/metrics")
        .authorization(auth.as_deref())
        .accept(Some("application/openmetrics-text"))
        .send_to(admin)
        .await
}

/// Scrapes `/metrics` with the admin token and parses it; fails on anything
/// but a 200 with the OpenMetrics content type and a valid exposition.
pub async fn scrape(admin: SocketAddr) -> Exposition {
    let a = get_metrics(admin, Some(ADMIN_TOKEN)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    parse(&a.body).unwrap_or_else(|e| panic!("bad exposition: {e}\n{}", a.body))
}

/// Scrapes until `check` holds, failing after [`crate::WAIT`] with the last
/// exposition (figures settle asynchronously after a socket event).
pub async fn wait_until(
    admin: SocketAddr,
    what: &str,
    check: impl Fn(&Exposition) -> bool,
) -> Exposition {
    poll_until(what, async || scrape(admin).await, check).await
}

/// Scrapes until `name{labels}` equals `want`.
pub async fn wait_value(admin: SocketAddr, name: &str, labels: &[(&str, &str)], want: f64) {
    let what = format!("{name}{labels:?} == {want}");
    wait_until(admin, &what, |m| m.value(name, labels) == Some(want)).await;
}

/// A declared metric family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMeta {
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// `# UNIT`, if declared.
    pub unit: Option<String>,
    /// `# HELP` text.
    pub help: String,
}

/// Labels of a sample, sorted by name.
pub type Labels = Vec<(String, String)>;

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Families by name (without `_total`).
    pub families: BTreeMap<String, FamilyMeta>,
    /// Sample values by (sample name, labels).
    pub samples: BTreeMap<(String, Labels), f64>,
}

impl Exposition {
    /// The value of `name{labels}` (labels in any order), if exported.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut key: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.sort();
        self.samples.get(&(name.to_owned(), key)).copied()
    }

    /// Every sample of `name`: (labels, value).
    pub fn series(&self, name: &str) -> Vec<(Labels, f64)> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, l), v)| (l.clone(), *v))
            .collect()
    }

    /// The values of label `key` over the samples of `name`.
    pub fn label_values(&self, name: &str, key: &str) -> Vec<String> {
        self.series(name)
            .into_iter()
            .filter_map(|(l, _)| l.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
            .collect()
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses OpenMetrics text (counters, gauges and histograms only).
pub fn parse(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("does not end with \"# EOF\\n\"")?;
    let mut out = Exposition::default();
    let mut current: Option<String> = None;
    for (i, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let (what, rest) = rest
                .split_once(' ')
                .ok_or_else(|| at("bad comment".into()))?;
            let (name, arg) = rest
                .split_once(' ')
                .ok_or_else(|| at("no argument".into()))?;
            if !valid_name(name) {
                return Err(at("bad family name".into()));
            }
            match what {
                "HELP" => {
                    if out.families.contains_key(name) {
                        return Err(at("family declared twice".into()));
                    }
                    out.families.insert(
                        name.to_owned(),
                        FamilyMeta {
                            kind: String::new(),
                            unit: None,
                            help: arg.to_owned(),
                        },
                    );
                    current = Some(name.to_owned());
                }
                "TYPE" | "UNIT" if current.as_deref() != Some(name) => {
                    return Err(at("TYPE/UNIT of another family than its HELP".into()))
                }
                "TYPE" if ["counter", "gauge", "histogram"].contains(&arg) => {
                    out.families.get_mut(name).unwrap().kind = arg.to_owned();
                }
                "UNIT" if name.ends_with(&format!("_{arg}")) => {
                    out.families.get_mut(name).unwrap().unit = Some(arg.to_owned());
                }
                _ => return Err(at("unexpected descriptor".into())),
            }
            continue;
        }
        let (name, labels, value) = sample(line).map_err(at)?;
        let family = current
            .as_deref()
            .ok_or_else(|| at("sample before any family".into()))?;
        let kind = &out.families[family].kind;
        let belongs = match kind.as_str() {
            "counter" => name == format!("{family}_total"),
            "gauge" => name == family,
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name == format!("{family}{suffix}")),
            _ => false,
        };
        if !belongs {
            return Err(at(format!("not a sample of {kind} family {family}")));
        }
        if out.samples.insert((name, labels), value).is_some() {
            return Err(at("duplicate series".into()));
        }
    }
    Ok(out)
}

/// `name{k="v",...} value` → (name, sorted labels, value).
fn sample(line: &str) -> Result<(String, Labels, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("bad sample name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            let eq = inner[start..].find('=').ok_or("label without =")? + start;
            let key = &inner[start..eq];
            if !valid_name(key) || key.contains(':') {
                return Err(format!("bad label name {key:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some('\n') | None => return Err("unterminated label value".into()),
                    Some(c) => value.push(c),
                }
            }
            if labels.iter().any(|(k, _)| k == key) {
                return Err(format!("label {key} twice"));
            }
            labels.push((key.to_owned(), value));
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    rest = &inner[i + 1..];
                    break;
                }
                _ => return Err("expected , or }".into()),
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value: f64 = value.parse().map_err(|_| format!("bad value {value:?}"))?;
    labels.sort();
    Ok((name.to_owned(), labels, value))
}
