//! `[listeners.channels]`: the settings of a `mode = "channels"` listener
//! (the `wsplus.v1` protocol), their validation, and their translation into
//! the policy the actors enforce.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wsplus_actors::channels::{Access, AccessRules, ChannelsPolicy};

use super::problems::Problems;
use super::{HookName, ListenerSettings, Mode, Scope};

/// Who may subscribe or publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelAccess {
    /// Every session.
    Any,
    /// Sessions whose token claim grants a matching pattern.
    Claim,
    /// The application's backend decides (needs backend hooks).
    Hook,
    /// No client (publish only: admin, hooks and bridges publish).
    None,
}

/// `[listeners.channels]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsSettings {
    /// any | claim | hook.
    pub subscribe: ChannelAccess,
    /// any | claim | hook | none.
    pub publish: ChannelAccess,
    /// The token claim holding `{"subscribe": [...], "publish": [...]}`.
    pub claim: String,
    /// Client subscriptions per session.
    pub max_per_session: usize,
    /// Publications kept per channel; history is on when this and
    /// `history_ttl_s` are both > 0.
    pub history_size: usize,
    /// Seconds a publication stays in history.
    pub history_ttl_s: u64,
    /// Track who is subscribed.
    pub presence: bool,
    /// Push join/leave to a channel's subscribers (needs `presence`).
    pub join_leave: bool,
    /// Push `expiring` this many seconds before the token's `exp`.
    pub refresh_notice_s: u64,
}

impl Default for ChannelsSettings {
    fn default() -> Self {
        Self {
            subscribe: ChannelAccess::Any,
            publish: ChannelAccess::Any,
            claim: "channels".into(),
            max_per_session: 128,
            history_size: 0,
            history_ttl_s: 0,
            presence: false,
            join_leave: false,
            refresh_notice_s: 30,
        }
    }
}

/// Most subscriptions one session may hold.
pub const MAX_PER_SESSION_LIMIT: usize = 100_000;
/// Most publications kept per channel.
pub const MAX_HISTORY_SIZE: usize = 100_000;

impl ChannelsSettings {
    /// The policy the actors enforce.
    pub fn policy(&self) -> ChannelsPolicy {
        ChannelsPolicy {
            access: AccessRules {
                subscribe: access(self.subscribe),
                publish: access(self.publish),
            },
            claim: self.claim.clone(),
            max_per_session: self.max_per_session,
            history_size: self.history_size,
            history_ttl: Duration::from_secs(self.history_ttl_s),
            presence: self.presence,
            join_leave: self.join_leave,
            refresh_notice: Duration::from_secs(self.refresh_notice_s),
        }
    }
}

fn access(a: ChannelAccess) -> Access {
    match a {
        ChannelAccess::Any => Access::Any,
        ChannelAccess::Claim => Access::Claim,
        ChannelAccess::Hook => Access::Hook,
        ChannelAccess::None => Access::Nobody,
    }
}

/// The problems of a listener's channels settings (`at` = `listeners[N]`).
pub(super) fn validate(p: &mut Problems, at: &str, l: &ListenerSettings) {
    let key = |k: &str| format!("{at}.{k}");
    let Some(c) = &l.channels else {
        return;
    };
    if l.mode != Mode::Channels {
        p.push(&key("channels"), "only for mode = \"channels\"");
        return;
    }
    for (hook, a) in [
        (HookName::Subscribe, c.subscribe),
        (HookName::Publish, c.publish),
    ] {
        let name = hook.as_str();
        match a {
            ChannelAccess::Any | ChannelAccess::Claim => {}
            ChannelAccess::None if hook == HookName::Publish => {}
            ChannelAccess::None => p.push(
                &key("channels.subscribe"),
                "must be \"any\", \"claim\" or \"hook\"",
            ),
            ChannelAccess::Hook => match &l.hooks {
                None => p.push(
                    &key(&format!("channels.{name}")),
                    &format!("\"hook\" needs [listeners.hooks] with a url and {name:?} in hooks"),
                ),
                Some(h) if h.url.is_empty() => p.push(
                    &key(&format!("channels.{name}")),
                    "\"hook\" needs hooks.url (the backend to ask)",
                ),
                Some(h) if !h.has(hook) => p.push(
                    &key(&format!("channels.{name}")),
                    &format!("\"hook\" needs {name:?} in hooks.hooks"),
                ),
                Some(_) => {}
            },
        }
    }
    let claim_used = c.subscribe == ChannelAccess::Claim || c.publish == ChannelAccess::Claim;
    if claim_used && c.claim.trim().is_empty() {
        p.push(&key("channels.claim"), "must not be empty in claim mode");
    }
    p.range(
        &key("channels.max_per_session"),
        c.max_per_session as u64,
        1,
        MAX_PER_SESSION_LIMIT as u64,
    );
    p.range(
        &key("channels.history_size"),
        c.history_size as u64,
        0,
        MAX_HISTORY_SIZE as u64,
    );
    p.range(
        &key("channels.history_ttl_s"),
        c.history_ttl_s,
        0,
        30 * 86400,
    );
    p.range(
        &key("channels.refresh_notice_s"),
        c.refresh_notice_s,
        0,
        86400,
    );
    if c.join_leave && !c.presence {
        p.push(
            &key("channels.join_leave"),
            "needs channels.presence = true",
        );
    }
}

/// The scope rule of channels mode (called for every listener).
pub(super) fn validate_scope(p: &mut Problems, at: &str, l: &ListenerSettings) {
    if l.mode == Mode::Channels && l.scope == Scope::Session {
        p.push(
            &format!("{at}.scope"),
            "must be \"tenant\" or \"global\" with mode = \"channels\"",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::validate::tests::problems;

    #[test]
    fn defaults_are_valid_and_apply_without_a_section() {
        let toml = "[[listeners]]\npath = \"/c\"\nmode = \"channels\"\n";
        assert!(problems(toml).is_empty());
        let toml = "[[listeners]]\npath = \"/c\"\nmode = \"channels\"\nscope = \"global\"\n[listeners.channels]\nsubscribe = \"claim\"\npublish = \"none\"\n";
        assert!(problems(toml).is_empty());
    }

    #[test]
    fn every_channels_problem_names_its_key() {
        let toml = r#"
[[listeners]]
path = "/a"
mode = "channels"
scope = "session"
[listeners.channels]
subscribe = "none"
publish = "hook"
claim = " "
max_per_session = 0
history_size = 100001
history_ttl_s = 2592001
refresh_notice_s = 86401
join_leave = true
[[listeners]]
path = "/b"
mode = "message"
[listeners.channels]
subscribe = "claim"
[[listeners]]
path = "/c"
mode = "channels"
[listeners.channels]
subscribe = "hook"
publish = "claim"
claim = ""
"#;
        let p = problems(toml);
        let expect = [
            "listeners[0].scope: must be \"tenant\" or \"global\" with mode = \"channels\"",
            "listeners[0].channels.subscribe: must be \"any\", \"claim\" or \"hook\"",
            "listeners[0].channels.publish: \"hook\" needs [listeners.hooks] with a url and \"publish\" in hooks",
            "listeners[0].channels.max_per_session: must be between 1 and 100000, got 0",
            "listeners[0].channels.history_size: must be between 0 and 100000, got 100001",
            "listeners[0].channels.history_ttl_s: must be between 0 and 2592000, got 2592001",
            "listeners[0].channels.refresh_notice_s: must be between 0 and 86400, got 86401",
            "listeners[0].channels.join_leave: needs channels.presence = true",
            "listeners[1].channels: only for mode = \"channels\"",
            "listeners[2].channels.subscribe: \"hook\" needs [listeners.hooks] with a url and \"subscribe\" in hooks",
            "listeners[2].channels.claim: must not be empty in claim mode",
        ];
        for e in expect {
            assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn hook_permissions_need_the_hook_on_and_a_url() {
        let listener = |path: &str, hooks: &str, url: &str| {
            format!(
                "[[listeners]]\npath = \"{path}\"\nmode = \"channels\"\n[listeners.channels]\nsubscribe = \"hook\"\npublish = \"hook\"\n[listeners.hooks]\nurl = \"{url}\"\nhooks = [{hooks}]\nsecret_env = \"S\"\n"
            )
        };
        let ok = listener(
            "/a",
            "\"subscribe\", \"publish\", \"rpc\"",
            "http://127.0.0.1:3000/h",
        );
        assert!(problems(&ok).is_empty(), "{:#?}", problems(&ok));
        let toml = [
            listener("/a", "\"publish\"", "http://h/"),
            listener("/b", "\"subscribe\"", ""),
        ]
        .concat();
        let p = problems(&toml);
        let expect = [
            "listeners[0].channels.subscribe: \"hook\" needs \"subscribe\" in hooks.hooks",
            "listeners[1].channels.subscribe: \"hook\" needs hooks.url (the backend to ask)",
            "listeners[1].channels.publish: \"hook\" needs hooks.url (the backend to ask)",
            "listeners[1].hooks.url: required",
        ];
        for e in expect {
            assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn bridges_stay_off_channels_listeners() {
        let toml = r#"
[[listeners]]
path = "/c"
mode = "channels"
[[bridges]]
name = "hq"
url = "ws://h/"
auth = "none"
mode = "channels"
into = { listener = "/c", tenant = "acme" }
"#;
        let p = problems(toml);
        assert_eq!(
            p,
            [
                "bridges[0].mode: must be \"payload\" or \"message\"",
                "bridges[0].into.listener: \"/c\" is a channels-mode listener; bridges join payload or message listeners",
            ],
            "{p:#?}"
        );
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        let bad = "[[listeners]]\npath = \"/c\"\nmode = \"channels\"\n[listeners.channels]\nsubscribers = \"any\"\n";
        assert!(crate::settings::load::from_toml_with_env(bad, Vec::new()).is_err());
        let bad = "[[listeners]]\npath = \"/c\"\nmode = \"channels\"\n[listeners.channels]\npublish = \"everyone\"\n";
        assert!(crate::settings::load::from_toml_with_env(bad, Vec::new()).is_err());
    }

    #[test]
    fn policy_carries_every_key() {
        let hooked = super::ChannelsSettings {
            subscribe: super::ChannelAccess::Hook,
            publish: super::ChannelAccess::Hook,
            ..Default::default()
        }
        .policy();
        assert_eq!(
            (hooked.access.subscribe, hooked.access.publish),
            (
                wsplus_actors::channels::Access::Hook,
                wsplus_actors::channels::Access::Hook
            )
        );
        let s = super::ChannelsSettings {
            subscribe: super::ChannelAccess::Claim,
            publish: super::ChannelAccess::None,
            max_per_session: 3,
            history_size: 10,
            history_ttl_s: 60,
            presence: true,
            join_leave: true,
            refresh_notice_s: 5,
            claim: "perm".into(),
        };
        let p = s.policy();
        assert_eq!(p.access.subscribe, wsplus_actors::channels::Access::Claim);
        assert_eq!(p.access.publish, wsplus_actors::channels::Access::Nobody);
        assert_eq!(
            (p.max_per_session, p.history_size, p.history_ttl.as_secs()),
            (3, 10, 60)
        );
        assert!(p.presence && p.join_leave && p.history());
        assert_eq!(p.refresh_notice.as_secs(), 5);
        assert_eq!(p.claim, "perm");
    }
}
