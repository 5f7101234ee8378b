//! Scenarios about bursts, with the broker's default limits unless said:
//!
//! * `burst` — one publisher sends M messages unpaced to S subscribers of its
//!   tenant that keep reading: deliveries, losses, 4009 closes, time, peak RSS
//!   (the policy "a burst is not a slow consumer": no loss, no close);
//! * `global_flood` — handshake latency on the tenant listener while a global
//!   listener floods (S subscribers, one unpaced publisher), against the same
//!   broker idle and, as a control, during the same flood on a tenant
//!   listener, in one run: global fan-out runs in the listener's
//!   GlobalRouter, so handshakes (which go through the Broker) are not queued
//!   behind it, and cost what any other flood costs them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;

use crate::load::{self, Spec, Wire};
use crate::support::{self, fail, thousands, Args, Broker, Percentiles};

/// S subscribers × M messages × B bytes, unpaced, default limits.
pub async fn burst(args: &Args) {
    support::print_conditions("burst (tenant scope, default limits)");
    let spec = Spec {
        path: support::EVENTS,
        tenants: 1,
        publishers: 1,
        subs_per_tenant: args.get("subs", 100),
        msgs: args.get("msgs", 20_000),
        size: args.get("size", 128),
        rate: 0.0,
        warmup: 20,
        global: false,
        concurrency: 50,
        wire: Wire::Payload,
    };
    let broker = Broker::start_default_limits();
    let cpu = broker.cpu();
    let started = Instant::now();
    let out = load::run(&broker, &spec).await;
    let wall = started.elapsed();
    let closed_4009 = broker.metric("wsplus_closes_total", "code=\"4009\"").await;
    let held = broker.metric("wsplus_backpressure_seconds_total", "").await;
    println!(
        "burst 1 publisher -> {} subscribers x {} msgs x {} B unpaced: delivered {} of {}, \
         lost {}, 4009 closes {closed_4009}, burst time {} ms ({} deliveries/s), \
         publisher held back {held:.2} s, latency {}",
        spec.subs_per_tenant,
        spec.msgs,
        spec.size,
        out.received,
        out.expected,
        out.lost(),
        out.elapsed.as_millis(),
        thousands(out.rate()),
        out.latency.summary()
    );
    println!(
        "   broker: {:.2} s CPU, RSS peak {} KiB, RSS now {} KiB, whole run {} ms",
        broker.cpu().saturating_sub(cpu).as_secs_f64(),
        broker.rss_peak_kib(),
        broker.rss_kib(),
        wall.as_millis()
    );
    if out.lost() > 0 || closed_4009 > 0.0 {
        fail("the burst lost messages or closed a subscriber");
    }
    println!("   verified: no loss, no 4009");
}

/// Handshake latency on the tenant listener, idle, during a global flood,
/// and (the control) during the same flood on a tenant listener, whose
/// fan-out never involved the Broker: what is left in both is the two cores
/// the broker shares with the load generator.
pub async fn global_flood(args: &Args) {
    support::print_conditions("handshakes during a global flood");
    let subs: usize = args.get("subs", 200);
    let handshakes: usize = args.get("handshakes", 200);
    let size: usize = args.get("size", 128);
    let broker = Broker::start_default_limits();
    let cpu = broker.cpu();
    let idle = handshake_latencies(&broker, handshakes, "idle").await;
    println!(
        "handshakes on {} ({handshakes} one at a time), idle: {}",
        support::EVENTS,
        idle.summary()
    );
    for (scope, path) in [("global", support::GLOBAL), ("tenant", support::EVENTS)] {
        let (during, rate) = flooded(&broker, path, subs, size, handshakes, scope).await;
        let ratio = |p: f64| during.at(p) as f64 / idle.at(p).max(1) as f64;
        println!(
            "   during a {scope} flood ({subs} subscribers, 1 unpaced publisher, {size} B, \
             {} deliveries/s meanwhile): {}; ratio to idle p50 {:.1}x, p99 {:.1}x",
            thousands(rate),
            during.summary(),
            ratio(50.0),
            ratio(99.0)
        );
    }
    support::print_server(&broker, cpu);
}

/// Floods `path` (S subscribers of tenant `flood`, one unpaced publisher)
/// while measuring handshakes on the tenant listener (tenant `hs`): their
/// latencies and the deliveries per second meanwhile.
async fn flooded(
    broker: &Broker,
    path: &str,
    subs: usize,
    size: usize,
    handshakes: usize,
    phase: &str,
) -> (Percentiles, f64) {
    let tok = support::token("flood", "subscriber");
    let urls = (0..subs).map(|_| broker.url(path, &tok)).collect();
    let opened = support::connect_many(urls, 50).await;
    if !opened.failures.is_empty() {
        fail(&format!("subscribers failed: {:?}", opened.failures));
    }
    let (stop_tx, stop) = watch::channel(false);
    let delivered = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = opened
        .conns
        .into_iter()
        .map(|ws| tokio::spawn(count_frames(ws, delivered.clone(), stop.clone())))
        .collect();
    let publisher = support::connect(&broker.url(path, &tok))
        .await
        .unwrap_or_else(|e| fail(&format!("publisher: {e}")));
    let flood = tokio::spawn(flood(publisher, size, stop.clone()));
    // The flood is on once every subscriber has had a few messages.
    let ramp = Instant::now();
    while delivered.load(Ordering::Relaxed) < 10 * subs as u64 {
        if ramp.elapsed() > Duration::from_secs(10) {
            fail("the flood did not start within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = delivered.load(Ordering::Relaxed);
    let started = Instant::now();
    let during = handshake_latencies(broker, handshakes, phase).await;
    let rate =
        (delivered.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = flood.await;
    for r in readers {
        let _ = r.await;
    }
    (during, rate)
}

/// `n` handshakes on the tenant listener one after the other (each with its
/// own token, minted beforehand), kept open until all are done; their latency
/// in µs. They run on a thread and runtime of their own, so the flood's
/// readers in this process do not delay them: what is measured is the
/// broker (and the machine), not the load generator's scheduler.
async fn handshake_latencies(broker: &Broker, n: usize, phase: &str) -> Percentiles {
    let urls: Vec<String> = (0..n)
        .map(|i| {
            let user = format!("{phase}-{i}");
            broker.url(support::EVENTS, &support::token("hs", &user))
        })
        .collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
        let _ = tx.send(rt.block_on(support::connect_many(urls, 1)));
    });
    let opened = rx
        .await
        .unwrap_or_else(|_| fail("the handshake thread died"));
    if !opened.failures.is_empty() {
        fail(&format!("{phase} handshakes failed: {:?}", opened.failures));
    }
    Percentiles::new(
        opened
            .latencies
            .iter()
            .map(|d| d.as_micros() as u64)
            .collect(),
    )
}

/// Reads and counts text frames until told to stop or closed.
async fn count_frames(mut ws: support::Ws, count: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            f = ws.next() => match f {
                Some(Ok(m)) if m.is_text() => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            _ = stop.changed() => return,
        }
    }
}

/// Sends stamped messages as fast as the socket takes them until told to
/// stop (its own copies are read and dropped); returns how many it sent.
async fn flood(ws: support::Ws, size: usize, mut stop: watch::Receiver<bool>) -> u64 {
    let (mut tx, rx) = ws.split();
    let drain = tokio::spawn(rx.for_each(|_| async {}));
    let mut seq = 0;
    loop {
        tokio::select! {
            sent = tx.send(support::message(false, 0, seq, size)) => {
                if sent.is_err() {
                    break;
                }
                seq += 1;
            }
            _ = stop.changed() => break,
        }
    }
    drain.abort();
    seq
}
