//! The scenarios: each starts a fresh broker, runs one bounded load against it,
//! and prints its figures (and the broker's CPU time and memory).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::load::{self, Spec, Wire};
use crate::support::{self, fail, thousands, Args, Broker, Percentiles};

/// Fan-out within one tenant: one publisher, N subscribers of the same tenant.
/// Without `--subs`: 100 subscribers × 2,000 messages, then 1,000 × 200.
pub async fn fanout(args: &Args) {
    let size = args.get("size", 128);
    let runs: Vec<(usize, u64)> = match args.get("subs", 0usize) {
        0 => vec![
            (100, args.get("msgs", 2_000)),
            (1_000, args.get("msgs", 200)),
        ],
        n => vec![(n, args.get("msgs", 2_000))],
    };
    for (subs, msgs) in runs {
        let spec = Spec::one_to_many(support::EVENTS, Wire::Payload, subs, msgs, size);
        run_fanout("fanout (tenant scope)", &spec, |out| {
            format!(
                "fanout 1 publisher -> {subs} subscribers x {msgs} msgs x {size} B: \
                 {} deliveries/s, lost {}, latency {}",
                thousands(out.rate()),
                out.lost(),
                out.latency.summary()
            )
        })
        .await;
    }
}

/// T tenants × S subscribers, one publisher per tenant, all at once; fails on
/// any loss or any message reaching another tenant.
pub async fn many_tenants(args: &Args) {
    let tenants = args.get("tenants", 50);
    let spec = Spec {
        path: support::EVENTS,
        wire: Wire::Payload,
        tenants,
        publishers: tenants,
        subs_per_tenant: args.get("subs", 20),
        msgs: args.get("msgs", 200),
        size: args.get("size", 128),
        rate: 0.0,
        warmup: 5,
        global: false,
        concurrency: 50,
    };
    let out = run_fanout("many tenants (tenant scope)", &spec, |out| {
        format!(
            "many tenants {} x {} subscribers, {} msgs per tenant x {} B: \
             {} deliveries/s, expected {}, lost {}, crossed {}, latency {}",
            spec.tenants,
            spec.subs_per_tenant,
            spec.msgs,
            spec.size,
            thousands(out.rate()),
            out.expected,
            out.lost(),
            out.crossed,
            out.latency.summary()
        )
    })
    .await;
    if out.lost() > 0 {
        fail("messages were lost");
    }
    println!("   verified: no loss, no crossing");
}

/// Global scope: subscribers of several tenants, one publisher; every
/// subscriber receives every message.
pub async fn global(args: &Args) {
    let spec = Spec {
        path: support::GLOBAL,
        wire: Wire::Payload,
        tenants: args.get("tenants", 10),
        publishers: args.get("publishers", 1),
        subs_per_tenant: args.get("subs", 10),
        msgs: args.get("msgs", 2_000),
        size: args.get("size", 128),
        rate: 0.0,
        warmup: 20,
        global: true,
        concurrency: 50,
    };
    run_fanout("global scope", &spec, |out| {
        format!(
            "global {} publisher(s) -> {} tenants x {} subscribers, {} msgs x {} B: \
             {} deliveries/s, lost {}, latency {}",
            spec.publishers,
            spec.tenants,
            spec.subs_per_tenant,
            spec.msgs,
            spec.size,
            thousands(out.rate()),
            out.lost(),
            out.latency.summary()
        )
    })
    .await;
}

/// One publisher at a steady rate to N subscribers: latency percentiles.
pub async fn latency(args: &Args) {
    let spec = Spec {
        path: support::EVENTS,
        wire: Wire::Payload,
        tenants: 1,
        publishers: 1,
        subs_per_tenant: args.get("subs", 100),
        msgs: args.get("msgs", 5_000),
        size: args.get("size", 128),
        rate: args.get("rate", 500.0),
        warmup: 20,
        global: false,
        concurrency: 50,
    };
    run_fanout("steady-rate latency (tenant scope)", &spec, |out| {
        format!(
            "steady {} msg/s -> {} subscribers, {} msgs x {} B: latency {}, lost {}",
            spec.rate,
            spec.subs_per_tenant,
            spec.msgs,
            spec.size,
            out.latency.summary(),
            out.lost()
        )
    })
    .await;
}

async fn run_fanout(
    title: &str,
    spec: &Spec,
    line: impl FnOnce(&load::Outcome) -> String,
) -> load::Outcome {
    support::print_conditions(title);
    let broker = Broker::start();
    let cpu = broker.cpu();
    let out = load::run(&broker, spec).await;
    println!("{}", line(&out));
    println!(
        "   {} connections opened in {} ms",
        spec.tenants as usize * spec.subs_per_tenant + spec.publishers as usize,
        out.connect.as_millis()
    );
    support::print_server(&broker, cpu);
    if out.crossed > 0 {
        fail("a subscriber received another tenant's message");
    }
    out
}

/// Echo on a session-scope listener: C connections × K sequential round trips.
pub async fn echo(args: &Args) {
    support::print_conditions("echo (session scope)");
    let conns: usize = args.get("conns", 50);
    let rounds: u64 = args.get("rounds", 500);
    let size: usize = args.get("size", 128);
    let broker = Broker::start();
    let cpu = broker.cpu();
    let tok = support::token("bench-echo", "echo");
    let urls = (0..conns)
        .map(|_| broker.url(support::ECHO, &tok))
        .collect();
    let opened = support::connect_many(urls, 50).await;
    if !opened.failures.is_empty() {
        fail(&format!("connections failed: {:?}", opened.failures));
    }
    let started = Instant::now();
    let tasks: Vec<_> = opened
        .conns
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(echo_one(ws, i as u32, rounds, size)))
        .collect();
    let mut rtts = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (r, l) = t.await.unwrap_or_else(|e| fail(&format!("{e}")));
        rtts.extend(r);
        lost += l;
    }
    let elapsed = started.elapsed();
    println!(
        "echo {conns} connections x {rounds} round trips x {size} B: {} round trips/s, \
         lost {lost}, rtt {}",
        thousands(rtts.len() as f64 / elapsed.as_secs_f64()),
        Percentiles::new(rtts).summary()
    );
    support::print_server(&broker, cpu);
}

/// K sequential round trips; returns the round-trip times (µs) and the losses
/// (no reply within 5 s, which also ends the connection's run).
async fn echo_one(mut ws: support::Ws, id: u32, rounds: u64, size: usize) -> (Vec<u64>, u64) {
    let mut rtts = Vec::with_capacity(rounds as usize);
    for seq in 0..rounds {
        let sent = support::now_us();
        if ws
            .send(support::message(false, id, seq, size))
            .await
            .is_err()
        {
            return (rtts, rounds - seq);
        }
        let back = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(t) = frame {
                    if support::parse(&t).is_some_and(|s| s.tenant == id && s.seq == seq) {
                        return true;
                    }
                }
            }
            false
        })
        .await;
        if back != Ok(true) {
            return (rtts, rounds - seq);
        }
        rtts.push(support::now_us() - sent);
    }
    (rtts, 0)
}

/// Handshake rate with HS256 verification: N connections, C at a time, each
/// with its own token (minted before the clock starts), kept open until the
/// last one.
pub async fn handshake(args: &Args) {
    support::print_conditions("handshakes (HS256)");
    let conns: usize = args.get("conns", 2_000);
    let concurrency: usize = args.get("concurrency", 50);
    let broker = Broker::start();
    let urls: Vec<String> = (0..conns)
        .map(|i| {
            broker.url(
                support::EVENTS,
                &support::token(&format!("hs-{}", i % 20), &format!("user-{i}")),
            )
        })
        .collect();
    let cpu = broker.cpu();
    let opened = support::connect_many(urls, concurrency).await;
    let lat: Vec<u64> = opened
        .latencies
        .iter()
        .map(|d| d.as_micros() as u64)
        .collect();
    println!(
        "handshakes {conns} connections, {concurrency} at a time: {} handshakes/s, \
         failures {:?}, handshake latency {}",
        thousands(opened.conns.len() as f64 / opened.elapsed.as_secs_f64()),
        opened.failures,
        Percentiles::new(lat).summary()
    );
    support::print_server(&broker, cpu);
    if !opened.failures.is_empty() {
        fail("some handshakes failed");
    }
}

/// The broker's resident memory growth per open, authenticated, idle
/// connection. With `--message N`, each connection (on the session-scope
/// listener) first sends one N-byte message and reads its echo: what a
/// session keeps after it carried a large message. Both this process and the
/// broker need a descriptor per connection; beyond the open-file limit the
/// scenario refuses to run.
pub async fn idle_memory(args: &Args) {
    support::print_conditions("idle memory");
    let conns: usize = args.get("conns", 5_000);
    let hold: u64 = args.get("hold", 5);
    let concurrency: usize = args.get("concurrency", 100);
    let message: usize = args.get("message", 0);
    let limit = support::raise_nofile_limit();
    if conns as libc::rlim_t + 64 > limit {
        fail(&format!(
            "{conns} connections need more than the open-file limit of {limit} per process"
        ));
    }
    let broker = Broker::start();
    let tok = support::token("idle", "idle");
    let before = broker.rss_kib();
    let path = if message > 0 {
        support::ECHO
    } else {
        support::EVENTS
    };
    let urls = (0..conns).map(|_| broker.url(path, &tok)).collect();
    let mut opened = support::connect_many(urls, concurrency).await;
    if message > 0 {
        for (i, ws) in opened.conns.iter_mut().enumerate() {
            let sent = ws.send(support::message(false, i as u32, 0, message)).await;
            let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
            if sent.is_err() || !matches!(echoed, Ok(Some(Ok(_)))) {
                fail("a connection's message did not come back");
            }
        }
    }
    let open = opened.conns.len();
    // Hold them, noticing any the broker closes.
    let holders: Vec<_> = opened
        .conns
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let closed = tokio::time::timeout(Duration::from_secs(hold), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await
                .is_ok();
                (ws, closed)
            })
        })
        .collect();
    let mut kept = Vec::with_capacity(open);
    let mut closed = 0;
    for h in holders {
        let (ws, c) = h.await.unwrap_or_else(|e| fail(&format!("{e}")));
        closed += usize::from(c);
        kept.push(ws);
    }
    let after = broker.rss_kib();
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / open.max(1) as f64;
    println!(
        "idle {open}/{conns} connections (each sent {message} B first) held {hold} s: \
         {:.0} B/conn ({:.1} KiB), broker RSS {before} -> {after} KiB, closed by broker \
         {closed}, failures {:?}",
        per_conn,
        per_conn / 1024.0,
        opened.failures
    );
    drop(kept);
}
