//! Frame → message conversion: the wire protocol of
//! docs/protocol.md#frames-and-messages, free of actors and sockets so it can
//! be unit-tested and fuzzed.
//!
//! * payload mode: the frame is the message, delivered as received.
//! * message mode: a text frame holding a JSON object is the message; anything
//!   else is wrapped as `{"payload": "<the frame as a string>"}`. Any `_session`
//!   the client sent is discarded and the verified stamp inserted. The result is
//!   serialized once; every delivery shares its bytes.

use bytes::Bytes;
use bytestring::ByteString;
use serde_json::{Map, Value};

use crate::delivery::Delivery;
use crate::ids::Mode;

/// The key carrying the verified identity.
pub const SESSION_KEY: &str = "_session";

/// A complete inbound message (after reassembly of fragments).
#[derive(Debug, Clone)]
pub enum Frame {
    /// A text message (valid UTF-8).
    Text(ByteString),
    /// A binary message.
    Binary(Bytes),
}

/// Turns an inbound message into the delivery every recipient gets.
///
/// `stamp` is the sender's `_session` object; it is used only in message mode.
pub fn encode(mode: Mode, frame: Frame, stamp: &Value) -> Delivery {
    match mode {
        Mode::Payload => match frame {
            Frame::Text(s) => Delivery::Text(s),
            Frame::Binary(b) => Delivery::Binary(b),
        },
        // Channels sessions parse their frames with `channels::codec`; a frame
        // reaching this point is treated as a message-mode one.
        Mode::Message | Mode::Channels => {
            let object = match frame {
                Frame::Text(s) => object(&s),
                Frame::Binary(b) => wrap(Value::String(String::from_utf8_lossy(&b).into_owned())),
            };
            stamped(object, stamp)
        }
    }
}

/// The message-mode object of a text frame, without any `_session` the client
/// sent: the frame itself when it is a JSON object, else `{"payload": text}`.
pub fn object(text: &str) -> Map<String, Value> {
    let mut map = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        _ => wrap(Value::String(text.to_owned())),
    };
    map.remove(SESSION_KEY);
    map
}

/// Builds the delivery for a message that did not come from a client frame
/// (admin publish, bridge): in message mode an object payload is stamped, any
/// other value is wrapped; in payload mode a string is sent as is and any other
/// value as its JSON text.
pub fn encode_value(mode: Mode, payload: Value, stamp: &Value) -> Delivery {
    match mode {
        Mode::Payload => match payload {
            Value::String(s) => Delivery::Text(ByteString::from(s)),
            other => Delivery::Text(ByteString::from(other.to_string())),
        },
        Mode::Message | Mode::Channels => {
            let object = match payload {
                Value::Object(map) => map,
                other => wrap(other),
            };
            stamped(object, stamp)
        }
    }
}

fn wrap(payload: Value) -> Map<String, Value> {
    let mut map = Map::with_capacity(2);
    map.insert("payload".to_owned(), payload);
    map
}

fn stamped(mut object: Map<String, Value>, stamp: &Value) -> Delivery {
    object.remove(SESSION_KEY);
    object.insert(SESSION_KEY.to_owned(), stamp.clone());
    // Serializing a Value cannot fail: keys are strings and numbers are finite.
    let text = serde_json::to_string(&Value::Object(object)).unwrap_or_default();
    Delivery::Text(ByteString::from(text))
}

/// The `_session` object of admin-originated messages
/// (docs/protocol.md#frames-and-messages).
pub fn admin_stamp(tenant: Option<&str>, scope: &str) -> Value {
    serde_json::json!({
        "type": "admin",
        "id": null,
        "tenantId": tenant,
        "subject": "admin",
        "authStatus": "admin",
        "routingScope": scope,
    })
}

/// The `_session` object of messages a bridge publishes into a local tenant:
/// `type` "bridge", the bridge's name as `subject`.
pub fn bridge_stamp(name: &str, tenant: &str) -> Value {
    serde_json::json!({
        "type": "bridge",
        "id": null,
        "tenantId": tenant,
        "subject": name,
        "authStatus": "bridge",
        "routingScope": "tenant",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stamp() -> Value {
        json!({"type": "websocket", "id": "abc", "tenantId": "t1", "subject": null,
               "authStatus": "verified", "routingScope": "tenant"})
    }

    fn text(d: Delivery) -> Value {
        match d {
            Delivery::Text(s) => serde_json::from_str(&s).unwrap(),
            Delivery::Binary(_) => panic!("expected text"),
        }
    }

    #[test]
    fn payload_mode_passes_frames_through() {
        let d = encode(Mode::Payload, Frame::Text("hi".into()), &stamp());
        assert_eq!(d, Delivery::Text("hi".into()));
        let d = encode(
            Mode::Payload,
            Frame::Binary(Bytes::from_static(&[0, 255])),
            &stamp(),
        );
        assert_eq!(d, Delivery::Binary(Bytes::from_static(&[0, 255])));
    }

    #[test]
    fn message_mode_stamps_and_discards_forgery() {
        let forged = r#"{"a":1,"_session":{"tenantId":"other","type":"admin"}}"#;
        let v = text(encode(Mode::Message, Frame::Text(forged.into()), &stamp()));
        assert_eq!(v, json!({"a": 1, "_session": stamp()}));
    }

    #[test]
    fn message_mode_wraps_non_objects() {
        for raw in ["hello", "42", "[1,2]", "\"s\"", "null", "{broken"] {
            let v = text(encode(Mode::Message, Frame::Text(raw.into()), &stamp()));
            assert_eq!(v, json!({"payload": raw, "_session": stamp()}), "{raw}");
        }
        let v = text(encode(
            Mode::Message,
            Frame::Binary(Bytes::from_static(b"bin")),
            &stamp(),
        ));
        assert_eq!(v, json!({"payload": "bin", "_session": stamp()}));
    }

    #[test]
    fn key_order_is_kept() {
        let v = encode(
            Mode::Message,
            Frame::Text(r#"{"z":1,"a":2}"#.into()),
            &stamp(),
        );
        let Delivery::Text(s) = v else { panic!() };
        assert!(s.starts_with(r#"{"z":1,"a":2,"_session""#), "{s}");
    }

    #[test]
    fn admin_values() {
        let st = admin_stamp(Some("t"), "tenant");
        let v = text(encode_value(
            Mode::Message,
            json!({"x": 1, "_session": 5}),
            &st,
        ));
        assert_eq!(v, json!({"x": 1, "_session": st}));
        let v = text(encode_value(Mode::Message, json!([1]), &st));
        assert_eq!(v, json!({"payload": [1], "_session": st}));
        assert_eq!(
            encode_value(Mode::Payload, json!("raw"), &st),
            Delivery::Text("raw".into())
        );
        assert_eq!(
            encode_value(Mode::Payload, json!({"k": 1}), &st),
            Delivery::Text(r#"{"k":1}"#.into())
        );
    }

    #[test]
    fn bridge_stamp_names_the_bridge() {
        let st = bridge_stamp("hq", "acme");
        let v = text(encode(
            Mode::Message,
            Frame::Text(r#"{"a":1,"_session":{"type":"websocket"}}"#.into()),
            &st,
        ));
        assert_eq!(v["_session"]["type"], "bridge");
        assert_eq!(v["_session"]["subject"], "hq");
        assert_eq!(v["_session"]["tenantId"], "acme");
        assert_eq!(v["a"], 1);
    }
}
