//! End to end in a real headless Chromium, driven over WebDriver (fantoccini +
//! chromedriver): the demo page served by a real broker in demo mode. Pages with
//! tokens for different tenants exchange messages through the broker; tenants
//! are isolated; deliveries carry the verified `_session`; a 4001 on token
//! expiry reaches the page, which fetches a new token and reconnects; a page
//! from another origin is refused with 403 at the handshake. The page's
//! channels view subscribes, publishes and unsubscribes through its buttons.
//! (`WsPlusChannels` in pages of its own: `tests/browser_channels.rs`.)
//!
//! Needs `chromium` and `chromedriver` (Debian `chromium`, `chromium-driver`;
//! scripts/test.sh installs them). Without them the test is skipped, except
//! with `CI=true`, where that is a failure. Leaves a screenshot in
//! `target/test-artifacts/browser.png`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use common::browser::{js, wait_js_logging, with_browser, BrowserTools, BROWSER_WAIT};
use common::{base_settings, listener, TestApp};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsplus::server::Sockets;
use wsplus::settings::Mode;

/// Lifetime of the pane's short tokens (`/demo?short_ttl=`), seconds.
const SHORT_TTL_S: u64 = 3;

#[tokio::test]
async fn demo_page_in_headless_chromium() {
    let Some(tools) = BrowserTools::find() else {
        return;
    };

    // The broker, bound first so that its own origin can be the allowed one.
    let sockets = Sockets {
        http: TcpListener::bind("127.0.0.1:0").unwrap(),
        admin: TcpListener::bind("127.0.0.1:0").unwrap(),
    };
    let origin = format!("http://{}", sockets.http.local_addr().unwrap());
    let mut settings = base_settings();
    settings.server.demo = true;
    let mut l = listener("/ws/events");
    l.mode = Mode::Message;
    l.allowed_origins = vec![origin.clone()];
    settings.listeners = vec![l];
    let app = TestApp::spawn_bound(settings, sockets, HashMap::new());

    // A page on another origin that opens a socket with a perfectly good token.
    let foreign = serve_page(foreign_page(&app.ws_url(
        "/ws/events",
        Some(&common::token("acme", Some("mallory"), 600)),
    )))
    .await;

    with_browser(&tools, |b| async move {
        scenario(&b, &app, &origin, foreign).await
    })
    .await;
}

/// The demo page's channels view (`WsPlusChannels` on `/ws/channels`, tokens
/// from `/demo/token?mode=channels`), driven through its buttons: Alice and
/// Carol subscribe to `news` in their tenants, Bob to `sport`; Bob's `news`
/// reaches Alice with his verified stamp, never Carol (other tenant) nor Bob
/// himself (not subscribed); after Alice's Unsubscribe nothing more of `news`
/// reaches her.
#[tokio::test]
async fn demo_channels_view_in_headless_chromium() {
    let Some(tools) = BrowserTools::find() else {
        return;
    };
    let app = TestApp::spawn(common::channels::demo_settings(Default::default()));
    let origin = format!("http://{}", app.http);
    with_browser(&tools, |b| async move {
        channels_view_scenario(&b, &origin).await
    })
    .await;
}

async fn channels_view_scenario(c: &Client, origin: &str) {
    c.goto(&format!("{origin}/demo")).await.expect("open /demo");
    wait_channels(
        c,
        "three channel clients connected",
        "return ['alice', 'bob', 'carol'].every(k => wsplusDemo.channels[k]?.session);",
    )
    .await;
    let listener = js(
        c,
        "return document.getElementById('channels-listener').textContent;",
    )
    .await;
    assert_eq!(listener, "/ws/channels");
    set_input(c, "ch-channel-bob", "sport").await;
    for k in ["alice", "bob", "carol"] {
        click(c, &format!("ch-subscribe-{k}")).await;
    }
    wait_channels(
        c,
        "subscribed: alice and carol to news, bob to sport",
        "const on = (k, ch) => wsplusDemo.channels[k].subscriptions.get(ch)?.active;
         return on('alice', 'news') && on('carol', 'news') && on('bob', 'sport')
           && document.getElementById('ch-subs-alice').textContent.includes('news');",
    )
    .await;

    // Bob publishes to acme's news (he is not subscribed to it); Carol to globex's.
    set_input(c, "ch-text-bob", "hello news").await;
    click(c, "ch-publish-bob").await;
    set_input(c, "ch-text-carol", "carol news").await;
    click(c, "ch-publish-carol").await;
    let stamp = wait_channel_message(c, "alice", "[news] hello news").await;
    assert_eq!(stamp["tenantId"], "acme");
    assert_eq!(stamp["subject"], "bob");
    wait_channel_message(c, "carol", "[news] carol news").await;
    let seen = js(
        c,
        "const m = k => wsplusDemo.channelLogs[k].filter(e => e.kind === 'message').map(e => e.text);
         return { alice: m('alice'), bob: m('bob'), carol: m('carol'),
                  aliceDom: document.getElementById('ch-log-alice').textContent };",
    )
    .await;
    assert_eq!(seen["alice"], json!(["[news] hello news"]), "{seen}");
    assert_eq!(seen["carol"], json!(["[news] carol news"]), "{seen}");
    assert_eq!(seen["bob"], json!([]), "{seen}");
    assert!(seen["aliceDom"].as_str().unwrap().contains("hello news"));

    // Unsubscribe with the button; then a news publication followed by a sport
    // one (Alice subscribes to sport): when the sport one arrives, the news one
    // would have too.
    click(c, "ch-unsubscribe-alice-news").await;
    wait_channels(
        c,
        "alice unsubscribed from news",
        "return wsplusDemo.channelLogs.alice.some(e => e.text === 'unsubscribed from news');",
    )
    .await;
    set_input(c, "ch-channel-alice", "sport").await;
    click(c, "ch-subscribe-alice").await;
    wait_channels(
        c,
        "alice subscribed to sport",
        "return wsplusDemo.channels.alice.subscriptions.get('sport')?.active;",
    )
    .await;
    set_input(c, "ch-text-bob", "after unsubscribe").await;
    click(c, "ch-publish-bob").await;
    wait_channels(
        c,
        "bob's news published",
        "return wsplusDemo.channelLogs.bob.some(e => e.text === 'published to news');",
    )
    .await;
    set_input(c, "ch-pub-channel-bob", "sport").await;
    set_input(c, "ch-text-bob", "sync").await;
    click(c, "ch-publish-bob").await;
    wait_channel_message(c, "alice", "[sport] sync").await;
    let alice = js(
        c,
        "return wsplusDemo.channelLogs.alice.filter(e => e.kind === 'message').map(e => e.text);",
    )
    .await;
    assert_eq!(alice, json!(["[news] hello news", "[sport] sync"]));
}

/// Replaces the value of the input `id` with `text`, typed.
async fn set_input(c: &Client, id: &str, text: &str) {
    let input = c.find(Locator::Id(id)).await.expect("input");
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

/// Clicks the element `id`.
async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {id}: {e}"));
}

/// [`wait_js`] for the channels view (its logs on failure).
async fn wait_channels(c: &Client, what: &str, script: &str) -> Value {
    let logs = "return window.wsplusDemo ? wsplusDemo.channelLogs : null;";
    wait_js_logging(c, what, script, logs).await
}

/// Waits until the channels pane `pane` logged a publication shown as `text`;
/// returns its `_session`.
async fn wait_channel_message(c: &Client, pane: &str, text: &str) -> Value {
    let script = format!(
        "const e = wsplusDemo.channelLogs[{pane}].find(e => e.kind === 'message' && e.text === {text});
         return e ? e.session : null;",
        pane = json!(pane),
        text = json!(text)
    );
    wait_channels(c, &format!("{pane} receives {text:?}"), &script).await
}

async fn scenario(c: &Client, app: &TestApp, origin: &str, foreign: SocketAddr) {
    c.goto(&format!("{origin}/demo?short_ttl={SHORT_TTL_S}"))
        .await
        .expect("open /demo");
    wait_js(
        c,
        "all three panes connected",
        "return ['alice', 'bob', 'carol'].every(k => window.wsplusDemo?.clients[k]?.state === 'open');",
    )
    .await;

    // Routing through the broker, typed into the page like a user would.
    type_and_send(c, "alice", "hello from alice").await;
    let stamp = wait_message(c, "bob", "hello from alice").await;
    assert_eq!(stamp["type"], "websocket");
    assert_eq!(stamp["tenantId"], "acme");
    assert_eq!(stamp["subject"], "alice");
    assert_eq!(stamp["authStatus"], "verified");
    assert_eq!(stamp["routingScope"], "tenant");
    assert!(
        stamp["id"].as_str().is_some_and(|id| id.len() >= 16),
        "{stamp}"
    );
    let own = wait_message(c, "alice", "hello from alice").await;
    assert_eq!(own["id"], stamp["id"], "the sender gets its own message");

    type_and_send(c, "carol", "hello from carol").await;
    let carol = wait_message(c, "carol", "hello from carol").await;
    assert_eq!(carol["tenantId"], "globex");
    assert_eq!(carol["subject"], "carol");
    assert_eq!(carol["authStatus"], "verified");
    type_and_send(c, "bob", "second from bob").await;
    assert_eq!(
        wait_message(c, "alice", "second from bob").await["subject"],
        "bob"
    );

    // Isolation: by now carol would have seen acme's messages, and acme carol's.
    let seen = js(
        c,
        "const m = k => wsplusDemo.logs[k].filter(e => e.kind === 'message')
                        .map(e => [e.session?.tenantId, e.text]);
         return { alice: m('alice'), bob: m('bob'), carol: m('carol'),
                  carolDom: document.getElementById('log-carol').textContent };",
    )
    .await;
    assert_eq!(
        seen["carol"],
        json!([["globex", "hello from carol"]]),
        "{seen}"
    );
    for k in ["alice", "bob"] {
        let msgs = seen[k].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{k}: {seen}");
        assert!(msgs.iter().all(|m| m[0] == "acme"), "{k}: {seen}");
    }
    assert!(!seen["carolDom"].as_str().unwrap().contains("from alice"));

    // Token expiry: alice switches to short tokens; the broker closes with 4001 at
    // exp; the client fetches a new token and is open again.
    c.find(Locator::Id("short-alice"))
        .await
        .expect("checkbox")
        .click()
        .await
        .expect("tick short token");
    let expired = wait_js(
        c,
        "4001 on alice's pane, then a new token and a reconnect",
        &format!(
            "const l = wsplusDemo.logs.alice;
             const i = l.findIndex(e => e.kind === 'close' && e.code === 4001);
             if (i < 0) return null;
             const after = l.slice(i + 1);
             const refreshed = after.findIndex(e => e.text === 'got a {SHORT_TTL_S} s token');
             const reopened = after.findIndex(e => e.text === 'connected');
             return refreshed >= 0 && reopened > refreshed
               && wsplusDemo.clients.alice.state === 'open' ? l[i] : null;"
        ),
    )
    .await;
    assert_eq!(expired["meaning"], "token expired", "{expired}");
    assert_eq!(expired["reason"], "token expired", "{expired}");
    assert_eq!(expired["willReconnect"], true, "{expired}");
    assert_eq!(expired["byClient"], false, "{expired}");
    let dom = js(
        c,
        "return document.getElementById('log-alice').textContent;",
    )
    .await;
    assert!(
        dom.as_str()
            .unwrap()
            .contains("4001 token expired — refreshing token"),
        "the page shows the close reason: {dom}"
    );

    // Messages flow again on the refreshed connection. Alice's short tokens keep
    // expiring, so send (at most once a second) until one arrives.
    let stamp = wait_js(
        c,
        "a message from alice after the refresh reaches bob",
        "const got = wsplusDemo.logs.bob.find(e => e.kind === 'message' && e.text === 'after refresh');
         if (got) return got.session;
         if (!(Date.now() - (window.lastSend || 0) < 1000)
             && wsplusDemo.clients.alice.send({ text: 'after refresh' })) window.lastSend = Date.now();
         return null;",
    )
    .await;
    assert_eq!(stamp["subject"], "alice");
    assert_eq!(stamp["tenantId"], "acme");

    save_screenshot(c).await;

    // Origins: the demo's own origin was allowed (nothing refused so far); a page
    // from another origin is refused with 403 before any frame.
    assert_eq!(app.rejected("origin"), 0);
    c.goto(&format!("http://{foreign}/"))
        .await
        .expect("open the foreign page");
    let result = wait_js(
        c,
        "the foreign page's socket closes",
        "return window.result ?? null;",
    )
    .await;
    assert_eq!(result["opened"], false, "{result}");
    assert_eq!(result["code"], 1006, "{result}");
    let deadline = tokio::time::Instant::now() + BROWSER_WAIT;
    while app.rejected("origin") != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rejected.origin = {}, want 1",
            app.rejected("origin")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.rejected("invalid_signature") + app.rejected("expired"),
        0
    );
}

/// Types `text` into a pane's input and clicks its Send button.
async fn type_and_send(c: &Client, pane: &str, text: &str) {
    let input = c
        .find(Locator::Id(&format!("input-{pane}")))
        .await
        .expect("input");
    input.send_keys(text).await.expect("type");
    c.find(Locator::Id(&format!("send-{pane}")))
        .await
        .expect("send button")
        .click()
        .await
        .expect("click send");
}

/// Waits until `pane` logged a delivery with `text`; returns its `_session`.
async fn wait_message(c: &Client, pane: &str, text: &str) -> Value {
    let script = format!(
        "const e = wsplusDemo.logs[{pane}].find(e => e.kind === 'message' && e.text === {text});
         return e ? e.session : null;",
        pane = json!(pane),
        text = json!(text)
    );
    wait_js(c, &format!("{pane} receives {text:?}"), &script).await
}

/// Polls `script` until it returns something other than null/false, failing
/// after [`BROWSER_WAIT`] with the page's logs.
async fn wait_js(c: &Client, what: &str, script: &str) -> Value {
    let logs = "return window.wsplusDemo ? wsplusDemo.logs : null;";
    wait_js_logging(c, what, script, logs).await
}

/// Writes the page as it looks now to `target/test-artifacts/browser.png`.
async fn save_screenshot(c: &Client) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG image");
    // CARGO_TARGET_TMPDIR is <target dir>/tmp, wherever the target dir is.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    let path = dir.join("browser.png");
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// A page that opens a WebSocket to `url` and records how it ended in
/// `window.result`.
fn foreign_page(url: &str) -> String {
    format!(
        "<!doctype html><meta charset=utf-8><title>another origin</title>
<p>A page on another origin trying the broker.</p>
<script>
  window.result = null;
  let opened = false;
  const ws = new WebSocket({url});
  ws.onopen = () => {{ opened = true; }};
  ws.onclose = (e) => {{ window.result = {{ opened, code: e.code }}; }};
</script>",
        url = json!(url)
    )
}

/// Serves `html` for every request on a new loopback port (a second origin).
async fn serve_page(html: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    tokio::spawn(async move {
        for _ in 0..32 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let response = response.clone();
            tokio::spawn(async move {
                // Read the request head (bounded), then answer and close.
                let mut head = Vec::with_capacity(1024);
                let mut buf = [0u8; 1024];
                let read = async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    true
                };
                if let Ok(true) = tokio::time::timeout(BROWSER_WAIT, read).await {
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    addr
}
