//! Cluster test support: a real `redis-server` on a free loopback port that a
//! test can kill and restart (plain, or TLS-only with an ACL user and a CA
//! made for it), nodes sharing it (in process, or the real binary as a child
//! process that can be SIGKILLed), and a tiny HTTP GET for `/readyz`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wsplus::settings::{ClusterBackend, Settings};

use crate::client::{test_pki, TestPki};
use crate::{
    base_settings, eventually, free_port, http_get, wsplus_bin, ADMIN_TOKEN, SECRET, WAIT,
};

/// Node lease in the tests: short, so a crashed node is forgotten quickly.
pub const LEASE_S: u64 = 2;

/// The password of [`RedisServer::start_secure`]'s ACL user.
pub const REDIS_PASSWORD: &str = "redis-pw-0123456789";
/// [`RedisServer::start_secure`]'s ACL user.
pub const REDIS_USER: &str = "wsplus-node";
/// The variable the nodes of [`secure_node_settings`] read the password from.
pub const REDIS_PASSWORD_ENV: &str = "TEST_REDIS_PASSWORD";

/// A `redis-server` child process without persistence.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    secure: Option<Secure>,
}

/// TLS of a [`RedisServer::start_secure`]: a CA and a certificate for
/// 127.0.0.1 it issued.
struct Secure {
    pki: TestPki,
    ca_pem: String,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING. Fails (never
    /// skips) when `redis-server` is not installed: `scripts/test.sh` installs it.
    pub fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
            secure: None,
        };
        r.restart();
        r
    }

    /// Starts one that speaks TLS only (a certificate for 127.0.0.1 issued by
    /// a CA made here, see [`RedisServer::ca_file`]) and knows one ACL user,
    /// [`REDIS_USER`] with [`REDIS_PASSWORD`] (the default user is off).
    pub fn start_secure() -> Self {
        let port = free_port();
        let pki = test_pki(&format!("redis-{port}"));
        let ca_pem = std::fs::read_to_string(&pki.ca).unwrap();
        let mut r = Self {
            port,
            child: None,
            secure: Some(Secure { pki, ca_pem }),
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:port/`, or `rediss://` for a secure one (without
    /// credentials).
    pub fn url(&self) -> String {
        let scheme = if self.secure.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The PEM file of the CA that issued a secure server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.secure.as_ref().expect("a secure redis").pki.ca.clone()
    }

    /// A client as the harness connects (TLS and the ACL user when secure).
    fn client(&self) -> redis::Client {
        let Some(s) = &self.secure else {
            return redis::Client::open(self.url()).unwrap();
        };
        let url = format!(
            "rediss://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{}/",
            self.port
        );
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(s.ca_pem.clone().into_bytes()),
        };
        redis::Client::build_with_tls(url, certs).unwrap()
    }

    /// `redis-server` arguments of a secure server: TLS only, one ACL user.
    fn secure_args(&self) -> Vec<String> {
        let Some(s) = &self.secure else {
            return Vec::new();
        };
        let file = |f: &PathBuf| f.display().to_string();
        let mut args: Vec<String> = [
            "--tls-port",
            &self.port.to_string(),
            "--port",
            "0",
            "--tls-cert-file",
            &file(&s.pki.cert),
            "--tls-key-file",
            &file(&s.pki.key),
            "--tls-ca-cert-file",
            &file(&s.pki.ca),
            "--tls-auth-clients",
            "no",
            "--user",
            REDIS_USER,
            "on",
        ]
        .map(String::from)
        .into();
        args.push(format!(">{REDIS_PASSWORD}"));
        args.extend(["~*", "&*", "+@all", "--user", "default", "off"].map(String::from));
        args
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = if self.secure.is_some() {
            Vec::new()
        } else {
            vec!["--port".to_owned(), self.port.to_string()]
        };
        let child = Command::new("redis-server")
            .args(port)
            .args(self.secure_args())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut c) = self.client().get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOPs it: connections stay open, nothing is answered until
    /// [`RedisServer::resume`] (a server that hangs, not one that is gone).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONTs a paused one.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// SIGKILLs it (an outage, not a clean stop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A synchronous connection for inspecting what the nodes wrote.
    pub fn conn(&self) -> redis::Connection {
        self.client().get_connection().expect("redis reachable")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = self.secure.as_ref().and_then(|s| s.pki.ca.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Settings for a node of the cluster on a [`RedisServer::start_secure`]:
/// `rediss://`, the ACL user, its password from [`REDIS_PASSWORD_ENV`], the
/// test CA trusted besides the system roots.
pub fn secure_node_settings(redis: &RedisServer, node_id: &str) -> Settings {
    let mut s = node_settings(redis, node_id);
    s.cluster.username = Some(REDIS_USER.into());
    s.cluster.password_env = Some(REDIS_PASSWORD_ENV.into());
    s.cluster.tls_ca_file = Some(redis.ca_file().display().to_string());
    s
}

/// Test settings for a node of the cluster on `redis`.
pub fn node_settings(redis: &RedisServer, node_id: &str) -> Settings {
    let mut s = base_settings();
    s.cluster.backend = ClusterBackend::Redis;
    s.cluster.redis_url = Some(redis.url());
    s.cluster.node_id = node_id.into();
    s.cluster.lease_s = LEASE_S;
    s.cluster.timeout_ms = 1000;
    s
}

/// The real binary running one node, killed with SIGKILL on drop.
pub struct ChildNode {
    /// Client traffic address.
    pub http: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl ChildNode {
    /// Runs `wsplus serve` with `settings` (ports are chosen here) and waits
    /// until its `/readyz` answers 200.
    pub async fn spawn(mut settings: Settings) -> Self {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        settings.server.bind = http.to_string();
        settings.admin.bind = admin.to_string();
        let dir = std::env::temp_dir().join(format!(
            "wsplus-cluster-{}-{}",
            std::process::id(),
            http.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("node.toml");
        std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();
        let child = wsplus_bin()
            .args(["serve", "--config"])
            .arg(&config)
            .env("TEST_JWT_SECRET", SECRET)
            .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wsplus");
        let node = Self {
            http,
            admin,
            child,
            dir,
        };
        eventually("child node ready", || async {
            tokio::net::TcpStream::connect(admin).await.is_ok()
                && http_get(admin, "/readyz").await.0 == 200
        })
        .await;
        node
    }

    /// `ws://addr/path?token=...`
    pub fn ws_url(&self, path: &str, token: &str) -> String {
        format!("ws://{}{}?token={}", self.http, path, token)
    }

    /// SIGKILL: no clean stop, nothing is deregistered.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisServer {
    /// Runs one command (`CLIENT KILL TYPE pubsub`, `CLIENT PAUSE 2000`...).
    pub fn command(&self, args: &[&str]) {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let _: redis::Value = cmd.query(&mut self.conn()).expect("redis command");
    }

    /// Each node's slot count of `(listener, tenant)`, as Redis holds them.
    pub fn slot_counts(
        &self,
        listener: &str,
        tenant: &str,
    ) -> std::collections::BTreeMap<String, u64> {
        let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("wsplus:slots:{{{listener}:{tenant}}}"))
            .query(&mut self.conn())
            .expect("redis reachable");
        fields
            .into_iter()
            .map(|(node, v)| (node, v.split(':').next().unwrap().parse().unwrap()))
            .collect()
    }
}

/// The `cluster.state` a node's `/readyz` reports (it stays 200 either way).
pub async fn cluster_state(admin: SocketAddr) -> String {
    let (status, body) = http_get(admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body["cluster"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until every node's `/readyz` reports `state`.
pub async fn wait_cluster_state(admins: &[SocketAddr], state: &str) {
    for admin in admins {
        eventually(&format!("readyz reports the cluster {state}"), || async {
            cluster_state(*admin).await == state
        })
        .await;
    }
}

/// A client driven by its own task: it reads all the time (so a flow of
/// messages never makes it a slow consumer) and sends what it is given.
pub struct Peer {
    send: tokio::sync::mpsc::UnboundedSender<String>,
    got: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Peer {
    /// Drives `ws`.
    pub fn new(mut ws: crate::Ws) -> Self {
        let (send, mut outbox) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (inbox, got) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = ws.recv_text() => {
                        if inbox.send(m).is_err() {
                            return;
                        }
                    }
                    out = outbox.recv() => match out {
                        Some(text) => ws.send_text(&text).await,
                        None => return,
                    },
                }
            }
        });
        Self { send, got }
    }

    /// A sender for this client's messages (to publish from another task).
    pub fn sender(&self) -> tokio::sync::mpsc::UnboundedSender<String> {
        self.send.clone()
    }

    /// Sends a text message.
    pub fn send(&self, text: &str) {
        self.send.send(text.to_owned()).expect("peer task running");
    }

    /// Skips messages until `want` arrives (each within [`WAIT`]).
    pub async fn recv_until(&mut self, want: &str) {
        loop {
            let m = tokio::time::timeout(WAIT, self.got.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {want:?}"))
                .expect("peer task ended");
            if m == want {
                return;
            }
        }
    }
}
