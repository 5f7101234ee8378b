//! `[[webhooks]]`: the backend hears about sessions and channels, afterwards
//! and at least once.
//!
//! Each webhook has its own bounded [`EventQueue`] and one dispatcher task.
//! Producers (sessions opening and closing on any worker, the channels code)
//! serialize the event once, push it into every interested queue and wake the
//! dispatchers; they never wait. A dispatcher sends the head of its queue as
//! one signed POST `{"events": [...]}` of at most [`BATCH_EVENTS`] events,
//! after waiting at most [`BATCH_WAIT`] for a batch to fill, and retries the
//! same head until a 2xx, backing off from [`RETRY_MIN`] doubling to
//! [`RETRY_MAX`]. Events are removed only once delivered, so an outage of the
//! backend loses nothing the queue could hold; beyond its bounds new events
//! are dropped and counted (`wsplus_webhook_dropped_total`). Queues live in
//! memory: events still queued when the process stops are lost.

mod queue;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use awc::http::header::CONTENT_TYPE;
use serde::Serialize;
use tokio::sync::Notify;
use wsplus_actors::SessionInfo;

pub use queue::EventQueue;

use super::{HooksSetupError, Signer, SIGNATURE_HEADER};
use crate::env::Env;
use crate::settings::{WebhookEvent, WebhookSettings};

/// Most events in one POST.
pub const BATCH_EVENTS: usize = 100;
/// Longest an event waits for its batch to fill.
pub const BATCH_WAIT: Duration = Duration::from_secs(1);
/// First retry delay after a failed POST.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// One event as the backend receives it.
#[derive(Debug, Serialize)]
struct Event<'a> {
    event: &'static str,
    time_ms: u64,
    listener: &'a str,
    /// `None` (null) for a channel of a global-scope listener.
    #[serde(rename = "tenantId")]
    tenant_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<SessionRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct SessionRef<'a> {
    id: &'a str,
    subject: Option<&'a str>,
}

/// One webhook's live state, shared by producers and its dispatcher.
#[derive(Debug)]
struct Sink {
    url: String,
    events: Vec<WebhookEvent>,
    signer: Signer,
    timeout: Duration,
    queue: Mutex<EventQueue>,
    wake: Notify,
    dropped: AtomicU64,
    delivered: AtomicU64,
    failed_posts: AtomicU64,
}

/// Figures of one webhook (metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSnapshot {
    /// Events waiting (the batch being delivered included).
    pub queued: u64,
    /// Bytes waiting.
    pub queued_bytes: u64,
    /// Events refused by a full queue.
    pub dropped: u64,
    /// Events the backend acknowledged.
    pub delivered: u64,
    /// POSTs that failed (and were retried).
    pub failed_posts: u64,
}

/// Every configured webhook. Cheap to share; producers never block.
#[derive(Debug, Default)]
pub struct Webhooks {
    sinks: Vec<Arc<Sink>>,
}

impl Webhooks {
    /// The webhooks of `settings`, secrets read from `env`. Their dispatchers
    /// run once [`Webhooks::start`] is called.
    pub fn new(settings: &[WebhookSettings], env: &Env) -> Result<Self, HooksSetupError> {
        let sinks = settings
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let signer =
                    Signer::from_source(w.secret_env.as_deref(), w.secret_file.as_deref(), env)
                        .map_err(|problem| HooksSetupError::Secret {
                            key: format!("webhooks[{i}]"),
                            problem,
                        })?;
                Ok(Arc::new(Sink {
                    url: w.url.clone(),
                    events: w.events.clone(),
                    signer,
                    timeout: Duration::from_millis(w.timeout_ms),
                    queue: Mutex::new(EventQueue::new(w.queue, w.queue_bytes)),
                    wake: Notify::new(),
                    dropped: AtomicU64::new(0),
                    delivered: AtomicU64::new(0),
                    failed_posts: AtomicU64::new(0),
                }))
            })
            .collect::<Result<_, HooksSetupError>>()?;
        Ok(Self { sinks })
    }

    /// True when no webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Starts one dispatcher per webhook on the current actix arbiter.
    pub fn start(&self) {
        for sink in &self.sinks {
            actix_rt::spawn(dispatch(sink.clone()));
        }
    }

    /// Each webhook's figures, in configuration order.
    pub fn snapshot(&self) -> Vec<WebhookSnapshot> {
        self.sinks
            .iter()
            .map(|s| {
                let (queued, bytes) = {
                    let q = s.queue.lock().unwrap_or_else(|p| p.into_inner());
                    (q.len(), q.bytes())
                };
                WebhookSnapshot {
                    queued: queued as u64,
                    queued_bytes: bytes as u64,
                    dropped: s.dropped.load(Ordering::Relaxed),
                    delivered: s.delivered.load(Ordering::Relaxed),
                    failed_posts: s.failed_posts.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// `session.opened` for `info`.
    pub fn session_opened(&self, info: &SessionInfo) {
        self.session_event(WebhookEvent::SessionOpened, info, None);
    }

    /// `session.closed` for `info`, with its close code.
    pub fn session_closed(&self, info: &SessionInfo, code: u16) {
        self.session_event(WebhookEvent::SessionClosed, info, Some(code));
    }

    /// True when some webhook hears `channel.occupied` or `channel.vacated`
    /// (the cluster only counts channel occupancy then).
    pub fn wants_channel_events(&self) -> bool {
        self.sinks.iter().any(|s| {
            s.events.iter().any(|e| {
                matches!(
                    e,
                    WebhookEvent::ChannelOccupied | WebhookEvent::ChannelVacated
                )
            })
        })
    }

    /// `channel.occupied`: `channel` of `tenant` (`None`: a global-scope
    /// listener) on `listener` got its first subscriber (in the whole
    /// cluster: the caller decides).
    pub fn channel_occupied(&self, listener: &str, tenant: Option<&str>, channel: &str) {
        self.channel_event(WebhookEvent::ChannelOccupied, listener, tenant, channel);
    }

    /// `channel.vacated`: `channel` lost its last subscriber.
    pub fn channel_vacated(&self, listener: &str, tenant: Option<&str>, channel: &str) {
        self.channel_event(WebhookEvent::ChannelVacated, listener, tenant, channel);
    }

    fn session_event(&self, kind: WebhookEvent, info: &SessionInfo, code: Option<u16>) {
        self.emit(kind, || Event {
            event: kind.as_str(),
            time_ms: now_ms(),
            listener: &info.listener_path,
            tenant_id: Some(info.tenant.as_str()),
            session: Some(SessionRef {
                id: info.id.as_str(),
                subject: info.subject.as_deref(),
            }),
            code,
            channel: None,
        });
    }

    fn channel_event(
        &self,
        kind: WebhookEvent,
        listener: &str,
        tenant: Option<&str>,
        channel: &str,
    ) {
        self.emit(kind, || Event {
            event: kind.as_str(),
            time_ms: now_ms(),
            listener,
            tenant_id: tenant,
            session: None,
            code: None,
            channel: Some(channel),
        });
    }

    /// Serializes the event once (only if some webhook wants it) and queues it
    /// in every interested webhook.
    fn emit<'a>(&self, kind: WebhookEvent, event: impl FnOnce() -> Event<'a>) {
        let mut wanted = self
            .sinks
            .iter()
            .filter(|s| s.events.contains(&kind))
            .peekable();
        if wanted.peek().is_none() {
            return;
        }
        // Serializing strings and integers cannot fail.
        let text = serde_json::to_string(&event()).unwrap_or_default();
        let now = Instant::now();
        for sink in wanted {
            let queued = sink
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(text.clone(), now);
            if queued {
                sink.wake.notify_one();
            } else {
                sink.dropped.fetch_add(1, Ordering::Relaxed);
                log::debug!("webhook queue full, event {} dropped", kind.as_str());
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One webhook's delivery loop: wait for events, let a batch fill (at most
/// [`BATCH_WAIT`] after its oldest event, or [`BATCH_EVENTS`]), POST it until
/// a 2xx, acknowledge, repeat.
async fn dispatch(sink: Arc<Sink>) {
    let client = crate::auth::http::client(sink.timeout);
    loop {
        let oldest = sink
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .oldest();
        let Some(oldest) = oldest else {
            sink.wake.notified().await;
            continue;
        };
        let deadline = oldest + BATCH_WAIT;
        while sink.queue.lock().unwrap_or_else(|p| p.into_inner()).len() < BATCH_EVENTS
            && Instant::now() < deadline
        {
            let sleep = actix_rt::time::sleep_until(deadline.into());
            tokio::select! {
                _ = sink.wake.notified() => {}
                _ = sleep => break,
            }
        }
        let (body, n) = sink
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .batch(BATCH_EVENTS);
        let mut delay = RETRY_MIN;
        while let Err(problem) = post(&client, &sink, &body).await {
            sink.failed_posts.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "webhook delivery failed ({problem}); {n} events kept, retrying in {}s",
                delay.as_secs()
            );
            actix_rt::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
        sink.queue.lock().unwrap_or_else(|p| p.into_inner()).ack(n);
        sink.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One signed POST; Ok on a 2xx. The error says what happened without the URL
/// (which may carry credentials).
async fn post(client: &awc::Client, sink: &Sink, body: &str) -> Result<(), String> {
    let signature = sink.signer.sign(body.as_bytes());
    let send = client
        .post(&sink.url)
        .timeout(sink.timeout)
        .insert_header((CONTENT_TYPE, "application/json"))
        .insert_header((SIGNATURE_HEADER, signature))
        .send_body(body.to_owned());
    match tokio::time::timeout(sink.timeout, send).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(e)) => Err(format!("request failed: {e}")),
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("HTTP {}", resp.status().as_u16())),
    }
}
