//! The Broker and hubs with history: a tenant's hub outlives its room while
//! it keeps publications (so the tenant's last client can come back and
//! recover), and goes once it has nothing left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::tests::{info, join};
use super::*;
use crate::channels::codec::{push_pub, CommandId};
use crate::channels::history::HistoryLimits;
use crate::channels::name::ChannelName;
use crate::channels::space::ChannelOp;
use crate::ids::{Mode, Scope};
use crate::outbox::outbox;

fn broker(ttl: Duration) -> Addr<Broker> {
    let mut p = ListenerPolicy::for_tests(0, "/ws", Mode::Channels, Scope::Tenant);
    p.history = Some(HistoryLimits { size: 10, ttl });
    Broker::new(
        vec![Arc::new(p)],
        Arc::new(Counters::new(1)),
        BrokerConfig {
            history_prune: Duration::from_millis(20),
            ..BrokerConfig::default()
        },
    )
    .start()
}

fn space() -> ChannelSpaceKey {
    ChannelSpaceKey {
        listener: ListenerId(0),
        tenant: Some(TenantId::new("t")),
    }
}

async fn status(b: &Addr<Broker>) -> Option<(crate::channels::codec::StreamPosition, usize)> {
    b.send(ChannelStreamStatus {
        space: space(),
        channel: ChannelName::parse("x").unwrap(),
    })
    .await
    .unwrap()
}

#[actix::test]
async fn a_hub_with_history_is_parked_when_its_room_closes_and_stops_when_idle() {
    let b = broker(Duration::from_secs(1));
    let me = info(0, "t", Scope::Tenant);
    let (joined, _rx) = join(&b, me.clone()).await;
    let hub = joined.as_ref().unwrap().channels.clone().unwrap().hub;
    let ch = ChannelName::parse("x").unwrap();
    let (o, _orx) = outbox(16, 1 << 20);
    hub.send(ChannelOp::Publish {
        channel: ch.clone(),
        delivery: push_pub(&ch, &serde_json::json!(1), None, &serde_json::Value::Null),
        reply: Some((me.id.clone(), o, CommandId::new(1).unwrap())),
    })
    .await
    .unwrap();
    b.send(SessionClosed { id: me.id.clone() }).await.unwrap();
    // No room any more, the publication is still kept.
    let (position, kept) = status(&b).await.expect("parked, not stopped");
    assert_eq!((position.offset, kept), (1, 1));
    // A new session of the tenant gets the same hub back.
    let again = info(0, "t", Scope::Tenant);
    let (joined, _rx2) = join(&b, again.clone()).await;
    assert_eq!(joined.as_ref().unwrap().channels.clone().unwrap().hub, hub);
    b.send(SessionClosed {
        id: again.id.clone(),
    })
    .await
    .unwrap();
    // Once the publication expired and the stream went unused for the TTL,
    // the parked hub reports idle and the Broker stops it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&b).await.is_some() {
        assert!(Instant::now() < deadline, "the idle hub was not stopped");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        hub.send(ChannelOp::Leave {
            session: me.id.clone()
        })
        .await
        .is_err(),
        "stopped"
    );
}
