//! The JSON of each hook: what wsplus sends and what the backend must answer.
//! Free of HTTP so it can be tested on its own (docs/hooks.md shows the same).
//!
//! Every request is `{"session": {"id", "tenantId", "subject"}, "listener":
//! path, ...}` plus the hook's own fields. An answer counts only when it has
//! the documented shape: `allow` must be a boolean, an `rpc` answer must hold
//! exactly one of `result` and `error`, `message` must be an object. Extra
//! fields are ignored, so a backend may add its own.

use base64::Engine;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wsplus_actors::protocol::{self, Frame};
use wsplus_actors::{Mode, SessionInfo};

/// The verified identity every request carries.
#[derive(Debug, Serialize)]
pub struct SessionRef<'a> {
    /// The session id.
    pub id: &'a str,
    /// The verified tenant.
    #[serde(rename = "tenantId")]
    pub tenant_id: &'a str,
    /// The token's `sub`, or null.
    pub subject: Option<&'a str>,
}

impl<'a> SessionRef<'a> {
    /// The identity of `info`.
    pub fn of(info: &'a SessionInfo) -> Self {
        Self {
            id: info.id.as_str(),
            tenant_id: info.tenant.as_str(),
            subject: info.subject.as_deref(),
        }
    }
}

/// One hook request: the identity, the listener, and the hook's fields.
#[derive(Debug, Serialize)]
pub struct Request<'a, B> {
    /// Who is asking.
    pub session: SessionRef<'a>,
    /// The listener's path.
    pub listener: &'a str,
    /// The hook's own fields, inline.
    #[serde(flatten)]
    pub body: B,
}

impl<'a, B: Serialize> Request<'a, B> {
    /// The request of `info`'s session with `body`.
    pub fn new(info: &'a SessionInfo, body: B) -> Self {
        Self {
            session: SessionRef::of(info),
            listener: &info.listener_path,
            body,
        }
    }

    /// The bytes sent (and signed).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Room for the identity and the listener without growing; the body
        // grows it when large.
        let mut out = Vec::with_capacity(REQUEST_CAPACITY);
        // Serializing these types cannot fail: string keys, finite numbers.
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }
}

/// Initial capacity of a serialized request.
const REQUEST_CAPACITY: usize = 512;

/// `connect`: the verified claims and the peer address.
#[derive(Debug, Serialize)]
pub struct ConnectBody<'a> {
    /// The token's claims as verified (empty without a token).
    pub claims: &'a Map<String, Value>,
    /// The peer's `ip:port` as seen by the server.
    pub remote: Option<String>,
}

/// `subscribe`: the channel asked for.
#[derive(Debug, Serialize)]
pub struct SubscribeBody<'a> {
    /// The channel.
    pub channel: &'a str,
}

/// `publish`: the channel and the data to publish.
#[derive(Debug, Serialize)]
pub struct PublishBody<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The publication as the client sent it.
    pub data: &'a Value,
}

/// `rpc`: the method and its data.
#[derive(Debug, Serialize)]
pub struct RpcBody<'a> {
    /// The method name, as the client gave it.
    pub method: &'a str,
    /// The call's data.
    pub data: &'a Value,
}

/// `message`: the inbound message.
#[derive(Debug, Serialize)]
pub struct MessageBody {
    /// Payload mode: the text frame as a string. Message mode: the client's
    /// object without `_session` (a non-object text wrapped as
    /// `{"payload": text}`, as routing would). A binary frame: base64.
    pub payload: Value,
    /// True when `payload` is a binary frame in base64.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

impl MessageBody {
    /// The body for `frame` on a listener in `mode`.
    pub fn new(mode: Mode, frame: &Frame) -> Self {
        match frame {
            Frame::Binary(b) => Self {
                payload: Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
                binary: true,
            },
            Frame::Text(s) => Self {
                payload: match mode {
                    Mode::Payload => Value::String(s.to_string()),
                    // Channels mode has no `message` hook (validation).
                    Mode::Message | Mode::Channels => Value::Object(protocol::object(s)),
                },
                binary: false,
            },
        }
    }
}

/// Allow or deny, with what an allow carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<T> {
    /// `"allow": true`.
    Allow(T),
    /// `"allow": false`.
    Deny,
}

/// The answer to `connect`.
#[derive(Debug, Deserialize)]
pub struct ConnectAnswer {
    /// Required boolean.
    pub allow: bool,
    /// Channels to subscribe the session to, server-side (channels mode).
    #[serde(default)]
    pub channels: Vec<String>,
}

impl From<ConnectAnswer> for Verdict<Vec<String>> {
    fn from(a: ConnectAnswer) -> Self {
        if a.allow {
            Verdict::Allow(a.channels)
        } else {
            Verdict::Deny
        }
    }
}

/// The answer to `subscribe`.
#[derive(Debug, Deserialize)]
pub struct SubscribeAnswer {
    /// Required boolean.
    pub allow: bool,
}

impl From<SubscribeAnswer> for Verdict<()> {
    fn from(a: SubscribeAnswer) -> Self {
        if a.allow {
            Verdict::Allow(())
        } else {
            Verdict::Deny
        }
    }
}

/// The answer to `publish`.
#[derive(Debug, Deserialize)]
pub struct PublishAnswer {
    /// Required boolean.
    pub allow: bool,
    /// Replacement data when present (`null` included); absent = publish as sent.
    #[serde(default, deserialize_with = "present")]
    pub data: Option<Value>,
}

impl From<PublishAnswer> for Verdict<Option<Value>> {
    fn from(a: PublishAnswer) -> Self {
        if a.allow {
            Verdict::Allow(a.data)
        } else {
            Verdict::Deny
        }
    }
}

/// A field that is present, whatever its value (`null` included).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// An `rpc` error as the backend gave it; passed through to the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// The answer to `rpc`: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcAnswer {
    /// `{"result": ...}` (any JSON, `null` included).
    Result(Value),
    /// `{"error": {"code", "message"}}`.
    Error(RpcError),
}

impl<'de> Deserialize<'de> for RpcAnswer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default, deserialize_with = "present")]
            result: Option<Value>,
            #[serde(default)]
            error: Option<RpcError>,
        }
        match Raw::deserialize(d)? {
            Raw {
                result: Some(r),
                error: None,
            } => Ok(RpcAnswer::Result(r)),
            Raw {
                result: None,
                error: Some(e),
            } => Ok(RpcAnswer::Error(e)),
            _ => Err(serde::de::Error::custom(
                "exactly one of result and error is required",
            )),
        }
    }
}

/// The answer to `message`: what to send, if anything (`null` = nothing).
#[derive(Debug, Default, Deserialize)]
pub struct MessageAnswer {
    /// To the sender.
    #[serde(default)]
    pub reply: Option<Value>,
    /// To the listener's scope, from the sender's position.
    #[serde(default)]
    pub publish: Option<Value>,
}

/// Parses an answer body; anything but a JSON object of shape `A` is `None`
/// (malformed). Objects only: serde would otherwise accept `[true]` as
/// `{"allow": true}`. Parsed straight into `A` (no `Value` in between), so a
/// key given twice is malformed too.
pub fn parse<A: DeserializeOwned>(body: &[u8]) -> Option<A> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> SessionInfo {
        crate::hooks::test_info()
    }

    fn sent<B: Serialize>(body: B) -> Value {
        let i = info();
        let v: Value = serde_json::from_slice(&Request::new(&i, body).to_bytes()).unwrap();
        assert_eq!(
            v["session"],
            json!({"id": i.id.as_str(), "tenantId": "acme", "subject": "u1"})
        );
        assert_eq!(v["listener"], "/ws");
        v
    }

    #[test]
    fn requests_carry_identity_and_fields() {
        let claims = json!({"sub": "u1", "tenant_id": "acme"});
        let v = sent(ConnectBody {
            claims: claims.as_object().unwrap(),
            remote: Some("127.0.0.1:5".into()),
        });
        assert_eq!(v["claims"], claims);
        assert_eq!(v["remote"], "127.0.0.1:5");
        assert_eq!(sent(SubscribeBody { channel: "news" })["channel"], "news");
        let v = sent(PublishBody {
            channel: "c",
            data: &json!({"x": 1}),
        });
        assert_eq!(
            (v["channel"].clone(), v["data"].clone()),
            (json!("c"), json!({"x": 1}))
        );
        let v = sent(RpcBody {
            method: "sum",
            data: &json!([1, 2]),
        });
        assert_eq!(
            (v["method"].clone(), v["data"].clone()),
            (json!("sum"), json!([1, 2]))
        );
    }

    #[test]
    fn message_payloads_per_mode() {
        let text = Frame::Text(r#"{"a":1,"_session":{"type":"forged"}}"#.into());
        let v = sent(MessageBody::new(Mode::Payload, &text));
        assert_eq!(v["payload"], r#"{"a":1,"_session":{"type":"forged"}}"#);
        assert!(v.get("binary").is_none());
        let v = sent(MessageBody::new(Mode::Message, &text));
        assert_eq!(v["payload"], json!({"a": 1}));
        let v = sent(MessageBody::new(Mode::Message, &Frame::Text("hi".into())));
        assert_eq!(v["payload"], json!({"payload": "hi"}));
        let bin = Frame::Binary(bytes::Bytes::from_static(&[0, 255, 1]));
        for mode in [Mode::Payload, Mode::Message] {
            let v = sent(MessageBody::new(mode, &bin));
            assert_eq!(v["payload"], "AP8B");
            assert_eq!(v["binary"], true);
        }
    }

    #[test]
    fn allow_must_be_a_boolean() {
        let ok = |b: &str| parse::<ConnectAnswer>(b.as_bytes()).map(Verdict::from);
        assert_eq!(ok(r#"{"allow":true}"#), Some(Verdict::Allow(vec![])));
        assert_eq!(
            ok(r#"{"allow":true,"channels":["a","b"],"extra":1}"#),
            Some(Verdict::Allow(vec!["a".into(), "b".into()]))
        );
        assert_eq!(ok(r#"{"allow":false}"#), Some(Verdict::Deny));
        assert_eq!(
            ok(" \r\n\t{\"allow\":true} \n"),
            Some(Verdict::Allow(vec![]))
        );
        for bad in [
            r#"{}"#,
            r#"{"allow":true,"allow":false}"#,
            r#" [{"allow":true}]"#,
            r#"{"allow":true} x"#,
            r#"{"allow":"true"}"#,
            r#"{"allow":1}"#,
            r#"{"allow":null}"#,
            r#"[true]"#,
            "allow",
            "",
            r#"{"allow":true,"channels":"a"}"#,
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
        let sub = |b: &str| parse::<SubscribeAnswer>(b.as_bytes()).map(Verdict::from);
        assert_eq!(sub(r#"{"allow":true}"#), Some(Verdict::Allow(())));
        assert_eq!(sub(r#"{"allow":false}"#), Some(Verdict::Deny));
        assert_eq!(sub(r#"{"allowed":true}"#), None);
    }

    #[test]
    fn publish_replacement_data() {
        let p = |b: &str| parse::<PublishAnswer>(b.as_bytes()).map(Verdict::from);
        assert_eq!(p(r#"{"allow":true}"#), Some(Verdict::Allow(None)));
        assert_eq!(
            p(r#"{"allow":true,"data":{"x":2}}"#),
            Some(Verdict::Allow(Some(json!({"x": 2}))))
        );
        assert_eq!(
            p(r#"{"allow":true,"data":null}"#),
            Some(Verdict::Allow(Some(Value::Null)))
        );
        assert_eq!(p(r#"{"allow":false,"data":1}"#), Some(Verdict::Deny));
        assert_eq!(p(r#"{"data":1}"#), None);
    }

    #[test]
    fn rpc_result_or_error() {
        let r = |b: &str| parse::<RpcAnswer>(b.as_bytes());
        assert_eq!(
            r(r#"{"result":{"n":3}}"#),
            Some(RpcAnswer::Result(json!({"n": 3})))
        );
        assert_eq!(
            r(r#"{"result":null}"#),
            Some(RpcAnswer::Result(Value::Null))
        );
        assert_eq!(
            r(r#"{"error":{"code":"nope","message":"no such method"}}"#),
            Some(RpcAnswer::Error(RpcError {
                code: "nope".into(),
                message: "no such method".into()
            }))
        );
        for bad in [
            r#"{}"#,
            r#"{"result":1,"error":{"code":"a","message":"b"}}"#,
            r#"{"error":{"code":"a"}}"#,
            r#"{"error":"a"}"#,
            r#"null"#,
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
    }

    #[test]
    fn message_answers() {
        let m = parse::<MessageAnswer>(br#"{"reply":"hi","publish":{"a":1}}"#).unwrap();
        assert_eq!(m.reply, Some(json!("hi")));
        assert_eq!(m.publish, Some(json!({"a": 1})));
        let m = parse::<MessageAnswer>(br#"{"reply":null}"#).unwrap();
        assert_eq!((m.reply, m.publish), (None, None));
        assert!(parse::<MessageAnswer>(b"[]").is_none());
        assert!(parse::<MessageAnswer>(b"\"reply\"").is_none());
    }
}
