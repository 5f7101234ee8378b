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
                match (f.outcome, f.answer) {
                    (Ok((text, held)), _) => {
                        self.answer(&f.session, &f.outbox, text);
                        for d in held {
                            self.deliver(&f.session, &f.outbox, d);
                        }
                    }
                    // Without its stream the subscription cannot keep its
                    // promise: it is refused.
                    (Err(_), Answer::Reply(id)) => {
                        let outcome = self.table.unsubscribe(&f.session, &channel);
                        self.closed(&channel, outcome);
                        self.answer(&f.session, &f.outbox, unavailable(id));
                    }
                    (Err(_), Answer::Push) => {
                        let push = codec::push_subscribe(&channel, None);
                        self.answer(&f.session, &f.outbox, push);
                    }
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

    /// Pushes a held publication after a waiting subscriber's reply.
    fn deliver(&mut self, session: &SessionId, outbox: &Outbox, d: Delivery) {
        match outbox.push(d.clone()) {
            Ok(()) => self.counters.listener(self.listener).deliveries.add(1),
            Err(PushError::Full) => self.held.push((session.clone(), outbox.clone(), d)),
            Err(PushError::Closed) => {}
        }
    }
}
