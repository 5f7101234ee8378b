//! Token parsing and verification on an hs256 listener: `screen_header`, then
//! `Authenticator::verify`, on raw strings and on tokens built from fuzzed
//! header and claims JSON and signed with the listener's real secret (so the
//! claim checks behind the signature are reached).
//!
//! Input: byte 0 picks the shape — 0: the rest is the token; 1: the rest is
//! the claims JSON under a fixed HS256 header; 2: header JSON, `\n`, claims JSON.
#![no_main]

use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wsplus::auth::jwt::{screen_header, MAX_TENANT_BYTES};
use wsplus::auth::{AuthError, Authenticator, Identity};
use wsplus::env::Env;
use wsplus::settings::ListenerSettings;

const SECRET: &str = "fuzz-secret-0123456789abcdef-0123456789";

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let mut l = ListenerSettings::default();
        l.auth.secret_env = Some("FUZZ_SECRET".into());
        let env = Env::from_map(HashMap::from([("FUZZ_SECRET".into(), SECRET.into())]));
        Authenticator::new(0, &l, &env, false).expect("hs256 authenticator")
    })
}

/// hs256 verification never waits; poll it once.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("hs256 verification waited"),
    }
}

fn signed(header: &[u8], claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("hmac key");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let (token, claims) = match shape % 3 {
        0 => (String::from_utf8_lossy(rest).into_owned(), None),
        1 => (signed(br#"{"alg":"HS256","typ":"JWT"}"#, rest), Some(rest)),
        _ => {
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let claims = rest.get(cut + 1..).unwrap_or_default();
            (signed(&rest[..cut], claims), Some(claims))
        }
    };
    let screened = screen_header(&token, &[Algorithm::HS256]);
    let verified = now(authenticator().verify(Some(&token)));
    if let Err(e) = &screened {
        assert_eq!(verified.as_ref().err(), Some(e), "verify screens first");
    }
    if let Ok(identity) = &verified {
        assert!(screened.is_ok());
        accepted(identity, claims);
    }
    // Refusals carry a reason from the fixed list and never any input.
    if let Err(e) = verified {
        assert!(AuthError::ALL.contains(&e));
    }
});

/// What an accepted token must have been.
fn accepted(identity: &Identity, claims: Option<&[u8]>) {
    assert!(identity.verified);
    assert!(!identity.tenant.is_empty() && identity.tenant.len() <= MAX_TENANT_BYTES);
    // A raw token that verifies was signed with the secret: a seed, not a find.
    let Some(claims) = claims else { return };
    let claims: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    assert_eq!(claims["tenant_id"].as_str(), Some(identity.tenant.as_str()));
    assert_eq!(identity.subject.as_deref(), claims["sub"].as_str());
}
