//! The local history backend: per-channel streams of recent publications, kept
//! in memory by the owner of a channel space (its [`super::hub::ChannelHub`]).
//!
//! A stream has an `epoch` — a random string, new whenever the stream is
//! created, so a restart or a stream that was dropped never passes for the
//! old one — and offsets 1, 2, 3, … that never repeat within an epoch. It
//! keeps at most `history_size` publications, each for `history_ttl_s`
//! (expired ones are dropped lazily: on every read and write of the stream and
//! on the owner's periodic [`History::prune`]).
//!
//! The owner assigns the offset in the same step as the fan-out, and answers a
//! `subscribe` with `since` in the same actor: every publication is either in
//! the recovered list or pushed live after the reply, never both and never
//! neither. The kept value is the `pub` push itself, offset included, so a
//! publication is serialized once whether it is fanned out, kept or recovered
//! (a recovered entry is the push without its `push` and `channel` keys).
//!
//! Bounds: a stream lives while the channel has a subscriber here, kept
//! publications, or was used within the last `history_ttl_s`; channels
//! without a subscriber get new streams only while the space has fewer than
//! [`MAX_STREAMS`] (beyond: the publication is delivered but not kept, and a
//! later recovery across it says `recovered: false`); the kept bytes of a
//! space are at most [`MAX_KEPT_BYTES`] (beyond: the stream being written
//! drops its oldest publications first).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::codec::{self, StreamPosition};
use super::counters::RecoveryResult;
use super::name::ChannelName;
use crate::counters::Counters;
use crate::delivery::Delivery;
use crate::ids::ListenerId;

/// Streams per space beyond which a channel without a subscriber here gets no
/// new stream (its publications are delivered, not kept).
pub const MAX_STREAMS: usize = 10_000;
/// Bytes of kept publications per space.
pub const MAX_KEPT_BYTES: usize = 64 << 20;
/// How often the owner drops expired publications and unused streams.
pub const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// `history_size` and `history_ttl_s` of a listener with history on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HistoryLimits {
    /// Publications kept per channel (> 0).
    pub size: usize,
    /// How long one is kept (> 0).
    pub ttl: Duration,
}

/// A fresh epoch: 64 random bits in hex.
pub fn new_epoch() -> Arc<str> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..16].into()
}

#[derive(Debug)]
struct Kept {
    offset: u64,
    at: Instant,
    /// The `pub` push with its offset.
    push: ByteString,
}

#[derive(Debug)]
struct Stream {
    epoch: Arc<str>,
    top: u64,
    kept: VecDeque<Kept>,
    /// Last subscribe, unsubscribe or query (a stream nobody uses goes).
    used: Instant,
}

impl Stream {
    fn new(now: Instant) -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            kept: VecDeque::new(),
            used: now,
        }
    }

    /// Drops the oldest publication; returns its size in bytes.
    fn pop(&mut self) -> Option<usize> {
        self.kept.pop_front().map(|k| k.push.len())
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch.to_string(),
            offset: self.top,
        }
    }

    /// Whether every publication after `offset` of this epoch is kept.
    fn covers(&self, since: &StreamPosition) -> bool {
        let first = self.kept.front().map_or(self.top + 1, |k| k.offset);
        *since.epoch == *self.epoch && since.offset <= self.top && first <= since.offset + 1
    }

    fn after(&self, offset: u64) -> impl Iterator<Item = &Kept> {
        self.kept.iter().filter(move |k| k.offset > offset)
    }
}

/// What a `subscribe` found in the stream.
#[derive(Debug)]
pub struct Recovery {
    /// The stream's epoch and last offset.
    pub position: StreamPosition,
    /// `Some` when `since` was given.
    pub recovered: Option<bool>,
    /// The missed `pub` pushes, in order (empty unless recovered).
    pub publications: Vec<ByteString>,
}

/// A `history` query's answer.
#[derive(Debug)]
pub struct Page {
    /// The stream's epoch and last offset.
    pub position: StreamPosition,
    /// The `pub` pushes asked for, oldest first (`None` for `limit: 0`).
    pub publications: Option<Vec<ByteString>>,
}

/// What a `history` query answers from a stream at `position` keeping
/// `kept` (offset, push), oldest first: the newest `limit` (all when `None`,
/// no list for `Some(0)`), only those after `since` when its epoch is the
/// stream's.
pub fn page(
    position: StreamPosition,
    kept: impl Iterator<Item = (u64, ByteString)>,
    limit: Option<u64>,
    since: Option<&StreamPosition>,
) -> Page {
    if limit == Some(0) {
        return Page {
            position,
            publications: None,
        };
    }
    let from = since
        .filter(|p| p.epoch == position.epoch)
        .map_or(0, |p| p.offset);
    let mut list: Vec<ByteString> = kept.filter(|(o, _)| *o > from).map(|(_, p)| p).collect();
    if let Some(limit) = limit {
        let skip = list
            .len()
            .saturating_sub(limit.min(usize::MAX as u64) as usize);
        list.drain(..skip);
    }
    Page {
        position,
        publications: Some(list),
    }
}

/// The streams of one channel space.
#[derive(Debug)]
pub struct History {
    limits: HistoryLimits,
    streams: HashMap<ChannelName, Stream>,
    bytes: usize,
    kept: usize,
    counters: Arc<Counters>,
    listener: ListenerId,
}

impl History {
    /// No streams yet; the kept count goes to `listener`'s gauge.
    pub fn new(limits: HistoryLimits, counters: Arc<Counters>, listener: ListenerId) -> Self {
        Self {
            limits,
            streams: HashMap::new(),
            bytes: 0,
            kept: 0,
            counters,
            listener,
        }
    }

    /// The limits.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    fn account(&mut self, kept: i64, bytes: i64) {
        self.kept = (self.kept as i64 + kept) as usize;
        self.bytes = (self.bytes as i64 + bytes) as usize;
        self.counters
            .listener(self.listener)
            .channels
            .add_history(kept);
    }

    /// Drops the expired publications of `channel`'s stream.
    fn expire(&mut self, channel: &ChannelName, now: Instant) {
        let ttl = self.limits.ttl;
        let Some(s) = self.streams.get_mut(channel) else {
            return;
        };
        let (mut n, mut bytes) = (0i64, 0i64);
        while s
            .kept
            .front()
            .is_some_and(|k| now.saturating_duration_since(k.at) >= ttl)
        {
            bytes += s.pop().unwrap_or_default() as i64;
            n += 1;
        }
        self.account(-n, -bytes);
    }

    /// `channel`'s stream, created when it has a subscriber (`force`) or the
    /// space has room for another; `None` otherwise.
    fn stream(&mut self, channel: &ChannelName, force: bool, now: Instant) -> Option<&mut Stream> {
        if !self.streams.contains_key(channel) {
            if !force && self.streams.len() >= MAX_STREAMS {
                return None;
            }
            self.streams.insert(channel.clone(), Stream::new(now));
        }
        self.expire(channel, now);
        self.streams.get_mut(channel)
    }

    /// Keeps a publication: returns its offset and the push carrying it, or
    /// `None` when the space has no room for another stream (`subscribed`:
    /// the channel has a subscriber here, so it always gets one).
    pub fn append(
        &mut self,
        channel: &ChannelName,
        push: &Delivery,
        subscribed: bool,
        now: Instant,
    ) -> Option<(u64, Delivery)> {
        let size = self.limits.size;
        self.stream(channel, subscribed, now)?;
        let already = self.bytes as i64;
        let s = self.streams.get_mut(channel)?;
        s.top += 1;
        let offset = s.top;
        let with = codec::pub_with_offset(push, channel, offset);
        let Delivery::Text(text) = &with else {
            return Some((offset, with));
        };
        let mut bytes = text.len() as i64;
        let mut n = 1i64;
        s.kept.push_back(Kept {
            offset,
            at: now,
            push: text.clone(),
        });
        while s.kept.len() > size {
            bytes -= s.pop().unwrap_or_default() as i64;
            n -= 1;
        }
        let mut total = already + bytes;
        while total > MAX_KEPT_BYTES as i64 && s.kept.len() > 1 {
            let freed = s.pop().unwrap_or_default() as i64;
            bytes -= freed;
            total -= freed;
            n -= 1;
        }
        self.account(n, bytes);
        Some((offset, with))
    }

    /// The stream position for a new subscriber, with the publications it
    /// missed since `since` when they are all kept.
    pub fn subscribe(
        &mut self,
        channel: &ChannelName,
        since: Option<&StreamPosition>,
        now: Instant,
    ) -> Recovery {
        let counters = self.counters.clone();
        let s = self
            .stream(channel, true, now)
            .expect("a forced stream exists");
        s.used = now;
        let position = s.position();
        let Some(since) = since else {
            return Recovery {
                position,
                recovered: None,
                publications: Vec::new(),
            };
        };
        let recovered = s.covers(since);
        counters.recoveries.add(if recovered {
            RecoveryResult::Recovered
        } else {
            RecoveryResult::NotRecovered
        });
        let publications = if recovered {
            s.after(since.offset).map(|k| k.push.clone()).collect()
        } else {
            Vec::new()
        };
        Recovery {
            position,
            recovered: Some(recovered),
            publications,
        }
    }

    /// The newest `limit` kept publications (all when `None`, none and no
    /// list for `Some(0)`), only those after `since` when its epoch is the
    /// stream's.
    pub fn query(
        &mut self,
        channel: &ChannelName,
        limit: Option<u64>,
        since: Option<&StreamPosition>,
        now: Instant,
    ) -> Page {
        let Some(s) = self.stream(channel, false, now) else {
            // No room for a stream: an empty one that is not kept.
            return Page {
                position: Stream::new(now).position(),
                publications: (limit != Some(0)).then(Vec::new),
            };
        };
        s.used = now;
        let kept = s.kept.iter().map(|k| (k.offset, k.push.clone()));
        page(s.position(), kept, limit, since)
    }

    /// The last local subscriber of `channel` left: the stream stays for
    /// `history_ttl_s` even when it keeps nothing.
    pub fn released(&mut self, channel: &ChannelName, now: Instant) {
        if let Some(s) = self.streams.get_mut(channel) {
            s.used = now;
        }
    }

    /// Drops expired publications, and the streams that keep nothing, have
    /// no subscriber here (`subscribed`) and were not used within the TTL.
    pub fn prune(&mut self, now: Instant, subscribed: impl Fn(&ChannelName) -> bool) {
        let channels: Vec<ChannelName> = self.streams.keys().cloned().collect();
        let ttl = self.limits.ttl;
        for c in channels {
            self.expire(&c, now);
            let unused = self
                .streams
                .get(&c)
                .is_some_and(|s| s.kept.is_empty() && now.saturating_duration_since(s.used) >= ttl);
            if unused && !subscribed(&c) {
                self.streams.remove(&c);
            }
        }
    }

    /// No stream left.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// `channel`'s epoch, last offset and kept count, when it has a stream.
    pub fn status(
        &mut self,
        channel: &ChannelName,
        now: Instant,
    ) -> Option<(StreamPosition, usize)> {
        self.expire(channel, now);
        self.streams
            .get(channel)
            .map(|s| (s.position(), s.kept.len()))
    }
}

impl Drop for History {
    fn drop(&mut self) {
        // The gauge counts what is kept; nothing is once the space is gone.
        let kept = self.kept as i64;
        self.account(-kept, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::codec::push_pub;
    use serde_json::{json, Value};

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    fn history(size: usize, ttl_s: u64) -> (History, Arc<Counters>) {
        let counters = Arc::new(Counters::new(1));
        let limits = HistoryLimits {
            size,
            ttl: Duration::from_secs(ttl_s),
        };
        (
            History::new(limits, counters.clone(), ListenerId(0)),
            counters,
        )
    }

    fn publish(h: &mut History, c: &str, n: u64, now: Instant) -> u64 {
        let d = push_pub(&ch(c), &json!(n), None, &Value::Null);
        h.append(&ch(c), &d, true, now).unwrap().0
    }

    fn data(list: &[ByteString]) -> Vec<u64> {
        list.iter()
            .map(|p| {
                let v: Value = serde_json::from_str(p).unwrap();
                assert_eq!(v["offset"], v["data"]);
                v["data"].as_u64().unwrap()
            })
            .collect()
    }

    fn at(p: &StreamPosition, offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: p.epoch.clone(),
            offset,
        }
    }

    #[test]
    fn offsets_count_up_and_recovery_needs_everything_kept() {
        let (mut h, counters) = history(3, 60);
        let now = Instant::now();
        let r = h.subscribe(&ch("a"), None, now);
        assert_eq!((r.position.offset, r.recovered), (0, None));
        for n in 1..=5 {
            assert_eq!(publish(&mut h, "a", n, now), n);
        }
        assert_eq!(counters.listener(ListenerId(0)).channels.history(), 3);
        let p = &r.position;
        // 3, 4, 5 are kept: since 2 recovers, since 1 misses 2.
        let r = h.subscribe(&ch("a"), Some(&at(p, 2)), now);
        assert_eq!(
            (r.recovered, data(&r.publications)),
            (Some(true), vec![3, 4, 5])
        );
        assert_eq!(r.position.offset, 5);
        let r = h.subscribe(&ch("a"), Some(&at(p, 5)), now);
        assert_eq!((r.recovered, r.publications.len()), (Some(true), 0));
        for bad in [
            at(p, 1),
            at(p, 6),
            StreamPosition {
                epoch: "x".into(),
                offset: 5,
            },
        ] {
            let r = h.subscribe(&ch("a"), Some(&bad), now);
            assert_eq!(
                (r.recovered, r.publications.len()),
                (Some(false), 0),
                "{bad:?}"
            );
        }
        assert_eq!(counters.recoveries.get(RecoveryResult::Recovered), 2);
        assert_eq!(counters.recoveries.get(RecoveryResult::NotRecovered), 3);
    }

    #[test]
    fn expired_publications_go_and_unused_streams_with_them() {
        let (mut h, counters) = history(10, 1);
        let t0 = Instant::now();
        let epoch = h.subscribe(&ch("a"), None, t0).position;
        publish(&mut h, "a", 1, t0);
        publish(&mut h, "a", 2, t0 + Duration::from_millis(600));
        let later = t0 + Duration::from_millis(1100);
        let r = h.subscribe(&ch("a"), Some(&at(&epoch, 0)), later);
        assert_eq!(r.recovered, Some(false), "1 expired");
        let r = h.subscribe(&ch("a"), Some(&at(&epoch, 1)), later);
        assert_eq!(data(&r.publications), vec![2]);
        // Subscribed: the stream stays, even empty.
        h.prune(t0 + Duration::from_secs(5), |_| true);
        assert_eq!(counters.listener(ListenerId(0)).channels.history(), 0);
        assert_eq!(h.status(&ch("a"), later).unwrap().0.epoch, epoch.epoch);
        h.released(&ch("a"), t0 + Duration::from_secs(5));
        h.prune(t0 + Duration::from_millis(5500), |_| false);
        assert!(!h.is_empty(), "used within the TTL");
        h.prune(t0 + Duration::from_secs(6), |_| false);
        assert!(h.is_empty());
        // A new stream is a new epoch: an old position does not recover.
        let r = h.subscribe(&ch("a"), Some(&at(&epoch, 2)), t0 + Duration::from_secs(6));
        assert_ne!(r.position.epoch, epoch.epoch);
        assert_eq!(r.recovered, Some(false));
    }

    #[test]
    fn queries_take_the_newest_and_respect_since() {
        let (mut h, _) = history(5, 60);
        let now = Instant::now();
        for n in 1..=4 {
            publish(&mut h, "a", n, now);
        }
        let all = h.query(&ch("a"), None, None, now);
        assert_eq!(data(&all.publications.unwrap()), vec![1, 2, 3, 4]);
        let p = all.position;
        let q = |h: &mut History, limit, since: Option<StreamPosition>| {
            h.query(&ch("a"), limit, since.as_ref(), now)
                .publications
                .map(|l| data(&l))
        };
        assert_eq!(q(&mut h, Some(2), None), Some(vec![3, 4]));
        assert_eq!(q(&mut h, Some(0), None), None);
        assert_eq!(q(&mut h, Some(99), Some(at(&p, 2))), Some(vec![3, 4]));
        assert_eq!(q(&mut h, Some(1), Some(at(&p, 2))), Some(vec![4]));
        let other = StreamPosition {
            epoch: "x".into(),
            offset: 3,
        };
        assert_eq!(q(&mut h, None, Some(other)), Some(vec![1, 2, 3, 4]));
        assert_eq!(h.status(&ch("a"), now).unwrap().1, 4);
        // A query on an unknown channel starts its stream.
        let e = h.query(&ch("b"), None, None, now);
        assert_eq!(e.position.offset, 0);
        assert_eq!(h.status(&ch("b"), now).unwrap().0, e.position);
    }

    #[test]
    fn idle_channels_get_streams_only_while_there_is_room() {
        let (mut h, _) = history(1, 60);
        let now = Instant::now();
        let d = |c: &str| push_pub(&ch(c), &json!(1), None, &Value::Null);
        for i in 0..MAX_STREAMS {
            let c = format!("c{i}");
            assert!(h.append(&ch(&c), &d(&c), false, now).is_some());
        }
        assert!(h.append(&ch("x"), &d("x"), false, now).is_none());
        assert_eq!(h.append(&ch("x"), &d("x"), true, now).unwrap().0, 1);
    }
}
