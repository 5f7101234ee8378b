//! Cross-node fan-out benchmark (loopback, bounded).
//!
//! Starts a `redis-server` on a free loopback port and two wsplus nodes in this
//! process sharing it. One publisher on node A sends `MESSAGES` tenant messages;
//! `SUBSCRIBERS` clients of the same tenant listen on node B (cross-node) and as
//! many on node A (local, for comparison). The publisher keeps at most `WINDOW`
//! messages ahead of the slowest cross-node subscriber, so the run measures the
//! steady path rather than queue overflow. Prints throughput and the publish →
//! receive latency seen by one subscriber per node.
//!
//! `cargo bench --bench cluster` (env: `WSPLUS_BENCH_MESSAGES`,
//! `WSPLUS_BENCH_SUBSCRIBERS`, `WSPLUS_BENCH_PAYLOAD`, `WSPLUS_BENCH_WINDOW`).
//! Every loop is bounded by the message count and a 120 s deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsplus::auth::mint;
use wsplus::env::Env;
use wsplus::server::{self, Sockets};
use wsplus::settings::{ClusterBackend, Settings, Source};

const SECRET: &str = "bench-secret-0123456789-0123456789";
const DEADLINE: Duration = Duration::from_secs(120);

fn param(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis(port: u16) -> Redis {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis(child)
}

/// Starts a node in its own actix system thread; returns its client address.
fn start_node(redis_port: u16, node: &str) -> SocketAddr {
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 1;
    s.admin.bind = "127.0.0.1:0".into();
    s.admin.token_env = "BENCH_ADMIN".into();
    s.listeners[0].auth.secret_env = Some("BENCH_SECRET".into());
    s.listeners[0].heartbeat_s = 0;
    s.limits.outbound_queue_messages = 65536;
    s.limits.outbound_queue_bytes = 64 << 20;
    s.cluster.backend = ClusterBackend::Redis;
    s.cluster.redis_url = Some(format!("redis://127.0.0.1:{redis_port}/"));
    s.cluster.node_id = node.into();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let vars = HashMap::from([
                ("BENCH_SECRET".to_owned(), SECRET.to_owned()),
                ("BENCH_ADMIN".to_owned(), "bench-admin".to_owned()),
            ]);
            let sockets = Sockets::bind(&s).unwrap();
            let running = server::start(
                s,
                Source::File("bench".into()),
                sockets,
                Env::from_map(vars),
            )
            .await
            .expect("node starts");
            tx.send(running.http_addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("node started")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr) -> Socket {
    let claims = mint::Claims::new("bench", None, 3600, "tenant_id");
    let token = mint::hs256(SECRET, &claims).unwrap();
    let url = format!("ws://{addr}/ws/events?token={token}");
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// What one subscriber saw.
struct Seen {
    received: u64,
    latencies_us: Vec<u64>,
}

/// Reads until `n` messages arrived (or the deadline); records latencies when
/// `track` is set and reports progress in `progress`.
async fn subscribe(
    mut ws: Socket,
    n: u64,
    start: Instant,
    track: bool,
    progress: Arc<AtomicU64>,
) -> Seen {
    let mut seen = Seen {
        received: 0,
        latencies_us: Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.received < n {
        let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await else {
            break;
        };
        let Message::Text(t) = msg else { continue };
        seen.received += 1;
        progress.fetch_add(1, Ordering::Relaxed);
        if track {
            let sent: u64 = t.split(':').next().unwrap().parse().unwrap();
            let now = start.elapsed().as_micros() as u64;
            seen.latencies_us.push(now.saturating_sub(sent));
        }
    }
    seen
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let messages = param("WSPLUS_BENCH_MESSAGES", 20_000);
    let subscribers = param("WSPLUS_BENCH_SUBSCRIBERS", 10);
    let payload = param("WSPLUS_BENCH_PAYLOAD", 128) as usize;
    let window = param("WSPLUS_BENCH_WINDOW", 512);

    let redis_port = free_port();
    let _redis = start_redis(redis_port);
    let a = start_node(redis_port, "bench-a");
    let b = start_node(redis_port, "bench-b");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let start = Instant::now();
        let remote_progress: Vec<Arc<AtomicU64>> =
            (0..subscribers).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let mut tasks = Vec::new();
        for (node, addr) in [("local", a), ("cross-node", b)] {
            for i in 0..subscribers {
                let ws = connect(addr).await;
                let progress = if node == "cross-node" {
                    remote_progress[i as usize].clone()
                } else {
                    Arc::new(AtomicU64::new(0))
                };
                let h = tokio::spawn(subscribe(ws, messages, start, i == 0, progress));
                tasks.push((node, h));
            }
        }
        // The publisher receives its own tenant messages too: drain them.
        let (mut sink, mut own) = connect(a).await.split();
        tokio::spawn(async move { while let Some(Ok(_)) = own.next().await {} });
        let pad = "x".repeat(payload.saturating_sub(24));
        let t0 = Instant::now();
        let deadline = Instant::now() + DEADLINE;
        for i in 0..messages {
            while i >= window
                && remote_progress
                    .iter()
                    .map(|p| p.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0)
                    + window
                    <= i
            {
                if Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let text = format!("{}:{pad}", start.elapsed().as_micros());
            sink.send(Message::text(text)).await.expect("publish");
        }
        let mut results: HashMap<&str, (u64, Vec<u64>)> = HashMap::new();
        for (node, h) in tasks {
            let seen = h.await.unwrap();
            let e = results.entry(node).or_default();
            e.0 += seen.received;
            e.1.extend(seen.latencies_us);
        }
        let elapsed = t0.elapsed();
        println!(
            "cross-node fan-out: {messages} messages of {payload} B, {subscribers} subscribers per node, window {window}"
        );
        println!("| path | deliveries | lost | deliveries/s | p50 latency | p99 latency |");
        println!("|---|---|---|---|---|---|");
        for node in ["local", "cross-node"] {
            let (received, mut lat) = results.remove(node).unwrap_or_default();
            lat.sort_unstable();
            let expected = messages * subscribers;
            println!(
                "| {node} | {received} | {} | {:.0} | {} µs | {} µs |",
                expected - received.min(expected),
                received as f64 / elapsed.as_secs_f64(),
                percentile(&lat, 0.50),
                percentile(&lat, 0.99),
            );
        }
        println!("elapsed: {:.2} s", elapsed.as_secs_f64());
    });
}
