//! The `wsplus.v1` codec: command lines in, replies and pushes out. Free of
//! actors and sockets so it can be unit-tested and fuzzed.
//!
//! A text frame carries one or more JSON objects separated by `\n`
//! (serialized JSON never contains a raw newline). Every line is parsed on its
//! own; a bad line gets a `bad_request` reply (with its `id` when one could be
//! read) and never closes the connection. Replies and pushes are serialized
//! once, here: a publication's push is built once and its bytes shared by
//! every subscriber's delivery.

use bytestring::ByteString;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{ChannelError, ErrorCode};
use super::name::ChannelName;
use crate::delivery::Delivery;

/// The protocol name, also the WebSocket subprotocol.
pub const PROTOCOL: &str = "wsplus.v1";

/// A command id chosen by the client: an integer ≥ 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct CommandId(u64);

impl CommandId {
    /// The id, when `n` ≥ 1.
    pub fn new(n: u64) -> Option<Self> {
        (n >= 1).then_some(Self(n))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A position in a channel's stream (history and recovery).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StreamPosition {
    /// The stream's epoch.
    pub epoch: String,
    /// The last offset seen.
    pub offset: u64,
}

/// One operation with its fields.
#[derive(Clone, PartialEq, Debug)]
pub enum Command {
    /// Start receiving a channel's publications.
    Subscribe {
        /// The channel.
        channel: ChannelName,
        /// Recover from this position (history).
        since: Option<StreamPosition>,
    },
    /// Stop receiving a channel's publications.
    Unsubscribe {
        /// The channel.
        channel: ChannelName,
    },
    /// Publish `data` to every subscriber of the channel.
    Publish {
        /// The channel.
        channel: ChannelName,
        /// Any JSON value (`null` included).
        data: Value,
    },
    /// Replace the session's token.
    Refresh {
        /// The new token (never logged or echoed).
        token: String,
    },
    /// Who is subscribed to a channel.
    Presence {
        /// The channel.
        channel: ChannelName,
    },
    /// A channel's kept publications.
    History {
        /// The channel.
        channel: ChannelName,
        /// The newest `limit` publications; all when `None`.
        limit: Option<u64>,
        /// Only those after this position.
        since: Option<StreamPosition>,
    },
    /// A call to the application's backend.
    Rpc {
        /// The method name.
        method: String,
        /// Its argument.
        data: Value,
    },
    /// Keep-alive (browsers cannot send WebSocket pings).
    Ping,
}

impl Command {
    /// The `op` name.
    pub fn op(&self) -> &'static str {
        match self {
            Command::Subscribe { .. } => "subscribe",
            Command::Unsubscribe { .. } => "unsubscribe",
            Command::Publish { .. } => "publish",
            Command::Refresh { .. } => "refresh",
            Command::Presence { .. } => "presence",
            Command::History { .. } => "history",
            Command::Rpc { .. } => "rpc",
            Command::Ping => "ping",
        }
    }
}

/// A parsed command line.
#[derive(Clone, PartialEq, Debug)]
pub struct Request {
    /// The client's id, echoed in the reply.
    pub id: CommandId,
    /// What to do.
    pub command: Command,
}

/// A line that could not be parsed: the reply it gets.
#[derive(Clone, PartialEq, Debug)]
pub struct BadLine {
    /// The line's id, when it had a valid one.
    pub id: Option<CommandId>,
    /// `bad_request` or `unknown_op`.
    pub error: ChannelError,
}

impl BadLine {
    fn new(id: Option<CommandId>, error: ChannelError) -> Self {
        Self { id, error }
    }

    /// The serialized reply.
    pub fn reply(&self) -> String {
        reply_err(self.id, &self.error)
    }
}

/// The lines of a text frame: split on `\n`; blank lines (a trailing newline,
/// `\r\n` endings) are skipped. A frame with no line at all yields one empty
/// line, so that it gets its `bad_request` like any other malformed input.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut any = false;
    let mut parts = text.split('\n');
    std::iter::from_fn(move || loop {
        match parts.next() {
            Some(l) if l.trim().is_empty() => continue,
            Some(l) => {
                any = true;
                return Some(l);
            }
            None if !any => {
                any = true;
                return Some("");
            }
            None => return None,
        }
    })
}

/// Parses one command line.
pub fn parse_line(line: &str) -> Result<Request, BadLine> {
    let map = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(bad(None, "a command is a JSON object")),
        Err(_) => return Err(bad(None, "not valid JSON")),
    };
    let id = match map.get("id") {
        Some(Value::Number(n)) => n.as_u64().and_then(CommandId::new),
        _ => None,
    }
    .ok_or_else(|| bad(None, "id must be an integer >= 1"))?;
    let some = Some(id);
    let op = match map.get("op") {
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err(bad(some, "op must be a string")),
        None => return Err(bad(some, "op is required")),
    };
    let fields = Fields { map: &map, id };
    let command = match op {
        "subscribe" => Command::Subscribe {
            channel: fields.channel()?,
            since: fields.since()?,
        },
        "unsubscribe" => Command::Unsubscribe {
            channel: fields.channel()?,
        },
        "publish" => Command::Publish {
            channel: fields.channel()?,
            data: fields.required("data")?.clone(),
        },
        "refresh" => Command::Refresh {
            token: match fields.required("token")? {
                Value::String(t) if !t.is_empty() => t.clone(),
                _ => return Err(bad(some, "token must be a non-empty string")),
            },
        },
        "presence" => Command::Presence {
            channel: fields.channel()?,
        },
        "history" => Command::History {
            channel: fields.channel()?,
            limit: match map.get("limit") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .ok_or_else(|| bad(some, "limit must be an integer >= 0"))?,
                ),
            },
            since: fields.since()?,
        },
        "rpc" => Command::Rpc {
            method: match fields.required("method")? {
                Value::String(m) if !m.is_empty() => m.clone(),
                _ => return Err(bad(some, "method must be a non-empty string")),
            },
            data: map.get("data").cloned().unwrap_or(Value::Null),
        },
        "ping" => Command::Ping,
        _ => {
            return Err(BadLine::new(
                some,
                ChannelError {
                    code: ErrorCode::UnknownOp,
                    message: format!("unknown op {:?}", truncate(op, 64)).into(),
                    reason: None,
                },
            ))
        }
    };
    Ok(Request { id, command })
}

/// The reply to a binary frame: the protocol is JSON text only.
pub fn binary_frame_reply() -> String {
    reply_err(
        None,
        &ChannelError::bad_request("binary frames are not part of wsplus.v1"),
    )
}

fn bad(id: Option<CommandId>, message: &'static str) -> BadLine {
    BadLine::new(id, ChannelError::bad_request(message))
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Fields<'a> {
    map: &'a Map<String, Value>,
    id: CommandId,
}

impl<'a> Fields<'a> {
    fn required(&self, key: &'static str) -> Result<&'a Value, BadLine> {
        self.map.get(key).ok_or_else(|| {
            BadLine::new(
                Some(self.id),
                ChannelError::bad_request(format!("{key} is required")),
            )
        })
    }

    fn channel(&self) -> Result<ChannelName, BadLine> {
        match self.required("channel")? {
            Value::String(s) => ChannelName::parse(s)
                .map_err(|e| BadLine::new(Some(self.id), ChannelError::bad_request(e.to_string()))),
            _ => Err(bad(Some(self.id), "channel must be a string")),
        }
    }

    fn since(&self) -> Result<Option<StreamPosition>, BadLine> {
        let wrong = || {
            bad(
                Some(self.id),
                "since must be {\"epoch\": string, \"offset\": integer >= 0}",
            )
        };
        match self.map.get("since") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(s)) => {
                let epoch = s.get("epoch").and_then(Value::as_str).ok_or_else(wrong)?;
                let offset = s.get("offset").and_then(Value::as_u64).ok_or_else(wrong)?;
                Ok(Some(StreamPosition {
                    epoch: epoch.to_owned(),
                    offset,
                }))
            }
            Some(_) => Err(wrong()),
        }
    }
}

#[derive(Serialize)]
struct Ok_<'a, R: Serialize> {
    id: CommandId,
    result: &'a R,
}

#[derive(Serialize)]
struct Err_<'a> {
    id: Option<CommandId>,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

fn to_string(v: &impl Serialize) -> String {
    // Serializing these shapes cannot fail: string keys, finite numbers.
    serde_json::to_string(v).unwrap_or_default()
}

/// `{"id": n, "result": result}`.
pub fn reply_ok(id: CommandId, result: &impl Serialize) -> String {
    to_string(&Ok_ { id, result })
}

/// `{"id": n, "result": {}}`.
pub fn reply_empty(id: CommandId) -> String {
    reply_ok(id, &Map::new())
}

/// `{"id": n | null, "error": {"code", "message", "reason"?}}`.
pub fn reply_err(id: Option<CommandId>, error: &ChannelError) -> String {
    to_string(&Err_ {
        id,
        error: ErrorBody {
            code: error.code.code(),
            message: &error.message,
            reason: error.reason,
        },
    })
}

/// `{"id": n, "error": {"code", "message"}}` with the backend's own code and
/// message (an `rpc` error, passed through as the backend gave it).
pub fn reply_backend_err(id: CommandId, code: &str, message: &str) -> String {
    to_string(&Err_ {
        id: Some(id),
        error: ErrorBody {
            code,
            message,
            reason: None,
        },
    })
}

/// The `session` object of the `connected` push.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct ConnectedSession<'a> {
    /// Connection id.
    pub id: &'a str,
    /// Verified tenant.
    #[serde(rename = "tenantId")]
    pub tenant_id: &'a str,
    /// The token's `sub`.
    pub subject: Option<&'a str>,
}

#[derive(Serialize)]
struct Connected<'a> {
    push: &'static str,
    protocol: &'static str,
    session: ConnectedSession<'a>,
    expires_at: Option<u64>,
}

/// The first message of every channels session.
pub fn push_connected(session: ConnectedSession<'_>, expires_at: Option<u64>) -> String {
    to_string(&Connected {
        push: "connected",
        protocol: PROTOCOL,
        session,
        expires_at,
    })
}

#[derive(Serialize)]
struct Pub<'a> {
    push: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    data: &'a Value,
    #[serde(rename = "_session")]
    session: &'a Value,
}

/// A publication, serialized once; every subscriber's delivery shares it.
pub fn push_pub(
    channel: &ChannelName,
    data: &Value,
    offset: Option<u64>,
    stamp: &Value,
) -> Delivery {
    Delivery::Text(ByteString::from(to_string(&Pub {
        push: "pub",
        channel: channel.as_str(),
        offset,
        data,
        session: stamp,
    })))
}

/// The bytes a `pub` push of `channel` starts with, up to and including the
/// comma after the channel name (channel names never need escaping).
fn pub_prefix(channel: &ChannelName) -> String {
    format!(r#"{{"push":"pub","channel":"{}","#, channel.as_str())
}

/// The `pub` push `push` (serialized by [`push_pub`] without an offset) with
/// `"offset": offset` inserted after the channel: the history assigns offsets
/// in its owner's fan-out step without serializing the publication again.
pub fn pub_with_offset(push: &Delivery, channel: &ChannelName, offset: u64) -> Delivery {
    let Delivery::Text(text) = push else {
        return push.clone();
    };
    let Some((prefix, rest)) = split_pub(text, channel) else {
        return push.clone();
    };
    let mut out = String::with_capacity(text.len() + 24);
    out.push_str(prefix);
    out.push_str(r#""offset":"#);
    out.push_str(&offset.to_string());
    out.push(',');
    out.push_str(rest);
    Delivery::Text(ByteString::from(out))
}

/// A `pub` push of `channel` without offset split where the offset goes:
/// `({"push":"pub","channel":"c",`, `"data":…}`).
pub fn split_pub<'a>(push: &'a str, channel: &ChannelName) -> Option<(&'a str, &'a str)> {
    let prefix = pub_prefix(channel);
    push.starts_with(&prefix)
        .then(|| push.split_at(prefix.len()))
}

/// Appends the `publications` entry `{offset, data, _session}` of the `pub`
/// push `push` of `channel` to `out`: the push without its `push` and
/// `channel` keys, taken from the same bytes.
pub fn write_entry(out: &mut String, push: &str, channel: &ChannelName) {
    let skip = pub_prefix(channel).len();
    out.push('{');
    out.push_str(push.get(skip..).unwrap_or("}"));
}

/// Appends `"publications":[e1,e2,…]` (entries from `pub` pushes) to `out`.
fn write_publications<'a>(
    out: &mut String,
    channel: &ChannelName,
    pushes: impl IntoIterator<Item = &'a str>,
) {
    out.push_str(r#""publications":["#);
    for (i, p) in pushes.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_entry(out, p, channel);
    }
    out.push(']');
}

/// A position in a stream as the wire shows it.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Position<'a> {
    /// The stream's epoch.
    pub epoch: &'a str,
    /// Its last offset (0 before the first publication).
    pub offset: u64,
}

/// `{"id": n, "result": {channel, recovered?, epoch?, offset?, publications}}`:
/// the reply to `subscribe`; `publications` are the recovered `pub` pushes.
pub fn subscribe_reply<'a>(
    id: CommandId,
    channel: &ChannelName,
    recovered: Option<bool>,
    position: Option<Position<'_>>,
    publications: impl IntoIterator<Item = &'a str>,
) -> String {
    #[derive(Serialize)]
    struct Head<'a> {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        #[serde(flatten)]
        position: Option<Position<'a>>,
    }
    let head = Head {
        channel: channel.as_str(),
        recovered,
        position,
    };
    with_publications(id, &head, channel, Some(publications))
}

/// `{"id": n, "result": {epoch, offset, publications?}}`: the reply to
/// `history` (`publications` absent for `limit: 0`).
pub fn history_reply<'a>(
    id: CommandId,
    channel: &ChannelName,
    position: Position<'_>,
    publications: Option<impl IntoIterator<Item = &'a str>>,
) -> String {
    with_publications(id, &position, channel, publications)
}

/// `{"id": n, "result": head + publications}`, `head` being a JSON object.
fn with_publications<'a>(
    id: CommandId,
    head: &impl Serialize,
    channel: &ChannelName,
    publications: Option<impl IntoIterator<Item = &'a str>>,
) -> String {
    let mut out = format!(r#"{{"id":{},"result":"#, id.get());
    let head = to_string(head);
    match publications {
        None => out.push_str(&head),
        Some(p) => {
            // `head` is an object: reopen it before its closing brace.
            out.push_str(&head[..head.len() - 1]);
            if head.len() > 2 {
                out.push(',');
            }
            write_publications(&mut out, channel, p);
            out.push('}');
        }
    }
    out.push('}');
    out
}

/// Why the server ended a subscription.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnsubscribeReason {
    /// A refreshed token no longer allows it.
    Forbidden,
    /// An administrator ended it.
    Admin,
}

impl UnsubscribeReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            UnsubscribeReason::Forbidden => "forbidden",
            UnsubscribeReason::Admin => "admin",
        }
    }
}

#[derive(Serialize)]
struct Unsubscribed<'a> {
    push: &'static str,
    channel: &'a str,
    reason: &'static str,
}

/// `{"push": "unsubscribe", "channel", "reason"}`.
pub fn push_unsubscribe(channel: &ChannelName, reason: UnsubscribeReason) -> String {
    to_string(&Unsubscribed {
        push: "unsubscribe",
        channel: channel.as_str(),
        reason: reason.as_str(),
    })
}

#[derive(Serialize)]
struct Subscribed<'a> {
    push: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
}

/// `{"push": "subscribe", "channel", "epoch"?, "offset"?}`: a server-side
/// subscription.
pub fn push_subscribe(channel: &ChannelName, position: Option<(&str, u64)>) -> String {
    to_string(&Subscribed {
        push: "subscribe",
        channel: channel.as_str(),
        epoch: position.map(|p| p.0),
        offset: position.map(|p| p.1),
    })
}

/// `{"push": "expiring", "expires_at": t}`.
pub fn push_expiring(expires_at: u64) -> String {
    to_string(&serde_json::json!({"push": "expiring", "expires_at": expires_at}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(line: &str) -> Result<Request, Value> {
        parse_line(line).map_err(|b| serde_json::from_str(&b.reply()).unwrap())
    }

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    #[test]
    fn parses_every_op() {
        let cases = [
            (
                r#"{"id":1,"op":"subscribe","channel":"a"}"#,
                Command::Subscribe {
                    channel: ch("a"),
                    since: None,
                },
            ),
            (
                r#"{"id":2,"op":"subscribe","channel":"a","since":{"epoch":"e","offset":3}}"#,
                Command::Subscribe {
                    channel: ch("a"),
                    since: Some(StreamPosition {
                        epoch: "e".into(),
                        offset: 3,
                    }),
                },
            ),
            (
                r#"{"id":3,"op":"unsubscribe","channel":"a"}"#,
                Command::Unsubscribe { channel: ch("a") },
            ),
            (
                r#"{"id":4,"op":"publish","channel":"a","data":null}"#,
                Command::Publish {
                    channel: ch("a"),
                    data: Value::Null,
                },
            ),
            (
                r#"{"id":5,"op":"refresh","token":"t"}"#,
                Command::Refresh { token: "t".into() },
            ),
            (
                r#"{"id":6,"op":"presence","channel":"a"}"#,
                Command::Presence { channel: ch("a") },
            ),
            (
                r#"{"id":7,"op":"history","channel":"a","limit":0}"#,
                Command::History {
                    channel: ch("a"),
                    limit: Some(0),
                    since: None,
                },
            ),
            (
                r#"{"id":8,"op":"rpc","method":"m","data":{"x":1}}"#,
                Command::Rpc {
                    method: "m".into(),
                    data: json!({"x": 1}),
                },
            ),
            (r#"{"id":9,"op":"ping","extra":true}"#, Command::Ping),
        ];
        for (line, command) in cases {
            let r = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(r.command, command, "{line}");
        }
        assert_eq!(
            parse(r#"{"id":18446744073709551615,"op":"ping"}"#)
                .unwrap()
                .id
                .get(),
            u64::MAX
        );
    }

    #[test]
    fn lines_without_a_valid_id_get_id_null() {
        for line in [
            "",
            "nope",
            "[1]",
            "42",
            r#"{"op":"ping"}"#,
            r#"{"id":0,"op":"ping"}"#,
            r#"{"id":-1,"op":"ping"}"#,
            r#"{"id":1.5,"op":"ping"}"#,
            r#"{"id":"1","op":"ping"}"#,
            r#"{"id":null,"op":"ping"}"#,
            r#"{"id":1e3,"op":"ping"}"#,
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e["id"], Value::Null, "{line}");
            assert_eq!(e["error"]["code"], "bad_request", "{line}");
            assert!(e["error"]["message"].is_string());
        }
    }

    #[test]
    fn bad_fields_keep_the_id() {
        for line in [
            r#"{"id":7}"#,
            r#"{"id":7,"op":5}"#,
            r#"{"id":7,"op":"subscribe"}"#,
            r#"{"id":7,"op":"subscribe","channel":5}"#,
            r#"{"id":7,"op":"subscribe","channel":""}"#,
            r#"{"id":7,"op":"subscribe","channel":"a b"}"#,
            r#"{"id":7,"op":"subscribe","channel":"a","since":5}"#,
            r#"{"id":7,"op":"subscribe","channel":"a","since":{"epoch":"e"}}"#,
            r#"{"id":7,"op":"publish","channel":"a"}"#,
            r#"{"id":7,"op":"refresh"}"#,
            r#"{"id":7,"op":"refresh","token":""}"#,
            r#"{"id":7,"op":"history","channel":"a","limit":-1}"#,
            r#"{"id":7,"op":"rpc"}"#,
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e["id"], 7, "{line}");
            assert_eq!(e["error"]["code"], "bad_request", "{line}: {e}");
        }
        let long = "x".repeat(201);
        let e = parse(&format!(
            r#"{{"id":7,"op":"publish","channel":"{long}","data":1}}"#
        ))
        .unwrap_err();
        assert_eq!(e["error"]["code"], "bad_request");
    }

    #[test]
    fn unknown_op() {
        let e = parse(r#"{"id":3,"op":"dance"}"#).unwrap_err();
        assert_eq!(e["id"], 3);
        assert_eq!(e["error"]["code"], "unknown_op");
    }

    #[test]
    fn frames_split_on_newlines() {
        assert_eq!(
            lines("a\nb\r\n\nc\n").collect::<Vec<_>>(),
            ["a", "b\r", "c"]
        );
        assert_eq!(lines("").collect::<Vec<_>>(), [""]);
        assert_eq!(lines("\n \n").collect::<Vec<_>>(), [""]);
        // "\r" before the newline is JSON whitespace: the line still parses.
        assert!(parse_line("{\"id\":1,\"op\":\"ping\"}\r").is_ok());
    }

    #[test]
    fn replies_and_pushes() {
        let id = CommandId::new(7).unwrap();
        assert_eq!(reply_empty(id), r#"{"id":7,"result":{}}"#);
        assert_eq!(
            reply_err(Some(id), &ChannelError::invalid_token("identity_changed")),
            r#"{"id":7,"error":{"code":"invalid_token","message":"token refused","reason":"identity_changed"}}"#
        );
        assert_eq!(
            reply_backend_err(id, "no_such_method", "say \"what\""),
            r#"{"id":7,"error":{"code":"no_such_method","message":"say \"what\""}}"#
        );
        let c = push_connected(
            ConnectedSession {
                id: "s",
                tenant_id: "t",
                subject: None,
            },
            Some(5),
        );
        assert_eq!(
            serde_json::from_str::<Value>(&c).unwrap(),
            json!({"push":"connected","protocol":"wsplus.v1","session":{"id":"s","tenantId":"t","subject":null},"expires_at":5})
        );
        let Delivery::Text(p) = push_pub(&ch("a"), &json!({"k":[1]}), None, &json!({"id":"s"}))
        else {
            panic!()
        };
        assert_eq!(
            &*p,
            r#"{"push":"pub","channel":"a","data":{"k":[1]},"_session":{"id":"s"}}"#
        );
        assert!(!p.contains('\n'));
        assert_eq!(
            push_unsubscribe(&ch("a"), UnsubscribeReason::Admin),
            r#"{"push":"unsubscribe","channel":"a","reason":"admin"}"#
        );
        assert_eq!(
            push_subscribe(&ch("a"), None),
            r#"{"push":"subscribe","channel":"a"}"#
        );
        assert_eq!(push_expiring(9), r#"{"push":"expiring","expires_at":9}"#);
        assert_eq!(
            subscribe_reply(id, &ch("a"), Some(false), None, []),
            r#"{"id":7,"result":{"channel":"a","recovered":false,"publications":[]}}"#
        );
        let bin: Value = serde_json::from_str(&binary_frame_reply()).unwrap();
        assert_eq!(bin["id"], Value::Null);
        assert_eq!(bin["error"]["code"], "bad_request");
    }

    #[test]
    fn offsets_and_entries_come_from_the_same_bytes() {
        let c = ch("room:1");
        let stamp = json!({"id": "s"});
        let plain = push_pub(&c, &json!({"k": "x\ny"}), None, &stamp);
        let spliced = pub_with_offset(&plain, &c, 42);
        assert_eq!(
            spliced,
            push_pub(&c, &json!({"k": "x\ny"}), Some(42), &stamp)
        );
        let Delivery::Text(p) = &spliced else {
            panic!()
        };
        let id = CommandId::new(3).unwrap();
        let at = Position {
            epoch: "e",
            offset: 42,
        };
        let sub: Value =
            serde_json::from_str(&subscribe_reply(id, &c, Some(true), Some(at), [&**p, &**p]))
                .unwrap();
        let entry = json!({"offset": 42, "data": {"k": "x\ny"}, "_session": {"id": "s"}});
        assert_eq!(
            sub,
            json!({"id": 3, "result": {"channel": "room:1", "recovered": true, "epoch": "e",
                "offset": 42, "publications": [entry, entry]}})
        );
        let h: Value = serde_json::from_str(&history_reply(id, &c, at, Some([&**p]))).unwrap();
        assert_eq!(
            h,
            json!({"id": 3, "result": {"epoch": "e", "offset": 42, "publications": [entry]}})
        );
        let h: Value = serde_json::from_str(&history_reply(id, &c, at, None::<[&str; 0]>)).unwrap();
        assert_eq!(h, json!({"id": 3, "result": {"epoch": "e", "offset": 42}}));
        assert_eq!(
            subscribe_reply(id, &c, None, None, []),
            r#"{"id":3,"result":{"channel":"room:1","publications":[]}}"#
        );
    }

    #[test]
    fn data_with_newlines_is_escaped() {
        let Delivery::Text(p) = push_pub(&ch("a"), &json!("x\ny"), None, &Value::Null) else {
            panic!()
        };
        assert!(!p.contains('\n'));
    }
}
