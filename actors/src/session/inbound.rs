//! A session's inbound messages: the request payload seen through a
//! [`FrameSizeGuard`], decoded by actix-http's frame `Codec` from a buffer
//! this stream owns.
//!
//! actix-web-actors' own decoder (`WsStream`, what `WebsocketContext::create`
//! wraps the payload in) drains the payload completely each time it is polled
//! and keeps its buffer's peak capacity for as long as the connection lives:
//! one large message left every idle session holding 64 KiB or more. This one
//! reads at most to the end of the frame in progress — the frame before it is
//! decoded and handed to the session before anything more is read, so a
//! client sending faster than the session handles stays in the kernel and TCP
//! slows it down — and lets go of its buffer once it has drained after
//! holding more than [`RELEASE_ABOVE`] bytes.
//!
//! Everything else is what `WsStream` did: the codec's `max_size` (a larger
//! frame is `Overflow`, close 1009), its continuation checks, a text frame
//! that is not UTF-8 as the I/O error [`close_code_for`] maps to 1007, a
//! payload error as an I/O error, and the end of the payload (the client is
//! gone) as the end of the stream once the frames before it are decoded.
//!
//! [`close_code_for`]: super::close_code_for

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::Decoder;
use actix_http::error::PayloadError;
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_core::Stream;

use super::size_guard::FrameSizeGuard;

/// A drained buffer that held more than this is released rather than kept
/// for the next frame: small frames keep reusing theirs, a large message
/// leaves nothing behind.
pub const RELEASE_ABOVE: usize = 16 * 1024;

/// The decoded messages of one connection's request payload.
pub struct Inbound<S> {
    inner: S,
    guard: FrameSizeGuard,
    codec: Codec,
    /// Bytes of the frame in progress (never more than one frame: at most
    /// `max_message_bytes` plus a frame header).
    buf: BytesMut,
    /// The most `buf` could hold since it was last released.
    peak: usize,
    /// The rest of the last chunk read from `inner`.
    held: Bytes,
    /// The payload ended or failed, or a frame was refused: nothing more is
    /// read.
    ended: bool,
}

impl<S> Inbound<S> {
    /// Decodes `inner`, refusing frames over `max_bytes` at their header.
    pub fn new(inner: S, max_bytes: usize) -> Self {
        Self {
            inner,
            guard: FrameSizeGuard::new(max_bytes),
            codec: Codec::new().max_size(max_bytes),
            buf: BytesMut::new(),
            peak: 0,
            held: Bytes::new(),
            ended: false,
        }
    }

    /// Decodes the next complete frame in `buf`, releasing the buffer if that
    /// drained a large one.
    fn decode(&mut self) -> Option<Result<Message, ProtocolError>> {
        let decoded = match self.codec.decode(&mut self.buf) {
            Ok(None) => return None,
            Ok(Some(frame)) => message(frame),
            Err(e) => Err(e),
        };
        if decoded.is_err() {
            // The session closes; nothing after the error is decoded.
            self.ended = true;
            self.buf = BytesMut::new();
            self.held = Bytes::new();
            self.peak = 0;
        }
        if self.buf.is_empty() && self.peak > RELEASE_ABOVE {
            // The frame just decoded keeps its bytes; the rest of the
            // allocation goes with it.
            self.buf = BytesMut::new();
            self.peak = 0;
        }
        Some(decoded)
    }
}

/// The message a decoded frame is, as actix-web-actors' `WsStream` makes it.
fn message(frame: Frame) -> Result<Message, ProtocolError> {
    Ok(match frame {
        Frame::Text(data) => Message::Text(
            ByteString::try_from(data).map_err(|e| ProtocolError::Io(io::Error::other(e)))?,
        ),
        Frame::Binary(data) => Message::Binary(data),
        Frame::Continuation(item) => Message::Continuation(item),
        Frame::Ping(p) => Message::Ping(p),
        Frame::Pong(p) => Message::Pong(p),
        Frame::Close(reason) => Message::Close(reason),
    })
}

impl<S> Stream for Inbound<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Message, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Frames already read go first: a close followed by a reset is
            // a normal closure.
            if let Some(decoded) = this.decode() {
                return Poll::Ready(Some(decoded));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.held.is_empty() {
                match Pin::new(&mut this.inner).poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => this.held = chunk,
                    Poll::Ready(Some(Err(e))) => {
                        this.ended = true;
                        this.held = Bytes::new();
                        return Poll::Ready(Some(Err(ProtocolError::Io(io::Error::other(
                            e.to_string(),
                        )))));
                    }
                    Poll::Ready(None) => {
                        this.ended = true;
                        return Poll::Ready(None);
                    }
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            // `buf` holds no complete frame, so at most the start of one:
            // the guard hands over no more than the rest of that frame (or
            // of the next, when `buf` is empty).
            let step = this.guard.step(&this.held);
            this.held = if step.used == this.held.len() {
                // Let go of the chunk's allocation as soon as it is drained.
                Bytes::new()
            } else {
                this.held.slice(step.used..)
            };
            this.buf.extend_from_slice(&step.out);
            this.peak = this.peak.max(this.buf.capacity());
            if this.guard.tripped() {
                // The refusing header is in `buf`; the rest is never read.
                this.ended = true;
                this.held = Bytes::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseCode;
    use crate::session::close_code_for;
    use crate::session::size_guard::tests::frame;
    use crate::session::size_guard::MAX_HEADER;
    use actix_http::ws::Item;
    use std::collections::VecDeque;
    use std::task::Waker;

    /// The request payload: the given chunks, then `Pending` (the client is
    /// idle) or the end (the client is gone); counts the bytes taken.
    struct Chunks {
        items: VecDeque<Result<Bytes, PayloadError>>,
        ends: bool,
        taken: usize,
    }

    impl Chunks {
        fn new(data: &[u8], step: usize, ends: bool) -> Self {
            Self {
                items: data
                    .chunks(step)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect(),
                ends,
                taken: 0,
            }
        }
    }

    impl Stream for Chunks {
        type Item = Result<Bytes, PayloadError>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.items.pop_front() {
                Some(item) => {
                    self.taken += item.as_ref().map_or(0, Bytes::len);
                    Poll::Ready(Some(item))
                }
                None if self.ends => Poll::Ready(None),
                None => Poll::Pending,
            }
        }
    }

    fn inbound(chunks: Chunks, max: usize) -> Inbound<Chunks> {
        Inbound::new(chunks, max)
    }

    /// Polls once.
    fn next(s: &mut Inbound<Chunks>) -> Poll<Option<Result<Message, ProtocolError>>> {
        Pin::new(s).poll_next(&mut Context::from_waker(Waker::noop()))
    }

    /// Everything until `Pending` or the end, with the largest `buf` seen.
    fn drain(s: &mut Inbound<Chunks>) -> (Vec<Result<Message, ProtocolError>>, usize) {
        let mut out = Vec::new();
        let mut high = 0;
        while let Poll::Ready(Some(m)) = next(s) {
            high = high.max(s.buf.len());
            out.push(m);
        }
        (out, high)
    }

    #[test]
    fn messages_pass_in_order_however_the_bytes_are_split() {
        let mut input = frame(0x81, b"hello");
        input.extend(frame(0x02, b"fir"));
        input.extend(frame(0x89, b"ping"));
        input.extend(frame(0x80, b"st"));
        input.extend(frame(0x82, &[7; 300]));
        input.extend(frame(0x88, &1000u16.to_be_bytes()));
        for step in [1, 2, 5, 13, 4096] {
            let (msgs, _) = drain(&mut inbound(Chunks::new(&input, step, true), 1000));
            let msgs: Vec<Message> = msgs.into_iter().map(Result::unwrap).collect();
            assert_eq!(msgs.len(), 6, "step {step}");
            assert!(matches!(&msgs[0], Message::Text(t) if t == "hello"));
            assert!(
                matches!(&msgs[1], Message::Continuation(Item::FirstBinary(b)) if &b[..] == b"fir")
            );
            assert!(matches!(&msgs[2], Message::Ping(p) if &p[..] == b"ping"));
            assert!(matches!(&msgs[3], Message::Continuation(Item::Last(b)) if &b[..] == b"st"));
            assert!(matches!(&msgs[4], Message::Binary(b) if b.len() == 300));
            assert!(matches!(&msgs[5], Message::Close(Some(r)) if u16::from(r.code) == 1000));
        }
    }

    #[test]
    fn refusals_map_to_their_close_codes_and_end_the_stream() {
        let cases: [(Vec<u8>, CloseCode); 3] = [
            // Declares a frame over the limit: refused at its header (16-bit
            // length and mask key), before any of its payload.
            (
                [frame(0x81, b"ok"), frame(0x82, &[0; 1001])[..8].to_vec()].concat(),
                CloseCode::TooBig,
            ),
            (
                [frame(0x81, b"ok"), frame(0x81, &[b'a', 0xff])].concat(),
                CloseCode::InvalidPayload,
            ),
            // A continuation nobody started.
            (
                [frame(0x81, b"ok"), frame(0x80, b"x")].concat(),
                CloseCode::ProtocolError,
            ),
        ];
        for (input, code) in cases {
            let mut s = inbound(Chunks::new(&input, 3, false), 1000);
            let (msgs, _) = drain(&mut s);
            assert!(matches!(&msgs[0], Ok(Message::Text(t)) if t == "ok"));
            let err = msgs[1].as_ref().expect_err("refused");
            assert_eq!(close_code_for(err), code, "{err:?}");
            assert_eq!(msgs.len(), 2);
            // Nothing after the refusal, and the stream has ended.
            assert!(matches!(next(&mut s), Poll::Ready(None)));
        }
    }

    #[test]
    fn a_close_frame_followed_by_a_reset_is_decoded_before_the_error() {
        // The client sends its close and resets the connection at once: the
        // session must see the close (normal closure), then the error.
        let close = frame(0x88, &1000u16.to_be_bytes());
        let mut chunks = Chunks::new(&close, close.len(), true);
        chunks.items.push_back(Err(PayloadError::Incomplete(None)));
        let (msgs, _) = drain(&mut inbound(chunks, 1000));
        assert!(matches!(&msgs[0], Ok(Message::Close(Some(_)))));
        assert!(matches!(&msgs[1], Err(ProtocolError::Io(_))));
        assert_eq!(msgs.len(), 2);
    }

    #[test]
    fn the_end_of_the_payload_ends_the_stream_after_its_frames() {
        let input = [frame(0x81, b"a"), frame(0x81, b"b")].concat();
        let mut s = inbound(Chunks::new(&input, input.len(), true), 1000);
        let (msgs, _) = drain(&mut s);
        assert_eq!(msgs.len(), 2);
        assert!(matches!(next(&mut s), Poll::Ready(None)));
        // An idle client is not an end.
        let mut s = inbound(Chunks::new(&input, input.len(), false), 1000);
        assert_eq!(drain(&mut s).0.len(), 2);
        assert!(next(&mut s).is_pending());
    }

    #[test]
    fn nothing_is_read_beyond_the_frame_in_progress() {
        const MAX: usize = 1000;
        // 1 MiB of empty pongs, then large messages, all available at once
        // in 64 KiB chunks.
        let mut input = Vec::new();
        while input.len() < 1 << 20 {
            input.extend(frame(0x8a, b""));
        }
        let pongs = input.len() / 6;
        for _ in 0..50 {
            input.extend(frame(0x82, &[1; MAX]));
        }
        let mut s = inbound(Chunks::new(&input, 64 << 10, true), MAX);
        // The first message is out before more than one chunk was read, and
        // nothing of the next frame has been copied.
        assert!(matches!(
            next(&mut s),
            Poll::Ready(Some(Ok(Message::Pong(_))))
        ));
        assert_eq!(s.inner.taken, 64 << 10);
        assert!(s.buf.is_empty());
        let (msgs, high) = drain(&mut s);
        assert_eq!(msgs.len(), pongs - 1 + 50);
        assert!(high <= MAX + MAX_HEADER, "decoder held {high} bytes");
        assert_eq!(s.inner.taken, input.len());
    }

    #[test]
    fn a_drained_buffer_is_released_after_a_large_message_and_reused_after_small_ones() {
        let big = frame(0x82, &[3; 60_000]);
        let mut s = inbound(Chunks::new(&big, 4096, false), 65_536);
        let (msgs, _) = drain(&mut s);
        assert!(matches!(&msgs[..], [Ok(Message::Binary(b))] if b.len() == 60_000));
        // The message keeps its bytes; the decoder keeps nothing.
        assert_eq!(s.buf.capacity(), 0);
        assert!(s.held.is_empty());

        let small: Vec<u8> = (0..100).flat_map(|_| frame(0x81, b"hi")).collect();
        let mut s = inbound(Chunks::new(&small, 50, false), 65_536);
        let mut seen = 0;
        while let Poll::Ready(Some(m)) = next(&mut s) {
            assert!(matches!(m, Ok(Message::Text(_))));
            // Never released (that forgets the peak), never large.
            assert!(s.peak > 0 && s.peak <= RELEASE_ABOVE, "{}", s.peak);
            seen += 1;
        }
        assert_eq!(seen, 100);
    }
}
