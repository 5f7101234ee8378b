//! Helpers for the authentication tests: hand-made tokens (any header, any
//! claims), generated RSA and P-256 keys with their JWKs, a fake JWKS server
//! with fault switches and a request counter, and a bare HTTP GET.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `header.claims.signature` with the signature made by `key` using `alg`
/// (whatever the header says), so tests can pair any header with a valid MAC.
pub fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

/// An HMAC key.
pub fn hmac(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret).unwrap()
}

/// Valid claims for `tenant`, expiring in an hour.
pub fn claims(tenant: &str) -> Value {
    json!({"tenant_id": tenant, "sub": "user-1", "iat": now(), "exp": now() + 3600})
}

/// `claims` with `changes` merged in (a `null` removes the claim).
pub fn with(mut claims: Value, changes: Value) -> Value {
    let obj = claims.as_object_mut().unwrap();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    claims
}

/// A signing key with its public JWK.
pub struct TestKey {
    /// Signs tokens.
    pub encoding: EncodingKey,
    /// The algorithm this key signs with.
    pub alg: Algorithm,
    /// The public JWK without `kid`.
    pub jwk: Value,
    /// The public key as a PEM `PUBLIC KEY` (SPKI) document.
    pub public_pem: String,
}

impl TestKey {
    /// The public JWK with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut j = self.jwk.clone();
        j["kid"] = json!(kid);
        j
    }

    /// A token with `{"alg", "typ", "kid"}` signed by this key.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        let alg = format!("{:?}", self.alg);
        sign(
            &json!({"alg": alg, "typ": "JWT", "kid": kid}),
            claims,
            &self.encoding,
            self.alg,
        )
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn rsa_key() -> TestKey {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::PrivateKey::new(&mut rand010::rng(), 2048).unwrap();
    let public = private.to_public_key();
    TestKey {
        encoding: EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes()),
        alg: Algorithm::RS256,
        jwk: json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "n": b64(&public.n().to_be_bytes_trimmed_vartime()),
            "e": b64(&public.e().to_be_bytes_trimmed_vartime()),
        }),
        public_pem: pem("PUBLIC KEY", public.to_public_key_der().unwrap().as_bytes()),
    }
}

fn ec_key() -> TestKey {
    use p256::elliptic_curve::Generate;
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let secret = p256::SecretKey::generate_from_rng(&mut rand010::rng());
    let point = secret.public_key().to_sec1_bytes();
    assert_eq!(point.len(), 65, "uncompressed SEC1 point");
    TestKey {
        encoding: EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes()),
        alg: Algorithm::ES256,
        jwk: json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        }),
        public_pem: pem(
            "PUBLIC KEY",
            secret.public_key().to_public_key_der().unwrap().as_bytes(),
        ),
    }
}

/// Two RSA keys, generated once per test binary (RSA generation is slow in
/// debug builds).
pub fn rsa_keys() -> &'static [TestKey; 2] {
    static KEYS: OnceLock<[TestKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let a = std::thread::spawn(rsa_key);
        let b = rsa_key();
        [a.join().unwrap(), b]
    })
}

/// Two P-256 keys, generated once per test binary.
pub fn ec_keys() -> &'static [TestKey; 2] {
    static KEYS: OnceLock<[TestKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| [ec_key(), ec_key()])
}

/// What the fake JWKS server answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this JSON body.
    Keys(Value),
    /// This status with an empty body.
    Status(u16),
    /// 200 with a body of this many bytes.
    Huge(usize),
    /// Accept the request, never answer.
    Hang,
}

/// A JWKS endpoint on 127.0.0.1 with a switchable answer and a request count.
pub struct FakeJwks {
    /// Where it listens.
    pub addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
}

impl FakeJwks {
    /// Starts serving `answer` on a thread of its own.
    pub fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, r) = (answer.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (a, r) = (a.clone(), r.clone());
                std::thread::spawn(move || serve_one(stream, &a, &r));
            }
        });
        Self {
            addr,
            answer,
            requests,
        }
    }

    /// A JWKS document of `keys`.
    pub fn keys(keys: Vec<Value>) -> Answer {
        Answer::Keys(json!({ "keys": keys }))
    }

    /// The URI of the key set.
    pub fn uri(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// Changes the answer.
    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were received.
    pub fn wait_requests(&self, n: usize, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while self.requests() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "JWKS requests: {} < {n}",
                self.requests()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_one(mut stream: TcpStream, answer: &Mutex<Answer>, requests: &AtomicUsize) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let answer = answer.lock().unwrap().clone();
    let (status, body) = match answer {
        Answer::Keys(v) => (200, serde_json::to_vec(&v).unwrap()),
        Answer::Status(s) => (s, Vec::new()),
        Answer::Huge(n) => (200, vec![b' '; n]),
        Answer::Hang => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// `GET path` on `addr`; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `f` until it returns true, failing after `within`.
pub async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
