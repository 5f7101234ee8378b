//! Refuses an oversized frame at its header, before its payload is buffered.
//!
//! actix-http's frame parser compares a frame's declared length with
//! `max_size` only once the whole frame has arrived; until then it keeps every
//! byte. A client could declare a 1 TiB frame and stream into the session's
//! buffer without bound. [`FrameSizeGuard`] sits on the inbound byte stream,
//! follows the frame boundaries, and replaces the header of the first data
//! frame longer than `max_message_bytes` with one whose 64-bit length has its
//! most significant bit set — which the parser refuses at once with
//! `Overflow`, i.e. close 1009 — and drops everything after it. Frames before
//! it reach the parser unchanged and in order.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;

/// Longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Frame-boundary tracker of one connection's inbound bytes.
#[derive(Debug)]
pub struct FrameSizeGuard {
    max: u64,
    header: [u8; MAX_HEADER],
    have: usize,
    skip: u64,
    tripped: bool,
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
        }
    }

    /// True once an oversized frame was seen; nothing more is let through.
    pub fn tripped(&self) -> bool {
        self.tripped
    }

    /// The bytes of `chunk` to hand to the frame parser. A header split over
    /// chunks is held back until it is complete.
    pub fn filter(&mut self, chunk: &[u8]) -> Bytes {
        if self.tripped {
            return Bytes::new();
        }
        let mut out = BytesMut::with_capacity(chunk.len() + self.have);
        let mut pos = 0;
        while pos < chunk.len() {
            if self.skip > 0 {
                let take = self.skip.min((chunk.len() - pos) as u64) as usize;
                out.extend_from_slice(&chunk[pos..pos + take]);
                pos += take;
                self.skip -= take as u64;
                continue;
            }
            self.header[self.have] = chunk[pos];
            self.have += 1;
            pos += 1;
            let head = &self.header[..self.have];
            let Some(need) = header_len(head) else {
                continue;
            };
            if self.have < need {
                continue;
            }
            let len = payload_len(head);
            let is_data = head[0] & 0x08 == 0;
            if is_data && len > self.max {
                // Same FIN/RSV/opcode and mask bit, so the parser's earlier
                // checks still apply in their order; then a length it refuses.
                out.extend_from_slice(&[head[0], (head[1] & 0x80) | 127]);
                out.extend_from_slice(&[0xff; 8]);
                self.tripped = true;
                self.have = 0;
                return out.freeze();
            }
            out.extend_from_slice(head);
            self.have = 0;
            self.skip = len;
        }
        out.freeze()
    }
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

/// The request payload seen through a [`FrameSizeGuard`].
pub struct GuardedPayload<S> {
    inner: S,
    guard: FrameSizeGuard,
}

impl<S> GuardedPayload<S> {
    /// Wraps `inner` with a guard for `max_bytes`.
    pub fn new(inner: S, max_bytes: usize) -> Self {
        Self {
            inner,
            guard: FrameSizeGuard::new(max_bytes),
        }
    }
}

impl<S> Stream for GuardedPayload<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.guard.tripped() {
            // The refusing header is out; the session closes with 1009.
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(this.guard.filter(&chunk)))),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_codec::Decoder;
    use actix_http::ws::{Codec, Frame, ProtocolError};

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [1, 2, 3, 4];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Decodes what the guard lets through when `input` arrives in `step`-byte chunks.
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
        input.extend(frame(0x81, &[b'x'; 1000]));
        for step in [1, 2, 3, 7, 13, 64, 4096] {
            let (frames, err) = decode_all(&input, step, 1000);
            assert!(err.is_none(), "step {step}: {err:?}");
            assert_eq!(frames.len(), 4, "step {step}");
            assert_eq!(texts(&frames)[0], "hello");
        }
    }

    #[test]
    fn an_oversized_header_is_refused_before_its_payload_arrives() {
        let mut input = frame(0x81, b"before");
        // Declares 2^40 bytes and sends none of them.
        input.extend_from_slice(&[0x82, 0x80 | 127]);
        input.extend_from_slice(&(1u64 << 40).to_be_bytes());
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
    fn nothing_passes_after_the_trip_and_control_frames_are_not_its_business() {
        let mut g = FrameSizeGuard::new(10);
        let out = g.filter(&frame(0x82, &[0; 11]));
        assert_eq!(
            &out[..],
            &[
                0x82,
                0x80 | 127,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff
            ]
        );
        assert!(g.tripped());
        assert!(g.filter(b"more").is_empty());
        // A 100-byte ping with a 10-byte data limit is the parser's call (it
        // allows up to 125), not the guard's.
        let mut g = FrameSizeGuard::new(10);
        let ping = frame(0x89, &[0; 100]);
        assert_eq!(&g.filter(&ping)[..], &ping[..]);
        // Unmasked frames keep their mask bit clear, so the parser still says so.
        let mut g = FrameSizeGuard::new(10);
        let out = g.filter(&[0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(out[1] & 0x80, 0);
    }
}
