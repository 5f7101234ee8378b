//! Cluster-wide channel occupancy for the `channel.occupied` /
//! `channel.vacated` webhooks: which nodes have a local subscriber of each
//! channel, counted in Redis so that exactly one node emits each event.
//!
//! One sorted set per (listener, tenant, channel) — member: node id, score:
//! the node's lease expiry in Redis' clock — changed by one Lua script, so a
//! change and its verdict are atomic. The script first drops expired members,
//! then adds or removes the node, and answers what happened to the set: it
//! became empty (vacated — by this removal, or because the members it found
//! had all expired) and/or it went from empty to this node (occupied). The
//! events mirror the set's transitions between empty and not, so every
//! transition is emitted once, by the node whose script made it.
//!
//! **The node's truth is kept as state.** The channel spaces' changes update
//! `desired` (the keys this node should be counted in) at once, and are
//! queued, in order, for one task that applies them (a quick subscribe and
//! unsubscribe are not reordered). A change that does not fit the bounded
//! queue (`cluster.queue`), or that Redis does not take (down, timeout), is
//! counted (`wsplus_cluster_occupancy_deferred_total`) and left to the
//! renewal: every `lease_s / 3` the task adds the node to every set of
//! `desired` (renewing its lease there) and removes it from every set it may
//! still be in but should not, with the same script — so once Redis answers
//! again the verdicts a lost change would have given are given then (late,
//! but not lost). What stays lost: a verdict Redis decided but whose answer
//! never came back (a timeout after the script ran), and everything Redis
//! forgot if it lost its data.
//!
//! **Dead nodes are swept.** Each node also keeps an index of its sets
//! (`wsplus:occ:{node}`) and a lease in `wsplus:occ:nodes`. On each renewal a
//! node renews its own lease and, in the same script, claims the nodes whose
//! lease ran out (removing them, so exactly one live node claims each). The
//! claimant removes the dead node from every set of its index with the same
//! script, so the removal that empties a set emits `channel.vacated` — once,
//! whichever node did it. Sets and indexes live three leases after their last
//! write, long enough to be swept. A node that could not reach Redis for a
//! whole lease counts as dead: its channels may be vacated, and are occupied
//! again when it comes back. If every node dies, nobody is left to emit.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use actix::ArbiterHandle;
use tokio::sync::mpsc;
use wsplus_actors::channels::ChannelName;
use wsplus_actors::{ListenerId, TenantId};

use super::link::Link;
use super::scripts::{Batch, Call, Script};
use crate::cluster::keys::{self, Channel};
use crate::cluster::{ChannelWebhooks, Occupancy, OccupancyDeferred};

/// The occupancy script (with the clock prelude). KEYS[1] = the channel's
/// set; ARGV = mode (`add`, `rem`), node, lease_ms. Answers the sum of
/// [`VACATED`] (the set became empty) and [`OCCUPIED`] (it went from empty
/// to this node).
const OCCUPANCY_BODY: &str = r"
local mode, node, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
if mode == 'rem' then
  redis.call('ZREM', KEYS[1], node)
  if before > 0 and redis.call('ZCARD', KEYS[1]) == 0 then return 1 end
  return 0
end
local live = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], now + lease, node)
redis.call('PEXPIRE', KEYS[1], 3 * lease)
local verdict = 0
if before > 0 and live == 0 then verdict = 1 end
if live == 0 then verdict = verdict + 2 end
return verdict
";

static OCCUPANCY: LazyLock<Script> = LazyLock::new(|| Script::new(OCCUPANCY_BODY));

/// The script's bit for "the set became empty".
const VACATED: i64 = 1;
/// The script's bit for "the set went from empty to this node".
const OCCUPIED: i64 = 2;

/// Renews this node's lease among the nodes counting occupancy and claims
/// the dead ones. KEYS[1] = [`keys::OCCUPANCY_NODES`]; ARGV = node,
/// lease_ms. Answers the ids of the nodes whose lease ran out (removed: no
/// other node claims them).
const CLAIM_BODY: &str = r"
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1)
for _, n in ipairs(dead) do redis.call('ZREM', KEYS[1], n) end
return dead
";

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_BODY));

/// Sets of a dead node removed per pipeline.
const SWEEP_BATCH: usize = 500;

/// The occupancy set of a channel (the hash tag of its pub/sub name).
fn key(listener: &str, tenant: Option<&str>, channel: &str) -> String {
    format!("{}:n", keys::topic_channel(listener, tenant, channel))
}

/// One change, as queued for the task.
#[derive(Debug)]
struct Change {
    what: Occupancy,
    key: String,
}

/// The occupancy keys this node should be counted in: its channels with a
/// local subscriber (bounded by them).
#[derive(Debug, Default)]
struct Desired(Mutex<HashSet<String>>);

impl Desired {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The node's side: records its truth and queues changes for the task.
#[derive(Debug)]
pub(super) struct Occupancies {
    tx: mpsc::Sender<Change>,
    desired: Arc<Desired>,
    link: Weak<Link>,
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
        let desired = Arc::new(Desired::default());
        let task = Task {
            link: Arc::downgrade(link),
            webhooks,
            desired: desired.clone(),
            held: HashSet::new(),
            sweeps: Vec::new(),
            adopted: false,
        };
        arbiter.spawn(task.run(rx));
        Self {
            tx,
            desired,
            link: Arc::downgrade(link),
        }
    }

    /// This node's first subscriber (`Occupied`) or last one gone
    /// (`Vacated`) of `channel`, on the listener at `path`.
    pub fn change(
        &self,
        what: Occupancy,
        path: &str,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) {
        let key = key(path, tenant.map(TenantId::as_str), channel.as_str());
        {
            let mut desired = self.desired.lock();
            match what {
                Occupancy::Occupied => desired.insert(key.clone()),
                Occupancy::Vacated => desired.remove(&key),
            };
        }
        if self.tx.try_send(Change { what, key }).is_err() {
            log::debug!("cluster: channel occupancy queue full, the renewal applies the change");
            if let Some(link) = self.link.upgrade() {
                link.stats().defer_occupancy(OccupancyDeferred::QueueFull);
            }
        }
    }
}

/// The task's state.
struct Task {
    link: Weak<Link>,
    webhooks: Arc<ChannelWebhooks>,
    desired: Arc<Desired>,
    /// The keys this node may be counted in, in Redis (added, or removed
    /// without Redis confirming): `desired` plus what is still to remove.
    held: HashSet<String>,
    /// Dead nodes claimed and not swept yet (retried every tick).
    sweeps: Vec<String>,
    /// What an earlier run of this node id left in its index has been taken
    /// into `held` (done by the first renewal that reaches Redis).
    adopted: bool,
}

impl Task {
    /// Applies the changes in order and renews, reconciles and sweeps every
    /// tick.
    async fn run(mut self, mut rx: mpsc::Receiver<Change>) {
        let Some(tick) = self.link.upgrade().map(|l| l.timing.tick()) else {
            return;
        };
        let mut renew = actix_rt::time::interval(tick);
        loop {
            tokio::select! {
                change = rx.recv() => {
                    let Some(c) = change else { return };
                    let Some(link) = self.link.upgrade() else { return };
                    self.apply(&link, c).await;
                }
                _ = renew.tick() => {
                    let Some(link) = self.link.upgrade() else { return };
                    if !link.up() {
                        continue;
                    }
                    if let Err(e) = self.reconcile(&link).await {
                        log::debug!("cluster: channel occupancy renewal failed ({e})");
                    }
                    if let Err(e) = self.sweep(&link).await {
                        log::debug!("cluster: channel occupancy sweep failed ({e})");
                    }
                }
            }
        }
    }

    /// One change from the channel spaces, with its index entry.
    async fn apply(&mut self, link: &Link, c: Change) {
        let index = keys::occupancy_index(&link.node);
        let mut b = Batch::new();
        match c.what {
            Occupancy::Occupied => {
                self.held.insert(c.key.clone());
                b.call(occupancy(&c.key, "add", &link.node, link.timing.lease_ms()));
                b.cmd(redis::Cmd::sadd(&index, &c.key)).ignore();
                b.cmd(redis::Cmd::pexpire(
                    &index,
                    3 * link.timing.lease_ms() as i64,
                ))
                .ignore();
            }
            Occupancy::Vacated => {
                b.call(occupancy(&c.key, "rem", &link.node, link.timing.lease_ms()));
                b.cmd(redis::Cmd::srem(&index, &c.key)).ignore();
            }
        }
        let answer = match link.up() {
            true => link.run::<(i64,)>(&b).await.map_err(|e| e.to_string()),
            false => Err("Redis is down".to_owned()),
        };
        match answer {
            Ok((verdict,)) => {
                if c.what == Occupancy::Vacated && !self.desired.lock().contains(&c.key) {
                    self.held.remove(&c.key);
                }
                self.emit(link, &c.key, verdict);
            }
            Err(e) => {
                link.stats().defer_occupancy(OccupancyDeferred::Redis);
                log::debug!("cluster: channel occupancy change deferred to the renewal ({e})");
            }
        }
    }

    /// Makes Redis match `desired`: counted in (lease renewed) wherever this
    /// node holds the channel, out wherever it may still be counted but no
    /// longer holds it; the verdicts are emitted as for a change.
    async fn reconcile(&mut self, link: &Link) -> Result<(), super::error::LinkError> {
        if !self.adopted {
            // A node restarted under the same id within its lease is never
            // claimed dead, so nobody would sweep what its last run held:
            // this run may be counted there too until it says otherwise.
            let index = keys::occupancy_index(&link.node);
            let before: Vec<String> = link.query(redis::cmd("SMEMBERS").arg(&index)).await?;
            self.held.extend(before);
            self.adopted = true;
        }
        let want: HashSet<String> = self.desired.lock().clone();
        let gone: Vec<String> = self.held.difference(&want).cloned().collect();
        if want.is_empty() && gone.is_empty() {
            return Ok(());
        }
        let index = keys::occupancy_index(&link.node);
        let mut b = Batch::new();
        let order: Vec<&String> = want.iter().chain(&gone).collect();
        for k in &want {
            b.call(occupancy(k, "add", &link.node, link.timing.lease_ms()));
        }
        for k in &gone {
            b.call(occupancy(k, "rem", &link.node, link.timing.lease_ms()));
        }
        if !want.is_empty() {
            b.cmd(redis::Cmd::sadd(&index, want.iter().collect::<Vec<_>>()))
                .ignore();
        }
        if !gone.is_empty() {
            b.cmd(redis::Cmd::srem(&index, &gone)).ignore();
        }
        b.cmd(redis::Cmd::pexpire(
            &index,
            3 * link.timing.lease_ms() as i64,
        ))
        .ignore();
        let verdicts: Vec<i64> = link.run(&b).await?;
        for (k, v) in order.into_iter().zip(verdicts) {
            self.emit(link, k, v);
        }
        self.held = want;
        Ok(())
    }

    /// Renews this node's lease among the counting nodes, claims the dead
    /// ones and removes them from every set they were counted in.
    async fn sweep(&mut self, link: &Link) -> Result<(), super::error::LinkError> {
        let dead: Vec<String> = link
            .script(claim(&link.node, link.timing.lease_ms()))
            .await?;
        self.sweeps
            .extend(dead.into_iter().filter(|n| *n != link.node));
        while let Some(node) = self.sweeps.last().cloned() {
            let index = keys::occupancy_index(&node);
            let members: Vec<String> = link.query(redis::cmd("SMEMBERS").arg(&index)).await?;
            for batch in members.chunks(SWEEP_BATCH) {
                let mut b = Batch::new();
                for k in batch {
                    b.call(occupancy(k, "rem", &node, link.timing.lease_ms()));
                }
                let verdicts: Vec<i64> = link.run(&b).await?;
                for (k, v) in batch.iter().zip(verdicts) {
                    self.emit(link, k, v);
                }
            }
            link.query::<()>(redis::cmd("DEL").arg(&index)).await?;
            log::info!(
                "cluster: node {node} stopped renewing its lease; swept it out of {} channels",
                members.len()
            );
            self.sweeps.pop();
        }
        Ok(())
    }

    /// Emits what a script's verdict on `key` says (vacated first).
    fn emit(&self, link: &Link, key: &str, verdict: i64) {
        if verdict == 0 {
            return;
        }
        let Some((listener, tenant, channel)) = target(link, key) else {
            log::warn!("cluster: channel occupancy key {key} names no channel of this node");
            return;
        };
        for (bit, what) in [
            (VACATED, Occupancy::Vacated),
            (OCCUPIED, Occupancy::Occupied),
        ] {
            if verdict & bit != 0 {
                self.webhooks
                    .emit(what, listener, tenant.as_ref(), &channel);
            }
        }
    }
}

/// The occupancy script on `key` for `node` (mode `add` or `rem`).
fn occupancy(key: &str, mode: &str, node: &str, lease_ms: u64) -> Call {
    let mut c = OCCUPANCY.call(&[key]);
    c.arg(mode).arg(node).arg(lease_ms);
    c
}

/// The claim script: renews `node`'s lease, answers the dead nodes.
fn claim(node: &str, lease_ms: u64) -> Call {
    let mut c = CLAIM.call(&[keys::OCCUPANCY_NODES]);
    c.arg(node).arg(lease_ms);
    c
}

/// The listener, tenant and channel of an occupancy key (of one of this
/// node's listeners).
fn target(link: &Link, key: &str) -> Option<(ListenerId, Option<TenantId>, ChannelName)> {
    let Channel::Topic(path, tenant, channel) = keys::parse_channel(key.strip_suffix(":n")?)?
    else {
        return None;
    };
    let listener = link.listeners.iter().find(|l| l.path == path)?.id;
    let channel = ChannelName::parse(&channel).ok()?;
    Some((listener, tenant.map(TenantId::new), channel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::redis::scripts::tests::run as call;
    use crate::cluster::redis::test_redis::TestRedis;
    use redis::aio::MultiplexedConnection as Conn;

    async fn run(c: &mut Conn, mode: &str, node: &str, lease: u64) -> i64 {
        call(c, occupancy("k", mode, node, lease)).await
    }

    async fn claim_(c: &mut Conn, node: &str, lease: u64) -> Vec<String> {
        call(c, claim(node, lease)).await
    }

    #[tokio::test]
    async fn the_first_node_in_occupies_and_the_last_out_vacates() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        assert_eq!(run(&mut c, "add", "a", 60_000).await, OCCUPIED);
        assert_eq!(run(&mut c, "add", "b", 60_000).await, 0);
        assert_eq!(run(&mut c, "add", "a", 60_000).await, 0, "a renewal");
        assert_eq!(run(&mut c, "rem", "a", 60_000).await, 0);
        assert_eq!(run(&mut c, "rem", "a", 60_000).await, 0, "not a member");
        assert_eq!(run(&mut c, "rem", "b", 60_000).await, VACATED);
        assert_eq!(run(&mut c, "rem", "b", 60_000).await, 0, "vacated once");
        let ttl: i64 = redis::cmd("PTTL")
            .arg("k")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(ttl, -2, "an empty set is gone");
        run(&mut c, "add", "a", 60_000).await;
        let ttl: i64 = redis::cmd("PTTL")
            .arg("k")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(ttl > 120_000, "the set outlives its members' lease: {ttl}");
    }

    #[tokio::test]
    async fn expired_members_vacate_once_whoever_finds_them() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        // b's member expires at once (lease 1 ms; the set is kept as if
        // written by a live node): a later add finds only an expired member.
        async fn expire_b(c: &mut Conn) {
            assert_eq!(run(c, "add", "b", 1).await, OCCUPIED);
            let _: () = redis::cmd("PEXPIRE")
                .arg("k")
                .arg(60_000)
                .query_async(c)
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        expire_b(&mut c).await;
        assert_eq!(run(&mut c, "add", "a", 60_000).await, VACATED | OCCUPIED);
        // A sweep removing b now changes nothing.
        assert_eq!(run(&mut c, "rem", "b", 60_000).await, 0);
        assert_eq!(run(&mut c, "rem", "a", 60_000).await, VACATED);
        // A dead node's expired member, the last one: its sweep vacates.
        expire_b(&mut c).await;
        assert_eq!(run(&mut c, "rem", "b", 60_000).await, VACATED);
    }

    #[tokio::test]
    async fn each_dead_node_is_claimed_by_one_live_node() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        // a first: dead's 1 ms lease may be over by the time a's call runs.
        assert!(claim_(&mut c, "a", 60_000).await.is_empty());
        assert!(claim_(&mut c, "dead", 1).await.is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(claim_(&mut c, "b", 60_000).await, ["dead"]);
        assert!(claim_(&mut c, "a", 60_000).await.is_empty(), "claimed once");
    }
}
