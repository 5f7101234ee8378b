//! Request signing: `X-Wsplus-Signature: sha256=<hex HMAC-SHA256 of the raw
//! body>`, keyed with the secret of `secret_env`/`secret_file`. The backend
//! recomputes it over the bytes it received and compares in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::secret::{self, SecretError};
use crate::env::Env;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-wsplus-signature";

/// Signs request bodies. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// A signer keyed with `secret` (any length works as an HMAC key).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// The signer of a `secret_env`/`secret_file` pair; the error names the
    /// source, never the value.
    pub fn from_source(
        var: Option<&str>,
        file: Option<&str>,
        env: &Env,
    ) -> Result<Self, SecretError> {
        secret::read(var, file, env).map(|s| Self::new(s.as_bytes()))
    }

    /// The header value for `body`: `sha256=` and 64 lowercase hex digits.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256=");
        for b in digest {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_test_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let s = Signer::new(b"Jefe").sign(b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", Signer::new(b"k")), "Signer([redacted])");
    }

    #[test]
    fn secret_sources_are_named_not_shown() {
        let env = Env::from_map([("S".to_owned(), "v".to_owned())].into());
        assert!(Signer::from_source(Some("S"), None, &env).is_ok());
        let e = Signer::from_source(Some("MISSING"), None, &env).unwrap_err();
        assert!(e.to_string().contains("MISSING"));
        let e = Signer::from_source(None, Some("/nonexistent/secret"), &env).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/secret"));
    }
}
