//! Channels mode (`wsplus.v1`): a listener builder, token minting with
//! permission claims, and a protocol client that numbers its commands, splits
//! batched frames and keeps pushes apart from replies.

use std::collections::VecDeque;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use wsplus::settings::{ChannelsSettings, ListenerSettings, Mode, Scope, Settings};

use crate::auth::{hmac, now, sign};
use crate::{listener, TestApp, Ws, SECRET};

/// The conventional path of a channels-mode test listener.
pub const CHANNELS: &str = "/ws/channels";

/// An HS256 channels-mode listener at `path` with `scope` and `channels`.
pub fn channels_listener(path: &str, scope: Scope, channels: ChannelsSettings) -> ListenerSettings {
    let mut l = listener(path);
    l.mode = Mode::Channels;
    l.scope = scope;
    l.channels = Some(channels);
    l
}

/// Demo mode on (`/demo`, `/demo/token`), a message-mode listener
/// `/ws/events` and a tenant-scope channels listener [`CHANNELS`] with
/// `channels`: what the browser tests serve their pages from.
pub fn demo_settings(channels: ChannelsSettings) -> Settings {
    let mut settings = crate::base_settings();
    settings.server.demo = true;
    let mut msg = listener("/ws/events");
    msg.mode = Mode::Message;
    settings.listeners = vec![msg, channels_listener(CHANNELS, Scope::Tenant, channels)];
    settings
}

/// An HS256 token for `tenant`/`sub` valid `ttl_s` seconds (no `exp` when 0),
/// with `extra` claims merged in (e.g. `{"channels": {...}}`).
pub fn channels_token(tenant: &str, sub: Option<&str>, ttl_s: i64, extra: Value) -> String {
    let mut c = json!({"tenant_id": tenant, "iat": now()});
    if let Some(s) = sub {
        c["sub"] = json!(s);
    }
    if ttl_s > 0 {
        c["exp"] = json!(now() + ttl_s);
    }
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        c[k] = v;
    }
    sign(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &c,
        &hmac(SECRET.as_bytes()),
        Algorithm::HS256,
    )
}

/// A `wsplus.v1` client.
pub struct Chan {
    /// The socket.
    pub ws: Ws,
    /// The `connected` push.
    pub connected: Value,
    next_id: u64,
    pushes: VecDeque<Value>,
    replies: VecDeque<Value>,
}

impl Chan {
    /// Connects with `token` and reads the `connected` push (which must come first).
    pub async fn connect(app: &TestApp, path: &str, token: &str) -> Chan {
        let ws = Ws::connect(&app.ws_url(path, Some(token))).await;
        Self::start(ws).await
    }

    /// Connects as `tenant`/`u` with no permission claims.
    pub async fn connect_as(app: &TestApp, path: &str, tenant: &str) -> Chan {
        Self::connect_subject(app, path, tenant, "u").await
    }

    /// The session id of the `connected` push.
    pub fn session_id(&self) -> String {
        self.connected["session"]["id"]
            .as_str()
            .expect("a session id")
            .to_owned()
    }

    /// Connects as `sub` of `tenant` with no permission claims.
    pub async fn connect_subject(app: &TestApp, path: &str, tenant: &str, sub: &str) -> Chan {
        Self::connect(
            app,
            path,
            &channels_token(tenant, Some(sub), 3600, json!({})),
        )
        .await
    }

    /// Wraps a connected socket; reads the `connected` push.
    pub async fn start(ws: Ws) -> Chan {
        let mut c = Chan {
            ws,
            connected: Value::Null,
            next_id: 0,
            pushes: VecDeque::new(),
            replies: VecDeque::new(),
        };
        let first = c.read_one().await;
        assert_eq!(first["push"], "connected", "first message: {first}");
        c.connected = first;
        c
    }

    /// Reads one frame and files its messages; returns the first one.
    async fn read_frame(&mut self) -> Vec<Value> {
        let text = self.ws.recv_text().await;
        text.split('\n')
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    async fn read_one(&mut self) -> Value {
        let mut msgs = self.read_frame().await;
        let first = msgs.remove(0);
        for m in msgs {
            self.file(m);
        }
        first
    }

    fn file(&mut self, m: Value) {
        if m.get("push").is_some() {
            self.pushes.push_back(m);
        } else {
            self.replies.push_back(m);
        }
    }

    /// Sends a raw text frame.
    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send_text(text).await;
    }

    /// The next id this client will use.
    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends `command` (an object without `id`) and returns its reply; pushes
    /// read meanwhile are kept for [`Chan::push`].
    pub async fn cmd(&mut self, command: Value) -> Value {
        let id = self.fresh_id();
        let mut c = command;
        c["id"] = json!(id);
        self.send_raw(&c.to_string()).await;
        self.reply(json!(id)).await
    }

    /// The reply with `id` (`null` for replies to lines without a valid id).
    pub async fn reply(&mut self, id: Value) -> Value {
        loop {
            if let Some(pos) = self.replies.iter().position(|r| r["id"] == id) {
                return self.replies.remove(pos).unwrap();
            }
            let msgs = self.read_frame().await;
            for m in msgs {
                self.file(m);
            }
        }
    }

    /// The next push.
    pub async fn push(&mut self) -> Value {
        loop {
            if let Some(p) = self.pushes.pop_front() {
                return p;
            }
            let msgs = self.read_frame().await;
            for m in msgs {
                self.file(m);
            }
        }
    }

    /// A push already read (while waiting for a reply), if any.
    pub fn take_push(&mut self) -> Option<Value> {
        self.pushes.pop_front()
    }

    /// Asserts no push is waiting after a `ping` round trip (everything sent
    /// to this client before the ping's reply has arrived by then).
    pub async fn no_push(&mut self) {
        let pong = self.cmd(json!({"op": "ping"})).await;
        assert_eq!(pong["result"], json!({}));
        assert!(
            self.pushes.is_empty(),
            "unexpected pushes: {:?}",
            self.pushes
        );
    }

    /// `subscribe` that must succeed.
    pub async fn subscribe(&mut self, channel: &str) {
        let r = self
            .cmd(json!({"op": "subscribe", "channel": channel}))
            .await;
        assert_eq!(r["result"]["channel"], channel, "{r}");
    }

    /// `subscribe` with `since` (`{epoch, offset}`) when given, which must
    /// succeed; returns its result.
    pub async fn subscribe_since(&mut self, channel: &str, since: Option<(&str, u64)>) -> Value {
        let mut cmd = json!({"op": "subscribe", "channel": channel});
        if let Some((epoch, offset)) = since {
            cmd["since"] = json!({"epoch": epoch, "offset": offset});
        }
        let r = self.cmd(cmd).await;
        r.get("result").cloned().unwrap_or_else(|| panic!("{r}"))
    }

    /// `publish` that must succeed.
    pub async fn publish(&mut self, channel: &str, data: Value) {
        let r = self
            .cmd(json!({"op": "publish", "channel": channel, "data": data}))
            .await;
        assert_eq!(r["result"], json!({}), "{r}");
    }

    /// The error code of a reply (panics on a result).
    pub fn code(reply: &Value) -> &str {
        reply["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {reply}"))
    }
}

/// The `offset` of each entry of a `publications` list.
pub fn offsets(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect()
}

/// The `epoch` of a result.
pub fn epoch(result: &Value) -> String {
    result["epoch"].as_str().unwrap().to_owned()
}

/// Publishes on `channel` and returns the offset of the result.
pub async fn publish_numbered(c: &mut Chan, channel: &str, data: Value) -> u64 {
    let r = c
        .cmd(json!({"op": "publish", "channel": channel, "data": data}))
        .await;
    r["result"]["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no offset: {r}"))
}

/// `publisher` publishes on `channel` (history on, nobody published there
/// yet) as fast as it can, while `subscriber` subscribes, reads a few live
/// publications, unsubscribes, misses a few and subscribes again with
/// `since`, `rounds` times: every recovery must succeed and the offsets it
/// sees — recovered or live — must be exactly 1, 2, 3, … (no gap, no repeat).
pub async fn recover_while_publishing(
    mut publisher: Chan,
    mut subscriber: Chan,
    channel: &str,
    rounds: usize,
) {
    let s = &mut subscriber;
    let first = s.cmd(json!({"op": "subscribe", "channel": channel})).await;
    assert_eq!(first["result"]["offset"], 0, "{first}");
    let epoch = first["result"]["epoch"].as_str().unwrap().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let name = channel.to_owned();
    let publishing = tokio::spawn(async move {
        let mut last = 0;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            last = publish_numbered(&mut publisher, &name, json!(last + 1)).await;
        }
        last
    });
    let offset = |p: &Value| p["offset"].as_u64().unwrap_or_else(|| panic!("{p}"));
    let mut seen: Vec<u64> = Vec::new();
    for round in 0..rounds {
        // Some live publications...
        for _ in 0..(5 + round % 7) {
            let p = s.push().await;
            seen.push(offset(&p));
        }
        let r = s
            .cmd(json!({"op": "unsubscribe", "channel": channel}))
            .await;
        assert_eq!(r["result"], json!({}));
        // ...and those queued before the unsubscribe reply.
        while let Some(p) = s.take_push() {
            seen.push(offset(&p));
        }
        let last = *seen.last().unwrap();
        // Miss a few while unsubscribed.
        loop {
            let h = s
                .cmd(json!({"op": "history", "channel": channel, "limit": 0}))
                .await;
            if h["result"]["offset"].as_u64().unwrap() >= last + 3 {
                break;
            }
        }
        let since = json!({"epoch": epoch, "offset": last});
        let r = s
            .cmd(json!({"op": "subscribe", "channel": channel, "since": since}))
            .await;
        let r = &r["result"];
        assert_eq!(r["recovered"], true, "round {round}: {r}");
        let recovered: Vec<u64> = r["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(offset)
            .collect();
        assert!(recovered.len() >= 3, "round {round}: {recovered:?}");
        assert_eq!(r["offset"].as_u64(), recovered.last().copied());
        seen.extend(recovered);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = publishing.await.unwrap();
    // Everything published after the last subscribe arrives live.
    while seen.last().copied() < Some(published) {
        seen.push(offset(&s.push().await));
    }
    let want: Vec<u64> = (1..=published).collect();
    assert_eq!(seen.len(), want.len(), "a gap or a repeat");
    assert_eq!(seen, want);
    s.no_push().await;
}
