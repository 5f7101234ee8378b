//! Lua scripts run atomically in Redis. Times come from Redis (`TIME`), so node
//! clocks never matter; expiries are in milliseconds.

/// `now` in milliseconds, from Redis' clock.
pub(super) const NOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Tenant slots. KEYS[1] = slots hash (field = node, value = `count:expiry_ms`).
/// ARGV = mode, node, lease_ms, n.
///
/// * `acquire` (n = cap): drop expired fields, refuse (-1) when the live total
///   is at the cap, else add one to this node's count; returns the new total.
/// * `set` (n = local count): this node's count is n, with a fresh lease (every
///   heartbeat and after a reconnect: Redis is rewritten from the node's truth,
///   so a lost release or acquire is corrected within a lease tick).
const SLOTS_BODY: &str = r"
local mode, node, lease, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local function count(v)
  if not v then return nil end
  local c, exp = string.match(v, '^(%d+):(%d+)$')
  if c == nil or tonumber(exp) < now then return nil end
  return tonumber(c)
end
local function put(c)
  if c <= 0 then
    redis.call('HDEL', KEYS[1], node)
  else
    redis.call('HSET', KEYS[1], node, c .. ':' .. (now + lease))
    redis.call('PEXPIRE', KEYS[1], lease)
  end
  return c
end
if mode == 'acquire' then
  local fields = redis.call('HGETALL', KEYS[1])
  local total, mine = 0, 0
  for i = 1, #fields, 2 do
    local c = count(fields[i + 1])
    if c == nil then
      redis.call('HDEL', KEYS[1], fields[i])
    else
      total = total + c
      if fields[i] == node then mine = c end
    end
  end
  if total >= n then return -1 end
  put(mine + 1)
  return total + 1
else
  return put(n)
end
";

/// Node liveness. KEYS[1] = nodes sorted set, KEYS[2] = the node's registry hash.
/// ARGV = node, lease_ms. Renews the node's lease and its registry's TTL, and
/// forgets nodes whose lease ran out.
const HEARTBEAT_BODY: &str = r"
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
return 1
";

/// Live nodes. KEYS[1] = nodes sorted set. Returns the ids whose lease runs.
const LIVE_BODY: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// Channel history, append. KEYS[1] = the stream's meta hash (`epoch`,
/// `top`), KEYS[2] = the stream. ARGV = epoch candidate, history_size,
/// ttl_ms, meta_ttl_ms, envelope head, push head, push tail, pub/sub channel.
///
/// A stream without meta (new, expired, or lost with a Redis restart) starts
/// a new epoch with the candidate and nothing kept. The offset is the next of
/// `top`; the push gets `"offset":n,` between head and tail, is kept (entry id
/// `n-0`, at most history_size entries, field `t` = time) and published with
/// its position — all in one step, so numbering, keeping and delivering never
/// disagree. Returns {epoch, offset}.
const APPEND_BODY: &str = r#"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local push = ARGV[6] .. '"offset":' .. offset .. ',' .. ARGV[7]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-0', 'p', push, 't', now)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[8], ARGV[5] .. epoch .. '\n' .. offset .. '\n' .. push)
return {epoch, offset}
"#;

/// Channel history, read. KEYS as for append; ARGV = epoch candidate, ttl_ms,
/// meta_ttl_ms, after (-1: the position only). Starts a new epoch like
/// append when there is none. Returns {epoch, top, offset1, push1, …}: the
/// kept publications after `after` younger than ttl, oldest first.
const READ_BODY: &str = r#"
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'top', 0)
  redis.call('DEL', KEYS[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local out = {redis.call('HGET', KEYS[1], 'epoch'), tonumber(redis.call('HGET', KEYS[1], 'top'))}
local after = tonumber(ARGV[4])
if after >= 0 then
  local oldest = now - tonumber(ARGV[2])
  for _, e in ipairs(redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+')) do
    local f = e[2]
    if tonumber(f[4]) > oldest then
      table.insert(out, tonumber(string.match(e[1], '^(%d+)')))
      table.insert(out, f[2])
    end
  end
end
return out
"#;

/// The scripts with their clock prelude, sent with `EVAL` (Redis caches them by
/// digest; they are small).
#[derive(Debug)]
pub struct Scripts {
    slots: String,
    heartbeat: String,
    live: String,
    append: String,
    read: String,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            slots: format!("{NOW}{SLOTS_BODY}"),
            heartbeat: format!("{NOW}{HEARTBEAT_BODY}"),
            live: format!("{NOW}{LIVE_BODY}"),
            append: format!("{NOW}{APPEND_BODY}"),
            read: format!("{NOW}{READ_BODY}"),
        }
    }
}

pub(super) fn eval(src: &str, keys: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(src).arg(keys.len());
    for k in keys {
        c.arg(*k);
    }
    c
}

/// The Redis names of one channel's history.
#[derive(Debug, Clone)]
pub struct HistoryKeys {
    /// The meta hash (`epoch`, `top`).
    pub meta: String,
    /// The stream of kept publications.
    pub stream: String,
    /// The pub/sub channel its publications go out on.
    pub channel: String,
}

/// The arguments of one append.
#[derive(Debug)]
pub struct AppendArgs<'a> {
    /// The epoch a new stream starts with.
    pub epoch: &'a str,
    /// `history_size`.
    pub size: usize,
    /// `history_ttl_s` in ms.
    pub ttl_ms: u64,
    /// How long the epoch outlives the last publication.
    pub meta_ttl_ms: u64,
    /// The wire envelope's header.
    pub envelope: &'a [u8],
    /// The push up to where the offset goes.
    pub head: &'a str,
    /// The rest of the push.
    pub tail: &'a str,
}

/// What to do with a node's share of a tenant's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOp {
    /// Take one if the live total is below this cap (the script returns -1 if not).
    Acquire(usize),
    /// This node holds exactly this many (renews the lease).
    Set(usize),
}

impl SlotOp {
    fn args(self) -> (&'static str, usize) {
        match self {
            SlotOp::Acquire(cap) => ("acquire", cap),
            SlotOp::Set(n) => ("set", n),
        }
    }
}

impl Scripts {
    /// A slots operation (see `SLOTS_BODY`).
    pub fn slots(&self, key: &str, op: SlotOp, node: &str, lease_ms: u64) -> redis::Cmd {
        let (mode, n) = op.args();
        let mut c = eval(&self.slots, &[key]);
        c.arg(mode).arg(node).arg(lease_ms).arg(n);
        c
    }

    /// A node heartbeat (see `HEARTBEAT_BODY`).
    pub fn heartbeat(&self, registry: &str, node: &str, lease_ms: u64) -> redis::Cmd {
        let mut c = eval(&self.heartbeat, &[crate::cluster::keys::NODES, registry]);
        c.arg(node).arg(lease_ms);
        c
    }

    /// Appends to a channel's stream (see `APPEND_BODY`).
    pub fn history_append(&self, keys: &HistoryKeys, a: &AppendArgs<'_>) -> redis::Cmd {
        let mut c = eval(&self.append, &[&keys.meta, &keys.stream]);
        c.arg(a.epoch)
            .arg(a.size)
            .arg(a.ttl_ms)
            .arg(a.meta_ttl_ms)
            .arg(a.envelope)
            .arg(a.head)
            .arg(a.tail)
            .arg(&keys.channel);
        c
    }

    /// Reads a channel's stream (see `READ_BODY`); `after` `None`: the
    /// position only.
    pub fn history_read(
        &self,
        keys: &HistoryKeys,
        epoch: &str,
        ttl_ms: u64,
        meta_ttl_ms: u64,
        after: Option<u64>,
    ) -> redis::Cmd {
        let mut c = eval(&self.read, &[&keys.meta, &keys.stream]);
        let after = after.map_or(-1, |a| a.min(i64::MAX as u64) as i64);
        c.arg(epoch).arg(ttl_ms).arg(meta_ttl_ms).arg(after);
        c
    }

    /// The live nodes (see `LIVE_BODY`).
    pub fn live(&self) -> redis::Cmd {
        eval(&self.live, &[crate::cluster::keys::NODES])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::redis::test_redis::TestRedis;

    fn slots(r: &mut redis::Connection, s: &Scripts, node: &str, op: SlotOp, lease: u64) -> i64 {
        s.slots("k", op, node, lease).query(r).unwrap()
    }

    #[test]
    fn slots_are_capped_across_nodes_and_rewritten_from_the_truth() {
        let redis = TestRedis::start();
        let mut c = redis.conn();
        let s = Scripts::default();
        let lease = 60_000;
        assert_eq!(slots(&mut c, &s, "a", SlotOp::Acquire(3), lease), 1);
        assert_eq!(slots(&mut c, &s, "a", SlotOp::Acquire(3), lease), 2);
        assert_eq!(slots(&mut c, &s, "b", SlotOp::Acquire(3), lease), 3);
        assert_eq!(
            slots(&mut c, &s, "b", SlotOp::Acquire(3), lease),
            -1,
            "at the cap"
        );
        // A release writes the node's new count.
        slots(&mut c, &s, "a", SlotOp::Set(1), lease);
        assert_eq!(slots(&mut c, &s, "b", SlotOp::Acquire(3), lease), 3);
        // Node a lost a release on the way: its next heartbeat writes its truth.
        slots(&mut c, &s, "a", SlotOp::Set(0), lease);
        let fields: Vec<String> = redis::cmd("HKEYS").arg("k").query(&mut c).unwrap();
        assert_eq!(fields, ["b"]);
        assert_eq!(slots(&mut c, &s, "a", SlotOp::Acquire(3), lease), 3);
        assert_eq!(slots(&mut c, &s, "c", SlotOp::Acquire(3), lease), -1);
    }

    #[test]
    fn expired_shares_stop_counting() {
        let redis = TestRedis::start();
        let mut c = redis.conn();
        let s = Scripts::default();
        slots(&mut c, &s, "gone", SlotOp::Set(5), 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(slots(&mut c, &s, "a", SlotOp::Acquire(1), 60_000), 1);
        let fields: Vec<String> = redis::cmd("HKEYS").arg("k").query(&mut c).unwrap();
        assert_eq!(fields, ["a"], "the expired field was dropped");
    }

    #[test]
    fn nodes_live_while_they_renew_their_lease() {
        let redis = TestRedis::start();
        let mut c = redis.conn();
        let s = Scripts::default();
        let _: () = redis::cmd("HSET")
            .arg("reg")
            .arg("s1")
            .arg("v")
            .query(&mut c)
            .unwrap();
        let _: i64 = s.heartbeat("reg", "a", 60_000).query(&mut c).unwrap();
        let _: i64 = s.heartbeat("reg-b", "b", 1).query(&mut c).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let live: Vec<String> = s.live().query(&mut c).unwrap();
        assert_eq!(live, ["a"]);
        let ttl: i64 = redis::cmd("PTTL").arg("reg").query(&mut c).unwrap();
        assert!(ttl > 50_000, "registry TTL renewed: {ttl}");
    }
}
