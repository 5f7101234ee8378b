//! Settings of the backend bridge: `[listeners.hooks]` (the backend decides and
//! answers, synchronously) and `[[webhooks]]` (the backend hears what happened,
//! asynchronously). Secrets are never stored here: only the names of the
//! variables or files holding them. Validation is in [`check_hooks`] and
//! [`check_webhooks`].

use serde::{Deserialize, Serialize};

use super::problems::Problems;
use super::Mode;

/// One of the five hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookName {
    /// After the JWT, before the 101.
    Connect,
    /// A channel subscription (`subscribe = "hook"`).
    Subscribe,
    /// A channel publication (`publish = "hook"`).
    Publish,
    /// The `rpc` command.
    Rpc,
    /// Every inbound message of a payload/message listener.
    Message,
}

impl HookName {
    /// Every hook, in metric order.
    pub const ALL: [HookName; 5] = [
        HookName::Connect,
        HookName::Subscribe,
        HookName::Publish,
        HookName::Rpc,
        HookName::Message,
    ];

    /// The wire name, also the last segment of the hook's URL.
    pub fn as_str(self) -> &'static str {
        match self {
            HookName::Connect => "connect",
            HookName::Subscribe => "subscribe",
            HookName::Publish => "publish",
            HookName::Rpc => "rpc",
            HookName::Message => "message",
        }
    }

    /// Position in [`HookName::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// `[listeners.hooks]`: which hooks a listener asks its backend, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksSettings {
    /// Base URL; each hook POSTs to `url + "/" + name`.
    pub url: String,
    /// Which hooks are on.
    pub hooks: Vec<HookName>,
    /// Longest wait for one answer (connect included); beyond, a refusal.
    pub timeout_ms: u64,
    /// Hook calls in flight at once on this listener and node; beyond, refused
    /// as unavailable without asking the backend.
    pub max_in_flight: usize,
    /// Environment variable holding the signing secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// File holding the signing secret (instead of `secret_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
}

impl Default for HooksSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            hooks: Vec::new(),
            timeout_ms: 2000,
            max_in_flight: 256,
            secret_env: None,
            secret_file: None,
        }
    }
}

impl HooksSettings {
    /// True when `hook` is on.
    pub fn has(&self, hook: HookName) -> bool {
        self.hooks.contains(&hook)
    }
}

/// A webhook event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// A session was accepted (its socket is open).
    #[serde(rename = "session.opened")]
    SessionOpened,
    /// A session ended, with its close code.
    #[serde(rename = "session.closed")]
    SessionClosed,
    /// A channel got its first subscriber.
    #[serde(rename = "channel.occupied")]
    ChannelOccupied,
    /// A channel lost its last subscriber.
    #[serde(rename = "channel.vacated")]
    ChannelVacated,
}

impl WebhookEvent {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::SessionOpened => "session.opened",
            WebhookEvent::SessionClosed => "session.closed",
            WebhookEvent::ChannelOccupied => "channel.occupied",
            WebhookEvent::ChannelVacated => "channel.vacated",
        }
    }
}

/// `[[webhooks]]`: one backend endpoint hearing about sessions and channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Where the batches are POSTed.
    pub url: String,
    /// Which events it hears; at least one.
    pub events: Vec<WebhookEvent>,
    /// Environment variable holding the signing secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// File holding the signing secret (instead of `secret_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
    /// Events waiting (delivery in progress included); beyond, new events are
    /// dropped and counted.
    pub queue: usize,
    /// Bytes of serialized events waiting; beyond, new events are dropped and
    /// counted.
    pub queue_bytes: usize,
    /// Longest wait for one POST's answer; beyond, the batch is retried.
    pub timeout_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            events: Vec::new(),
            secret_env: None,
            secret_file: None,
            queue: 10_000,
            queue_bytes: 16 << 20,
            timeout_ms: 5000,
        }
    }
}

/// Problems of one `[listeners.hooks]` table (`at` = `listeners[i].hooks`).
pub(super) fn check_hooks(p: &mut Problems, at: &str, mode: Mode, h: &HooksSettings) {
    let key = |k: &str| format!("{at}.{k}");
    http_url(p, &key("url"), &h.url);
    if h.hooks.is_empty() {
        p.push(&key("hooks"), "name at least one hook");
    }
    for (j, hook) in h.hooks.iter().enumerate() {
        if h.hooks[..j].contains(hook) {
            p.push(
                &key(&format!("hooks[{j}]")),
                &format!("{:?} is listed twice", hook.as_str()),
            );
        }
        let at = key(&format!("hooks[{j}]"));
        match (hook, mode) {
            (HookName::Connect, _)
            | (HookName::Message, Mode::Payload | Mode::Message)
            | (HookName::Subscribe | HookName::Publish | HookName::Rpc, Mode::Channels) => {}
            (HookName::Message, Mode::Channels) => p.push(
                &at,
                "\"message\" is for payload and message listeners (channels mode has subscribe, publish and rpc)",
            ),
            // Channel commands exist only in channels mode.
            (HookName::Subscribe | HookName::Publish | HookName::Rpc, _) => p.push(
                &at,
                &format!(
                    "{:?} needs a channels-mode listener (this one is {})",
                    hook.as_str(),
                    mode.as_str()
                ),
            ),
        }
    }
    p.range(&key("timeout_ms"), h.timeout_ms, 10, 60_000);
    p.range(&key("max_in_flight"), h.max_in_flight as u64, 1, 1_000_000);
    secret_source(p, at, &h.secret_env, &h.secret_file);
}

/// Problems of one `[[webhooks]]` entry (`at` = `webhooks[i]`).
pub(super) fn check_webhooks(p: &mut Problems, at: &str, w: &WebhookSettings) {
    let key = |k: &str| format!("{at}.{k}");
    http_url(p, &key("url"), &w.url);
    if w.events.is_empty() {
        p.push(&key("events"), "name at least one event");
    }
    p.range(&key("queue"), w.queue as u64, 1, 10_000_000);
    p.range(&key("queue_bytes"), w.queue_bytes as u64, 1024, 1 << 32);
    p.range(&key("timeout_ms"), w.timeout_ms, 10, 60_000);
    secret_source(p, at, &w.secret_env, &w.secret_file);
}

fn http_url(p: &mut Problems, key: &str, url: &str) {
    if url.is_empty() {
        p.push(key, "required");
    } else if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.parse::<awc::http::Uri>().is_err()
    {
        p.push(key, "must be an http:// or https:// URL");
    }
}

/// Every request is signed: exactly one secret source, fail closed.
fn secret_source(p: &mut Problems, at: &str, env: &Option<String>, file: &Option<String>) {
    match (env, file) {
        (None, None) => p.push(
            &format!("{at}.secret_env"),
            "set secret_env or secret_file (every request is signed)",
        ),
        (Some(_), Some(_)) => p.push(
            &format!("{at}.secret_file"),
            "set secret_env or secret_file, not both",
        ),
        (Some(v), None) => p.env_name(&format!("{at}.secret_env"), v),
        (None, Some(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::load::{from_toml_with_env, LoadError};
    use crate::settings::validate::tests::problems;

    /// The problems of `toml`, whether reading or validation finds them.
    fn load_problems(toml: &str) -> Vec<String> {
        match from_toml_with_env(toml, Vec::new()) {
            Ok(s) => crate::settings::validate(&s),
            Err(LoadError::Invalid(p)) => p,
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn hooks_problems_name_their_keys() {
        let toml = r#"
[[listeners]]
path = "/a"
mode = "message"
[listeners.auth]
mode = "none"
[listeners.tenant]
from = "static"
static_id = "t"
[listeners.hooks]
url = "ftp://x"
hooks = ["connect", "connect", "rpc"]
timeout_ms = 0
max_in_flight = 0
secret_env = "A"
secret_file = "/f"
"#;
        let p = problems(toml);
        for want in [
            "listeners[0].hooks.url: must be an http:// or https:// URL",
            "listeners[0].hooks.hooks[1]: \"connect\" is listed twice",
            "listeners[0].hooks.hooks[2]: \"rpc\" needs a channels-mode listener (this one is message)",
            "listeners[0].hooks.timeout_ms: must be between 10 and 60000, got 0",
            "listeners[0].hooks.max_in_flight: must be between 1 and 1000000, got 0",
            "listeners[0].hooks.secret_file: set secret_env or secret_file, not both",
        ] {
            assert!(p.iter().any(|l| l == want), "missing {want:?} in {p:#?}");
        }
    }

    #[test]
    fn hooks_need_a_url_a_hook_and_a_secret() {
        let toml = "[[listeners]]\npath = \"/a\"\n[listeners.hooks]\n";
        let p = problems(toml);
        for want in [
            "listeners[0].hooks.url: required",
            "listeners[0].hooks.hooks: name at least one hook",
            "listeners[0].hooks.secret_env: set secret_env or secret_file (every request is signed)",
        ] {
            assert!(p.iter().any(|l| l == want), "missing {want:?} in {p:#?}");
        }
    }

    #[test]
    fn unknown_hook_names_are_refused() {
        let toml = "[[listeners]]\npath = \"/a\"\n[listeners.hooks]\nurl = \"http://h\"\nhooks = [\"connect\", \"disconnect\"]\nsecret_env = \"S\"\n";
        let p = load_problems(toml);
        assert!(
            p.iter()
                .any(|l| l.contains("listeners[0].hooks.hooks") && l.contains("disconnect")),
            "{p:#?}"
        );
    }

    #[test]
    fn channels_listeners_take_channel_hooks_but_not_the_message_hook() {
        let toml = "[[listeners]]\npath = \"/c\"\nmode = \"channels\"\n[listeners.hooks]\nurl = \"http://h\"\nhooks = [\"connect\", \"message\", \"rpc\", \"subscribe\", \"publish\"]\nsecret_env = \"S\"\n";
        let p = problems(toml);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("listeners[0].hooks.hooks[1]: \"message\" is for payload"),
            "{p:#?}"
        );
    }

    #[test]
    fn a_valid_hooks_table_passes() {
        let toml = "[[listeners]]\npath = \"/a\"\n[listeners.hooks]\nurl = \"http://127.0.0.1:3000/wsplus\"\nhooks = [\"connect\", \"message\"]\nsecret_env = \"S\"\n";
        assert!(problems(toml).is_empty(), "{:#?}", problems(toml));
    }

    #[test]
    fn webhook_problems_name_their_keys() {
        let toml = "[[webhooks]]\nurl = \"\"\nevents = []\nqueue = 0\n";
        let p = problems(toml);
        for want in [
            "webhooks[0].url: required",
            "webhooks[0].events: name at least one event",
            "webhooks[0].queue: must be between 1 and 10000000, got 0",
            "webhooks[0].secret_env: set secret_env or secret_file (every request is signed)",
        ] {
            assert!(p.iter().any(|l| l == want), "missing {want:?} in {p:#?}");
        }
    }

    #[test]
    fn unknown_webhook_events_are_refused() {
        let toml = "[[webhooks]]\nurl = \"http://h/e\"\nevents = [\"session.opened\", \"session.reopened\"]\nsecret_env = \"W\"\n";
        let p = load_problems(toml);
        assert!(
            p.iter()
                .any(|l| l.starts_with("webhooks[0].events[1]") && l.contains("session.reopened")),
            "{p:#?}"
        );
    }
}
