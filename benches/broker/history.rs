//! Channels-mode history scenarios (`wsplus.v1` clients):
//!
//! * `history_fanout` — one publisher → S subscribers of one channel, on a
//!   listener with history (size 100, TTL 300 s) and on one without, in the
//!   same run, alternating; prints deliveries/s of each and their ratio.
//! * `history_recovery` — P publications missed, then C clients subscribe
//!   with `since` (recovering all P): the subscribe round trip p50/p99.
//!
//! `--redis 1` runs both on two brokers sharing a `redis-server` started for
//! the run (`cluster.backend = "redis"`): publications are made on node A,
//! subscribers and recoveries are on node B.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    self, connect_many, fail, thousands, token, Args, Broker, Percentiles, Ws, CH_HISTORY, CH_PLAIN,
};

/// The brokers of a run: `a` publishes, `b` subscribes (the same one on a
/// single node); the Redis server of a cluster run.
struct Nodes {
    a: Broker,
    b: Option<Broker>,
    _redis: Option<RedisChild>,
}

impl Nodes {
    fn start(args: &Args) -> Self {
        if args.get("redis", 0u8) == 0 {
            return Self {
                a: Broker::start(),
                b: None,
                _redis: None,
            };
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| fail(&format!("{e}")))
            .port();
        let redis = RedisChild::start(port);
        let cluster = |node: &str| {
            format!(
                "[cluster]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/\"\n\
                 node_id = \"{node}\"\n"
            )
        };
        Self {
            a: Broker::start_with(&cluster("a"), "-a"),
            b: Some(Broker::start_with(&cluster("b"), "-b")),
            _redis: Some(redis),
        }
    }

    fn b(&self) -> &Broker {
        self.b.as_ref().unwrap_or(&self.a)
    }

    fn what(&self) -> &'static str {
        if self.b.is_some() {
            "redis backend, publisher on node A, subscribers on node B"
        } else {
            "single node"
        }
    }

    fn cpu(&self) -> Duration {
        self.a.cpu() + self.b.as_ref().map_or(Duration::ZERO, Broker::cpu)
    }
}

/// A `redis-server` for a cluster run, killed on drop.
struct RedisChild(std::process::Child);

impl RedisChild {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("redis-server: {e}")));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                fail("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Longest wait for one reply or one delivery.
const STEP: Duration = Duration::from_secs(30);

/// Sends one command line.
async fn send(ws: &mut Ws, cmd: Value) {
    ws.send(Message::text(cmd.to_string()))
        .await
        .unwrap_or_else(|e| fail(&format!("send: {e}")));
}

/// The lines of the next text frame.
async fn lines(ws: &mut Ws) -> Vec<String> {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return t.split('\n').map(str::to_owned).collect();
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => fail(&format!("connection ended: {other:?}")),
            Err(_) => fail("no frame within 30 s"),
        }
    }
}

/// Sends `cmd` with id `id` and returns the reply (pushes are skipped).
async fn call(ws: &mut Ws, id: u64, mut cmd: Value) -> Value {
    cmd["id"] = json!(id);
    send(ws, cmd).await;
    loop {
        for l in lines(ws).await {
            let v: Value = serde_json::from_str(&l).unwrap_or_default();
            if v["id"] == id {
                return v;
            }
        }
    }
}

/// Connects `n` clients of tenant `bench-h` to `path`; each read its
/// `connected` push.
async fn clients(broker: &Broker, path: &str, n: usize) -> Vec<Ws> {
    let tok = token("bench-h", "h");
    let opened = connect_many((0..n).map(|_| broker.url(path, &tok)).collect(), 50).await;
    if !opened.failures.is_empty() {
        fail(&format!("connections failed: {:?}", opened.failures));
    }
    let mut conns = opened.conns;
    for ws in &mut conns {
        lines(ws).await;
    }
    conns
}

/// One publisher → `subs` subscribers × `msgs` publications of `size` bytes
/// on `path`: deliveries per second (first publish to last delivery).
async fn fanout_on(nodes: &Nodes, path: &str, subs: usize, msgs: u64, size: usize) -> f64 {
    let channel = "fan";
    let mut subscribers = clients(nodes.b(), path, subs).await;
    for ws in &mut subscribers {
        let r = call(ws, 1, json!({"op": "subscribe", "channel": channel})).await;
        if r.get("result").is_none() {
            fail(&format!("subscribe: {r}"));
        }
    }
    if nodes.b.is_some() {
        // Without history a subscribe does not wait for node B's Redis
        // subscription: give it time before publishing.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counting: Vec<_> = subscribers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut got = 0;
                while got < msgs {
                    got += lines(&mut ws)
                        .await
                        .iter()
                        .filter(|l| l.starts_with(r#"{"push":"pub""#))
                        .count() as u64;
                }
                (Instant::now(), ws)
            })
        })
        .collect();
    let mut publisher = clients(&nodes.a, path, 1).await.remove(0);
    let data = "x".repeat(size);
    let started = Instant::now();
    // At most `window` publications waiting for their reply.
    let window = 64;
    let (mut sent, mut answered) = (0u64, 0u64);
    while answered < msgs {
        while sent < msgs && sent - answered < window {
            sent += 1;
            let cmd = json!({"id": sent, "op": "publish", "channel": channel, "data": data});
            send(&mut publisher, cmd).await;
        }
        answered += lines(&mut publisher)
            .await
            .iter()
            .filter(|l| l.starts_with(r#"{"id""#))
            .count() as u64;
    }
    let mut last = started;
    for c in counting {
        let (at, _ws) = c.await.unwrap_or_else(|e| fail(&format!("{e}")));
        last = last.max(at);
    }
    (subs as u64 * msgs) as f64 / last.duration_since(started).as_secs_f64()
}

/// Fan-out with history on and off, alternating, `--rounds` times each.
pub async fn history_fanout(args: &Args) {
    support::print_conditions("history fan-out");
    let subs = args.get("subs", 1_000);
    let msgs = args.get("msgs", 200);
    let size = args.get("size", 128);
    let rounds = args.get("rounds", 3);
    let nodes = Nodes::start(args);
    let cpu = nodes.cpu();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        off.push(fanout_on(&nodes, CH_PLAIN, subs, msgs, size).await);
        on.push(fanout_on(&nodes, CH_HISTORY, subs, msgs, size).await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (m_on, m_off) = (median(&mut on), median(&mut off));
    println!(
        "history fan-out ({}) 1 publisher -> {subs} subscribers x {msgs} msgs x {size} B, \
         median of {rounds}: history off {} deliveries/s, history on (size 100, ttl 300 s) \
         {} deliveries/s, on/off {:.2}",
        nodes.what(),
        thousands(m_off),
        thousands(m_on),
        m_on / m_off
    );
    println!(
        "   runs off {:?}, on {:?}",
        off.iter().map(|r| thousands(*r)).collect::<Vec<_>>(),
        on.iter().map(|r| thousands(*r)).collect::<Vec<_>>()
    );
    print_nodes(&nodes, cpu);
}

fn print_nodes(nodes: &Nodes, cpu: Duration) {
    println!(
        "   brokers: {:.2} s CPU in all, RSS {} KiB (+ {} KiB node B)",
        nodes.cpu().saturating_sub(cpu).as_secs_f64(),
        nodes.a.rss_kib(),
        nodes.b.as_ref().map_or(0, Broker::rss_kib)
    );
}

/// `--missed` publications, then `--clients` subscribes with `since` that
/// recover them all, `--concurrency` at a time: the subscribe round trip.
pub async fn history_recovery(args: &Args) {
    support::print_conditions("history recovery");
    let missed: u64 = args.get("missed", 100);
    let n: usize = args.get("clients", 500);
    let concurrency: usize = args.get("concurrency", 10);
    let nodes = Nodes::start(args);
    let cpu = nodes.cpu();
    let channel = "rec";
    let mut publisher = clients(&nodes.a, CH_HISTORY, 1).await.remove(0);
    let r = call(
        &mut publisher,
        1,
        json!({"op": "history", "channel": channel, "limit": 0}),
    )
    .await;
    let epoch = r["result"]["epoch"].clone();
    let from = r["result"]["offset"].as_u64().unwrap_or(0);
    for i in 0..missed {
        let cmd = json!({"op": "publish", "channel": channel, "data": "x".repeat(128)});
        call(&mut publisher, 2 + i, cmd).await;
    }
    let conns = clients(nodes.b(), CH_HISTORY, n).await;
    let since = json!({"epoch": epoch, "offset": from});
    let results: Vec<(u64, bool)> = futures_util::stream::iter(conns)
        .map(|mut ws| {
            let since = since.clone();
            async move {
                let t = Instant::now();
                let cmd = json!({"op": "subscribe", "channel": channel, "since": since});
                let r = call(&mut ws, 1, cmd).await;
                let took = t.elapsed().as_micros() as u64;
                let ok = r["result"]["recovered"] == true
                    && r["result"]["publications"]
                        .as_array()
                        .is_some_and(|p| p.len() as u64 == missed);
                (took, ok)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let failed = results.iter().filter(|(_, ok)| !ok).count();
    let lat = Percentiles::new(results.iter().map(|(t, _)| *t).collect());
    println!(
        "history recovery ({}) of {missed} missed publications, {n} subscribes with since, \
         {concurrency} at a time: subscribe latency {}, not recovered {failed}",
        nodes.what(),
        lat.summary()
    );
    print_nodes(&nodes, cpu);
    if failed > 0 {
        fail("some subscribes did not recover everything");
    }
}
