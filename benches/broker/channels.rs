//! The channels-mode scenarios (the `wsplus.v1` protocol on the bench
//! broker's `/ws/channels` listener) and the few protocol helpers they and the
//! fan-out load generator share: wait for the `connected` push, send commands
//! pipelined and wait for their replies, wrap a bench message in a `publish`,
//! and find the bench message inside a `pub` push.
//!
//! - `channel_fanout`: 1 publisher → N subscribers of one channel, in a tenant
//!   that also has M other channels with one subscriber each, against the
//!   tenant-scope fan-out of the same size in payload and in message mode,
//!   and in payload mode with frames as long as the `pub` pushes,
//!   alternating in the same run;
//! - `subscribe_ops`: subscribe + unsubscribe operations per second over C
//!   connections, W commands in flight per connection;
//! - `subscription_memory`: the broker's RSS growth per subscription beyond
//!   the sessions themselves.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{self, Spec, Wire};
use crate::support::{self, fail, thousands, Args, Broker, Ws};

/// Longest wait for one batch of replies.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// Waits for the `connected` push that opens every `wsplus.v1` session.
pub async fn connected(ws: &mut Ws) -> Result<(), String> {
    let wait = async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Message::Text(t)) if t.contains("\"push\":\"connected\"") => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("closed before the connected push".to_owned())
    };
    tokio::time::timeout(REPLY_WAIT, wait)
        .await
        .unwrap_or_else(|_| Err("no connected push".into()))
}

/// Sends `{"id", "op", "channel"}` for each channel in one flush (ids from
/// `first_id`), then reads until every one has its reply; an error reply
/// fails. Pushes read meanwhile are ignored.
pub async fn commands(
    ws: &mut Ws,
    op: &str,
    channels: &[String],
    first_id: u64,
) -> Result<(), String> {
    for (i, c) in channels.iter().enumerate() {
        let cmd = format!(
            r#"{{"id":{},"op":"{op}","channel":"{c}"}}"#,
            first_id + i as u64
        );
        ws.feed(Message::text(cmd))
            .await
            .map_err(|e| e.to_string())?;
    }
    ws.flush().await.map_err(|e| e.to_string())?;
    let mut left = channels.len();
    let wait = async {
        while left > 0 {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(c))) => return Err(format!("closed by the broker: {c:?}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed while waiting for replies".to_owned()),
            };
            for line in text.split('\n').filter(|l| l.starts_with("{\"id\"")) {
                let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
                if let Some(e) = v.get("error") {
                    return Err(format!("{op}: {e}"));
                }
                left -= 1;
            }
        }
        Ok(())
    };
    tokio::time::timeout(REPLY_WAIT, wait)
        .await
        .unwrap_or_else(|_| Err(format!("{op}: replies missing after 30 s")))
}

/// Waits for the `connected` push, then subscribes to `channels`.
pub async fn subscribe(ws: &mut Ws, channels: &[String]) -> Result<(), String> {
    connected(ws).await?;
    commands(ws, "subscribe", channels, 1).await
}

/// Subscribes every connection to `channels(i)` (i = its index), `concurrency`
/// sessions at a time; fails on any error.
pub async fn subscribe_many(
    conns: Vec<Ws>,
    channels: impl Fn(usize) -> Vec<String>,
    concurrency: usize,
) -> Vec<Ws> {
    let mut done: Vec<(usize, Ws)> = stream::iter(conns.into_iter().enumerate())
        .map(|(i, mut ws)| {
            let list = channels(i);
            async move {
                subscribe(&mut ws, &list)
                    .await
                    .unwrap_or_else(|e| fail(&format!("subscribing: {e}")));
                (i, ws)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, ws)| ws).collect()
}

/// Opens `conns` channels-mode sessions of `tenant` (`concurrency` handshakes
/// at a time) and reads their `connected` push; fails on any error.
async fn sessions(broker: &Broker, tenant: &str, conns: usize, concurrency: usize) -> Vec<Ws> {
    let tok = support::token(tenant, "bench");
    let urls = (0..conns)
        .map(|_| broker.url(support::CHANNELS, &tok))
        .collect();
    let opened = support::connect_many(urls, concurrency).await;
    if !opened.failures.is_empty() {
        fail(&format!("connections failed: {:?}", opened.failures));
    }
    let mut ready = Vec::with_capacity(conns);
    for mut ws in opened.conns {
        connected(&mut ws).await.unwrap_or_else(|e| fail(&e));
        ready.push(ws);
    }
    ready
}

/// A bench message (text without quotes or escapes) as a `publish` to `channel`.
pub fn publish(channel: &str, id: u64, msg: Message) -> Message {
    let text = msg.into_text().unwrap_or_default();
    Message::text(format!(
        r#"{{"id":{id},"op":"publish","channel":"{channel}","data":"{}"}}"#,
        text.as_str()
    ))
}

/// A bench message as the JSON object `{"text": message}` (message mode).
pub fn text_object(msg: Message) -> Message {
    let text = msg.into_text().unwrap_or_default();
    Message::text(format!(r#"{{"text":"{}"}}"#, text.as_str()))
}

/// The bench message a frame carries: the frame itself (payload mode), or
/// the first JSON string of the frame that is one (`data` of a `pub` push in
/// channels mode, `text` in message mode). A frame never holds two: the
/// broker writes every delivery as a frame of its own (were it to batch them,
/// the bench would report the others lost). A plain scan, since a bench
/// message never contains a quote, so the client's cost stays near payload
/// mode's and a comparison measures the broker.
pub fn bench_text(text: &str) -> Option<&str> {
    if text.starts_with("wsp ") {
        return Some(text);
    }
    // Found by its first letter (a `memchr` hop: nothing before `data` in a
    // `pub` push holds a `w`), and nothing after it is read: a substring
    // search and a scan of every line cost the load generator ~40 ns per
    // delivery more than payload mode's frames.
    let mut from = 0;
    loop {
        let w = from + text[from..].find('w')?;
        if text[..w].ends_with('"') && text[w..].starts_with("wsp ") {
            let len = text[w..].find('"')?;
            return Some(&text[w..w + len]);
        }
        from = w + 1;
    }
}

/// Channel fan-out against tenant fan-out of the same size (and against
/// tenant fan-out of frames as long as the channel's pushes), alternating
/// `--rounds` times on one broker.
pub async fn channel_fanout(args: &Args) {
    support::print_conditions("channel fan-out vs tenant fan-out");
    let subs: usize = args.get("subs", 1_000);
    let msgs: u64 = args.get("msgs", 500);
    let size: usize = args.get("size", 128);
    let rounds: usize = args.get("rounds", 3);
    let others: usize = args.get("others", 10_000);
    let broker = Broker::start();
    // The tenant's other channels, one subscriber each, spread over sessions
    // holding at most MAX_PER_SESSION each.
    let holders = others.div_ceil(support::MAX_PER_SESSION).max(1);
    let per_holder = others.div_ceil(holders);
    let tok = support::token("bench-0", "other");
    let opened = support::connect_many(
        (0..holders)
            .map(|_| broker.url(support::CHANNELS, &tok))
            .collect(),
        10,
    )
    .await;
    let _others = subscribe_many(
        opened.conns,
        |h| {
            (h * per_holder..((h + 1) * per_holder).min(others))
                .map(|c| format!("other-{c}"))
                .collect()
        },
        10,
    )
    .await;
    println!("   {others} other channels with one subscriber each, on {holders} sessions");
    let spec = |path, wire, size| Spec::one_to_many(path, wire, subs, msgs, size);
    // Against payload mode (the frame as sent), message mode (JSON objects
    // stamped with `_session`, like channels mode's pushes) and payload mode
    // with frames as long as the channel's `pub` pushes: what the same
    // number of bytes costs without channels.
    let mut ratios = [Vec::new(), Vec::new(), Vec::new()];
    for round in 1..=rounds {
        let mut rates = [0.0; 4];
        let mut push_len = size;
        for (i, rate) in rates.iter_mut().enumerate() {
            let (name, s) = match i {
                0 => ("tenant payload", spec(support::EVENTS, Wire::Payload, size)),
                1 => (
                    "tenant message",
                    spec(support::MESSAGES, Wire::Message, size),
                ),
                2 => (
                    "channel       ",
                    spec(support::CHANNELS, Wire::Channel("hot"), size),
                ),
                _ => (
                    "tenant payload, push-sized",
                    spec(support::EVENTS, Wire::Payload, push_len),
                ),
            };
            let out = load::run(&broker, &s).await;
            *rate = out.rate();
            if i == 2 {
                push_len = out.bytes_per_delivery().round() as usize;
            }
            let (broker_ns, client_ns) = out.cpu_per_delivery_ns();
            println!(
                "round {round} {name} fan-out 1 -> {subs} x {msgs} msgs x {} B: {} deliveries/s, \
                 {:.0} B per delivery, CPU per delivery: broker {broker_ns:.0} ns, load generator \
                 {client_ns:.0} ns; lost {}, latency {}",
                s.size,
                thousands(out.rate()),
                out.bytes_per_delivery(),
                out.lost(),
                out.latency.summary(),
            );
            if out.lost() > 0 || out.crossed > 0 {
                fail("deliveries were lost or crossed tenants");
            }
        }
        for (r, against) in ratios.iter_mut().zip([rates[0], rates[1], rates[3]]) {
            r.push(rates[2] / against);
        }
    }
    let against = [
        "tenant payload",
        "tenant message",
        "tenant payload of the push's size",
    ];
    for (against, mut r) in against.into_iter().zip(ratios) {
        r.sort_by(f64::total_cmp);
        println!(
            "channel / {against} deliveries/s: median {:.2} (rounds {:?})",
            r[r.len() / 2],
            r.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>(),
        );
    }
    println!("   broker RSS {} KiB", broker.rss_kib());
}

/// Subscribe + unsubscribe operations per second: C connections, each
/// `--rounds` times subscribing to W channels of its own in one flush and
/// waiting for the replies, then unsubscribing them the same way.
pub async fn subscribe_ops(args: &Args) {
    support::print_conditions("subscribe + unsubscribe");
    let conns: usize = args.get("conns", 100);
    let window: usize = args.get("window", 50);
    let rounds: usize = args.get("rounds", 20);
    if window > support::MAX_PER_SESSION {
        fail(&format!("--window above {}", support::MAX_PER_SESSION));
    }
    let broker = Broker::start();
    let ready = sessions(&broker, "bench-ops", conns, 50).await;
    let cpu = broker.cpu();
    let started = Instant::now();
    let tasks: Vec<_> = ready
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            tokio::spawn(async move {
                let list: Vec<String> = (0..window).map(|j| format!("ops-{i}-{j}")).collect();
                let mut id = 1;
                for _ in 0..rounds {
                    commands(&mut ws, "subscribe", &list, id).await?;
                    id += window as u64;
                    commands(&mut ws, "unsubscribe", &list, id).await?;
                    id += window as u64;
                }
                Ok::<_, String>(ws)
            })
        })
        .collect();
    let mut kept = Vec::with_capacity(conns);
    for t in tasks {
        match t.await {
            Ok(Ok(ws)) => kept.push(ws),
            Ok(Err(e)) => fail(&e),
            Err(e) => fail(&format!("{e}")),
        }
    }
    let elapsed = started.elapsed();
    let ops = 2 * conns * window * rounds;
    println!(
        "subscribe+unsubscribe {conns} connections x {rounds} rounds x {window} channels: \
         {ops} operations in {:.2} s = {} operations/s",
        elapsed.as_secs_f64(),
        thousands(ops as f64 / elapsed.as_secs_f64())
    );
    support::print_server(&broker, cpu);
}

/// The broker's RSS growth per subscription: C sessions, measured once open,
/// then after each subscribed to S channels (of `--channels` distinct ones in
/// the tenant; 0 = every subscription its own channel), `--batch` subscribes
/// in flight at a time.
pub async fn subscription_memory(args: &Args) {
    support::print_conditions("subscription memory");
    let conns: usize = args.get("conns", 1_000);
    let subs: usize = args.get("subs", 100);
    let distinct: usize = args.get("channels", 100);
    let hold: u64 = args.get("hold", 3);
    let batch: usize = args.get::<usize>("batch", 100).max(1);
    let limit = support::raise_nofile_limit();
    if conns as libc::rlim_t + 64 > limit {
        fail(&format!(
            "{conns} connections need more than the open-file limit of {limit}"
        ));
    }
    if subs > support::MAX_PER_SESSION {
        fail(&format!("--subs above {}", support::MAX_PER_SESSION));
    }
    let broker = Broker::start();
    let ready = sessions(&broker, "bench-mem", conns, 100).await;
    tokio::time::sleep(Duration::from_secs(hold)).await; // let the allocator settle
    let sessions = broker.rss_kib();
    let name = |n: usize| match distinct {
        0 => format!("m-{n}"),
        d => format!("m-{}", n % d),
    };
    let mut subscribed = Vec::with_capacity(conns);
    for (i, mut ws) in ready.into_iter().enumerate() {
        let list: Vec<String> = (0..subs).map(|j| name(i * subs + j)).collect();
        for (k, chunk) in list.chunks(batch).enumerate() {
            commands(&mut ws, "subscribe", chunk, (k * batch) as u64 + 1)
                .await
                .unwrap_or_else(|e| fail(&format!("session {i}, batch {k}: {e}")));
        }
        subscribed.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after = broker.rss_kib();
    let total = conns * subs;
    let per = (after.saturating_sub(sessions) * 1024) as f64 / total.max(1) as f64;
    let channels = if distinct == 0 {
        total
    } else {
        distinct.min(total)
    };
    println!(
        "{total} subscriptions ({conns} sessions x {subs}, {channels} channels): {per:.0} B per \
         subscription beyond the sessions; broker RSS {sessions} KiB with the sessions -> {after} KiB"
    );
    drop(subscribed);
}
