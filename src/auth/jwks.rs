//! JWKS mode: the listener's signing keys, fetched from `auth.jwks_uri` and
//! cached (docs/configuration.md#jwks).
//!
//! One fetcher task per jwks listener owns the fetching: at start, every
//! `auth.jwks_refresh_s`, sooner (with backoff) while fetches fail, and on
//! request when a token names an unknown `kid` — at most once per
//! [`KID_REFETCH_INTERVAL`]. Handshakes read the current key set from a watch
//! channel; they never fetch themselves. A failed refresh keeps the cached keys;
//! with no keys at all every token is refused (fail closed).
//!
//! Only RSA (RS256, at least 2048 bits) and EC P-256 (ES256) keys with a `kid`
//! are kept; a key whose `alg`, `use` or `key_ops` says it is not an RS256/ES256
//! signature key is skipped, and so is every symmetric (`oct`) key. Keys never
//! come from the token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::AuthError;
use crate::redact;

/// Least time between two refetches caused by unknown `kid`s
/// (docs/configuration.md#jwks).
pub const KID_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Longest a fetch may take, connect to last body byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted JWKS document.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one document.
pub const MAX_KEYS: usize = 64;
/// First retry delay after a failed fetch; doubles up to [`MAX_RETRY_DELAY`]
/// (and never beyond `jwks_refresh_s`).
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest retry delay after failed fetches.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Handshakes waiting for a refetch at once; more are refused at once.
const REFETCH_QUEUE: usize = 64;

/// One usable verification key.
#[derive(Debug)]
pub struct VerifyKey {
    /// The only algorithm this key verifies (RS256 or ES256).
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// Keys by `kid`.
type KeyMap = HashMap<String, Arc<VerifyKey>>;

/// The key set as last fetched.
#[derive(Debug, Default)]
struct KeySet {
    keys: KeyMap,
    /// True once a fetch has succeeded.
    loaded: bool,
}

/// A handshake's request for a refetch: the reply fires once a fetch that
/// started after `asked` has finished (or when the request is refused).
struct Refetch {
    asked: Instant,
    done: oneshot::Sender<()>,
}

/// The key cache of one jwks listener. Dropping it stops its fetcher task.
#[derive(Debug)]
pub struct Jwks {
    keys: watch::Receiver<Arc<KeySet>>,
    refetch: mpsc::Sender<Refetch>,
}

impl Jwks {
    /// Starts the fetcher task for `uri` on the current actix arbiter (call
    /// from inside the actix `System`). `listener` names it in logs.
    pub fn start(listener: String, uri: String, refresh: Duration) -> Self {
        let (keys_tx, keys) = watch::channel(Arc::new(KeySet::default()));
        let (refetch, requests) = mpsc::channel(REFETCH_QUEUE);
        let fetcher = Fetcher {
            listener,
            uri,
            refresh,
            keys: keys_tx,
            last_kid_refetch: None,
            last_started: None,
            failures: 0,
        };
        actix_rt::spawn(fetcher.run(requests));
        Self { keys, refetch }
    }

    /// True once the first fetch has succeeded.
    pub fn ready(&self) -> bool {
        self.keys.borrow().loaded
    }

    /// The key named `kid`. An unknown `kid` asks the fetcher for a refetch
    /// (honoured at most once per [`KID_REFETCH_INTERVAL`]) and waits for it.
    pub async fn key(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, AuthError> {
        // A token without `kid` cannot choose a key.
        let kid = kid.ok_or(AuthError::UnknownKey)?;
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        let (done, fetched) = oneshot::channel();
        let asked = Instant::now();
        if self.refetch.try_send(Refetch { asked, done }).is_ok() {
            // The fetch itself is bounded by FETCH_TIMEOUT; this bounds the queue too.
            let _ = tokio::time::timeout(2 * FETCH_TIMEOUT, fetched).await;
        }
        self.lookup(kid).ok_or(AuthError::UnknownKey)
    }

    fn lookup(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.keys.borrow().keys.get(kid).cloned()
    }
}

/// The task that owns fetching for one listener.
struct Fetcher {
    listener: String,
    uri: String,
    refresh: Duration,
    keys: watch::Sender<Arc<KeySet>>,
    last_kid_refetch: Option<Instant>,
    last_started: Option<Instant>,
    failures: u32,
}

impl Fetcher {
    async fn run(mut self, mut requests: mpsc::Receiver<Refetch>) {
        let client = super::http::client(FETCH_TIMEOUT);
        let mut next = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    next = self.fetch(&client).await;
                }
                req = requests.recv() => {
                    let Some(req) = req else {
                        // Every handle is gone: the server stopped.
                        return;
                    };
                    if self.should_refetch(req.asked) {
                        self.last_kid_refetch = Some(Instant::now());
                        next = self.fetch(&client).await;
                    }
                    let _ = req.done.send(());
                    // Everything that queued up meanwhile was answered by this fetch.
                    while let Ok(r) = requests.try_recv() {
                        let _ = r.done.send(());
                    }
                }
            }
        }
    }

    /// A request is served by a fetch already started after it was made;
    /// otherwise it may trigger one when the last kid refetch is old enough.
    fn should_refetch(&self, asked: Instant) -> bool {
        if self.last_started.is_some_and(|s| s >= asked) {
            return false;
        }
        self.last_kid_refetch
            .is_none_or(|t| t.elapsed() >= KID_REFETCH_INTERVAL)
    }

    /// Fetches once; publishes the keys on success. Returns when to fetch next.
    async fn fetch(&mut self, client: &awc::Client) -> Instant {
        self.last_started = Some(Instant::now());
        let result = tokio::time::timeout(FETCH_TIMEOUT, fetch_keys(client, &self.uri))
            .await
            .unwrap_or(Err(FetchError::Timeout));
        match result {
            Ok(keys) => {
                let count = keys.len();
                // Publish first: whoever reads "jwks loaded" may rely on /readyz.
                self.keys
                    .send_replace(Arc::new(KeySet { keys, loaded: true }));
                log::info!(
                    "jwks loaded listener={} keys={count} uri={}",
                    self.listener,
                    redact::url(&self.uri)
                );
                self.failures = 0;
                Instant::now() + self.refresh
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let cached = self.keys.borrow().keys.len();
                log::warn!(
                    "jwks fetch failed listener={} uri={} error={e}; keeping {cached} cached keys",
                    self.listener,
                    redact::url(&self.uri)
                );
                Instant::now() + retry_delay(self.failures, self.refresh)
            }
        }
    }
}

/// The wait after `failures` failed fetches in a row: 1 s doubling up to
/// [`MAX_RETRY_DELAY`], and never beyond the refresh interval.
fn retry_delay(failures: u32, refresh: Duration) -> Duration {
    FIRST_RETRY_DELAY
        .saturating_mul(1 << failures.clamp(1, 16).saturating_sub(1))
        .min(MAX_RETRY_DELAY)
        .min(refresh)
}

/// Why a fetch produced no keys. Never carries key material.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body unreadable or larger than {MAX_JWKS_BYTES} bytes: {0}")]
    Body(String),
    #[error("timed out after {}s", FETCH_TIMEOUT.as_secs())]
    Timeout,
    #[error("not a JWKS document: {0}")]
    Parse(String),
    #[error("no usable RS256/ES256 key with a kid")]
    NoUsableKeys,
}

async fn fetch_keys(client: &awc::Client, uri: &str) -> Result<KeyMap, FetchError> {
    let mut resp = client
        .get(uri)
        .insert_header(("Accept", "application/json"))
        .send()
        .await
        .map_err(|e| FetchError::Request(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status().as_u16()));
    }
    let body = resp
        .body()
        .limit(MAX_JWKS_BYTES)
        .await
        .map_err(|e| FetchError::Body(e.to_string()))?;
    parse_jwks(&body)
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Value>,
}

/// The fields of a JWK this module looks at.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document into the usable keys by `kid`. Unusable keys are
/// skipped (logged at debug); a document without any usable key is an error,
/// so a broken or emptied endpoint never replaces working cached keys.
fn parse_jwks(body: &[u8]) -> Result<KeyMap, FetchError> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| FetchError::Parse(e.to_string()))?;
    let mut keys = KeyMap::new();
    for raw in doc.keys {
        if keys.len() == MAX_KEYS {
            log::warn!("jwks: more than {MAX_KEYS} keys; the rest are ignored");
            break;
        }
        match serde_json::from_value::<RawJwk>(raw)
            .map_err(|e| e.to_string())
            .and_then(|jwk| usable_key(&jwk).map(|k| (jwk.kid, k)))
        {
            Ok((Some(kid), key)) => {
                keys.entry(kid).or_insert_with(|| Arc::new(key));
            }
            Ok((None, _)) => log::debug!("jwks: key without kid skipped"),
            Err(why) => log::debug!("jwks: key skipped: {why}"),
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoUsableKeys);
    }
    Ok(keys)
}

/// The verification key of one JWK, or why it is skipped.
fn usable_key(jwk: &RawJwk) -> Result<VerifyKey, String> {
    if jwk.kid.as_deref().is_some_and(str::is_empty) {
        return Err("empty kid".into());
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("use is not sig".into());
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return Err("key_ops lacks verify".into());
    }
    let field = |v: &Option<String>, name: &str| {
        v.clone()
            .ok_or_else(|| format!("{} key without {name}", jwk.kty))
    };
    let (alg, key) = match jwk.kty.as_str() {
        "RSA" => {
            let (n, e) = (field(&jwk.n, "n")?, field(&jwk.e, "e")?);
            check_rsa(&n, &e)?;
            let key = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
            (Algorithm::RS256, key)
        }
        "EC" => {
            if jwk.crv.as_deref() != Some("P-256") {
                return Err("EC key not on P-256".into());
            }
            let (x, y) = (field(&jwk.x, "x")?, field(&jwk.y, "y")?);
            if decoded_len(&x)? != 32 || decoded_len(&y)? != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            let key = DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
            // Building a verifier parses the point: off-curve keys fail here.
            jsonwebtoken::crypto::verify("", b"", &key, Algorithm::ES256)
                .map_err(|_| "EC point not on P-256".to_owned())?;
            (Algorithm::ES256, key)
        }
        other => return Err(format!("key type {other:?} not supported")),
    };
    match jwk.alg.as_deref() {
        None => {}
        Some(a) if a.parse::<Algorithm>().is_ok_and(|a| a == alg) => {}
        Some(a) => return Err(format!("alg {a:?} contradicts the {} key", jwk.kty)),
    }
    Ok(VerifyKey { alg, key })
}

/// RS256 keys: modulus 2048–8192 bits, a small odd public exponent above 1.
fn check_rsa(n: &str, e: &str) -> Result<(), String> {
    let n = decode(n)?;
    let e = decode(e)?;
    let n_bytes = n.iter().skip_while(|b| **b == 0).count();
    if !(256..=1024).contains(&n_bytes) {
        return Err(format!("RSA modulus of {} bits refused", n_bytes * 8));
    }
    let e_bytes: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
    let odd = e_bytes.last().is_some_and(|b| b & 1 == 1);
    if e_bytes.is_empty() || e_bytes.len() > 8 || !odd || e_bytes == [1] {
        return Err("RSA exponent refused".into());
    }
    Ok(())
}

fn decode(v: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map_err(|_| "bad base64url".to_owned())
}

fn decoded_len(v: &str) -> Result<usize, String> {
    decode(v).map(|b| b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn rsa_jwk(kid: &str, extra: Value) -> Value {
        let mut n = vec![0xC5u8; 256];
        n[255] = 0x01;
        let mut v = serde_json::json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB"});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    }

    fn doc(keys: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn keeps_only_rs256_and_es256_signature_keys_with_a_kid() {
        let body = doc(vec![
            rsa_jwk("ok", serde_json::json!({})),
            rsa_jwk("ok-alg", serde_json::json!({"alg": "RS256", "use": "sig"})),
            rsa_jwk("ps", serde_json::json!({"alg": "PS256"})),
            rsa_jwk("hs", serde_json::json!({"alg": "HS256"})),
            rsa_jwk("enc", serde_json::json!({"use": "enc"})),
            rsa_jwk("ops", serde_json::json!({"key_ops": ["encrypt"]})),
            rsa_jwk("", serde_json::json!({})),
            serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            serde_json::json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}),
            serde_json::json!({"kty": "EC", "kid": "p384", "crv": "P-384", "x": b64(&[1; 48]), "y": b64(&[1; 48])}),
            serde_json::json!({"kty": "EC", "kid": "offcurve", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])}),
            serde_json::json!({"kty": "RSA", "kid": "small", "n": b64(&[0xC5; 128]), "e": "AQAB"}),
            serde_json::json!({"kty": "RSA", "kid": "even-e", "n": b64(&[0xC5; 256]), "e": b64(&[2])}),
            serde_json::json!("not an object"),
        ]);
        let keys = parse_jwks(&body).unwrap();
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort();
        assert_eq!(kids, ["ok", "ok-alg"]);
        assert_eq!(keys["ok"].alg, Algorithm::RS256);
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        assert!(matches!(
            parse_jwks(b"{\"keys\": []}"),
            Err(FetchError::NoUsableKeys)
        ));
        assert!(matches!(parse_jwks(b"[]"), Err(FetchError::Parse(_))));
        assert!(matches!(parse_jwks(b"<html>"), Err(FetchError::Parse(_))));
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let refresh = Duration::from_secs(300);
        let got: Vec<u64> = (1..=9).map(|f| retry_delay(f, refresh).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX, refresh), MAX_RETRY_DELAY);
        assert_eq!(
            retry_delay(5, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }
}
