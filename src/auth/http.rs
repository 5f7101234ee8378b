//! The outbound HTTP client of the server side (JWKS today; webhooks and the
//! outbound WebSocket client can reuse it): awc over plain TCP or rustls with
//! the operating system's root certificates.
//!
//! An awc `Client` is tied to the thread (actix arbiter) that created it, so
//! callers build one where they use it; the TLS configuration is built once per
//! process and shared.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::ClientConfig;

/// The rustls client configuration: ring provider, TLS 1.2/1.3, the system's
/// root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured, as by
/// OpenSSL). Built once; certificates that fail to parse are skipped.
pub fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                log::warn!("loading system root certificates: {e}");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                log::warn!("no system root certificates found: https requests will fail");
            }
            log::debug!("system root certificates: {added} loaded, {ignored} ignored");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

/// An awc client for short requests: `timeout` for connect and response head,
/// no redirects (an https URL must not be bounced to another origin or to
/// plain http), rustls for https. Call from inside an actix system.
pub fn client(timeout: Duration) -> awc::Client {
    build(timeout, Some(timeout), None)
}

/// An awc client for callers that bound each whole call themselves (hooks,
/// with their `timeout_ms` over request, answer head and body): `connect` for
/// connecting, no response timeout of its own (one timer per call, not two),
/// idle connections kept at most `idle` for reuse; otherwise as [`client`].
pub fn pooled_client(connect: Duration, idle: Duration) -> awc::Client {
    build(connect, None, Some(idle))
}

fn build(connect: Duration, response: Option<Duration>, idle: Option<Duration>) -> awc::Client {
    let mut connector = awc::Connector::new().timeout(connect);
    if let Some(idle) = idle {
        connector = connector.conn_keep_alive(idle);
    }
    let builder = awc::Client::builder()
        .connector(connector.rustls_0_23(tls_config()))
        .disable_redirects();
    match response {
        Some(timeout) => builder.timeout(timeout),
        None => builder.disable_timeout(),
    }
    .finish()
}
