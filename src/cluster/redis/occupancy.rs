//! Cluster-wide channel occupancy for the `channel.occupied` /
//! `channel.vacated` webhooks: which nodes have a local subscriber of each
//! channel, counted in Redis so that only the first node in and the last node
//! out emit the event.
//!
//! One sorted set per (listener, tenant, channel) — member: node id, score:
//! the node's lease expiry in Redis' clock — changed by one Lua script, so a
//! change and its verdict are atomic: `add` drops expired members, adds this
//! node and answers 1 when the set went from empty to this node (occupied);
//! `rem` removes this node and answers 1 when the set became empty
//! (vacated). Every `lease_s / 3` the node renews its members (and the keys'
//! TTL), like its lease.
//!
//! The changes of one node go through one task, in the order the channel
//! spaces made them (a quick subscribe and unsubscribe cannot be reordered).
//! The task's queue is bounded (`cluster.queue`); a change that does not fit,
//! or that Redis does not take (unreachable, timeout), is logged and its event
//! is not emitted: like cross-node delivery, these events are at most once
//! while Redis is in trouble, and the renewal puts this node's membership
//! right within a tick.
//!
//! A node that dies stops renewing: its members expire with its lease
//! (`cluster.lease_s`) and are dropped by the next change of the channel.
//! No `channel.vacated` is emitted for a channel whose last subscriber was
//! on the dead node; the next first subscriber anywhere emits
//! `channel.occupied` again.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use actix::ArbiterHandle;
use tokio::sync::mpsc;
use wsplus_actors::channels::ChannelName;
use wsplus_actors::{ListenerId, TenantId};

use super::link::Link;
use super::scripts::{eval, NOW};
use crate::cluster::{keys, ChannelWebhooks, Occupancy};

/// The script (with the clock prelude). KEYS[1] = the channel's set; ARGV =
/// mode (`add`, `rem`, `renew`), node, lease_ms.
const OCCUPANCY_BODY: &str = r"
local mode, node, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
if mode == 'rem' then
  local removed = redis.call('ZREM', KEYS[1], node)
  if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
  return 0
end
local before = redis.call('ZCARD', KEYS[1])
local added = redis.call('ZADD', KEYS[1], now + lease, node)
redis.call('PEXPIRE', KEYS[1], lease)
if mode == 'add' and before == 0 and added == 1 then return 1 end
return 0
";

/// The occupancy set of a channel (the hash tag of its pub/sub name).
fn key(listener: &str, tenant: Option<&str>, channel: &str) -> String {
    format!("{}:n", keys::topic_channel(listener, tenant, channel))
}

/// One change, as queued for the task.
#[derive(Debug)]
struct Change {
    what: Occupancy,
    key: String,
    listener: ListenerId,
    tenant: Option<TenantId>,
    channel: ChannelName,
}

/// The node's side: queues changes for the task.
#[derive(Debug)]
pub(super) struct Occupancies {
    tx: mpsc::Sender<Change>,
}

impl Occupancies {
    /// Starts the task on the backplane's `arbiter`, with a queue of
    /// `cluster.queue` changes.
    pub fn start(
        link: &Arc<Link>,
        webhooks: Arc<ChannelWebhooks>,
        arbiter: &ArbiterHandle,
    ) -> Self {
        let (tx, rx) = mpsc::channel(link.timing.queue);
        arbiter.spawn(task(Arc::downgrade(link), webhooks, rx));
        Self { tx }
    }

    /// This node's first subscriber (`Occupied`) or last one gone
    /// (`Vacated`) of `channel`, on the listener at `path`.
    pub fn change(
        &self,
        what: Occupancy,
        path: &str,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) {
        let change = Change {
            what,
            key: key(path, tenant.map(TenantId::as_str), channel.as_str()),
            listener,
            tenant: tenant.cloned(),
            channel: channel.clone(),
        };
        if self.tx.try_send(change).is_err() {
            log::warn!("cluster: channel occupancy queue full, a channel event is not emitted");
        }
    }
}

/// Applies the changes in order and renews this node's members every tick.
async fn task(link: Weak<Link>, webhooks: Arc<ChannelWebhooks>, mut rx: mpsc::Receiver<Change>) {
    let script = format!("{NOW}{OCCUPANCY_BODY}");
    // The channels this node holds, by key (what the renewal rewrites).
    let mut held: HashSet<String> = HashSet::new();
    let Some(tick) = link.upgrade().map(|l| l.timing.lease / 3) else {
        return;
    };
    let mut renew = actix_rt::time::interval(tick);
    loop {
        tokio::select! {
            change = rx.recv() => {
                let Some(c) = change else { return };
                let Some(link) = link.upgrade() else { return };
                let mode = match c.what {
                    Occupancy::Occupied => { held.insert(c.key.clone()); "add" }
                    Occupancy::Vacated => { held.remove(&c.key); "rem" }
                };
                let cmd = command(&script, &c.key, mode, &link);
                match link.query::<i64>(&cmd).await {
                    Ok(1) => webhooks.emit(c.what, c.listener, c.tenant.as_ref(), &c.channel),
                    Ok(_) => {}
                    Err(e) => log::warn!(
                        "cluster: channel occupancy not counted ({e}); its event is not emitted"
                    ),
                }
            }
            _ = renew.tick() => {
                let Some(link) = link.upgrade() else { return };
                if held.is_empty() || !link.up() {
                    continue;
                }
                let mut p = redis::pipe();
                for k in &held {
                    p.add_command(command(&script, k, "renew", &link)).ignore();
                }
                if let Err(e) = link.pipe(&p).await {
                    log::debug!("cluster: channel occupancy renewal failed ({e})");
                }
            }
        }
    }
}

fn command(script: &str, key: &str, mode: &str, link: &Link) -> redis::Cmd {
    let mut c = eval(script, &[key]);
    c.arg(mode)
        .arg(&link.node)
        .arg(link.timing.lease.as_millis() as u64);
    c
}
