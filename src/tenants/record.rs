//! A tenant record: what an operator registered about one tenant, in the
//! config file (`[[tenants.registered]]`) or through the admin API, and its
//! validation. Every problem names the field, so the config loader can prefix
//! it with `tenants.registered[i].` and the admin API can answer it as it is.

use serde::{Deserialize, Serialize};

use crate::auth::jwt::MAX_TENANT_BYTES;

/// Largest accepted `max_connections` (matches `limits.max_connections`).
pub const MAX_CONNECTIONS_LIMIT: u64 = 10_000_000;
/// Largest accepted `rate_limit_per_s` (matches the listener's bound).
pub const MAX_RATE_LIMIT: u32 = 1_000_000;
/// Largest accepted `max_channels`.
pub const MAX_CHANNELS_LIMIT: u64 = 10_000_000;
/// Longest accepted `issuer` and `jwks_uri`.
pub const MAX_URI_BYTES: usize = 2048;

/// What an operator sets for one tenant. `None` limits fall back to the
/// listener's setting; `Some(0)` means no limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// The tenant id, as sessions carry it.
    pub id: String,
    /// False: handshakes are refused (403 `tenant_disabled`) and open sessions
    /// are closed with 4003.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Sessions of the tenant, all listeners and nodes; overrides every
    /// listener's `max_connections_per_tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Messages per second per connection; replaces the listener's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_s: Option<u32>,
    /// Channels of the tenant with subscribers (channels mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channels: Option<u64>,
    /// The `iss` that selects this tenant under `auth.mode = "tenant"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where this tenant's signing keys are (with `issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

fn enabled_default() -> bool {
    true
}

/// Where the record in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `[[tenants.registered]]` in the config file.
    Config,
    /// The admin API (persisted in the store); wins over the config file.
    Api,
}

/// A record as the admin API shows it: the spec and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRecord {
    /// The settings in force.
    #[serde(flatten)]
    pub spec: TenantSpec,
    /// config | api.
    pub source: Source,
}

/// One problem of a record: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field's name (`max_connections`, `jwks_uri`...).
    pub field: &'static str,
    /// What is wrong, never echoing more than the field's name.
    pub problem: String,
}

impl FieldError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

impl TenantSpec {
    /// A record with only an id: enabled, every limit the listener's.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            enabled: true,
            max_connections: None,
            rate_limit_per_s: None,
            max_channels: None,
            issuer: None,
            jwks_uri: None,
        }
    }

    /// Every problem of the record, each naming its field; empty when valid.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        if let Err(problem) = check_id(&self.id) {
            out.push(FieldError::new("id", problem));
        }
        if self
            .max_connections
            .is_some_and(|n| n > MAX_CONNECTIONS_LIMIT)
        {
            out.push(FieldError::new(
                "max_connections",
                format!("must be at most {MAX_CONNECTIONS_LIMIT}"),
            ));
        }
        if self.rate_limit_per_s.is_some_and(|n| n > MAX_RATE_LIMIT) {
            out.push(FieldError::new(
                "rate_limit_per_s",
                format!("must be at most {MAX_RATE_LIMIT}"),
            ));
        }
        if self.max_channels.is_some_and(|n| n > MAX_CHANNELS_LIMIT) {
            out.push(FieldError::new(
                "max_channels",
                format!("must be at most {MAX_CHANNELS_LIMIT}"),
            ));
        }
        if let Some(issuer) = &self.issuer {
            if issuer.is_empty() || issuer.len() > MAX_URI_BYTES {
                out.push(FieldError::new(
                    "issuer",
                    format!("must be 1 to {MAX_URI_BYTES} bytes"),
                ));
            }
        }
        match (&self.issuer, &self.jwks_uri) {
            (Some(_), None) => out.push(FieldError::new("jwks_uri", "required with issuer")),
            (None, Some(_)) => out.push(FieldError::new("issuer", "required with jwks_uri")),
            _ => {}
        }
        if let Some(uri) = &self.jwks_uri {
            if let Err(problem) = check_http_uri(uri) {
                out.push(FieldError::new("jwks_uri", problem));
            }
        }
        out
    }
}

/// A tenant id: what a token's tenant claim may hold (1 to 256 bytes), with
/// no control characters (ids appear in logs and metrics labels).
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_TENANT_BYTES {
        return Err(format!("must be 1 to {MAX_TENANT_BYTES} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn check_http_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_URI_BYTES {
        return Err(format!("must be at most {MAX_URI_BYTES} bytes"));
    }
    match url::Url::parse(uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err("must be an http:// or https:// URL".into()),
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(spec: &TenantSpec) -> Vec<&'static str> {
        spec.problems().iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_bare_id_is_valid_and_enabled() {
        let spec: TenantSpec = serde_json::from_str(r#"{"id": "acme"}"#).unwrap();
        assert_eq!(spec, TenantSpec::new("acme"));
        assert!(spec.enabled);
        assert!(spec.problems().is_empty());
    }

    #[test]
    fn problems_name_their_fields() {
        let mut spec = TenantSpec::new("");
        spec.max_connections = Some(MAX_CONNECTIONS_LIMIT + 1);
        spec.rate_limit_per_s = Some(MAX_RATE_LIMIT + 1);
        spec.max_channels = Some(MAX_CHANNELS_LIMIT + 1);
        spec.jwks_uri = Some("ftp://x/keys".into());
        assert_eq!(
            fields(&spec),
            [
                "id",
                "max_connections",
                "rate_limit_per_s",
                "max_channels",
                "issuer",
                "jwks_uri"
            ]
        );
        let mut spec = TenantSpec::new("a\nb");
        spec.issuer = Some("https://idp/".into());
        assert_eq!(fields(&spec), ["id", "jwks_uri"]);
        spec.id = "x".repeat(MAX_TENANT_BYTES + 1);
        spec.jwks_uri = Some("https://idp/keys".into());
        assert_eq!(fields(&spec), ["id"]);
    }

    #[test]
    fn a_record_serializes_flat_with_its_source_and_without_omitted_limits() {
        let mut spec = TenantSpec::new("acme");
        spec.max_connections = Some(0);
        let v = serde_json::to_value(TenantRecord {
            spec,
            source: Source::Api,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "acme", "enabled": true, "max_connections": 0, "source": "api"})
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<TenantSpec>(r#"{"id": "a", "max_conns": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conns"), "{err}");
    }
}
