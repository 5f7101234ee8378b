//! The no-echo rule of a bridge whose `into` and `from` name the same local
//! tenant.
//!
//! * Local → upstream → local: a message the bridge forwarded upstream may be
//!   sent back down by the upstream (a wsplus tenant-scope listener delivers to
//!   the sender too). Each forwarded message leaves a fingerprint of its
//!   [`content`]; the first frame coming down with the same content within
//!   [`ECHO_TTL`] consumes that fingerprint and is not re-published. One
//!   forwarded message cancels at most one frame coming back.
//! * Upstream → local → upstream: the bridge publishes with itself as origin
//!   (`PublishFrom`), so its own room membership never receives what it
//!   published and nothing is forwarded back up. In a cluster, a bridge of the
//!   same name on another node publishes the same upstream frames and the
//!   cluster delivers them here: the `from` member drops those stamped by its
//!   name and (Redis backend) copies of frames it published itself, with a
//!   second filter fed by the connection loop.
//!
//! Content ignores the `_session` stamp (the upstream replaces it) and undoes
//! the `{"payload": "<text>"}` wrapper of message mode, so the rule holds
//! whichever modes the two sides use.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use wsplus_actors::protocol::{Frame, SESSION_KEY};
use wsplus_actors::Delivery;

/// How long a forwarded message waits for its echo.
pub const ECHO_TTL: Duration = Duration::from_secs(10);

/// What a message says, without the routing stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content<'a> {
    /// Text (a JSON object re-serialized without `_session`, or the text itself).
    Text(Cow<'a, str>),
    /// Binary payload.
    Binary(&'a [u8]),
}

/// The content of a text message: a JSON object loses its `_session`; an
/// object left with only a string `payload` is that string (message mode's
/// wrapper undone); anything else is the text itself.
pub fn content(text: &str) -> Cow<'_, str> {
    if !text.trim_start().starts_with('{') {
        return Cow::Borrowed(text);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut map)) => {
            map.remove(SESSION_KEY);
            unwrap_payload(map)
        }
        _ => Cow::Borrowed(text),
    }
}

fn unwrap_payload(mut map: Map<String, Value>) -> Cow<'static, str> {
    if map.len() == 1 && map.get("payload").is_some_and(Value::is_string) {
        if let Some(Value::String(s)) = map.remove("payload") {
            return Cow::Owned(s);
        }
    }
    // Serializing a parsed Value cannot fail.
    Cow::Owned(serde_json::to_string(&Value::Object(map)).unwrap_or_default())
}

fn fingerprint(c: &Content<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    match c {
        Content::Text(t) => (0u8, t.as_ref()).hash(&mut h),
        Content::Binary(b) => (1u8, *b).hash(&mut h),
    }
    h.finish()
}

/// Something whose [`Content`] can be fingerprinted: a frame received
/// upstream or a delivery sent upstream.
pub trait HasContent {
    /// What it says, without the routing stamp.
    fn content(&self) -> Content<'_>;
}

impl HasContent for Delivery {
    fn content(&self) -> Content<'_> {
        match self {
            Delivery::Text(t) => Content::Text(content(t)),
            Delivery::Binary(b) => Content::Binary(b),
        }
    }
}

impl HasContent for Frame {
    fn content(&self) -> Content<'_> {
        match self {
            Frame::Text(t) => Content::Text(content(t)),
            Frame::Binary(b) => Content::Binary(b),
        }
    }
}

/// An [`EchoFilter`] shared by a bridge's tasks (all on one thread).
pub type SharedFilter = std::rc::Rc<std::cell::RefCell<EchoFilter>>;

/// Fingerprints of messages that crossed the bridge in one direction, waiting
/// for their copy to come back the other way. Bounded: beyond `capacity` the
/// oldest is forgotten, and each expires after [`ECHO_TTL`].
#[derive(Debug)]
pub struct EchoFilter {
    pending: VecDeque<(u64, Instant)>,
    capacity: usize,
}

impl EchoFilter {
    /// A filter remembering at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers a message that crossed the bridge.
    pub fn remember(&mut self, m: &impl HasContent) {
        self.expire(Instant::now());
        if self.pending.len() == self.capacity {
            self.pending.pop_front();
        }
        self.pending
            .push_back((fingerprint(&m.content()), Instant::now()));
    }

    /// True when `m` is the copy of a remembered message (which is then
    /// forgotten: one message, one copy).
    pub fn take(&mut self, m: &impl HasContent) -> bool {
        self.expire(Instant::now());
        if self.pending.is_empty() {
            return false;
        }
        let fp = fingerprint(&m.content());
        match self.pending.iter().position(|(p, _)| *p == fp) {
            Some(i) => {
                self.pending.remove(i);
                true
            }
            None => false,
        }
    }

    /// Forgets everything (a new connection cannot carry an old one's echoes).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    fn expire(&mut self, now: Instant) {
        while self
            .pending
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) >= ECHO_TTL)
        {
            self.pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Frame {
        Frame::Text(s.into())
    }

    #[test]
    fn content_ignores_the_stamp_and_the_payload_wrapper() {
        assert_eq!(content("hello"), "hello");
        assert_eq!(content(r#"{"payload":"hi","_session":{"id":"x"}}"#), "hi");
        assert_eq!(content(r#"{"a": 1, "_session": {}}"#), r#"{"a":1}"#);
        assert_eq!(content(r#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(content(r#"{"payload":[1]}"#), r#"{"payload":[1]}"#);
        assert_eq!(content("{broken"), "{broken");
    }

    #[test]
    fn one_message_cancels_exactly_one_echo() {
        let mut f = EchoFilter::new(8);
        f.remember(&Delivery::Text(
            r#"{"m":1,"_session":{"id":"local"}}"#.into(),
        ));
        assert!(!f.take(&text(r#"{"m":2}"#)));
        assert!(f.take(&text(r#"{"m":1,"_session":{"id":"upstream"}}"#)));
        assert!(!f.take(&text(r#"{"m":1}"#)), "second copy is genuine");
    }

    #[test]
    fn payload_and_message_modes_match_each_other() {
        let mut f = EchoFilter::new(8);
        f.remember(&Delivery::Text("plain".into()));
        assert!(f.take(&text(r#"{"payload":"plain","_session":{}}"#)));
        f.remember(&Delivery::Binary(bytes::Bytes::from_static(b"\x00\x01")));
        assert!(!f.take(&text("\u{0}\u{1}")));
        assert!(f.take(&Frame::Binary(bytes::Bytes::from_static(b"\x00\x01"))));
    }

    #[test]
    fn capacity_bounds_memory_and_clear_forgets() {
        let mut f = EchoFilter::new(2);
        for m in ["a", "b", "c"] {
            f.remember(&Delivery::Text(m.into()));
        }
        assert!(!f.take(&text("a")), "oldest forgotten");
        assert!(f.take(&text("c")));
        f.clear();
        assert!(!f.take(&text("b")));
    }
}
