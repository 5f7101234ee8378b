//! Refuses an oversized frame at its header, before its payload is buffered.
//!
//! actix-http's frame parser compares a frame's declared length with
//! `max_size` only once the whole frame has arrived; until then it keeps every
//! byte. A client could declare a 1 TiB frame (or a 200 MB ping) and stream
//! into the session's buffer without bound. [`FrameSizeGuard`] sits on the
//! inbound byte stream, follows the frame boundaries, and replaces the header
//! of the first frame it refuses with one the parser refuses at once, then
//! drops everything after it:
//! - a data frame longer than `max_message_bytes` gets a 64-bit length with
//!   its most significant bit set (`Overflow`, close 1009);
//! - a control frame (ping, pong, close) declaring more than 125 bytes
//!   (RFC 6455 §5.5) gets its reserved bits set (a protocol error, close 1002).
//!
//! Frames before it reach the parser unchanged and in order. [`FrameSizeGuard::step`]
//! stops at the end of the frame in progress, so a decoder fed by it holds at
//! most one frame (see `inbound.rs`).

use bytes::{Buf, Bytes, BytesMut};

/// Longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;

/// The close frame's opcode.
const OPCODE_CLOSE: u8 = 0x8;

/// Longest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;

/// What [`FrameSizeGuard::step`] did with its input.
#[derive(Debug)]
pub struct Step {
    /// Input bytes consumed.
    pub used: usize,
    /// Bytes to hand to the frame parser.
    pub out: Bytes,
}

/// Frame-boundary tracker of one connection's inbound bytes.
#[derive(Debug)]
pub struct FrameSizeGuard {
    max: u64,
    header: [u8; MAX_HEADER],
    have: usize,
    skip: u64,
    tripped: bool,
    /// A close frame being received (header and payload so far).
    close: Option<Vec<u8>>,
}

impl FrameSizeGuard {
    /// A guard for frames of at most `max_bytes` payload bytes.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max: max_bytes as u64,
            header: [0; MAX_HEADER],
            have: 0,
            skip: 0,
            tripped: false,
            close: None,
        }
    }

    /// True once a frame was refused; nothing more is let through.
    pub fn tripped(&self) -> bool {
        self.tripped
    }

    /// The bytes of `chunk` to hand to the frame parser. A header split over
    /// chunks is held back until it is complete.
    pub fn filter(&mut self, chunk: &[u8]) -> Bytes {
        let mut input = Bytes::copy_from_slice(chunk);
        let mut out = BytesMut::new();
        while !input.is_empty() {
            let step = self.step(&input);
            out.extend_from_slice(&step.out);
            input.advance(step.used);
        }
        out.freeze()
    }

    /// Processes `input` up to the end of the frame in progress at most.
    /// Bytes of one frame come back as a slice of `input` (no copy) unless
    /// its header was split over inputs.
    pub fn step(&mut self, input: &Bytes) -> Step {
        if self.tripped {
            return Step {
                used: input.len(),
                out: Bytes::new(),
            };
        }
        let mut pos = 0;
        let mut start = 0;
        let mut carried: Option<Bytes> = None;
        if self.skip == 0 {
            let held = self.have;
            let need = loop {
                if let Some(need) = header_len(&self.header[..self.have]) {
                    if self.have == need {
                        break need;
                    }
                }
                let Some(&b) = input.get(pos) else {
                    // Incomplete header: kept here until the rest arrives.
                    return Step {
                        used: pos,
                        out: Bytes::new(),
                    };
                };
                self.header[self.have] = b;
                self.have += 1;
                pos += 1;
            };
            let head = &self.header[..need];
            let len = payload_len(head);
            if let Some(refusal) = refusal(head, len, self.max) {
                self.tripped = true;
                self.have = 0;
                return Step {
                    used: input.len(),
                    out: refusal,
                };
            }
            if held > 0 {
                carried = Some(Bytes::copy_from_slice(head));
                start = pos;
            }
            self.have = 0;
            self.skip = len;
            if head[0] & 0x0f == OPCODE_CLOSE && len > 0 {
                // Held whole (at most 139 bytes) to check its reason.
                self.close = Some(head.to_vec());
            }
            if len == 0 {
                let out = carried.unwrap_or_else(|| input.slice(start..pos));
                return Step { used: pos, out };
            }
        }
        let take = self.skip.min((input.len() - pos) as u64) as usize;
        self.skip -= take as u64;
        let end = pos + take;
        if let Some(frame) = self.close.as_mut() {
            frame.extend_from_slice(&input[pos..end]);
            if self.skip > 0 {
                return Step {
                    used: end,
                    out: Bytes::new(),
                };
            }
            let frame = self.close.take().unwrap_or_default();
            let out = match invalid_close_reason(&frame) {
                Some(refusal) => {
                    self.tripped = true;
                    refusal
                }
                None => Bytes::from(frame),
            };
            return Step { used: end, out };
        }
        let out = match carried {
            None => input.slice(start..end),
            Some(head) => {
                let mut joined = BytesMut::with_capacity(head.len() + take);
                joined.extend_from_slice(&head);
                joined.extend_from_slice(&input[start..end]);
                joined.freeze()
            }
        };
        Step { used: end, out }
    }
}

/// The header that makes the parser refuse the frame `head` at once, if it
/// must be refused. FIN, opcode and mask bit are kept, so the parser's
/// earlier checks still apply in their order.
fn refusal(head: &[u8], len: u64, max: u64) -> Option<Bytes> {
    let is_control = head[0] & 0x08 != 0;
    if is_control && len > MAX_CONTROL {
        // Reserved bits set: refused before anything else is looked at, in
        // client and server mode alike.
        return Some(Bytes::copy_from_slice(&[head[0] | 0x70, head[1]]));
    }
    if !is_control && len > max {
        let mut out = BytesMut::with_capacity(10);
        out.extend_from_slice(&[head[0], (head[1] & 0x80) | 127]);
        out.extend_from_slice(&[0xff; 8]);
        return Some(out.freeze());
    }
    None
}

/// A close frame whose reason is not UTF-8 must fail the connection with
/// 1007 (RFC 6455 §8.1, §7.4.1); actix-http reports it like an invalid close
/// code, as a protocol error. It becomes a one-byte text frame that is not
/// UTF-8 (same mask bit and key), which the decoder refuses with 1007.
fn invalid_close_reason(frame: &[u8]) -> Option<Bytes> {
    let header = header_len(frame)?;
    let (head, payload) = frame.split_at(header);
    let key = (head[1] & 0x80 != 0).then(|| {
        [
            head[header - 4],
            head[header - 3],
            head[header - 2],
            head[header - 1],
        ]
    });
    let reason: Vec<u8> = payload
        .iter()
        .enumerate()
        .skip(2)
        .map(|(i, b)| key.map_or(*b, |k| b ^ k[i % 4]))
        .collect();
    if payload.len() <= 2 || std::str::from_utf8(&reason).is_ok() {
        return None;
    }
    let mut out = vec![0x81, (head[1] & 0x80) | 1];
    out.extend_from_slice(&key.unwrap_or_default()[..if key.is_some() { 4 } else { 0 }]);
    out.push(0xff ^ key.map_or(0, |k| k[0]));
    Some(Bytes::from(out))
}

/// Header length once the first two bytes are known.
fn header_len(head: &[u8]) -> Option<usize> {
    let second = *head.get(1)?;
    let ext = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    Some(2 + ext + mask)
}

/// Declared payload length of a complete header.
fn payload_len(head: &[u8]) -> u64 {
    match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[2..10]);
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use actix_codec::Decoder;
    use actix_http::ws::{Codec, Frame, ProtocolError};

    /// A masked client frame.
    pub(in crate::session) fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = header(first, payload.len() as u64);
        let mask = [1, 2, 3, 4];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// The first bytes of a masked header declaring `len` (mask key not included).
    fn header(first: u8, len: u64) -> Vec<u8> {
        let mut out = vec![first];
        match len {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        out
    }

    /// Decodes what the guard lets through when `input` arrives in
    /// `step`-byte chunks, the way [`super::super::inbound::Inbound`] does.
    fn decode_all(input: &[u8], step: usize, max: usize) -> (Vec<Frame>, Option<ProtocolError>) {
        let mut guard = FrameSizeGuard::new(max);
        let mut codec = Codec::new().max_size(max);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            buf.extend_from_slice(&guard.filter(chunk));
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    }

    fn texts(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Text(b) | Frame::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn frames_within_the_limit_pass_unchanged_however_they_are_split() {
        let mut input = frame(0x81, b"hello");
        input.extend(frame(0x82, &[7u8; 300]));
        input.extend(frame(0x89, b"ping"));
        input.extend(frame(0x8a, &[0; 125]));
        input.extend(frame(0x81, &[b'x'; 1000]));
        input.extend(frame(0x8a, b""));
        for step in [1, 2, 3, 7, 13, 64, 4096] {
            let (frames, err) = decode_all(&input, step, 1000);
            assert!(err.is_none(), "step {step}: {err:?}");
            assert_eq!(frames.len(), 6, "step {step}");
            assert_eq!(texts(&frames)[0], "hello");
            assert_eq!(texts(&frames)[4], "x".repeat(1000));
            // The same bytes through `filter`, chunk by chunk.
            let mut g = FrameSizeGuard::new(1000);
            let passed: Vec<u8> = input.chunks(step).flat_map(|c| g.filter(c)).collect();
            assert_eq!(passed, input, "step {step}");
        }
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload_arrives() {
        let mut input = frame(0x81, b"before");
        // Declares 2^40 bytes and sends none of them.
        input.extend(header(0x82, 1 << 40));
        input.extend_from_slice(&[9, 9, 9, 9]);
        for step in [1, 5, 4096] {
            let (frames, err) = decode_all(&input, step, 1000);
            assert_eq!(texts(&frames), ["before"], "step {step}");
            assert!(matches!(err, Some(ProtocolError::Overflow)), "{err:?}");
        }
        // One byte over is refused the same way, exactly at the limit passes.
        let (_, err) = decode_all(&frame(0x81, &[b'a'; 1001]), 3, 1000);
        assert!(matches!(err, Some(ProtocolError::Overflow)));
        let (frames, err) = decode_all(&frame(0x81, &[b'a'; 1000]), 3, 1000);
        assert!(err.is_none() && frames.len() == 1);
    }

    #[test]
    fn a_control_frame_over_125_bytes_is_refused_at_its_header_as_a_protocol_error() {
        // A ping declaring 200 MB, a close and a pong declaring 126: refused
        // with a protocol error (1002), not a size error, whatever the data
        // limit, and without waiting for a byte of payload.
        for (first, len) in [(0x89u8, 200_000_000u64), (0x88, 126), (0x8a, 126)] {
            let mut input = frame(0x81, b"before");
            input.extend(header(first, len));
            input.extend_from_slice(&[9, 9, 9, 9]);
            for max in [10, 1 << 30] {
                let (frames, err) = decode_all(&input, 3, max);
                assert_eq!(texts(&frames), ["before"]);
                let err = err.expect("refused");
                assert!(!matches!(err, ProtocolError::Overflow), "{err:?}");
                assert_eq!(
                    crate::session::close_code_for(&err),
                    crate::close::CloseCode::ProtocolError
                );
            }
        }
        // Unmasked server frames (the outbound client's side) are refused too.
        let mut g = FrameSizeGuard::new(1 << 20);
        let out = g.filter(&[0x89, 127, 0, 0, 0, 0, 0x0b, 0xeb, 0xc2, 0]);
        assert!(g.tripped());
        let mut codec = Codec::new().client_mode();
        let err = codec.decode(&mut BytesMut::from(&out[..])).unwrap_err();
        assert!(!matches!(err, ProtocolError::Overflow), "{err:?}");
    }

    #[test]
    fn a_close_reason_that_is_not_utf8_is_refused_as_invalid_payload() {
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(&[b'o', b'k', 0xff]);
        let mut input = frame(0x81, b"before");
        input.extend(frame(0x88, &close));
        for step in [1, 3, 4096] {
            // The session's decoder (`inbound.rs`) turns a text frame that is not
            // UTF-8 into the error the session closes with 1007.
            let (frames, err) = decode_all(&input, step, 1000);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(frames.len(), 2, "step {step}");
            match &frames[1] {
                Frame::Text(b) => assert!(std::str::from_utf8(b).is_err()),
                other => panic!("{other:?}"),
            }
        }
        // The decoder sees a one-byte text frame that is not UTF-8.
        let mut g = FrameSizeGuard::new(1000);
        let out = g.filter(&frame(0x88, &close));
        assert!(g.tripped());
        let decoded = Codec::new().decode(&mut BytesMut::from(&out[..])).unwrap();
        match decoded {
            Some(Frame::Text(b)) => assert!(std::str::from_utf8(&b).is_err()),
            other => panic!("{other:?}"),
        }
        // A valid reason, an empty close and a bare code pass unchanged.
        for payload in [&b""[..], &[0x03, 0xe8], &[0x03, 0xe8, b'b', b'y', b'e']] {
            let mut g = FrameSizeGuard::new(1000);
            let f = frame(0x88, payload);
            let passed: Vec<u8> = f.chunks(2).flat_map(|c| g.filter(c)).collect();
            assert_eq!(passed, f);
            assert!(!g.tripped());
        }
    }

    #[test]
    fn nothing_passes_after_the_trip() {
        let mut g = FrameSizeGuard::new(10);
        let out = g.filter(&frame(0x82, &[0; 11]));
        let mut want = vec![0x82, 0x80 | 127];
        want.extend_from_slice(&[0xff; 8]);
        assert_eq!(&out[..], &want[..]);
        assert!(g.tripped());
        assert!(g.filter(b"more").is_empty());
        // A 100-byte ping with a 10-byte data limit is within RFC 6455's 125.
        let mut g = FrameSizeGuard::new(10);
        let ping = frame(0x89, &[0; 100]);
        assert_eq!(&g.filter(&ping)[..], &ping[..]);
        // Unmasked frames keep their mask bit clear, so the parser still says so.
        let mut g = FrameSizeGuard::new(10);
        let out = g.filter(&[0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(out[1] & 0x80, 0);
    }
}
