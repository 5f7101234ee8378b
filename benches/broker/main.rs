//! The wsplus benchmarks. Each scenario starts the real broker (the release
//! build cargo makes for `cargo bench`) with a real HS256 configuration and
//! drives it over loopback with the small load generator in this directory.
//!
//! ```text
//! cargo bench --bench broker                       # every scenario, default sizes
//! cargo bench --bench broker -- fanout             # one scenario (or several)
//! cargo bench --bench broker -- fanout --subs 1000 --msgs 2000
//! ```
//!
//! Scenarios: fanout, many_tenants, global, latency, echo, handshake,
//! idle_memory (options in `scenarios.rs` and docs/performance.md), and the
//! channels-mode history_fanout, history_recovery (`history.rs`) and
//! channel_fanout, subscribe_ops, subscription_memory (`channels.rs`), and
//! burst, global_flood (`bursts.rs`), and publish_hook (`hooks.rs`).

mod bursts;
mod channels;
mod history;
mod hooks;
mod load;
mod scenarios;
mod support;

const ALL: [&str; 15] = [
    "fanout",
    "many_tenants",
    "global",
    "latency",
    "echo",
    "handshake",
    "idle_memory",
    "history_fanout",
    "history_recovery",
    "channel_fanout",
    "subscribe_ops",
    "subscription_memory",
    "burst",
    "global_flood",
    "publish_hook",
];

fn main() {
    let args = support::Args::from_env();
    let words: Vec<String> = args.words().into_iter().map(str::to_owned).collect();
    let chosen: Vec<String> = if words.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        words
    };
    if let Some(bad) = chosen.iter().find(|w| !ALL.contains(&w.as_str())) {
        support::fail(&format!("unknown scenario {bad:?}; one of {ALL:?}"));
    }
    support::run(args, |args| async move {
        for name in &chosen {
            match name.as_str() {
                "fanout" => scenarios::fanout(&args).await,
                "many_tenants" => scenarios::many_tenants(&args).await,
                "global" => scenarios::global(&args).await,
                "latency" => scenarios::latency(&args).await,
                "echo" => scenarios::echo(&args).await,
                "handshake" => scenarios::handshake(&args).await,
                "idle_memory" => scenarios::idle_memory(&args).await,
                "history_fanout" => history::history_fanout(&args).await,
                "history_recovery" => history::history_recovery(&args).await,
                "channel_fanout" => channels::channel_fanout(&args).await,
                "subscribe_ops" => channels::subscribe_ops(&args).await,
                "subscription_memory" => channels::subscription_memory(&args).await,
                "burst" => bursts::burst(&args).await,
                "global_flood" => bursts::global_flood(&args).await,
                "publish_hook" => hooks::publish_hook(&args).await,
                _ => unreachable!("checked above"),
            }
        }
    });
}
