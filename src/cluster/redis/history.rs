//! Channel history in Redis: the task that runs appends and reads of
//! channel streams (the scripts are in [`super::scripts`]).
//!
//! Hubs call the backplane from their handlers; the backplane queues the
//! operation here (bounded: a full queue answers `Unavailable` at once) and
//! hands back a future of its answer. The task takes what is queued in
//! batches and sends each batch as one pipeline, in queue order, so a hub's
//! appends reach Redis — and get their offsets — in the order it made them.
//! While Redis is down every operation answers `Unavailable` at once.

use std::sync::Arc;

use redis::Value;
use tokio::sync::{mpsc, oneshot};
use wsplus_actors::backplane::{ClusterStream, HistoryError};
use wsplus_actors::channels::codec::StreamPosition;

use super::link::Link;
use super::scripts::{Batch, Call};

/// Operations per pipeline.
const BATCH: usize = 256;

/// Where an answer goes.
#[derive(Debug)]
pub(super) enum Reply {
    /// An append's position.
    Append(oneshot::Sender<Result<StreamPosition, HistoryError>>),
    /// A read's stream.
    Read(oneshot::Sender<Result<ClusterStream, HistoryError>>),
}

impl Reply {
    fn fail(self) {
        match self {
            Reply::Append(tx) => drop(tx.send(Err(HistoryError::Unavailable))),
            Reply::Read(tx) => drop(tx.send(Err(HistoryError::Unavailable))),
        }
    }

    fn answer(self, v: Value) {
        match self {
            Reply::Append(tx) => drop(tx.send(position(v).ok_or(HistoryError::Unavailable))),
            Reply::Read(tx) => drop(tx.send(stream(v).ok_or(HistoryError::Unavailable))),
        }
    }
}

/// One script call and where its answer goes.
#[derive(Debug)]
pub(super) struct HistoryOp {
    /// The append or read.
    pub call: Call,
    /// Its answer's recipient.
    pub reply: Reply,
}

/// Runs queued operations in pipelines, in order.
pub(super) async fn task(link: Arc<Link>, mut rx: mpsc::Receiver<HistoryOp>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if !link.up() {
            batch.drain(..).for_each(|op| op.reply.fail());
            continue;
        }
        let mut b = Batch::new();
        let mut replies = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            b.call(op.call);
            replies.push(op.reply);
        }
        match link.run_each(&b).await {
            // One answer per call, or an error (`Batch::answers`).
            Ok(values) => {
                for (reply, v) in replies.into_iter().zip(values) {
                    reply.answer(v);
                }
            }
            Err(e) => {
                log::warn!("cluster: channel history unavailable: {e}");
                replies.into_iter().for_each(Reply::fail);
            }
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// `{epoch, offset}`.
fn position(v: Value) -> Option<StreamPosition> {
    let Value::Array(items) = v else {
        return None;
    };
    Some(StreamPosition {
        epoch: text(items.first()?)?,
        offset: number(items.get(1)?)?,
    })
}

/// `{epoch, top, offset1, push1, …}`.
fn stream(v: Value) -> Option<ClusterStream> {
    let Value::Array(items) = v else {
        return None;
    };
    let mut publications = Vec::with_capacity(items.len().saturating_sub(2) / 2);
    for pair in items.get(2..)?.chunks(2) {
        let [offset, push] = pair else {
            return None;
        };
        publications.push((number(offset)?, text(push)?.into()));
    }
    Some(ClusterStream {
        epoch: text(items.first()?)?,
        offset: number(items.get(1)?)?,
        publications,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::redis::scripts::tests::run;
    use crate::cluster::redis::scripts::{self, AppendArgs, HistoryKeys};
    use crate::cluster::redis::test_redis::TestRedis;
    use crate::cluster::wire;

    fn keys() -> HistoryKeys {
        let (meta, stream) = crate::cluster::keys::history_keys("/ws", Some("acme"), "x");
        HistoryKeys {
            meta,
            stream,
            channel: crate::cluster::keys::topic_channel("/ws", Some("acme"), "x"),
        }
    }

    async fn append(
        c: &mut redis::aio::MultiplexedConnection,
        epoch: &str,
        size: usize,
        n: u64,
    ) -> StreamPosition {
        let header = wire::publication_header();
        let args = AppendArgs {
            epoch,
            size,
            ttl_ms: 60_000,
            meta_ttl_ms: 120_000,
            envelope: &header,
            head: r#"{"push":"pub","channel":"x","#,
            tail: &format!(r#""data":{n}}}"#),
        };
        position(run(c, scripts::history_append(&keys(), &args)).await).unwrap()
    }

    async fn read(
        c: &mut redis::aio::MultiplexedConnection,
        epoch: &str,
        after: Option<u64>,
    ) -> ClusterStream {
        let call = scripts::history_read(&keys(), epoch, 60_000, 120_000, after);
        stream(run(c, call).await).unwrap()
    }

    #[tokio::test]
    async fn appends_number_keep_and_publish_in_one_step() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        let mut sub = redis.conn();
        let mut pubsub = sub.as_pubsub();
        pubsub.subscribe(&keys().channel).unwrap();
        // A read before anything starts the epoch.
        let empty = read(&mut c, "e1", Some(0)).await;
        assert_eq!((empty.epoch.as_str(), empty.offset), ("e1", 0));
        for n in 1..=4 {
            let p = append(&mut c, "ignored", 3, n).await;
            assert_eq!((p.epoch.as_str(), p.offset), ("e1", n));
        }
        let msg = pubsub.get_message().unwrap();
        let env = wire::decode(msg.get_payload_bytes().to_vec().into()).unwrap();
        assert_eq!(
            env.body,
            wire::Body::Publication(
                StreamPosition {
                    epoch: "e1".into(),
                    offset: 1
                },
                wsplus_actors::Delivery::Text(
                    r#"{"push":"pub","channel":"x","offset":1,"data":1}"#.into()
                )
            )
        );
        // history_size 3: 2, 3, 4 are kept.
        let all = read(&mut c, "x", Some(0)).await;
        assert_eq!(all.offset, 4);
        let offsets: Vec<u64> = all.publications.iter().map(|p| p.0).collect();
        assert_eq!(offsets, [2, 3, 4]);
        assert_eq!(
            &*all.publications[2].1,
            r#"{"push":"pub","channel":"x","offset":4,"data":4}"#
        );
        let after = read(&mut c, "x", Some(3)).await;
        assert_eq!(after.publications.len(), 1);
        assert!(read(&mut c, "x", None).await.publications.is_empty());
        // The meta is lost (a Redis restart without persistence): a new epoch
        // and offsets from 1, nothing of the old stream.
        let _: () = redis::cmd("DEL")
            .arg(&keys().meta)
            .query_async(&mut c)
            .await
            .unwrap();
        let p = append(&mut c, "e2", 3, 9).await;
        assert_eq!((p.epoch.as_str(), p.offset), ("e2", 1));
        let all = read(&mut c, "x", Some(0)).await;
        assert_eq!(all.publications.len(), 1);
    }
}
