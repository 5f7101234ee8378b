//! Who may subscribe and publish where.
//!
//! A listener says, per direction, `any` (everyone), `claim` (the patterns the
//! verified token grants), `hook` (the application's backend decides, per
//! operation) or, for publishing, `none` (clients never publish; admin, hooks
//! and bridges do). Claim mode reads
//! `{"subscribe": [patterns], "publish": [patterns]}` from the token claim the
//! listener names. A pattern is an exact channel name or `prefix*`; `{sub}`
//! inside it stands for the token's `sub`, and a token without `sub` matches no
//! pattern that uses it.
//!
//! Patterns are expanded once per token (at the handshake and on each
//! refresh), so a check is a few string comparisons with no allocation.

use serde_json::Value;

use super::name::{allowed_byte, ChannelName};

/// The placeholder for the token's subject.
const SUB: &str = "{sub}";
/// Most patterns kept from one claim direction; a token listing more has the
/// rest ignored (a token is bounded in size anyway).
pub const MAX_PATTERNS: usize = 256;

/// A listener's rule for one direction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Every session may.
    Any,
    /// Sessions whose token grants a matching pattern may.
    Claim,
    /// The backend's `subscribe` / `publish` hook decides. The static check
    /// here lets the operation through; the session asks the hook before the
    /// operation reaches its hub (`session/staged.rs`), and a refresh never
    /// asks again.
    Hook,
    /// No client may (publish only).
    Nobody,
}

/// One expanded pattern (with `{sub}` replaced).
#[derive(Clone, PartialEq, Eq, Debug)]
struct Pattern {
    text: Box<str>,
    /// `prefix*`: matches any channel starting with `text`.
    prefix: bool,
}

impl Pattern {
    /// Expands `raw` for `subject`; `None` when it can never match (invalid
    /// characters, `{sub}` without a subject, a subject that is not channel text).
    fn expand(raw: &str, subject: Option<&str>) -> Option<Self> {
        let (body, prefix) = match raw.strip_suffix('*') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        let text = if body.contains(SUB) {
            let sub = subject.filter(|s| !s.is_empty() && s.bytes().all(allowed_byte))?;
            body.replace(SUB, sub)
        } else {
            body.to_owned()
        };
        let valid = text.len() <= super::name::MAX_CHANNEL_BYTES
            && text.bytes().all(allowed_byte)
            && (prefix || !text.is_empty());
        valid.then(|| Self {
            text: text.into(),
            prefix,
        })
    }

    fn matches(&self, channel: &str) -> bool {
        if self.prefix {
            channel.starts_with(&*self.text)
        } else {
            channel == &*self.text
        }
    }
}

/// The patterns one token grants.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Grants {
    subscribe: Vec<Pattern>,
    publish: Vec<Pattern>,
}

impl Grants {
    /// Reads the claim `{"subscribe": [...], "publish": [...]}`. Anything else
    /// (missing, not an object, entries that are not strings) grants nothing
    /// for that part: fail closed.
    pub fn from_claim(claim: Option<&Value>, subject: Option<&str>) -> Self {
        let list = |key: &str| -> Vec<Pattern> {
            claim
                .and_then(|c| c.get(key))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter_map(|p| Pattern::expand(p, subject))
                        .take(MAX_PATTERNS)
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            subscribe: list("subscribe"),
            publish: list("publish"),
        }
    }

    fn any(patterns: &[Pattern], channel: &ChannelName) -> bool {
        patterns.iter().any(|p| p.matches(channel.as_str()))
    }
}

/// A listener's two rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AccessRules {
    /// Who may subscribe (`Any`, `Claim` or `Hook`).
    pub subscribe: Access,
    /// Who may publish.
    pub publish: Access,
}

impl AccessRules {
    /// Whether a session holding `grants` may subscribe to `channel`.
    pub fn may_subscribe(&self, grants: &Grants, channel: &ChannelName) -> bool {
        allowed(self.subscribe, &grants.subscribe, channel)
    }

    /// Whether a session holding `grants` may publish to `channel`.
    pub fn may_publish(&self, grants: &Grants, channel: &ChannelName) -> bool {
        allowed(self.publish, &grants.publish, channel)
    }
}

fn allowed(access: Access, patterns: &[Pattern], channel: &ChannelName) -> bool {
    match access {
        Access::Any => true,
        Access::Claim => Grants::any(patterns, channel),
        // Decided by the backend, after this check (see `Access::Hook`).
        Access::Hook => true,
        Access::Nobody => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    const CLAIM: AccessRules = AccessRules {
        subscribe: Access::Claim,
        publish: Access::Claim,
    };

    #[test]
    fn exact_prefix_and_sub() {
        let claim = json!({"subscribe": ["news", "doc:*", "user:{sub}", "inbox:{sub}:*"],
                           "publish": ["chat:{sub}"]});
        let g = Grants::from_claim(Some(&claim), Some("alice"));
        for ok in [
            "news",
            "doc:",
            "doc:1",
            "doc:1/2",
            "user:alice",
            "inbox:alice:x",
        ] {
            assert!(CLAIM.may_subscribe(&g, &ch(ok)), "{ok}");
        }
        for no in [
            "news2",
            "new",
            "doc",
            "user:bob",
            "user:alice2",
            "inbox:bob:x",
            "chat:alice",
        ] {
            assert!(!CLAIM.may_subscribe(&g, &ch(no)), "{no}");
        }
        assert!(CLAIM.may_publish(&g, &ch("chat:alice")));
        assert!(!CLAIM.may_publish(&g, &ch("news")));
    }

    #[test]
    fn sub_patterns_match_nothing_without_a_subject() {
        let claim = json!({"subscribe": ["user:{sub}", "{sub}*", "open"]});
        let g = Grants::from_claim(Some(&claim), None);
        assert!(!CLAIM.may_subscribe(&g, &ch("user:")));
        assert!(!CLAIM.may_subscribe(&g, &ch("user:x")));
        assert!(CLAIM.may_subscribe(&g, &ch("open")));
        // A subject that is not channel text cannot be smuggled into a pattern.
        let g = Grants::from_claim(Some(&claim), Some("a b"));
        assert!(!CLAIM.may_subscribe(&g, &ch("user:a")));
    }

    #[test]
    fn star_alone_allows_everything_and_bad_claims_grant_nothing() {
        let g = Grants::from_claim(Some(&json!({"subscribe": ["*"]})), None);
        assert!(CLAIM.may_subscribe(&g, &ch("anything")));
        assert!(!CLAIM.may_publish(&g, &ch("anything")));
        for bad in [
            json!("news"),
            json!({"subscribe": "news"}),
            json!({"subscribe": [1, null]}),
            json!({"subscribe": ["bad name", "a*b", ""]}),
        ] {
            let g = Grants::from_claim(Some(&bad), Some("x"));
            for c in ["news", "a", "ab", "a*b"] {
                if let Ok(c) = ChannelName::parse(c) {
                    assert!(!CLAIM.may_subscribe(&g, &c), "{bad} {c}");
                }
            }
        }
        assert_eq!(Grants::from_claim(None, None), Grants::default());
    }

    #[test]
    fn any_and_nobody_ignore_the_claim() {
        let rules = AccessRules {
            subscribe: Access::Any,
            publish: Access::Nobody,
        };
        let g = Grants::from_claim(Some(&json!({"publish": ["*"]})), None);
        assert!(rules.may_subscribe(&g, &ch("x")));
        assert!(!rules.may_publish(&g, &ch("x")));
    }

    #[test]
    fn hook_passes_the_static_check_for_the_backend_to_decide() {
        let rules = AccessRules {
            subscribe: Access::Hook,
            publish: Access::Hook,
        };
        let g = Grants::default();
        assert!(rules.may_subscribe(&g, &ch("x")));
        assert!(rules.may_publish(&g, &ch("x")));
    }
}
