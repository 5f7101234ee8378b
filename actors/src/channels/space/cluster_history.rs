//! A channel space whose history the cluster keeps (`cluster.backend =
//! "redis"`): publications are numbered by the backplane (which delivers
//! them to every node, this one included, with their position), and a
//! subscribe, a `history` query or an admin read is a round trip to the
//! cluster's stream.
//!
//! The space never waits: each round trip is a [`Job`] its owner (the hub)
//! runs off its handler and whose [`Done`] comes back to
//! [`ChannelSpace::finish`]. A subscriber is in the table from the start but
//! waits ([`super::Recoveries`]) until its read is back: the read starts only
//! once the channel's publications reach this node, and what arrives
//! meanwhile is held for it, so the hand-over is exact (see
//! `channels::recovery`).

use futures_util::future::BoxFuture;

use super::super::codec::{self, CommandId, StreamPosition};
use super::super::counters::RecoveryResult;
use super::super::history::page;
use super::super::name::ChannelName;
use super::super::recovery::Answer;
use super::{ChannelError, ChannelSpace, ErrorCode, Published};
use crate::backplane::{ClusterStream, HistoryError};
use crate::delivery::Delivery;
use crate::ids::SessionId;
use crate::outbox::{Outbox, PushError};

/// A round trip to the cluster's history, run by the space's owner.
pub struct Job(pub BoxFuture<'static, Done>);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// A finished round trip, for [`ChannelSpace::finish`].
#[derive(Debug)]
pub enum Done {
    /// A waiting subscriber's read of the stream.
    Read {
        /// The channel.
        channel: ChannelName,
        /// The wait.
        token: u64,
        /// The stream after the subscriber's `since` (or its position only).
        result: Result<ClusterStream, HistoryError>,
    },
    /// A client publication was numbered.
    Appended {
        /// The publisher, its queue and its command.
        reply: Option<(SessionId, Outbox, CommandId)>,
        /// Its position.
        result: Result<StreamPosition, HistoryError>,
    },
    /// A `history` query.
    Queried {
        /// The session, its queue and its command.
        reply: (SessionId, Outbox, CommandId),
        /// The channel.
        channel: ChannelName,
        /// How many.
        limit: Option<u64>,
        /// After which position.
        since: Option<StreamPosition>,
        /// The whole kept stream.
        result: Result<ClusterStream, HistoryError>,
    },
}

impl ChannelSpace {
    /// The round trips queued since the last call.
    pub fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    /// A subscriber waits for its read of the stream (see the module header).
    pub(super) fn wait(
        &mut self,
        channel: &ChannelName,
        session: &SessionId,
        outbox: &Outbox,
        answer: Answer,
        since: Option<StreamPosition>,
    ) {
        let after = since.as_ref().map(|s| s.offset);
        let token = self
            .recoveries
            .start(channel, session, outbox, answer, since);
        let ready = self
            .backplane
            .channel_ready(self.listener, self.tenant.as_ref(), channel);
        let read = self.read(channel, after);
        let channel = channel.clone();
        self.jobs.push(Job(Box::pin(async move {
            ready.await;
            let result = read.await;
            Done::Read {
                channel,
                token,
                result,
            }
        })));
    }

    /// Reads the stream (from Redis when the future is first polled).
    pub fn read(
        &self,
        channel: &ChannelName,
        after: Option<u64>,
    ) -> BoxFuture<'static, Result<ClusterStream, HistoryError>> {
        let Some(limits) = self.cluster else {
            return Box::pin(std::future::ready(Err(HistoryError::Unavailable)));
        };
        let (backplane, listener, tenant) =
            (self.backplane.clone(), self.listener, self.tenant.clone());
        let channel = channel.clone();
        Box::pin(async move {
            backplane
                .read_history(listener, tenant.as_ref(), &channel, limits, after)
                .await
        })
    }

    /// Has the cluster number and deliver a publication; resolves to what it
    /// came to here (local deliveries happen when it comes back).
    pub fn append_cluster(
        &self,
        channel: &ChannelName,
        delivery: &Delivery,
    ) -> BoxFuture<'static, Result<Published, HistoryError>> {
        let Some(limits) = self.cluster else {
            return Box::pin(std::future::ready(Err(HistoryError::Unavailable)));
        };
        let appended = self.backplane.append_history(
            self.listener,
            self.tenant.as_ref(),
            channel,
            delivery,
            limits,
        );
        let delivered = self.table.subscriber_count(channel);
        Box::pin(async move {
            let position = appended.await?;
            Ok(Published {
                delivered,
                offset: Some(position.offset),
            })
        })
    }

    /// A client publication (history in the cluster).
    pub(super) fn append(
        &mut self,
        channel: &ChannelName,
        delivery: &Delivery,
        reply: Option<(SessionId, Outbox, CommandId)>,
    ) {
        let Some(limits) = self.cluster else {
            return;
        };
        let appended = self.backplane.append_history(
            self.listener,
            self.tenant.as_ref(),
            channel,
            delivery,
            limits,
        );
        self.jobs.push(Job(Box::pin(async move {
            Done::Appended {
                reply,
                result: appended.await,
            }
        })));
    }

    /// A `history` query (history in the cluster).
    pub(super) fn query(
        &mut self,
        channel: ChannelName,
        session: SessionId,
        outbox: Outbox,
        reply: CommandId,
        limit: Option<u64>,
        since: Option<StreamPosition>,
    ) {
        let read = self.read(&channel, Some(0));
        self.jobs.push(Job(Box::pin(async move {
            Done::Queried {
                reply: (session, outbox, reply),
                channel,
                limit,
                since,
                result: read.await,
            }
        })));
    }

    /// Applies a finished round trip.
    pub fn finish(&mut self, done: Done) {
        let unavailable =
            |id| codec::reply_err(Some(id), &ChannelError::new(ErrorCode::Unavailable));
        match done {
            Done::Read {
                channel,
                token,
                result,
            } => {
                let Some(f) = self.recoveries.finish(&channel, token, result) else {
                    return;
                };
                if let Some(recovered) = f.recovery {
                    self.counters.recoveries.add(if recovered {
                        RecoveryResult::Recovered
                    } else {
                        RecoveryResult::NotRecovered
                    });
                }
                let pushes = match (f.outcome, f.answer) {
                    (Ok((text, held)), _) => {
                        if !text.is_empty() {
                            self.answer(&f.session, &f.outbox, text);
                        }
                        held
                    }
                    // Without its stream the subscription cannot keep its
                    // promise: it is refused.
                    (Err(_), Answer::Reply(id)) => {
                        let outcome = self.table.unsubscribe(&f.session, &channel);
                        self.closed(&f.session, &channel, outcome);
                        self.answer(&f.session, &f.outbox, unavailable(id));
                        Vec::new()
                    }
                    (Err((_, held)), Answer::Push) => {
                        let push = codec::push_subscribe(&channel, None);
                        self.answer(&f.session, &f.outbox, push);
                        held
                    }
                    // The gap stays; what came since still goes out.
                    (Err((_, held)), Answer::Repair) => held,
                };
                for d in pushes {
                    self.deliver(&f.session, &f.outbox, d);
                }
            }
            Done::Appended { reply, result } => {
                let Some((session, outbox, id)) = reply else {
                    return;
                };
                let text = match result {
                    Ok(p) => codec::reply_ok(id, &serde_json::json!({ "offset": p.offset })),
                    Err(_) => unavailable(id),
                };
                self.answer(&session, &outbox, text);
            }
            Done::Queried {
                reply: (session, outbox, id),
                channel,
                limit,
                since,
                result,
            } => {
                let text = match result {
                    Ok(stream) => {
                        let position = StreamPosition {
                            epoch: stream.epoch,
                            offset: stream.offset,
                        };
                        let p = page(
                            position,
                            stream.publications.into_iter(),
                            limit,
                            since.as_ref(),
                        );
                        codec::history_reply(
                            id,
                            &channel,
                            codec::Position {
                                epoch: &p.position.epoch,
                                offset: p.position.offset,
                            },
                            p.publications.as_ref().map(|l| l.iter().map(|b| &**b)),
                        )
                    }
                    Err(_) => unavailable(id),
                };
                self.answer(&session, &outbox, text);
            }
        }
    }

    /// A numbered publication arrived: when the channel's offsets jumped (one
    /// or more were lost on the way to this node), every live subscriber
    /// waits for a read of what it missed (see `Answer::Repair`), this
    /// publication held meanwhile.
    pub(super) fn repair_gap(&mut self, channel: &ChannelName, at: &StreamPosition) {
        if self.table.subscriber_count(channel) == 0 {
            // Still arriving after the last subscriber left: nothing to track.
            self.seen.remove(channel);
            return;
        }
        let last = self.seen.insert(channel.clone(), at.clone());
        let Some(last) = last.filter(|l| l.epoch == at.epoch && at.offset > l.offset + 1) else {
            return;
        };
        log::warn!(
            "channel publications lost on the way to this node listener={} channel={} missed={}",
            self.listener.0,
            channel,
            at.offset - last.offset - 1
        );
        let live: Vec<(SessionId, Outbox)> = self
            .table
            .subscribers(channel)
            .filter(|(id, _)| !self.recoveries.is_waiting(channel, id))
            .map(|(id, o)| (id.clone(), o.clone()))
            .collect();
        for (id, outbox) in live {
            // A subscriber that read the stream further has those already.
            let since = match self.recoveries.floor(channel, &id) {
                Some(f) if f.epoch == last.epoch && f.offset > last.offset => f,
                _ => last.clone(),
            };
            self.wait(channel, &id, &outbox, Answer::Repair, Some(since));
        }
    }

    /// Pushes a held publication after a waiting subscriber's reply.
    fn deliver(&mut self, session: &SessionId, outbox: &Outbox, d: Delivery) {
        match outbox.push(d.clone()) {
            Ok(()) => self.counters.listener(self.listener).deliveries.add(1),
            Err(PushError::Full) => self.held.push((session.clone(), outbox.clone(), d)),
            Err(PushError::Closed) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};

    use super::super::super::codec::{pub_with_offset, push_pub};
    use super::super::super::history::HistoryLimits;
    use super::*;
    use crate::backplane::Backplane;
    use crate::counters::Counters;
    use crate::ids::{ListenerId, TenantId};
    use crate::outbox::{outbox, OutboxReceiver};

    /// A cluster whose stream is whatever the test says.
    #[derive(Debug)]
    struct Fake(Mutex<ClusterStream>);

    impl Backplane for Fake {
        fn keeps_history(&self) -> bool {
            true
        }

        fn read_history(
            &self,
            _l: ListenerId,
            _t: Option<&TenantId>,
            _c: &ChannelName,
            _limits: HistoryLimits,
            after: Option<u64>,
        ) -> BoxFuture<'static, Result<ClusterStream, HistoryError>> {
            let mut s = self.0.lock().unwrap().clone();
            s.publications
                .retain(|(o, _)| after.is_some_and(|a| *o > a));
            Box::pin(std::future::ready(Ok(s)))
        }
    }

    fn ch() -> ChannelName {
        ChannelName::parse("x").unwrap()
    }

    fn at(offset: u64) -> StreamPosition {
        StreamPosition {
            epoch: "e".into(),
            offset,
        }
    }

    fn publication(n: u64) -> Delivery {
        pub_with_offset(&push_pub(&ch(), &json!(n), None, &Value::Null), &ch(), n)
    }

    fn stream(top: u64) -> ClusterStream {
        ClusterStream {
            epoch: "e".into(),
            offset: top,
            publications: (1..=top)
                .map(|n| match publication(n) {
                    Delivery::Text(t) => (n, t),
                    Delivery::Binary(_) => unreachable!(),
                })
                .collect(),
        }
    }

    async fn run_jobs(space: &mut ChannelSpace) {
        for job in space.take_jobs() {
            let done = job.0.await;
            space.finish(done);
        }
    }

    fn pushed(rx: &mut OutboxReceiver) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(Delivery::Text(t)) = rx.data.try_recv() {
            out.push(serde_json::from_str(&t).unwrap());
        }
        out
    }

    #[actix::test]
    async fn publications_lost_on_the_way_are_read_back_in_order() {
        let fake = Arc::new(Fake(Mutex::new(stream(0))));
        let limits = HistoryLimits {
            size: 100,
            ttl: std::time::Duration::from_secs(60),
        };
        let mut space = ChannelSpace::new(
            ListenerId(0),
            Some(TenantId::new("t")),
            Arc::new(Counters::new(1)),
        )
        .with_backplane(fake.clone())
        .with_history(limits);
        let (o, mut rx) = outbox(64, 1 << 20);
        let s = SessionId::random();
        space.server_subscribe(&s, &o, &ch(), None);
        run_jobs(&mut space).await;
        assert_eq!(
            pushed(&mut rx),
            [json!({"push": "subscribe", "channel": "x", "epoch": "e", "offset": 0})]
        );
        *fake.0.lock().unwrap() = stream(3);
        space.publish_at(&ch(), &publication(1), Some(&at(1)));
        // 2 and 3 never arrive here: 4 shows the gap.
        space.publish_at(&ch(), &publication(4), Some(&at(4)));
        assert_eq!(pushed(&mut rx).len(), 1, "4 waits for the repair");
        run_jobs(&mut space).await;
        space.publish_at(&ch(), &publication(5), Some(&at(5)));
        let offsets: Vec<u64> = pushed(&mut rx)
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, [2, 3, 4, 5]);
    }
}
