//! Subscribers waiting for the cluster's history (redis backend): the
//! hand-over from a stream read in Redis to live publications.
//!
//! With history in the cluster a `subscribe` cannot be answered in the hub's
//! step: the hub first makes sure the channel's publications reach this node
//! (the Redis subscription is confirmed), then reads the stream. Meanwhile the
//! new subscriber is in the table but *waiting*: live publications of the
//! channel are held here for it, in order, instead of being pushed. When the
//! read comes back, [`Recoveries::finish`] builds the reply from the stream
//! and hands back the held publications after the stream's last offset — a
//! held one at or below that offset is in the read already (recovered, or
//! before the position the client starts from), one above it was published
//! after the read and is pushed after the reply. Every publication after the
//! subscription was confirmed is held or in the read, so none is missed, and
//! none is delivered twice: a publication can still arrive *after* the read
//! that already returned it (the read's answer took the shorter way), so the
//! subscriber then keeps a floor — the last offset it got — and live
//! publications at or below it are dropped until one above it arrives
//! (publications of a channel arrive in offset order).
//!
//! A waiting subscriber holds at most [`MAX_HELD`] publications; beyond, the
//! oldest go and the reply says `recovered: false` with the position just
//! before the first one still held, so the client's position stays exact.

use std::collections::{HashMap, VecDeque};

use super::codec::{self, CommandId, StreamPosition};
use super::name::ChannelName;
use crate::backplane::{ClusterStream, HistoryError};
use crate::delivery::Delivery;
use crate::ids::SessionId;
use crate::outbox::Outbox;

/// Live publications held for one waiting subscriber.
pub const MAX_HELD: usize = 4096;

/// How a waiting subscription is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A client's `subscribe`: the reply to this command.
    Reply(CommandId),
    /// A server-side subscription: the `subscribe` push.
    Push,
    /// A live subscriber saw a gap in offsets (a publication lost on the way
    /// to this node): the missing ones are pushed from the stream, then the
    /// held ones; nothing else is sent.
    Repair,
}

#[derive(Debug)]
struct Waiting {
    token: u64,
    session: SessionId,
    outbox: Outbox,
    answer: Answer,
    since: Option<StreamPosition>,
    held: VecDeque<(StreamPosition, Delivery)>,
    overflowed: bool,
    /// Answered: the last position the subscriber got (see the header).
    floor: Option<StreamPosition>,
}

/// A finished wait: what to send to whom.
#[derive(Debug)]
pub struct Finished {
    /// The subscriber.
    pub session: SessionId,
    /// Its queue.
    pub outbox: Outbox,
    /// How it asked.
    pub answer: Answer,
    /// Whether it gave `since` (a recovery to count).
    pub recovery: Option<bool>,
    /// The reply or push (empty for a repair) and the publications to push
    /// after it; when the stream could not be read, the error and the held
    /// publications.
    pub outcome: Result<(String, Vec<Delivery>), (HistoryError, Vec<Delivery>)>,
}

/// The waiting subscribers of one hub.
#[derive(Debug, Default)]
pub struct Recoveries {
    channels: HashMap<ChannelName, Vec<Waiting>>,
    next: u64,
}

impl Recoveries {
    /// No one waits.
    pub fn new() -> Self {
        Self::default()
    }

    /// `session` waits on `channel`; returns the token of its read.
    pub fn start(
        &mut self,
        channel: &ChannelName,
        session: &SessionId,
        outbox: &Outbox,
        answer: Answer,
        since: Option<StreamPosition>,
    ) -> u64 {
        self.next += 1;
        let list = self.channels.entry(channel.clone()).or_default();
        // A new wait filters by its own read.
        list.retain(|w| w.floor.is_none() || w.session != *session);
        list.push(Waiting {
            token: self.next,
            session: session.clone(),
            outbox: outbox.clone(),
            answer,
            since,
            held: VecDeque::new(),
            overflowed: false,
            floor: None,
        });
        self.next
    }

    /// Whether `session` waits for a read of `channel` (a floor is not a wait).
    pub fn is_waiting(&self, channel: &ChannelName, session: &SessionId) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|l| l.iter().any(|w| w.session == *session && w.floor.is_none()))
    }

    /// The last position `session` got on `channel` from a read, while it
    /// has a floor there.
    pub fn floor(&self, channel: &ChannelName, session: &SessionId) -> Option<StreamPosition> {
        self.channels
            .get(channel)?
            .iter()
            .find(|w| w.session == *session)
            .and_then(|w| w.floor.clone())
    }

    /// Whether anyone waits on `channel` (or has a floor there).
    pub fn any(&self, channel: &ChannelName) -> bool {
        self.channels.contains_key(channel)
    }

    /// Holds a live publication for `session` when it waits on `channel`,
    /// or drops it when the subscriber got it already; false when neither
    /// (push it).
    pub fn hold(
        &mut self,
        channel: &ChannelName,
        session: &SessionId,
        position: &StreamPosition,
        delivery: &Delivery,
    ) -> bool {
        let Some(list) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(i) = list.iter().position(|w| w.session == *session) else {
            return false;
        };
        let w = &mut list[i];
        if let Some(floor) = &w.floor {
            if floor.epoch == position.epoch && position.offset <= floor.offset {
                return true;
            }
            // Past the floor: live from now on.
            list.remove(i);
            if list.is_empty() {
                self.channels.remove(channel);
            }
            return false;
        }
        if w.held.len() == MAX_HELD {
            w.held.pop_front();
            w.overflowed = true;
        }
        w.held.push_back((position.clone(), delivery.clone()));
        true
    }

    /// `session` no longer waits on `channel` (it unsubscribed).
    pub fn cancel(&mut self, channel: &ChannelName, session: &SessionId) {
        if let Some(l) = self.channels.get_mut(channel) {
            l.retain(|w| w.session != *session);
            if l.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// `session` waits nowhere any more (it left).
    pub fn cancel_session(&mut self, session: &SessionId) {
        self.channels.retain(|_, l| {
            l.retain(|w| w.session != *session);
            !l.is_empty()
        });
    }

    /// The read of `token` came back: the answer, or `None` when the wait
    /// was cancelled meanwhile. The subscriber then keeps a floor (see the
    /// module header); one whose read failed waits no more.
    pub fn finish(
        &mut self,
        channel: &ChannelName,
        token: u64,
        read: Result<ClusterStream, HistoryError>,
    ) -> Option<Finished> {
        let list = self.channels.get_mut(channel)?;
        let i = list
            .iter()
            .position(|w| w.token == token && w.floor.is_none())?;
        let w = &mut list[i];
        let (session, outbox, kind, since) = (
            w.session.clone(),
            w.outbox.clone(),
            w.answer,
            w.since.is_some(),
        );
        let outcome = read.map(|stream| {
            let read_to = StreamPosition {
                epoch: stream.epoch.clone(),
                offset: stream.offset,
            };
            let answered = answer(channel, w, stream);
            let last = w.held.back().map(|(p, _)| p.clone());
            w.floor = Some(match last {
                Some(p) if p.epoch == read_to.epoch && p.offset > read_to.offset => p,
                _ => read_to,
            });
            w.held.clear();
            answered
        });
        let outcome = match outcome {
            Ok((text, held, recovered)) => Ok((text, held, recovered)),
            Err(e) => {
                let w = list.remove(i);
                if list.is_empty() {
                    self.channels.remove(channel);
                }
                Err((e, w.held.into_iter().map(|(_, d)| d).collect()))
            }
        };
        let counted = since && kind != Answer::Repair;
        let recovery = counted.then_some(matches!(outcome, Ok((_, _, true))));
        Some(Finished {
            session,
            outbox,
            answer: kind,
            recovery,
            outcome: outcome.map(|(text, held, _)| (text, held)),
        })
    }
}

/// The reply (or push), the held publications to push after it, and whether
/// the wait recovered.
fn answer(
    channel: &ChannelName,
    w: &Waiting,
    stream: ClusterStream,
) -> (String, Vec<Delivery>, bool) {
    let in_read = |p: &StreamPosition| p.epoch == stream.epoch && p.offset <= stream.offset;
    let later: Vec<&(StreamPosition, Delivery)> =
        w.held.iter().filter(|(p, _)| !in_read(p)).collect();
    // Oldest held ones dropped: start just before the first one still held.
    let mut offset = stream.offset;
    if w.overflowed {
        if let Some((p, _)) = later.first().filter(|(p, _)| p.epoch == stream.epoch) {
            offset = p.offset.saturating_sub(1);
        }
    }
    let covers = |since: &StreamPosition| {
        let first = stream
            .publications
            .first()
            .map_or(stream.offset + 1, |(o, _)| *o);
        since.epoch == stream.epoch && since.offset <= stream.offset && first <= since.offset + 1
    };
    let recovered = !w.overflowed && w.since.as_ref().is_some_and(covers);
    let position = codec::Position {
        epoch: &stream.epoch,
        offset,
    };
    let text = match w.answer {
        Answer::Reply(id) => {
            let publications = stream
                .publications
                .iter()
                .filter(|_| recovered)
                .map(|(_, p)| &**p);
            codec::subscribe_reply(
                id,
                channel,
                w.since.as_ref().map(|_| recovered),
                Some(position),
                publications,
            )
        }
        Answer::Push => codec::push_subscribe(channel, Some((&stream.epoch, offset))),
        Answer::Repair => String::new(),
    };
    let mut held: Vec<Delivery> = Vec::new();
    if w.answer == Answer::Repair && recovered {
        held.extend(
            stream
                .publications
                .iter()
                .map(|(_, p)| Delivery::Text(p.clone())),
        );
    }
    held.extend(later.into_iter().map(|(_, d)| d.clone()));
    (text, held, recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::codec::{pub_with_offset, push_pub};
    use crate::outbox::outbox;
    use serde_json::{json, Value};

    fn ch() -> ChannelName {
        ChannelName::parse("x").unwrap()
    }

    fn at(epoch: &str, offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: epoch.into(),
            offset,
        }
    }

    fn publication(n: u64) -> Delivery {
        pub_with_offset(&push_pub(&ch(), &json!(n), None, &Value::Null), &ch(), n)
    }

    fn stream(epoch: &str, top: u64, kept: std::ops::Range<u64>) -> ClusterStream {
        ClusterStream {
            epoch: epoch.into(),
            offset: top,
            publications: kept
                .map(|n| match publication(n) {
                    Delivery::Text(t) => (n, t),
                    Delivery::Binary(_) => unreachable!(),
                })
                .collect(),
        }
    }

    fn offsets(list: &[Delivery]) -> Vec<u64> {
        list.iter()
            .map(|d| match d {
                Delivery::Text(t) => serde_json::from_str::<Value>(t).unwrap()["offset"]
                    .as_u64()
                    .unwrap(),
                Delivery::Binary(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn held_publications_after_the_read_follow_the_reply_once() {
        let mut r = Recoveries::new();
        let (o, _rx) = outbox(8, 1 << 20);
        let s = SessionId::random();
        let id = CommandId::new(4).unwrap();
        let t = r.start(&ch(), &s, &o, Answer::Reply(id), Some(at("e", 2)));
        // Published while the read was on its way: 4 and 5 are in it, 6 not.
        for n in 4..=6 {
            assert!(r.hold(&ch(), &s, &at("e", n), &publication(n)));
        }
        assert!(!r.hold(&ch(), &SessionId::random(), &at("e", 7), &publication(7)));
        let f = r.finish(&ch(), t, Ok(stream("e", 5, 3..6))).unwrap();
        assert_eq!(f.recovery, Some(true));
        let (text, held) = f.outcome.unwrap();
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["result"]["recovered"], true);
        assert_eq!(reply["result"]["offset"], 5);
        let recovered: Vec<u64> = reply["result"]["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(recovered, [3, 4, 5]);
        assert_eq!(offsets(&held), [6]);
        assert!(r.finish(&ch(), t, Ok(stream("e", 5, 3..6))).is_none());
        // 5 arrives late (the read's answer was faster): dropped; 7 is live.
        assert!(r.hold(&ch(), &s, &at("e", 5), &publication(5)));
        assert!(r.hold(&ch(), &s, &at("e", 6), &publication(6)));
        assert!(r.any(&ch()));
        assert!(!r.hold(&ch(), &s, &at("e", 7), &publication(7)));
        assert!(!r.any(&ch()));
    }

    #[test]
    fn another_epoch_or_a_missing_publication_is_not_recovered() {
        let mut r = Recoveries::new();
        let (o, _rx) = outbox(8, 1 << 20);
        let s = SessionId::random();
        for (since, read) in [
            (at("old", 2), stream("e", 5, 3..6)),
            (at("e", 1), stream("e", 5, 3..6)),
            (at("e", 9), stream("e", 5, 3..6)),
        ] {
            let t = r.start(
                &ch(),
                &s,
                &o,
                Answer::Reply(CommandId::new(1).unwrap()),
                Some(since),
            );
            let f = r.finish(&ch(), t, Ok(read)).unwrap();
            assert_eq!(f.recovery, Some(false));
            let (text, _) = f.outcome.unwrap();
            let reply: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(reply["result"]["publications"], json!([]));
            assert_eq!(reply["result"]["epoch"], "e");
        }
        // A server-side subscription gets its position pushed; no since, no count.
        let t = r.start(&ch(), &s, &o, Answer::Push, None);
        let f = r.finish(&ch(), t, Ok(stream("e", 5, 1..1))).unwrap();
        assert_eq!(f.recovery, None);
        assert_eq!(
            f.outcome.unwrap().0,
            r#"{"push":"subscribe","channel":"x","epoch":"e","offset":5}"#
        );
        // An unreadable stream is an error; a cancelled wait is forgotten.
        let t = r.start(&ch(), &s, &o, Answer::Push, None);
        let f = r.finish(&ch(), t, Err(HistoryError::Unavailable)).unwrap();
        assert!(f.outcome.is_err());
        let t = r.start(&ch(), &s, &o, Answer::Push, None);
        r.cancel_session(&s);
        assert!(r.finish(&ch(), t, Ok(stream("e", 5, 1..1))).is_none());
    }

    #[test]
    fn a_repair_pushes_the_missing_publications_then_the_held_ones() {
        let mut r = Recoveries::new();
        let (o, _rx) = outbox(8, 1 << 20);
        let s = SessionId::random();
        // Live up to 1, then 4 arrived: 2 and 3 were lost on the way.
        let t = r.start(&ch(), &s, &o, Answer::Repair, Some(at("e", 1)));
        assert!(r.hold(&ch(), &s, &at("e", 4), &publication(4)));
        let f = r.finish(&ch(), t, Ok(stream("e", 3, 2..4))).unwrap();
        assert_eq!(f.recovery, None, "not a client's recovery");
        let (text, pushes) = f.outcome.unwrap();
        assert!(text.is_empty());
        assert_eq!(offsets(&pushes), [2, 3, 4]);
        // A stream that no longer has them: the held ones still go out.
        let t = r.start(&ch(), &s, &o, Answer::Repair, Some(at("e", 4)));
        assert!(r.hold(&ch(), &s, &at("e", 9), &publication(9)));
        let f = r.finish(&ch(), t, Ok(stream("e", 8, 7..9))).unwrap();
        assert_eq!(offsets(&f.outcome.unwrap().1), [9]);
        let t = r.start(&ch(), &s, &o, Answer::Repair, Some(at("e", 9)));
        assert!(r.hold(&ch(), &s, &at("e", 11), &publication(11)));
        let (_, held) = r
            .finish(&ch(), t, Err(HistoryError::Unavailable))
            .unwrap()
            .outcome
            .unwrap_err();
        assert_eq!(offsets(&held), [11]);
    }

    #[test]
    fn an_overflowing_wait_restarts_from_what_it_still_holds() {
        let mut r = Recoveries::new();
        let (o, _rx) = outbox(8, 1 << 20);
        let s = SessionId::random();
        let t = r.start(
            &ch(),
            &s,
            &o,
            Answer::Reply(CommandId::new(1).unwrap()),
            Some(at("e", 0)),
        );
        for n in 1..=(MAX_HELD as u64 + 10) {
            r.hold(&ch(), &s, &at("e", n), &publication(n));
        }
        let f = r.finish(&ch(), t, Ok(stream("e", 0, 1..1))).unwrap();
        assert_eq!(f.recovery, Some(false));
        let (text, held) = f.outcome.unwrap();
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["result"]["offset"], 10, "just before the first held");
        assert_eq!(offsets(&held[..1]), [11]);
        assert_eq!(held.len(), MAX_HELD);
    }
}
