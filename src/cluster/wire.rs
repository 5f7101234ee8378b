//! The bytes nodes exchange over Redis pub/sub.
//!
//! ```text
//! byte 0      version (1)
//! byte 1      kind: 1 text message, 2 binary message, 3 admin request, 4 admin reply
//! byte 2      n = length of the origin node id
//! 3 .. 3+n    origin node id (so the origin skips its own messages)
//! text/binary the message bytes, exactly as delivered to sockets
//! request     8-byte call id (big endian), then the NodeRequest as JSON
//! reply       8-byte call id (big endian), then the NodeReply as JSON
//! publication `epoch\noffset\n`, then the `pub` push with its offset (a
//!             channel publication numbered by Redis; the origin is empty:
//!             every node, the publishing one included, delivers it)
//! ```
//!
//! Messages are forwarded as serialized by the origin (no JSON work per node).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use wsplus_actors::backplane::{NodeReply, NodeRequest};
use wsplus_actors::channels::codec::StreamPosition;
use wsplus_actors::Delivery;

const VERSION: u8 = 1;
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const REQUEST: u8 = 3;
const REPLY: u8 = 4;
const PUBLICATION: u8 = 5;

/// What an envelope carries.
#[derive(Debug, PartialEq)]
pub enum Body {
    /// A message for local sessions.
    Delivery(Delivery),
    /// An admin request to answer; reply to the origin with this id.
    Request(u64, NodeRequest),
    /// The answer to one of this node's requests.
    Reply(u64, NodeReply),
    /// A channel publication numbered in the cluster's stream.
    Publication(StreamPosition, Delivery),
}

/// A decoded envelope.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    /// The node that sent it.
    pub origin: String,
    /// Its content.
    pub body: Body,
}

fn header(kind: u8, origin: &str, extra: usize) -> BytesMut {
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut b = BytesMut::with_capacity(3 + origin.len() + extra);
    b.put_u8(VERSION);
    b.put_u8(kind);
    b.put_u8(origin.len() as u8);
    b.put_slice(origin);
    b
}

/// Encodes a message.
pub fn delivery(origin: &str, d: &Delivery) -> Vec<u8> {
    let (kind, bytes): (u8, &[u8]) = match d {
        Delivery::Text(s) => (TEXT, s.as_bytes()),
        Delivery::Binary(b) => (BINARY, b),
    };
    let mut b = header(kind, origin, bytes.len());
    b.put_slice(bytes);
    b.to_vec()
}

/// The header of a numbered publication (written by Redis, which appends
/// the position and the push; see `redis::scripts`).
pub fn publication_header() -> Vec<u8> {
    header(PUBLICATION, "", 0).to_vec()
}

/// Encodes a numbered publication (what the append script publishes).
#[cfg(test)]
pub fn publication(position: &StreamPosition, push: &str) -> Vec<u8> {
    let mut b = publication_header();
    b.extend_from_slice(format!("{}\n{}\n{push}", position.epoch, position.offset).as_bytes());
    b
}

/// Encodes an admin request.
pub fn request(origin: &str, id: u64, r: &NodeRequest) -> Vec<u8> {
    json(
        REQUEST,
        origin,
        id,
        &serde_json::to_vec(r).unwrap_or_default(),
    )
}

/// Encodes an admin reply.
pub fn reply(origin: &str, id: u64, r: &NodeReply) -> Vec<u8> {
    json(
        REPLY,
        origin,
        id,
        &serde_json::to_vec(r).unwrap_or_default(),
    )
}

fn json(kind: u8, origin: &str, id: u64, body: &[u8]) -> Vec<u8> {
    let mut b = header(kind, origin, 8 + body.len());
    b.put_u64(id);
    b.put_slice(body);
    b.to_vec()
}

/// Why an envelope was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its header says, or an unknown version or kind.
    #[error("malformed envelope")]
    Malformed,
    /// A text message that is not UTF-8, or an origin that is not.
    #[error("invalid UTF-8 in envelope")]
    Utf8,
    /// A request or reply whose JSON does not parse.
    #[error("invalid admin payload: {0}")]
    Json(String),
}

/// Decodes an envelope.
pub fn decode(raw: Bytes) -> Result<Envelope, WireError> {
    if raw.len() < 3 || raw[0] != VERSION {
        return Err(WireError::Malformed);
    }
    let kind = raw[1];
    let n = usize::from(raw[2]);
    let origin = raw.get(3..3 + n).ok_or(WireError::Malformed)?;
    let origin = std::str::from_utf8(origin)
        .map_err(|_| WireError::Utf8)?
        .to_owned();
    let rest = raw.slice(3 + n..);
    let body = match kind {
        TEXT => Body::Delivery(Delivery::Text(
            ByteString::try_from(rest).map_err(|_| WireError::Utf8)?,
        )),
        BINARY => Body::Delivery(Delivery::Binary(rest)),
        REQUEST | REPLY => {
            let id_bytes: [u8; 8] = rest
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or(WireError::Malformed)?;
            let id = u64::from_be_bytes(id_bytes);
            let js = &rest[8..];
            let err = |e: serde_json::Error| WireError::Json(e.to_string());
            if kind == REQUEST {
                Body::Request(id, serde_json::from_slice(js).map_err(err)?)
            } else {
                Body::Reply(id, serde_json::from_slice(js).map_err(err)?)
            }
        }
        PUBLICATION => {
            let text = std::str::from_utf8(&rest).map_err(|_| WireError::Utf8)?;
            let mut parts = text.splitn(3, '\n');
            let (Some(epoch), Some(offset), Some(push)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(WireError::Malformed);
            };
            let offset = offset.parse().map_err(|_| WireError::Malformed)?;
            let position = StreamPosition {
                epoch: epoch.to_owned(),
                offset,
            };
            let at = rest.len() - push.len();
            let push = ByteString::try_from(rest.slice(at..)).map_err(|_| WireError::Utf8)?;
            Body::Publication(position, Delivery::Text(push))
        }
        _ => return Err(WireError::Malformed),
    };
    Ok(Envelope { origin, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for d in [
            Delivery::Text("héllo".into()),
            Delivery::Binary(Bytes::from_static(&[0, 1, 255])),
            Delivery::Text("".into()),
        ] {
            let e = decode(delivery("node-a", &d).into()).unwrap();
            assert_eq!(e.origin, "node-a");
            assert_eq!(e.body, Body::Delivery(d));
        }
        let e = decode(request("n", 42, &NodeRequest::Stats).into()).unwrap();
        assert_eq!(e.body, Body::Request(42, NodeRequest::Stats));
        let e = decode(reply("n", 7, &NodeReply::Count(3)).into()).unwrap();
        assert_eq!(e.body, Body::Reply(7, NodeReply::Count(3)));
        let at = StreamPosition {
            epoch: "e1".into(),
            offset: 12,
        };
        let push = r#"{"push":"pub","channel":"c","offset":12,"data":"a\nb"}"#;
        let e = decode(publication(&at, push).into()).unwrap();
        assert_eq!(e.origin, "", "every node delivers it");
        assert_eq!(e.body, Body::Publication(at, Delivery::Text(push.into())));
        for bad in ["e1\n12", "e1\nx\n{}", "e1"] {
            let mut b = publication_header();
            b.extend_from_slice(bad.as_bytes());
            assert_eq!(decode(b.into()), Err(WireError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn refuses_garbage() {
        let bad: [&[u8]; 6] = [
            b"",
            b"\x02\x01\x00x",
            b"\x01\x09\x00x",
            b"\x01\x01\x05ab",
            b"\x01\x01\x00\xff\xfe",
            b"\x01\x03\x00\x00\x00\x00\x00\x00\x00\x01{nope",
        ];
        for raw in bad {
            assert!(decode(Bytes::copy_from_slice(raw)).is_err(), "{raw:?}");
        }
    }
}
