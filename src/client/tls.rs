//! TLS for `wss://`: rustls with the ring provider, the system's root
//! certificates plus an optional extra CA file (PEM). HTTP/1.1 only in ALPN:
//! a WebSocket upgrade needs it.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file is missing, unreadable or has no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The ring crypto provider (the only one compiled in).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let err = |reason: String| TlsSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The system's root certificates, loaded once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            log::debug!("system root certificates: {e}");
        }
        found.certs
    })
}

/// The certificates a client trusts: the system's roots that are usable as
/// trust anchors, then every certificate of `extra_ca` (each must be usable).
pub fn trusted_certs(
    extra_ca: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let anchor = |c: &CertificateDer<'static>| RootCertStore::empty().add(c.clone());
    let mut certs: Vec<_> = system_roots()
        .iter()
        .filter(|c| anchor(c).is_ok())
        .cloned()
        .collect();
    log::debug!("system roots: {} usable", certs.len());
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            anchor(&cert).map_err(|e| TlsSetupError::CaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            certs.push(cert);
        }
    }
    Ok(certs)
}

/// `certs` as one PEM bundle (for libraries that take trust anchors as PEM).
pub fn pem_bundle(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    use base64::Engine;
    let mut out = String::new();
    for cert in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

/// A client configuration trusting the system roots and `extra_ca` (if any).
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(trusted_certs(extra_ca)?);
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
