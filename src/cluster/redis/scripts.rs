//! Lua scripts run atomically in Redis. Times come from Redis (`TIME`), so node
//! clocks never matter; expiries are in milliseconds.

/// `now` in milliseconds, from Redis' clock.
const NOW: &str = r"
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

/// The scripts with their clock prelude, sent with `EVAL` (Redis caches them by
/// digest; they are small).
#[derive(Debug)]
pub struct Scripts {
    slots: String,
    heartbeat: String,
    live: String,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            slots: format!("{NOW}{SLOTS_BODY}"),
            heartbeat: format!("{NOW}{HEARTBEAT_BODY}"),
            live: format!("{NOW}{LIVE_BODY}"),
        }
    }
}

fn eval(src: &str, keys: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(src).arg(keys.len());
    for k in keys {
        c.arg(*k);
    }
    c
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
