//! Inbound bytes → frames → messages, as a Session sees them: the frame-size
//! guard, actix-http's decoder (with `max_message_bytes`), the reassembly of
//! fragments, and `protocol::encode` in both modes.
//!
//! Input: byte 0 picks the mode, byte 1 the size limit, byte 2 the chunk size
//! the bytes arrive in; the rest is what a client wrote after the handshake.
#![no_main]

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame as WsFrame};
use bytes::BytesMut;
use bytestring::ByteString;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use wsplus_actors::protocol::{encode, Frame, SESSION_KEY};
use wsplus_actors::session::{FrameSizeGuard, Reassembler};
use wsplus_actors::{Delivery, Mode};

fuzz_target!(|data: &[u8]| {
    let [mode, size, step, rest @ ..] = data else {
        return;
    };
    let mode = if mode & 1 == 0 {
        Mode::Payload
    } else {
        Mode::Message
    };
    let max = 1 + usize::from(*size) * 64; // 1 ..= 16 321 bytes
    let step = 1 + usize::from(*step);
    let stamp = json!({"type": "websocket", "id": "fuzz", "tenantId": "t",
                       "subject": null, "authStatus": "verified", "routingScope": "tenant"});

    let mut guard = FrameSizeGuard::new(max);
    let mut codec = Codec::new().max_size(max);
    let mut fragments = Reassembler::default();
    let mut buf = BytesMut::new();
    let mut passed = Vec::new();
    for chunk in rest.chunks(step) {
        let out = guard.filter(chunk);
        passed.extend_from_slice(&out);
        buf.extend_from_slice(&out);
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return, // the session closes (1002/1009)
            };
            let message = match frame {
                WsFrame::Text(b) if !fragments.in_progress() => match ByteString::try_from(b) {
                    Ok(s) => Frame::Text(s),
                    Err(_) => return, // 1007
                },
                WsFrame::Binary(b) if !fragments.in_progress() => Frame::Binary(b),
                WsFrame::Text(_) | WsFrame::Binary(_) => return, // 1002
                WsFrame::Continuation(item) => match fragments.push(item, max) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(_) => return,
                },
                WsFrame::Ping(_) | WsFrame::Pong(_) => continue,
                WsFrame::Close(_) => return,
            };
            check(mode, message, &stamp, max);
        }
    }
    // Until it trips, the guard changes nothing: what it let through is the
    // input minus at most one incomplete header held back.
    if !guard.tripped() {
        assert!(rest.starts_with(&passed));
        assert!(rest.len() - passed.len() < 14);
    }
});

fn check(mode: Mode, message: Frame, stamp: &Value, max: usize) {
    let (len, original) = match &message {
        Frame::Text(s) => (s.len(), s.as_bytes().to_vec()),
        Frame::Binary(b) => (b.len(), b.to_vec()),
    };
    assert!(len <= max, "a {len}-byte message passed a {max}-byte limit");
    let is_text = matches!(message, Frame::Text(_));
    match (mode, encode(mode, message, stamp)) {
        (Mode::Payload, Delivery::Text(s)) => assert!(is_text && s.as_bytes()[..] == original[..]),
        (Mode::Payload, Delivery::Binary(b)) => assert!(!is_text && b[..] == original[..]),
        (Mode::Message, Delivery::Text(s)) => {
            let v: Value = serde_json::from_str(&s).expect("message mode emits JSON");
            let obj = v.as_object().expect("message mode emits an object");
            assert_eq!(
                obj.get(SESSION_KEY),
                Some(stamp),
                "the stamp is the verified one"
            );
        }
        (Mode::Message, Delivery::Binary(_)) => panic!("message mode emitted binary"),
    }
}
