//! The fan-out load generator of the `fanout`, `many_tenants`, `global`,
//! `latency` and `channel_fanout` scenarios: T tenants, S subscribers and one
//! publisher per tenant; every subscriber counts the bench messages it
//! receives, checks that each came from a publisher it may hear from (its own
//! tenant, or anyone on a global listener), and records the latency. On a
//! message-mode listener bench messages travel as `{"text": ...}`; on a
//! channels-mode listener every connection subscribes to one channel first and
//! publishers send `publish` commands to it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::channels;
use crate::support::{
    connect_many, fail, message, now_us, own_cpu, parse, token, Broker, Percentiles, Ws,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Listener path.
    pub path: &'static str,
    /// How bench messages travel (must match the listener's mode).
    pub wire: Wire,
    /// Tenants, each with `subs_per_tenant` subscribers.
    pub tenants: u32,
    /// Publishers: one for each of the first `publishers` tenants.
    pub publishers: u32,
    /// Subscribers of each tenant.
    pub subs_per_tenant: usize,
    /// Messages each publisher sends (measured).
    pub msgs: u64,
    /// Message size, bytes.
    pub size: usize,
    /// Messages per second per publisher; 0 = as fast as the socket takes them.
    pub rate: f64,
    /// Unmeasured messages each publisher sends first.
    pub warmup: u64,
    /// Global scope: every subscriber expects every publisher's messages.
    pub global: bool,
    /// Handshakes in flight while connecting.
    pub concurrency: usize,
}

impl Spec {
    /// One tenant, one publisher → `subs` subscribers, `msgs` messages of
    /// `size` bytes as fast as the socket takes them, after 20 warm-up ones.
    pub fn one_to_many(
        path: &'static str,
        wire: Wire,
        subs: usize,
        msgs: u64,
        size: usize,
    ) -> Self {
        Self {
            path,
            wire,
            tenants: 1,
            publishers: 1,
            subs_per_tenant: subs,
            msgs,
            size,
            rate: 0.0,
            warmup: 20,
            global: false,
            concurrency: 50,
        }
    }
}

/// How bench messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Payload mode: the message is the frame.
    Payload,
    /// Message mode: `{"text": message}`, delivered with the `_session` stamp.
    Message,
    /// Channels mode: every connection subscribes to this channel, publishers
    /// send `publish` commands to it, deliveries are `pub` pushes.
    Channel(&'static str),
}

/// What happened.
pub struct Outcome {
    /// Deliveries expected (subscribers × messages they should see).
    pub expected: u64,
    /// Bench messages received by subscribers.
    pub received: u64,
    /// Messages a subscriber received from a tenant it must not hear from.
    pub crossed: u64,
    /// Bytes of the frames that carried measured messages (payload bytes,
    /// without the WebSocket header).
    pub bytes: u64,
    /// Deliveries of the fan-out phase, warm-up included.
    pub fanned_out: u64,
    /// The broker's CPU time during the fan-out phase (from the first
    /// warm-up send until every subscriber is done).
    pub broker_cpu: Duration,
    /// The load generator's CPU time during the same phase.
    pub client_cpu: Duration,
    /// First measured send to last delivery.
    pub elapsed: Duration,
    /// Delivery latencies.
    pub latency: Percentiles,
    /// Time to open every connection.
    pub connect: Duration,
}

impl Outcome {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Frame bytes per measured delivery: what the broker wrote, and the
    /// load generator read, for each.
    pub fn bytes_per_delivery(&self) -> f64 {
        self.bytes as f64 / self.received.max(1) as f64
    }

    /// CPU per delivery in the fan-out phase, nanoseconds: the broker's and
    /// the load generator's (which share the machine's cores).
    pub fn cpu_per_delivery_ns(&self) -> (f64, f64) {
        let per = |d: Duration| d.as_nanos() as f64 / self.fanned_out.max(1) as f64;
        (per(self.broker_cpu), per(self.client_cpu))
    }
}

struct SubResult {
    received: u64,
    crossed: u64,
    bytes: u64,
    /// Bench messages of its own tenant, warm-up included.
    all: u64,
    last_us: u64,
    latencies: Vec<u64>,
}

/// Runs one fan-out against `broker`.
pub async fn run(broker: &Broker, spec: &Spec) -> Outcome {
    let tenant_name = |t: u32| format!("bench-{t}");
    let mut urls = Vec::new();
    let mut owners = Vec::new();
    for t in 0..spec.tenants {
        let tok = token(&tenant_name(t), "subscriber");
        for _ in 0..spec.subs_per_tenant {
            urls.push(broker.url(spec.path, &tok));
            owners.push(t);
        }
    }
    let opened = connect_many(urls, spec.concurrency).await;
    if !opened.failures.is_empty() {
        fail(&format!(
            "subscribers failed to connect: {:?}",
            opened.failures
        ));
    }
    let connect = opened.elapsed;
    let subscribed = subscribe_all(opened.conns, spec).await;
    if spec.publishers == 0 || spec.publishers > spec.tenants {
        fail("publishers must be between 1 and the number of tenants");
    }
    if !spec.global && spec.publishers != spec.tenants {
        fail("in tenant scope every tenant has one publisher");
    }
    let per_sub = spec.msgs * u64::from(if spec.global { spec.publishers } else { 1 });
    let (stop_tx, stop_rx) = watch::channel(false);
    let subs: Vec<_> = subscribed
        .into_iter()
        .zip(owners)
        .map(|(ws, tenant)| {
            let allowed = (!spec.global).then_some(tenant);
            tokio::spawn(subscriber(ws, allowed, per_sub, stop_rx.clone()))
        })
        .collect();

    let pub_urls = (0..spec.publishers)
        .map(|t| broker.url(spec.path, &token(&tenant_name(t), "publisher")))
        .collect();
    let publishers = connect_many(pub_urls, spec.concurrency).await;
    if !publishers.failures.is_empty() {
        fail(&format!(
            "publishers failed to connect: {:?}",
            publishers.failures
        ));
    }
    let publishers = subscribe_all(publishers.conns, spec).await;
    let cpu_before = (broker.cpu(), own_cpu());
    let pubs: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(t, ws)| tokio::spawn(publisher(ws, t as u32, spec.clone(), stop_rx.clone())))
        .collect();
    let mut first_send = u64::MAX;
    for p in pubs {
        match p.await {
            Ok(Ok(t)) => first_send = first_send.min(t),
            Ok(Err(e)) => fail(&format!("publisher: {e}")),
            Err(e) => fail(&format!("publisher task: {e}")),
        }
    }
    // Stragglers get 10 s after the last send.
    let drain = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = stop_tx.send(true);
    });
    let mut received = 0;
    let mut crossed = 0;
    let mut bytes = 0;
    let mut fanned_out = 0;
    let mut last = 0;
    let mut samples = Vec::new();
    for s in subs {
        let r = s
            .await
            .unwrap_or_else(|e| fail(&format!("subscriber task: {e}")));
        received += r.received;
        crossed += r.crossed;
        bytes += r.bytes;
        fanned_out += r.all;
        last = last.max(r.last_us);
        samples.extend(r.latencies);
    }
    drain.abort();
    let broker_cpu = broker.cpu().saturating_sub(cpu_before.0);
    let client_cpu = own_cpu().saturating_sub(cpu_before.1);
    Outcome {
        expected: per_sub * (spec.tenants as u64 * spec.subs_per_tenant as u64),
        received,
        crossed,
        bytes,
        fanned_out,
        broker_cpu,
        client_cpu,
        elapsed: Duration::from_micros(last.saturating_sub(first_send)),
        latency: Percentiles::new(samples),
        connect,
    }
}

/// Channels mode: every connection subscribed to the spec's channel (the
/// publishers too, so they see their own warm-up); otherwise `conns` as they are.
async fn subscribe_all(conns: Vec<Ws>, spec: &Spec) -> Vec<Ws> {
    match spec.wire {
        Wire::Channel(c) => {
            channels::subscribe_many(conns, |_| vec![c.to_owned()], spec.concurrency).await
        }
        Wire::Payload | Wire::Message => conns,
    }
}

/// Reads until it has `expected` measured messages or is told to stop.
async fn subscriber(
    mut ws: Ws,
    allowed: Option<u32>,
    expected: u64,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut r = SubResult {
        received: 0,
        crossed: 0,
        bytes: 0,
        all: 0,
        last_us: 0,
        latencies: Vec::with_capacity(expected.min(1 << 20) as usize),
    };
    while r.received < expected {
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = stop.changed() => break,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        };
        let Some(stamp) = channels::bench_text(&text).and_then(parse) else {
            continue;
        };
        if allowed.is_some_and(|t| t != stamp.tenant) {
            r.crossed += 1;
            continue;
        }
        r.all += 1;
        if stamp.warmup {
            continue;
        }
        let now = now_us();
        r.received += 1;
        r.bytes += text.len() as u64;
        r.last_us = now;
        r.latencies.push(now.saturating_sub(stamp.sent_us));
    }
    r
}

/// Sends the warm-up, waits for its own copy of the last warm-up message (the
/// room has drained it), then sends the measured messages. Returns when the
/// first measured message was sent. Its own deliveries are read and discarded
/// so its outbound queue never fills.
async fn publisher(
    ws: Ws,
    tenant: u32,
    spec: Spec,
    mut stop_reader: watch::Receiver<bool>,
) -> Result<u64, String> {
    let (mut tx, mut rx) = ws.split();
    let (warm_tx, mut warm_rx) = watch::channel(false);
    let last_warm = spec.warmup.saturating_sub(1);
    let reader = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                f = rx.next() => f,
                _ = stop_reader.changed() => break,
            };
            match frame {
                Some(Ok(Message::Text(t))) => {
                    let own_last = channels::bench_text(&t)
                        .and_then(parse)
                        .is_some_and(|s| s.warmup && s.tenant == tenant && s.seq == last_warm);
                    if own_last {
                        let _ = warm_tx.send(true);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        rx
    });
    let frame = |warmup: bool, seq: u64| {
        let m = message(warmup, tenant, seq, spec.size);
        match spec.wire {
            // Command ids: warm-up 1.., measured after them.
            Wire::Channel(c) => {
                channels::publish(c, seq + 1 + if warmup { 0 } else { spec.warmup }, m)
            }
            Wire::Message => channels::text_object(m),
            Wire::Payload => m,
        }
    };
    for seq in 0..spec.warmup {
        tx.send(frame(true, seq)).await.map_err(|e| e.to_string())?;
    }
    if spec.warmup > 0 {
        let seen = tokio::time::timeout(Duration::from_secs(30), warm_rx.wait_for(|v| *v)).await;
        if !matches!(seen, Ok(Ok(_))) {
            return Err("the warm-up did not come back within 30 s".into());
        }
    }
    let start = tokio::time::Instant::now();
    let first = now_us();
    for seq in 0..spec.msgs {
        if spec.rate > 0.0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / spec.rate)).await;
        }
        tx.send(frame(false, seq))
            .await
            .map_err(|e| e.to_string())?;
    }
    // Keep the connection (and its reader) until the subscribers are done.
    tokio::spawn(async move {
        let rx = reader.await;
        drop((tx, rx));
    });
    Ok(first)
}
