//! How a node reaches the cluster's Redis: `cluster.redis_url` with the ACL
//! credentials and TLS trust of `[cluster]`, built once and shared by every
//! connection to it (the backplane's two, the tenant store's).
//!
//! * **ACL**: the user name comes from `cluster.username` or the URL; the
//!   password from `cluster.password_env` / `cluster.password_file` (or, for
//!   compatibility, the URL). It is kept only inside the connection settings,
//!   whose `Debug` never shows it; errors name its source, never its value.
//! * **TLS** (`rediss://`): rustls with the ring provider, trusting the
//!   system roots plus every certificate of `cluster.tls_ca_file`. (The redis
//!   crate trusts *only* a CA it is given, so wsplus hands it both.)
//!
//! [`RedisTarget::probe`] tells a refusal (wrong credentials, untrusted
//! certificate: a configuration error, fatal at start) from an outage (Redis
//! not answering yet: the node starts degraded and retries).

use std::path::Path;
use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo, ProtocolVersion, TlsCertificates};

use crate::auth::secret::{self, SecretError};
use crate::client::tls::{self, TlsSetupError};
use crate::env::Env;
use crate::redact;
use crate::settings::{ClusterBackend, ClusterSettings};

/// Why the Redis connection settings cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `cluster.redis_url` is not a usable Redis URL.
    #[error("cluster.redis_url: {0}")]
    Url(#[source] redis::RedisError),
    /// The password variable or file is missing or empty.
    #[error("cluster.password_env/password_file: {0}")]
    Password(#[source] SecretError),
    /// `cluster.tls_ca_file` is unusable.
    #[error("cluster.tls_ca_file: {0}")]
    Ca(#[source] TlsSetupError),
}

impl TargetError {
    /// True when it is about a secret (`check-config --no-secrets` skips it).
    pub fn is_secret(&self) -> bool {
        match self {
            TargetError::Password(_) => true,
            TargetError::Url(_) | TargetError::Ca(_) => false,
        }
    }
}

/// What answered a probe.
#[derive(Debug)]
pub enum Probe {
    /// Redis accepted the connection and the credentials.
    Ok,
    /// Redis did not answer (not up yet, network): retry later.
    Unreachable(redis::RedisError),
    /// Redis (or its certificate) refused this node: wrong credentials, user
    /// without the permissions, untrusted or mismatched certificate.
    Refused(redis::RedisError),
}

/// The cluster's Redis as this node connects to it. Its `Debug` shows the
/// redacted URL only.
#[derive(Clone)]
pub struct RedisTarget {
    info: ConnectionInfo,
    tls: Option<TlsCertificates>,
    shown: String,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisTarget").field(&self.shown).finish()
    }
}

impl RedisTarget {
    /// The target `[cluster]` describes; `None` unless the backend is Redis
    /// with a URL (settings are validated already). Reads the password.
    pub fn from_settings(c: &ClusterSettings, env: &Env) -> Result<Option<Self>, TargetError> {
        let Some(url) = redis_url(c) else {
            return Ok(None);
        };
        let info = url.into_connection_info().map_err(TargetError::Url)?;
        let mut redis = info.redis_settings().clone();
        if let Some(user) = &c.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = password(c, env)? {
            redis = redis.set_password(password);
        }
        Ok(Some(Self {
            info: info.set_redis_settings(redis),
            tls: trust(c, url)?,
            shown: redact::userinfo(url),
        }))
    }

    /// Every reason [`Self::from_settings`] would fail, each checked on its
    /// own (so `check-config --no-secrets` still reports a bad CA file).
    pub fn problems(c: &ClusterSettings, env: &Env) -> Vec<TargetError> {
        let Some(url) = redis_url(c) else {
            return Vec::new();
        };
        [
            url.into_connection_info().err().map(TargetError::Url),
            password(c, env).err(),
            trust(c, url).err(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// A client for commands.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        self.build(self.info.clone())
    }

    /// A client speaking RESP3 (subscriptions arrive as pushes).
    pub fn resp3_client(&self) -> redis::RedisResult<redis::Client> {
        let settings = self
            .info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        self.build(self.info.clone().set_redis_settings(settings))
    }

    fn build(&self, info: ConnectionInfo) -> redis::RedisResult<redis::Client> {
        match &self.tls {
            Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
            None => redis::Client::open(info),
        }
    }

    /// The URL as it may be shown (credentials redacted).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Connects once (TLS handshake, AUTH) and sends PING, within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Probe {
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return Probe::Refused(e),
        };
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let pinged = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("PING").exec_async(&mut conn).await
        };
        match tokio::time::timeout(timeout, pinged).await {
            Ok(Ok(())) => Probe::Ok,
            Ok(Err(e)) if refused(&e) => Probe::Refused(e),
            Ok(Err(e)) => Probe::Unreachable(e),
            Err(_) => Probe::Unreachable(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer within the cluster timeout",
            ))),
        }
    }
}

/// The URL of a redis backend.
fn redis_url(c: &ClusterSettings) -> Option<&str> {
    match (c.backend, &c.redis_url) {
        (ClusterBackend::Redis, Some(url)) => Some(url),
        _ => None,
    }
}

/// The password from `password_env` / `password_file`, if one is named.
fn password(c: &ClusterSettings, env: &Env) -> Result<Option<String>, TargetError> {
    if c.password_env.is_none() && c.password_file.is_none() {
        return Ok(None);
    }
    secret::read(c.password_env.as_deref(), c.password_file.as_deref(), env)
        .map(Some)
        .map_err(TargetError::Password)
}

/// With `rediss://`: the system roots and `tls_ca_file`, as the redis crate
/// takes them (one PEM bundle, which it trusts alone).
fn trust(c: &ClusterSettings, url: &str) -> Result<Option<TlsCertificates>, TargetError> {
    if !url.starts_with("rediss://") {
        return Ok(None);
    }
    let certs =
        tls::trusted_certs(c.tls_ca_file.as_deref().map(Path::new)).map_err(TargetError::Ca)?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(tls::pem_bundle(&certs)),
    }))
}

/// True when `e` is Redis or its certificate refusing this node rather than
/// an outage: authentication or permission errors, and TLS errors (which
/// come wrapped in an I/O error).
pub fn refused(e: &redis::RedisError) -> bool {
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
    {
        return true;
    }
    // The redis crate keeps the I/O error behind an `Arc<dyn Error>`.
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let Some(source) = std::error::Error::source(e) else {
        return false;
    };
    let io = source.downcast_ref::<std::io::Error>().or_else(|| {
        source
            .downcast_ref::<Shared>()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
    });
    io.and_then(std::io::Error::get_ref)
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Env {
        Env::from_map(Default::default())
    }

    fn settings(url: &str) -> ClusterSettings {
        ClusterSettings {
            backend: ClusterBackend::Redis,
            redis_url: Some(url.into()),
            ..Default::default()
        }
    }

    #[test]
    fn password_from_env_or_file_never_shows() {
        let mut c = settings("redis://h:6379/");
        c.username = Some("wsplus".into());
        c.password_env = Some("REDIS_PW".into());
        let env = Env::from_map([("REDIS_PW".to_owned(), "pw-s3cret".to_owned())].into());
        let t = RedisTarget::from_settings(&c, &env).unwrap().unwrap();
        assert_eq!(t.info.redis_settings().username(), Some("wsplus"));
        assert_eq!(t.info.redis_settings().password(), Some("pw-s3cret"));
        assert!(!format!("{t:?}").contains("pw-s3cret"), "{t:?}");

        let missing = RedisTarget::from_settings(&c, &no_env()).unwrap_err();
        assert!(missing.is_secret());
        assert_eq!(
            missing.to_string(),
            "cluster.password_env/password_file: environment variable REDIS_PW is unset or empty"
        );

        let file = std::env::temp_dir().join(format!("wsplus-redis-pw-{}", std::process::id()));
        std::fs::write(&file, "pw-from-file\n").unwrap();
        c.password_env = None;
        c.password_file = Some(file.display().to_string());
        let t = RedisTarget::from_settings(&c, &no_env()).unwrap().unwrap();
        assert_eq!(t.info.redis_settings().password(), Some("pw-from-file"));
        std::fs::remove_file(&file).unwrap();
        let gone = RedisTarget::problems(&c, &no_env());
        assert_eq!(gone.len(), 1);
        assert!(gone[0].is_secret(), "{}", gone[0]);
    }

    #[test]
    fn a_url_password_is_redacted_when_shown() {
        let c = settings("redis://u:pw-in-url@h:6379/");
        let t = RedisTarget::from_settings(&c, &no_env()).unwrap().unwrap();
        assert_eq!(t.shown(), "redis://[redacted]@h:6379/");
        assert!(!format!("{t:?}").contains("pw-in-url"));
    }

    #[test]
    fn tls_needs_a_usable_ca_file() {
        let mut c = settings("rediss://h:6380/");
        let t = RedisTarget::from_settings(&c, &no_env()).unwrap().unwrap();
        assert!(t.tls.is_some());
        assert!(t.resp3_client().is_ok());
        c.tls_ca_file = Some("/nonexistent/ca.pem".into());
        let e = RedisTarget::from_settings(&c, &no_env()).unwrap_err();
        assert!(matches!(e, TargetError::Ca(_)) && !e.is_secret(), "{e}");
        assert!(e
            .to_string()
            .starts_with("cluster.tls_ca_file: CA file /nonexistent/ca.pem"));
    }

    #[test]
    fn refusals_are_told_from_outages() {
        use std::io::{Error, ErrorKind};
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let tls = redis::RedisError::from(Error::new(ErrorKind::InvalidData, untrusted));
        assert!(refused(&tls), "{tls}");
        let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "bad"));
        assert!(refused(&auth));
        let down = redis::RedisError::from(Error::new(ErrorKind::ConnectionRefused, "refused"));
        assert!(!refused(&down));
        let other = redis::RedisError::from(Error::new(ErrorKind::InvalidData, "garbage"));
        assert!(!refused(&other));
    }

    #[test]
    fn local_backend_has_no_target() {
        let t = RedisTarget::from_settings(&ClusterSettings::default(), &no_env());
        assert!(t.unwrap().is_none());
    }
}
