//! Helpers for the authentication tests: hand-made tokens (any header, any
//! claims), generated RSA and P-256 keys with their JWKs, a fake JWKS server
//! with fault switches and a request counter, and a bare HTTP GET.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// How long a child process may take to say or do something.
pub const PROCESS_WAIT: Duration = Duration::from_secs(10);

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The claims of a token, decoded without verification (test inspection only).
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three segments");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&raw).expect("json claims")
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

/// A JWKS endpoint on 127.0.0.1 (http, or https with a certificate from a
/// test CA) with a switchable answer and request and connection counts.
pub struct FakeJwks {
    /// Where it listens.
    pub addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    /// https: the PEM of the CA that issued the server's certificate.
    pub ca_pem: Option<String>,
}

/// A CA and a server certificate for 127.0.0.1 issued by it.
fn tls_server_config() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wsplus test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (Arc::new(config), ca.pem())
}

impl FakeJwks {
    /// Starts serving `answer` over http on a thread of its own.
    pub fn start(answer: Answer) -> Self {
        Self::start_with(answer, None)
    }

    /// Starts serving `answer` over https, with a certificate for 127.0.0.1
    /// issued by a fresh test CA (see [`FakeJwks::ca_pem`]).
    pub fn start_tls(answer: Answer) -> Self {
        let (config, ca) = tls_server_config();
        let mut fake = Self::start_with(answer, Some(config));
        fake.ca_pem = Some(ca);
        fake
    }

    fn start_with(answer: Answer, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (a, r, c) = (answer.clone(), requests.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let (a, r, tls) = (a.clone(), r.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve_one(stream, &a, &r),
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(cfg).unwrap();
                        serve_one(rustls::StreamOwned::new(conn, stream), &a, &r);
                    }
                });
            }
        });
        Self {
            addr,
            answer,
            requests,
            connections,
            ca_pem: None,
        }
    }

    /// TCP connections accepted so far (TLS handshakes that failed included).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// A JWKS document of `keys`.
    pub fn keys(keys: Vec<Value>) -> Answer {
        Answer::Keys(json!({ "keys": keys }))
    }

    /// The URI of the key set.
    pub fn uri(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/.well-known/jwks.json", self.addr)
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

fn serve_one(mut stream: impl Read + Write, answer: &Mutex<Answer>, requests: &AtomicUsize) {
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
    let _ = stream.flush();
}

/// A child `wsplus serve` with its stdout and stderr read line by line.
pub struct Server {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stderr line read so far.
    log: Vec<String>,
}

impl Server {
    /// Spawns `cmd` with both streams piped.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Server {
            child,
            stdout,
            stderr,
            log: Vec::new(),
        }
    }

    /// The next stdout line.
    pub fn stdout_line(&self) -> String {
        self.stdout
            .recv_timeout(PROCESS_WAIT)
            .expect("a line on stdout")
    }

    /// Reads stderr until a line satisfies `f`.
    pub fn wait_log(&mut self, what: &str, f: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let hit = f(&line);
                    self.log.push(line);
                    if hit {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no log line {what}; got:\n{}", self.log.join("\n"))
                }
            }
        }
    }

    /// SIGTERM, wait for exit 0, collect the rest of both streams.
    pub fn stop(mut self) -> (Vec<String>, Vec<String>) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + PROCESS_WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0));
        self.log.extend(self.stderr.iter());
        (self.log, self.stdout.iter().collect())
    }
}
