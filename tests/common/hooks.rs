//! A fake application backend for the hook and webhook tests: a real
//! actix-web server on loopback in its own thread, recording every request
//! (path, raw body, signature header) and answering through a switchable
//! function (status, body, delay). It can be stopped and started again on the
//! same port to play an outage.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The signing secret the tests configure (via `HOOK_SECRET`).
pub const HOOK_SECRET: &str = "hook-secret-for-tests-0123456789";

/// One request the backend received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The last path segment (`connect`, `message`, ... or the webhook path).
    pub hook: String,
    /// The raw body as received.
    pub body: Vec<u8>,
    /// The body parsed (Null when not JSON).
    pub json: Value,
    /// `X-Wsplus-Signature`, if sent.
    pub signature: Option<String>,
}

impl Recorded {
    /// True when the signature is `sha256=` + hex HMAC-SHA256 of the raw
    /// body under `secret`, recomputed here.
    pub fn signed_with(&self, secret: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.signature.as_deref() == Some(&format!("sha256={hex}"))
    }
}

/// What the backend answers.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body (sent as application/json).
    pub body: String,
    /// Wait before answering (a slow backend).
    pub delay: Duration,
}

impl Answer {
    /// 200 with `body`.
    pub fn json(body: Value) -> Self {
        Self {
            status: 200,
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// `status` with `body` as it is.
    pub fn raw(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = Box<dyn Fn(&Recorded) -> Answer + Send + Sync>;

struct Shared {
    /// TCP connections accepted.
    connections: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
    count: tokio::sync::watch::Sender<usize>,
    respond: Mutex<Arc<Responder>>,
}

/// The running fake backend.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<(ServerHandle, std::thread::JoinHandle<()>)>,
}

impl Backend {
    /// Starts on a free loopback port, answering with `respond`.
    pub fn start(respond: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) -> Self {
        let port = crate::free_port();
        let shared = Arc::new(Shared {
            connections: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            count: tokio::sync::watch::channel(0).0,
            respond: Mutex::new(Arc::new(Box::new(respond))),
        });
        let mut b = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            shared,
            server: None,
        };
        b.up();
        b
    }

    /// The base URL hooks are configured with (`http://addr/hooks`).
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Changes the answers from now on.
    pub fn respond(&self, respond: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) {
        *self.shared.respond.lock().unwrap() = Arc::new(Box::new(respond));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests to `hook` so far.
    pub fn requests_to(&self, hook: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.hook == hook)
            .collect()
    }

    /// TCP connections accepted so far (kept-alive ones are counted once).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived in all, failing after `limit`.
    pub async fn wait_requests(&self, n: usize, limit: Duration) -> Vec<Recorded> {
        let mut rx = self.shared.count.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{n} backend requests not seen within {limit:?}: {:#?}",
                    self.requests()
                )
            })
            .unwrap();
        self.requests()
    }

    /// Stops listening (connections are refused until [`Backend::up`]).
    pub fn down(&mut self) {
        if let Some((handle, thread)) = self.server.take() {
            let stopped = std::thread::spawn(move || {
                actix_rt::System::new().block_on(handle.stop(false));
            });
            stopped.join().unwrap();
            thread.join().unwrap();
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).expect("backend port is free");
        let shared = self.shared.clone();
        let counted = self.shared.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let data = web::Data::from(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(64 << 20))
                        .default_service(web::to(handle))
                })
                .on_connect(move |_, _| {
                    counted.connections.fetch_add(1, Ordering::SeqCst);
                })
                .workers(2)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener)
                .expect("listen")
                .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            });
        });
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("backend up");
        self.server = Some((handle, thread));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.down();
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let recorded = Recorded {
        hook: req.path().rsplit('/').next().unwrap_or_default().to_owned(),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body: body.to_vec(),
        signature: req
            .headers()
            .get("x-wsplus-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let respond = shared.respond.lock().unwrap().clone();
    let answer = respond(&recorded);
    shared.requests.lock().unwrap().push(recorded);
    shared.count.send_modify(|c| *c += 1);
    if !answer.delay.is_zero() {
        actix_rt::time::sleep(answer.delay).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answer.status).unwrap())
        .content_type("application/json")
        .body(answer.body)
}
