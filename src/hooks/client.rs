//! [`HookClient`]: one listener's hooks over awc. Signs every request, bounds
//! the calls in flight, times each call out, classifies the answer and counts
//! it. Fail closed: anything but a 2xx with the documented JSON is a failure.
//!
//! An awc `Client` belongs to the thread that built it (its connection pool
//! is thread-local), while a `HookClient` is shared by every worker: each
//! worker thread lazily builds its own awc client on first use and keeps it,
//! so connections to the backend are reused across calls (kept idle at most
//! [`IDLE_CONNECTION`]). A call runs on the thread of the session that makes
//! it, so it never hops threads.
//!
//! The per-call work is kept small, as every hooked publication pays it: the
//! URL of each hook is parsed once, the body is serialized (and signed) once
//! into the bytes sent, one timer bounds the whole call (awc's own response
//! timeout is off), and the answer is parsed straight into its type.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use awc::http::Uri;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use wsplus_actors::SessionInfo;

use super::stats::HookStats;
use super::wire::{self, Request, Verdict};
use super::{HookError, Signer, SIGNATURE_HEADER};
use crate::settings::{HookName, HooksSettings};

thread_local! {
    /// This worker's client for hook calls (timeouts are set per call).
    static CLIENT: OnceCell<awc::Client> = const { OnceCell::new() };
}

/// Connect timeout of the thread-local clients; each call's own deadline
/// (`timeout_ms`) is shorter and wins.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an idle connection to the backend is kept for the next call:
/// under the 5 s keep-alive of common servers (actix-web, Node, uvicorn), so
/// that wsplus drops an idle connection before the backend closes it and a
/// call is not sent on a connection the backend is closing.
pub const IDLE_CONNECTION: Duration = Duration::from_secs(4);

/// The hooks of one listener.
#[derive(Debug)]
pub struct HookClient {
    /// Each hook's URL (`url` + `/` + the hook's name), parsed once; `None`
    /// when it does not parse (every call then fails as `connect`).
    urls: [Option<Uri>; HookName::ALL.len()],
    on: [bool; HookName::ALL.len()],
    timeout: Duration,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    /// Largest answer body read; a longer one is malformed.
    max_answer_bytes: usize,
    signer: Signer,
    stats: Arc<HookStats>,
    /// One warning per hook about malformed answers, not one per call.
    warned_malformed: [AtomicBool; HookName::ALL.len()],
}

/// The most calls one session may have waiting for the backend.
pub const SESSION_DEPTH: usize = 16;

/// One session's share of a listener's `max_in_flight` (channel hooks and the
/// `message` hook alike): at most [`SESSION_DEPTH`] calls running, so that one
/// client pipelining commands or messages cannot take the whole listener's
/// capacity (its socket stops being read instead, and other sessions' calls
/// are still made).
pub fn session_depth(max_in_flight: usize) -> usize {
    max_in_flight.clamp(1, SESSION_DEPTH)
}

/// A slot among `max_in_flight`, held from the start of a call until its
/// answer has been used; released on drop.
#[derive(Debug)]
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HookClient {
    /// The client of a listener's `[listeners.hooks]`; `max_message_bytes`
    /// sizes the largest answer read (a reply and a publication each as large
    /// as the largest message, plus room for the JSON around them).
    pub fn new(settings: &HooksSettings, signer: Signer, max_message_bytes: usize) -> Self {
        let mut on = [false; HookName::ALL.len()];
        for h in &settings.hooks {
            on[h.index()] = true;
        }
        let base = settings.url.trim_end_matches('/');
        Self {
            urls: HookName::ALL.map(|h| format!("{base}/{}", h.as_str()).parse().ok()),
            on,
            timeout: Duration::from_millis(settings.timeout_ms),
            max_in_flight: settings.max_in_flight,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_answer_bytes: max_message_bytes.saturating_mul(2).saturating_add(64 << 10),
            signer,
            stats: Arc::new(HookStats::default()),
            warned_malformed: Default::default(),
        }
    }

    /// True when `hook` is on.
    pub fn has(&self, hook: HookName) -> bool {
        self.on[hook.index()]
    }

    /// The listener's `max_in_flight`.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// How many of one session's calls may wait at once before its socket
    /// stops being read: [`session_depth`] of the listener's `max_in_flight`.
    pub fn session_depth(&self) -> usize {
        session_depth(self.max_in_flight)
    }

    /// The counters (metrics).
    pub fn stats(&self) -> &Arc<HookStats> {
        &self.stats
    }

    /// Calls in flight right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Takes a slot for a `hook` call, counting the call; `Overloaded` (and
    /// counted) when `max_in_flight` are taken.
    pub fn begin(&self, hook: HookName) -> Result<Permit, HookError> {
        let counters = self.stats.of(hook);
        counters.call();
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self.in_flight.clone());
        if before >= self.max_in_flight {
            drop(permit);
            counters.fail(HookError::Overloaded);
            return Err(HookError::Overloaded);
        }
        Ok(permit)
    }

    /// `connect`: allow (with server-side channels) or deny.
    pub async fn connect(
        &self,
        info: &SessionInfo,
        claims: &Map<String, Value>,
    ) -> Result<Verdict<Vec<String>>, HookError> {
        let body = wire::ConnectBody {
            claims,
            remote: info.remote.map(|a| a.to_string()),
        };
        let permit = self.begin(HookName::Connect)?;
        let request = Request::new(info, body).to_bytes();
        self.gate::<wire::ConnectAnswer, _>(HookName::Connect, permit, info, request)
            .await
    }

    /// `subscribe`: may this session subscribe to `channel`?
    pub async fn subscribe(
        &self,
        info: &SessionInfo,
        channel: &str,
    ) -> Result<Verdict<()>, HookError> {
        let permit = self.begin(HookName::Subscribe)?;
        let request = Request::new(info, wire::SubscribeBody { channel }).to_bytes();
        self.gate::<wire::SubscribeAnswer, _>(HookName::Subscribe, permit, info, request)
            .await
    }

    /// The request of a `publish` of `data` to `channel`, serialized now so
    /// that the caller need not keep (or copy) `data` until the call starts.
    pub fn publish_request(info: &SessionInfo, channel: &str, data: &Value) -> Vec<u8> {
        Request::new(info, wire::PublishBody { channel, data }).to_bytes()
    }

    /// `publish` with its [`HookClient::publish_request`]: may this session
    /// publish, and with which data (`Some` = the backend's replacement)?
    pub async fn publish(
        &self,
        info: &SessionInfo,
        request: Vec<u8>,
    ) -> Result<Verdict<Option<Value>>, HookError> {
        let permit = self.begin(HookName::Publish)?;
        self.gate::<wire::PublishAnswer, _>(HookName::Publish, permit, info, request)
            .await
    }

    /// `rpc`: the backend's result or error, passed through.
    pub async fn rpc(
        &self,
        info: &SessionInfo,
        method: &str,
        data: &Value,
    ) -> Result<wire::RpcAnswer, HookError> {
        let permit = self.begin(HookName::Rpc)?;
        let request = Request::new(info, wire::RpcBody { method, data }).to_bytes();
        self.call(HookName::Rpc, &permit, info, request).await
    }

    /// `message`, with a slot already taken by [`HookClient::begin`] (when
    /// the session starts the call; messages waiting in its stage do not
    /// count).
    pub async fn message(
        &self,
        permit: &Permit,
        info: &SessionInfo,
        body: wire::MessageBody,
    ) -> Result<wire::MessageAnswer, HookError> {
        let request = Request::new(info, body).to_bytes();
        self.call(HookName::Message, permit, info, request).await
    }

    /// A call whose answer carries `allow`; denials are counted.
    async fn gate<A, T>(
        &self,
        hook: HookName,
        permit: Permit,
        info: &SessionInfo,
        request: Vec<u8>,
    ) -> Result<Verdict<T>, HookError>
    where
        A: DeserializeOwned + Into<Verdict<T>>,
    {
        let verdict: Verdict<T> = self.call::<A>(hook, &permit, info, request).await?.into();
        if matches!(verdict, Verdict::Deny) {
            self.stats.of(hook).deny();
        }
        Ok(verdict)
    }

    /// POSTs `request` (a serialized [`Request`]) to the hook's URL, signed,
    /// within the timeout; the answer parsed as `A`. Every failure is counted
    /// with its kind.
    async fn call<A: DeserializeOwned>(
        &self,
        hook: HookName,
        _permit: &Permit,
        info: &SessionInfo,
        request: Vec<u8>,
    ) -> Result<A, HookError> {
        let started = Instant::now();
        let answer = match tokio::time::timeout(self.timeout, self.post(hook, request)).await {
            Ok(r) => r,
            Err(_) => Err(HookError::Timeout),
        };
        let counters = self.stats.of(hook);
        counters.observe(started.elapsed());
        let result = answer.and_then(|body| {
            wire::parse::<A>(&body).ok_or_else(|| {
                if !self.warned_malformed[hook.index()].swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "hook {} at {} answered with malformed JSON (logged once); \
                         treated as unavailable",
                        hook.as_str(),
                        info.listener_path
                    );
                }
                HookError::Malformed
            })
        });
        if let Err(e) = result {
            counters.fail(e);
            log::debug!(
                "hook {} failed listener={} tenant={} session={} error={e}",
                hook.as_str(),
                info.listener_path,
                info.tenant,
                info.id
            );
        }
        result
    }

    /// The request and its answer's body; the caller bounds the time (awc's
    /// clients here have no response timeout of their own).
    async fn post(&self, hook: HookName, body: Vec<u8>) -> Result<bytes::Bytes, HookError> {
        let url = self.urls[hook.index()].clone().ok_or(HookError::Connect)?;
        let client = CLIENT.with(|c| {
            c.get_or_init(|| crate::auth::http::pooled_client(CLIENT_TIMEOUT, IDLE_CONNECTION))
                .clone()
        });
        let signature = HeaderValue::try_from(self.signer.sign(&body))
            .expect("sha256= and hex digits are a valid header value");
        let mut resp = client
            .post(url)
            .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
            .insert_header((HeaderName::from_static(SIGNATURE_HEADER), signature))
            .send_body(body)
            .await
            .map_err(|e| match e {
                awc::error::SendRequestError::Timeout => HookError::Timeout,
                _ => HookError::Connect,
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(HookError::Status(status.as_u16()));
        }
        resp.body()
            .limit(self.max_answer_bytes)
            .await
            .map_err(|e| match e {
                awc::error::PayloadError::Overflow => HookError::Malformed,
                _ => HookError::Connect,
            })
    }
}
