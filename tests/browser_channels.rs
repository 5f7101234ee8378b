//! `WsPlusChannels` (`/wsplus.js`) in a real headless Chromium, each client in
//! a page (window) of its own, against real brokers:
//!
//! - pages of two tenants on channels of the same name never meet, and
//!   20-second tokens are refreshed in-band while publications flow (no 4001,
//!   no reconnect);
//! - with history, a page whose connection drops while another client keeps
//!   publishing resubscribes with `since` and gets every publication exactly
//!   once, in order;
//! - a broker restarted on the same port has new epochs: the page is told
//!   (`recovered: false`, the `recoveryfailed` event) and follows the new stream;
//! - with two nodes and history in Redis, a page whose node is stopped moves
//!   on to the other node (a list of URLs) and gets every publication exactly
//!   once, in order.
//!
//! Needs `chromium` and `chromedriver`; skipped without them except under
//! `CI=true` (see tests/common/browser.rs).

use std::time::Duration;

use common::browser::{with_browser, BrowserTools, Page};
use common::channels::{demo_settings, CHANNELS};
use common::cluster::{node_settings, RedisServer};
use common::TestApp;
use fantoccini::Client;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use wsplus::settings::ChannelsSettings;

/// Longest a whole traffic phase may take.
const PHASE: Duration = Duration::from_secs(60);

/// What a page reports on failure.
const STATE: &str = "return window.T ? JSON.parse(JSON.stringify({ got: T.got, offsets: T.offsets,
  opens: T.opens, closes: T.closes, refreshed: T.refreshed, errors: T.errors, failed: T.failed,
  subscribed: T.subscribed, recovered: T.recovered })) : null;";

/// The client of a page made by [`channels_page`].
struct PageClient {
    /// The page's name (and the token's `sub` with [`PageClient::demo`]).
    name: &'static str,
    /// `url` of `WsPlusChannels`: the broker's channels listener, or a list.
    url: Value,
    /// `getToken`, a JavaScript async function.
    get_token: String,
    /// The channel it subscribes to.
    channel: &'static str,
}

impl PageClient {
    /// `name` of `tenant` on `origin`'s channels listener, with `ttl`-second
    /// tokens from `/demo/token?mode=channels`.
    fn demo(
        origin: &str,
        name: &'static str,
        tenant: &str,
        ttl: u64,
        channel: &'static str,
    ) -> Self {
        Self {
            name,
            url: json!(format!("{origin}{CHANNELS}")),
            get_token: format!(
                "async () => (await (await fetch(
                   '/demo/token?mode=channels&tenant={tenant}&sub={name}&ttl={ttl}')).json()).token"
            ),
            channel,
        }
    }
}

/// Opens a page of the broker at `origin` whose `WsPlusChannels` (`client`)
/// subscribes to its channel and records into `window.T` every publication
/// (`got`, `offsets`), open, close, refresh, recovery failure and error.
async fn channels_page(c: &Client, origin: &str, new_window: bool, client: PageClient) -> Page {
    // Any document of the broker's origin can import the client.
    let page = Page::open(c, client.name, &format!("{origin}/wsplus.js"), new_window).await;
    let script = format!(
        "window.T = {{ got: [], offsets: [], opens: 0, closes: [], refreshed: 0, errors: [],
                      failed: [], subscribed: 0, recovered: 0, urls: [] }};
         import('/wsplus.js').then((m) => {{
           const c = new m.WsPlusChannels({{ url: {url}, getToken: {get_token},
                                             minBackoffMs: 100, maxBackoffMs: 500 }});
           c.addEventListener('open', (e) => {{ T.opens++; T.urls.push(new URL(e.url).host); }});
           c.addEventListener('close', (e) => T.closes.push(e.code));
           c.addEventListener('refreshed', () => {{ T.refreshed++; }});
           c.addEventListener('error', (e) => T.errors.push(String(e.error)));
           c.addEventListener('recoveryfailed', (e) =>
             T.failed.push({{ channel: e.channel, since: e.since, epoch: e.epoch, offset: e.offset,
                             at: T.got.length }}));
           c.subscribe({channel}, {{
             onPublication: (d, p) => {{ T.got.push(d); T.offsets.push(p.offset ?? null); }},
             onSubscribed: (r) => {{
               T.subscribed++;
               T.epoch = r.epoch;
               if (r.recovered) T.recovered += r.publications.length;
             }},
           }});
           T.c = c;
         }});
         return true;",
        url = client.url,
        get_token = client.get_token,
        channel = json!(client.channel),
    );
    page.js(c, &script).await;
    page.wait(
        c,
        "subscribed",
        "return window.T?.subscribed >= 1;",
        STATE,
        PHASE,
    )
    .await;
    page
}

/// Pages of tenants acme (alice on `news`, bob on `sport`) and globex (carol
/// on `news`), each in its own window with 20-second tokens: bob publishes to
/// `news` and alice to `sport` every 250 ms for 25 s; each gets all 100 of
/// the other's, in order; carol gets none of acme's `news`, only her own;
/// tokens are refreshed in-band and nobody is closed or reconnects.
#[tokio::test]
async fn pages_of_two_tenants_with_short_tokens() {
    let Some(tools) = BrowserTools::find() else {
        return;
    };
    let app = TestApp::spawn(demo_settings(ChannelsSettings {
        refresh_notice_s: 8,
        ..Default::default()
    }));
    let origin = format!("http://{}", app.http);
    with_browser(&tools, |b| async move { two_tenants(&b, &origin).await }).await;
}

async fn two_tenants(c: &Client, origin: &str) {
    let demo = |name, tenant, channel| PageClient::demo(origin, name, tenant, 20, channel);
    let alice = channels_page(c, origin, false, demo("alice", "acme", "news")).await;
    let bob = channels_page(c, origin, true, demo("bob", "acme", "sport")).await;
    let carol = channels_page(c, origin, true, demo("carol", "globex", "news")).await;
    // Each publisher page publishes 1..=100 every 250 ms to the other's channel.
    for (page, channel) in [(&bob, "news"), (&alice, "sport")] {
        page.js(
            c,
            &format!(
                "T.sent = 0;
                 T.timer = setInterval(() => {{
                   const n = ++T.sent;
                   T.c.publish({channel}, n).catch((e) => T.errors.push([n, e.code]));
                   if (n === 100) clearInterval(T.timer);
                 }}, 250);
                 return true;",
                channel = json!(channel)
            ),
        )
        .await;
    }
    let expected: Vec<Value> = (1..=100).map(|n| json!(n)).collect();
    for page in [&alice, &bob] {
        let state = page
            .wait(
                c,
                "100 publications",
                &format!("return T.got.length >= 100 && T.sent === 100 && ({STATE_EXPR});"),
                STATE,
                PHASE,
            )
            .await;
        assert_eq!(
            state["got"],
            json!(expected),
            "{}: in order, none lost",
            page.name
        );
        assert_eq!(state["errors"], json!([]), "{}", page.name);
        assert_eq!(
            state["closes"],
            json!([]),
            "{}: no 4001, no close at all",
            page.name
        );
        assert_eq!(state["opens"], 1, "{}: no reconnect", page.name);
        assert!(
            state["refreshed"].as_u64().unwrap() >= 2,
            "{}: tokens refreshed in-band: {state}",
            page.name
        );
    }
    // Carol's own news reaches her; acme's never did.
    carol
        .js(c, "T.c.publish('news', 'from carol'); return true;")
        .await;
    let state = carol
        .wait(
            c,
            "her own publication",
            &format!("return T.got.length >= 1 && ({STATE_EXPR});"),
            STATE,
            PHASE,
        )
        .await;
    assert_eq!(
        state["got"],
        json!(["from carol"]),
        "globex's news never gets acme's"
    );
    assert_eq!(state["closes"], json!([]));
    assert_eq!(state["opens"], 1);
}

/// [`STATE`] as an expression.
const STATE_EXPR: &str = "JSON.parse(JSON.stringify({ got: T.got, offsets: T.offsets,
  opens: T.opens, closes: T.closes, refreshed: T.refreshed, errors: T.errors, failed: T.failed,
  subscribed: T.subscribed, recovered: T.recovered, epoch: T.epoch, urls: T.urls }))";

/// A channels listener keeping 1,000 publications for 5 minutes.
fn with_history() -> ChannelsSettings {
    ChannelsSettings {
        history_size: 1000,
        history_ttl_s: 300,
        ..Default::default()
    }
}

/// The channels listener's URL with a token for a publisher of tenant acme.
fn publisher_url(app: &TestApp) -> String {
    let token = common::channels::channels_token("acme", Some("pub"), 600, json!({}));
    app.ws_url(CHANNELS, Some(&token))
}

/// Publishes 1, 2, 3, … to `channel` every `every` over its own connections
/// to `url` (reconnecting while the broker is away) until `stop` says so or
/// `max` are acknowledged; returns the last number acknowledged.
async fn keep_publishing(
    url: String,
    channel: &'static str,
    every: Duration,
    max: u64,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut acked = 0;
    while acked < max && !*stop.borrow() {
        let Ok((ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (mut tx, mut rx) = ws.split();
        // One publication in flight at a time: its reply acknowledges it, so
        // the numbers acknowledged are exactly those the broker took.
        'conn: while acked < max {
            let n = acked + 1;
            let cmd = json!({"id": n, "op": "publish", "channel": channel, "data": n});
            if tx.send(Message::text(cmd.to_string())).await.is_err() {
                break;
            }
            loop {
                let frame = tokio::select! {
                    f = rx.next() => f,
                    _ = stop.changed() => return acked,
                };
                let Some(Ok(Message::Text(t))) = frame else {
                    match frame {
                        Some(Ok(_)) => continue,
                        _ => break 'conn,
                    }
                };
                let acknowledged = t
                    .split('\n')
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .any(|v| v["id"] == n && v.get("result").is_some());
                if acknowledged {
                    acked = n;
                    break;
                }
            }
            tokio::time::sleep(every).await;
        }
    }
    acked
}

/// Waits until `page` got `n` publications and checks they are 1..=n, each
/// once, in order, with consecutive offsets and no `recoveryfailed`; returns
/// the page's state.
async fn all_exactly_once(c: &Client, page: &Page, n: u64) -> Value {
    let state = page
        .wait(
            c,
            &format!("all {n} publications"),
            &format!("return T.got.length >= {n} && ({STATE_EXPR});"),
            STATE,
            PHASE,
        )
        .await;
    let expected: Vec<Value> = (1..=n).map(|n| json!(n)).collect();
    assert_eq!(
        state["got"],
        json!(expected),
        "once each, in order: {state}"
    );
    assert_eq!(state["offsets"], json!(expected), "consecutive offsets");
    assert_eq!(state["failed"], json!([]), "{state}");
    state
}

/// With history on, the page's socket drops (as a network loss would) while
/// a client keeps publishing; the page reconnects, resubscribes with `since`
/// and receives every publication exactly once, in order, some of them
/// recovered, with consecutive offsets and no `recoveryfailed`.
#[tokio::test]
async fn page_recovers_what_it_missed_while_disconnected() {
    let Some(tools) = BrowserTools::find() else {
        return;
    };
    let app = TestApp::spawn(demo_settings(with_history()));
    let origin = format!("http://{}", app.http);
    let url = publisher_url(&app);
    with_browser(&tools, |b| async move {
        let alice = PageClient::demo(&origin, "alice", "acme", 600, "doc");
        let page = channels_page(&b, &origin, false, alice).await;
        let (_stop_tx, stop) = watch::channel(false);
        let publisher = tokio::spawn(keep_publishing(
            url,
            "doc",
            Duration::from_millis(10),
            200,
            stop,
        ));
        page.wait(
            &b,
            "some live publications",
            "return T.got.length >= 20;",
            STATE,
            PHASE,
        )
        .await;
        // The page loses its socket (not through close(), which would stop the client).
        page.js(
            &b,
            "T.c.transport._ws.close(4000, 'network lost'); return true;",
        )
        .await;
        let sent = publisher.await.expect("publisher");
        assert_eq!(sent, 200);
        let state = all_exactly_once(&b, &page, 200).await;
        assert_eq!(state["opens"], 2, "one reconnect: {state}");
        assert!(
            state["recovered"].as_u64().unwrap() > 0,
            "some were recovered: {state}"
        );
        // Nothing more arrives late (no duplicate after the hand-over).
        page.js(&b, "return T.c.ping().then(() => true);").await;
        let n = page.js(&b, "return T.got.length;").await;
        assert_eq!(n, 200);
    })
    .await;
}

/// With history on one node, the broker is stopped and started again on the
/// same port while another client keeps publishing: the page reconnects, its
/// `since` names an epoch the new broker never had, so `recovered: false`
/// fires `recoveryfailed` (once, for the channel, with the old position and
/// the new epoch), and publications of the new stream keep arriving.
#[tokio::test]
async fn page_is_told_when_a_restart_lost_the_history() {
    let Some(tools) = BrowserTools::find() else {
        return;
    };
    let settings = demo_settings(with_history());
    let app = TestApp::spawn(settings.clone());
    let http = app.http;
    let origin = format!("http://{http}");
    let url = publisher_url(&app);
    let mut app = Some(app);
    with_browser(&tools, |b| async move {
        let alice = PageClient::demo(&origin, "alice", "acme", 600, "doc");
        let page = channels_page(&b, &origin, false, alice).await;
        let (stop_tx, stop) = watch::channel(false);
        let publisher = tokio::spawn(keep_publishing(
            url,
            "doc",
            Duration::from_millis(20),
            u64::MAX,
            stop,
        ));
        let before = page
            .wait(
                &b,
                "live publications before the restart",
                &format!("return T.got.length >= 10 && ({STATE_EXPR});"),
                STATE,
                PHASE,
            )
            .await;
        let old_epoch = before["epoch"].clone();
        assert!(old_epoch.is_string(), "{before}");

        // Stop the broker, start a new one on the same port.
        app.take().expect("first broker").shutdown().await;
        let mut again = settings.clone();
        again.server.bind = http.to_string();
        let _restarted = TestApp::spawn(again);

        let state = page
            .wait(
                &b,
                "recoveryfailed, then publications of the new stream",
                &format!(
                    "return T.failed.length >= 1 && T.got.length >= T.failed[0].at + 5
                       && ({STATE_EXPR});"
                ),
                STATE,
                PHASE,
            )
            .await;
        let _ = stop_tx.send(true);
        publisher.await.expect("publisher");
        let failed = &state["failed"];
        assert_eq!(failed.as_array().unwrap().len(), 1, "{state}");
        assert_eq!(failed[0]["channel"], "doc");
        assert_eq!(failed[0]["since"]["epoch"], old_epoch);
        assert_ne!(failed[0]["epoch"], old_epoch, "a new epoch: {state}");
        assert_eq!(failed[0]["epoch"], state["epoch"]);
        assert!(
            state["closes"].as_array().unwrap().contains(&json!(1001)),
            "{state}"
        );
        // Before and after the failure: consecutive offsets, each stream's;
        // after it, the new stream from the position the reply gave.
        let numbers = |key: &str| -> Vec<u64> {
            state[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_u64().unwrap())
                .collect()
        };
        let (offsets, got) = (numbers("offsets"), numbers("got"));
        let at = failed[0]["at"].as_u64().unwrap() as usize;
        let consecutive = |o: &[u64]| o.windows(2).all(|w| w[1] == w[0] + 1);
        assert!(consecutive(&offsets[..at]), "old stream: {offsets:?}");
        assert!(consecutive(&offsets[at..]), "new stream: {offsets:?}");
        assert_eq!(offsets[at], failed[0]["offset"].as_u64().unwrap() + 1);
        assert!(
            got.windows(2).all(|w| w[1] > w[0]),
            "no publication twice or out of order: {got:?}"
        );
    })
    .await;
}

/// Two nodes sharing one Redis keep history in Redis. The page (url = both
/// nodes' channels listeners) is on node A and a client publishes 300
/// publications through node B; node A is stopped mid-way; the page moves on
/// to node B, resubscribes with `since` and gets every publication exactly
/// once, in order, with consecutive offsets, some of them recovered, and no
/// `recoveryfailed`.
#[tokio::test]
async fn page_recovers_on_another_node() {
    let Some(tools) = BrowserTools::find() else {
        return;
    };
    let redis = RedisServer::start();
    let node = |id: &str| {
        let mut s = demo_settings(with_history());
        let cluster = node_settings(&redis, id).cluster;
        s.cluster = cluster;
        TestApp::spawn(s)
    };
    let a = node("a");
    let b = node("b");
    let origin = format!("http://{}", a.http);
    let client = PageClient {
        name: "alice",
        url: json!([
            format!("ws://{}{CHANNELS}", a.http),
            format!("ws://{}{CHANNELS}", b.http)
        ]),
        // Not from node A's /demo/token: A goes away. Both nodes accept it.
        get_token: format!(
            "async () => {}",
            json!(common::channels::channels_token(
                "acme",
                Some("alice"),
                600,
                json!({})
            ))
        ),
        channel: "doc",
    };
    let url = publisher_url(&b);
    let (a_host, b_host) = (a.http.to_string(), b.http.to_string());
    let mut a = Some(a);
    with_browser(&tools, |br| async move {
        let page = channels_page(&br, &origin, false, client).await;
        let (_stop_tx, stop) = watch::channel(false);
        let publisher = tokio::spawn(keep_publishing(
            url,
            "doc",
            Duration::from_millis(10),
            300,
            stop,
        ));
        page.wait(
            &br,
            "live publications through node B",
            "return T.got.length >= 30;",
            STATE,
            PHASE,
        )
        .await;
        a.take().expect("node A").shutdown().await;
        assert_eq!(publisher.await.expect("publisher"), 300);
        let state = all_exactly_once(&br, &page, 300).await;
        assert_eq!(
            state["urls"],
            json!([a_host, b_host]),
            "moved to node B: {state}"
        );
        assert!(
            state["recovered"].as_u64().unwrap() > 0,
            "some were recovered: {state}"
        );
    })
    .await;
    drop(b);
}
