//! Refuses an oversized frame at its header, before its payload is buffered,
//! and keeps the session from reading ahead of what it has decoded.
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
//! Frames before it reach the parser unchanged and in order.
//!
//! actix-web-actors' decoder drains its byte stream completely each time it is
//! polled and decodes one frame per poll: a client sending faster than the
//! session handles messages would be buffered without bound. [`GuardedPayload`]
//! therefore hands over at most one message of `max_message_bytes` plus a
//! frame header (and a few small frames) beyond what the decoder has taken;
//! the rest stays in the kernel, so TCP slows the client down.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::error::PayloadError;
use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;

/// Longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;

/// The close frame's opcode.
const OPCODE_CLOSE: u8 = 0x8;

/// Longest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;

/// Most complete frames handed to the decoder and not yet decoded: bounds the
/// bookkeeping for floods of tiny frames.
const MAX_FRAMES_AHEAD: usize = 32;

/// What [`FrameSizeGuard::step`] did with its input.
#[derive(Debug)]
pub struct Step {
    /// Input bytes consumed.
    pub used: usize,
    /// Bytes to hand to the frame parser.
    pub out: Bytes,
    /// True when `out` ends a frame.
    pub frame_done: bool,
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

    /// True between frames or inside a header (what comes next is header bytes).
    pub fn at_header(&self) -> bool {
        self.skip == 0
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
                frame_done: false,
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
                        frame_done: false,
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
                    frame_done: false,
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
                return Step {
                    used: pos,
                    out,
                    frame_done: true,
                };
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
                    frame_done: false,
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
            return Step {
                used: end,
                out,
                frame_done: true,
            };
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
        Step {
            used: end,
            out,
            frame_done: self.skip == 0,
        }
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

/// What the decoder holds, as far as the bytes handed to it tell.
///
/// The decoder (actix-web-actors' `WsStream`) polls this stream until it is
/// `Pending`, then decodes at most one frame. So each poll that follows a
/// `Pending` means one complete frame, if there was one, has left its buffer.
#[derive(Debug, Default)]
struct DecoderModel {
    /// Sizes of the complete frames handed over and not yet decoded.
    complete: VecDeque<usize>,
    /// Bytes handed over of the frame not yet complete.
    partial: usize,
    /// Sum of `complete`.
    complete_bytes: usize,
}

impl DecoderModel {
    fn handed(&mut self, bytes: usize, frame_done: bool) {
        self.partial += bytes;
        if frame_done {
            self.complete.push_back(self.partial);
            self.complete_bytes += self.partial;
            self.partial = 0;
        }
    }

    fn decoded_one(&mut self) {
        if let Some(n) = self.complete.pop_front() {
            self.complete_bytes -= n;
        }
    }

    /// How many more bytes may be handed over with `limit` in the decoder:
    /// any amount while no complete frame waits (the guard ends a piece at its
    /// frame's end, and a frame is at most `limit`), else what fits.
    fn room(&self, limit: usize) -> usize {
        if self.complete.is_empty() {
            usize::MAX
        } else if self.complete.len() >= MAX_FRAMES_AHEAD {
            0
        } else {
            limit.saturating_sub(self.complete_bytes + self.partial)
        }
    }
}

/// The request payload seen through a [`FrameSizeGuard`], handed to the
/// decoder no further ahead than one message plus a frame header.
pub struct GuardedPayload<S> {
    inner: S,
    guard: FrameSizeGuard,
    /// The rest of the last chunk read from `inner`.
    held: Bytes,
    decoder: DecoderModel,
    /// The most the decoder may hold: `max_message_bytes` + [`MAX_HEADER`].
    limit: usize,
    /// The last poll returned `Pending`: the decoder has decoded since.
    parked: bool,
    /// An error of the inner stream, held until the decoder has taken the
    /// complete frames before it: a client that sends its close frame and
    /// resets the connection at once closed normally, not with 1002.
    failed: Option<PayloadError>,
}

impl<S> GuardedPayload<S> {
    /// Wraps `inner` with a guard for `max_bytes`.
    pub fn new(inner: S, max_bytes: usize) -> Self {
        Self {
            inner,
            guard: FrameSizeGuard::new(max_bytes),
            held: Bytes::new(),
            decoder: DecoderModel::default(),
            limit: max_bytes.saturating_add(MAX_HEADER),
            parked: false,
            failed: None,
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
        if std::mem::take(&mut this.parked) {
            this.decoder.decoded_one();
        }
        if let Some(err) = this.failed.take() {
            if this.decoder.complete.is_empty() {
                return Poll::Ready(Some(Err(err)));
            }
            // Let the decoder take the frames before the error first.
            this.failed = Some(err);
            this.parked = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if this.guard.tripped() {
                // The refusing header is out; the session closes.
                return Poll::Ready(None);
            }
            if this.held.is_empty() {
                match Pin::new(&mut this.inner).poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        this.held = chunk;
                        continue;
                    }
                    Poll::Pending => {
                        this.parked = true;
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Err(err))) if !this.decoder.complete.is_empty() => {
                        this.failed = Some(err);
                        this.parked = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    other => return other,
                }
            }
            let room = this.decoder.room(this.limit);
            // A header is handed whole, so it needs room for the longest one.
            let need = if this.guard.at_header() {
                MAX_HEADER
            } else {
                1
            };
            if room < need {
                // The decoder has a complete frame to decode: it will, and
                // poll again. The bytes wait here and in the kernel. The
                // wake-up costs one poll and keeps a stream between this
                // one and the decoder (which may answer `Pending` without
                // polling this one, so a decode goes unseen) from stalling:
                // every poll after a `Pending` counts one frame decoded.
                this.parked = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let step = if room < this.held.len() {
                this.guard.step(&this.held.slice(..room))
            } else {
                this.guard.step(&this.held)
            };
            this.held.advance(step.used);
            if this.held.is_empty() {
                // Let go of the chunk's allocation as soon as it is drained.
                this.held = Bytes::new();
            }
            this.decoder.handed(step.out.len(), step.frame_done);
            if !step.out.is_empty() {
                return Poll::Ready(Some(Ok(step.out)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_codec::Decoder;
    use actix_http::ws::{Codec, Frame, ProtocolError};
    use std::task::Waker;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
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

    /// The inbound byte stream in fixed-size chunks, counting what was taken.
    struct Chunks {
        data: Bytes,
        step: usize,
        taken: usize,
    }

    impl Stream for Chunks {
        type Item = Result<Bytes, PayloadError>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let n = self.step.min(self.data.len());
            if n == 0 {
                return Poll::Ready(None);
            }
            self.taken += n;
            Poll::Ready(Some(Ok(self.data.split_to(n))))
        }
    }

    /// Drives `payload` the way actix-web-actors' `WsStream` does: drain the
    /// stream until `Pending` or its end, then decode one frame. Returns the
    /// frames, the error if any, and the most bytes the decoder ever held.
    fn run_decoder(
        payload: &mut GuardedPayload<Chunks>,
        max: usize,
    ) -> (Vec<Frame>, Option<ProtocolError>, usize) {
        let mut codec = Codec::new().max_size(max);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut high = 0;
        let mut cx = Context::from_waker(Waker::noop());
        let mut closed = false;
        loop {
            while !closed {
                match Pin::new(&mut *payload).poll_next(&mut cx) {
                    Poll::Ready(Some(Ok(b))) => buf.extend_from_slice(&b),
                    Poll::Ready(Some(Err(e))) => panic!("{e}"),
                    Poll::Ready(None) => closed = true,
                    Poll::Pending => break,
                }
            }
            high = high.max(buf.len());
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) if closed => return (frames, None, high),
                Ok(None) => panic!("stalled: nothing to decode and the stream is pending"),
                Err(e) => return (frames, Some(e), high),
            }
        }
    }

    /// Decodes what the guard lets through when `input` arrives in `step`-byte chunks.
    fn decode_all(input: &[u8], step: usize, max: usize) -> (Vec<Frame>, Option<ProtocolError>) {
        let chunks = Chunks {
            data: Bytes::copy_from_slice(input),
            step: step.max(1),
            taken: 0,
        };
        let mut payload = GuardedPayload::new(chunks, max);
        let (frames, err, _) = run_decoder(&mut payload, max);
        (frames, err)
    }

    #[test]
    fn a_close_frame_followed_by_a_reset_is_decoded_before_the_error() {
        // The client sends its close and resets the connection at once: the
        // decoder must see the close (normal closure), not only the error.
        let close = frame(0x88, &1000u16.to_be_bytes());
        let items = vec![Ok(Bytes::from(close)), Err(PayloadError::Incomplete(None))];
        let mut payload = GuardedPayload::new(items_stream(items), 1024);
        let mut codec = Codec::new().max_size(1024);
        let mut buf = BytesMut::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut seen = Vec::new();
        for _ in 0..8 {
            loop {
                match Pin::new(&mut payload).poll_next(&mut cx) {
                    Poll::Ready(Some(Ok(b))) => buf.extend_from_slice(&b),
                    Poll::Ready(Some(Err(_))) => {
                        seen.push("error");
                        break;
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if let Ok(Some(Frame::Close(_))) = codec.decode(&mut buf) {
                seen.push("close");
            }
            if seen.contains(&"error") {
                break;
            }
        }
        assert_eq!(seen, ["close", "error"]);
    }

    /// A stream of the given items, then its end.
    fn items_stream(
        items: Vec<Result<Bytes, PayloadError>>,
    ) -> impl Stream<Item = Result<Bytes, PayloadError>> + Unpin {
        struct Items(std::vec::IntoIter<Result<Bytes, PayloadError>>);
        impl Stream for Items {
            type Item = Result<Bytes, PayloadError>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                Poll::Ready(self.0.next())
            }
        }
        Items(items.into_iter())
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
            // actix-web-actors' WsStream turns a text frame that is not
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

    #[test]
    fn the_decoder_is_never_handed_more_than_one_message_plus_a_header_ahead() {
        const MAX: usize = 1000;
        // 8 MiB of empty pongs, then large messages, all available at once.
        let mut input = Vec::new();
        while input.len() < 8 << 20 {
            input.extend(frame(0x8a, b""));
        }
        for _ in 0..50 {
            input.extend(frame(0x82, &[1; MAX]));
        }
        let total = input.len();
        let frames_sent = (8 << 20) / 6 + 50;
        let mut payload = GuardedPayload::new(
            Chunks {
                data: Bytes::from(input),
                step: 64 << 10,
                taken: 0,
            },
            MAX,
        );
        let (frames, err, high) = run_decoder(&mut payload, MAX);
        assert!(err.is_none(), "{err:?}");
        assert!(frames.len() >= frames_sent, "{}", frames.len());
        assert_eq!(payload.inner.taken, total);
        assert!(high <= MAX + MAX_HEADER, "decoder held {high} bytes");
        assert!(payload.held.is_empty());
    }

    #[test]
    fn reading_waits_for_the_decoder() {
        let mut input = Vec::new();
        for _ in 0..100 {
            input.extend(frame(0x82, &[1; 100]));
        }
        let mut payload = GuardedPayload::new(
            Chunks {
                data: Bytes::from(input),
                step: 1 << 20,
                taken: 0,
            },
            1000,
        );
        let mut cx = Context::from_waker(Waker::noop());
        let mut handed = 0;
        while let Poll::Ready(Some(Ok(b))) = Pin::new(&mut payload).poll_next(&mut cx) {
            handed += b.len();
        }
        // A decoder that never decodes gets no more than the limit plus the
        // frame in progress.
        assert!(handed <= 1000 + MAX_HEADER, "{handed}");
        assert!(handed > 0);
    }
}
