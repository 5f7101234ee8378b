//! wss:// on the client port: when `[server] tls_cert` and `tls_key` are both
//! set, the HTTP server speaks TLS (rustls, ring provider) with that PEM
//! certificate chain and private key. Problems are start errors naming the key.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::settings::ServerSettings;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("server.tls_cert: {path}: {reason}")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The key file is unreadable or holds no private key.
    #[error("server.tls_key: {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("server.tls_cert / server.tls_key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS configuration to serve with, or `None` for plain HTTP.
pub fn server_config(s: &ServerSettings) -> Result<Option<ServerConfig>, TlsError> {
    let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) else {
        return Ok(None);
    };
    let certs = crate::client::tls::read_certs(Path::new(cert)).map_err(|e| TlsError::Cert {
        path: cert.clone(),
        reason: match e {
            crate::client::tls::TlsSetupError::CaFile { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.clone(),
        reason: e.to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(crate::client::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            certs.into_iter().map(CertificateDer::into_owned).collect(),
            key_der,
        )?;
    Ok(Some(config))
}
