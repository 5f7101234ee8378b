//! Reassembly of fragmented messages and the mapping of WebSocket protocol
//! errors to close codes. Pure functions, unit-tested and fuzzable.

use actix_http::ws::{Item, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::close::CloseCode;
use crate::protocol::Frame;

/// A message being reassembled from continuation frames, bounded by the
/// listener's `max_message_bytes`.
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: Option<(bool, BytesMut)>,
}

impl Reassembler {
    /// True while a fragmented message is in progress (a new Text/Binary frame
    /// then is a protocol error).
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Feeds one continuation item. Returns the complete message on the last
    /// fragment, `Ok(None)` while more are expected, or the close code when the
    /// sequence is invalid or too large.
    pub fn push(&mut self, item: Item, max_bytes: usize) -> Result<Option<Frame>, CloseCode> {
        let (first, data, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        match (first, self.partial.as_mut()) {
            (Some(_), Some(_)) | (None, None) => return Err(CloseCode::ProtocolError),
            (Some(is_text), None) => {
                if data.len() > max_bytes {
                    return Err(CloseCode::TooBig);
                }
                self.partial = Some((is_text, BytesMut::from(&data[..])));
            }
            (None, Some((_, buf))) => {
                if buf.len() + data.len() > max_bytes {
                    return Err(CloseCode::TooBig);
                }
                buf.extend_from_slice(&data);
            }
        }
        if !last {
            return Ok(None);
        }
        let Some((is_text, buf)) = self.partial.take() else {
            return Err(CloseCode::ProtocolError);
        };
        let bytes: Bytes = buf.freeze();
        if is_text {
            ByteString::try_from(bytes)
                .map(|s| Some(Frame::Text(s)))
                .map_err(|_| CloseCode::InvalidPayload)
        } else {
            Ok(Some(Frame::Binary(bytes)))
        }
    }
}

/// The close code for a protocol error reported by the frame decoder.
pub fn close_code_for(err: &ProtocolError) -> CloseCode {
    match err {
        ProtocolError::Overflow => CloseCode::TooBig,
        // actix-web-actors reports a text frame that is not UTF-8 as an I/O
        // error carrying the `Utf8Error` text; a real I/O error has no close
        // frame to receive anyway.
        ProtocolError::Io(e) if e.to_string().contains("utf-8") => CloseCode::InvalidPayload,
        _ => CloseCode::ProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn reassembles_text_and_binary() {
        let mut r = Reassembler::default();
        assert!(r.push(Item::FirstText(b(b"he")), 10).unwrap().is_none());
        assert!(r.in_progress());
        assert!(r.push(Item::Continue(b(b"ll")), 10).unwrap().is_none());
        match r.push(Item::Last(b(b"o")), 10).unwrap() {
            Some(Frame::Text(s)) => assert_eq!(&*s, "hello"),
            other => panic!("{other:?}"),
        }
        assert!(!r.in_progress());
        r.push(Item::FirstBinary(b(&[1])), 10).unwrap();
        match r.push(Item::Last(b(&[2])), 10).unwrap() {
            Some(Frame::Binary(x)) => assert_eq!(&x[..], &[1, 2]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn size_limit_is_inclusive() {
        let mut r = Reassembler::default();
        r.push(Item::FirstBinary(b(&[0; 5])), 10).unwrap();
        assert!(r.push(Item::Last(b(&[0; 5])), 10).unwrap().is_some());
        r.push(Item::FirstBinary(b(&[0; 5])), 10).unwrap();
        assert_eq!(
            r.push(Item::Last(b(&[0; 6])), 10).unwrap_err(),
            CloseCode::TooBig
        );
    }

    #[test]
    fn bad_sequences() {
        let mut r = Reassembler::default();
        assert_eq!(
            r.push(Item::Continue(b(b"x")), 10).unwrap_err(),
            CloseCode::ProtocolError
        );
        assert_eq!(
            r.push(Item::Last(b(b"x")), 10).unwrap_err(),
            CloseCode::ProtocolError
        );
        r.push(Item::FirstText(b(b"x")), 10).unwrap();
        assert_eq!(
            r.push(Item::FirstText(b(b"x")), 10).unwrap_err(),
            CloseCode::ProtocolError
        );
        let mut r = Reassembler::default();
        r.push(Item::FirstText(b(&[0xff])), 10).unwrap();
        assert_eq!(
            r.push(Item::Last(b(&[0xfe])), 10).unwrap_err(),
            CloseCode::InvalidPayload
        );
    }

    #[test]
    fn protocol_errors_map_to_codes() {
        assert_eq!(close_code_for(&ProtocolError::Overflow), CloseCode::TooBig);
        assert_eq!(
            close_code_for(&ProtocolError::UnmaskedFrame),
            CloseCode::ProtocolError
        );
        let bad = vec![0xffu8];
        let utf8 = std::str::from_utf8(&bad).unwrap_err();
        let io = std::io::Error::other(utf8.to_string());
        assert_eq!(
            close_code_for(&ProtocolError::Io(io)),
            CloseCode::InvalidPayload
        );
    }
}
