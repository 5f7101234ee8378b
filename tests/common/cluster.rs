//! Cluster test support: a real `redis-server` on a free loopback port that a
//! test can kill and restart, nodes sharing it (in process, or the real binary as
//! a child process that can be SIGKILLed), and a tiny HTTP GET for `/readyz`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wsplus::settings::{ClusterBackend, Settings};

use crate::{
    base_settings, eventually, free_port, http_get, wsplus_bin, ADMIN_TOKEN, SECRET, WAIT,
};

/// Node lease in the tests: short, so a crashed node is forgotten quickly.
pub const LEASE_S: u64 = 2;

/// A `redis-server` child process without persistence.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING. Fails (never
    /// skips) when `redis-server` is not installed: `scripts/test.sh` installs it.
    pub fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:port/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
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
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
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
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("redis reachable")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
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
