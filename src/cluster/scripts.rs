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
/// * `release`: one less for this node (the field goes at 0).
/// * `touch` (n = local count): renew this node's lease, keeping its count;
///   writes n when the field is missing (expired, or Redis restarted).
/// * `set` (n = local count): this node's count is n (after a reconnect).
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
elseif mode == 'release' then
  local c = count(redis.call('HGET', KEYS[1], node))
  if c == nil then return 0 end
  return put(c - 1)
elseif mode == 'touch' then
  local c = count(redis.call('HGET', KEYS[1], node))
  return put(c or n)
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

impl Scripts {
    /// A slots operation (see `SLOTS_BODY`).
    pub fn slots(&self, key: &str, mode: &str, node: &str, lease_ms: u64, n: usize) -> redis::Cmd {
        let mut c = eval(&self.slots, &[key]);
        c.arg(mode).arg(node).arg(lease_ms).arg(n);
        c
    }

    /// A node heartbeat (see `HEARTBEAT_BODY`).
    pub fn heartbeat(&self, registry: &str, node: &str, lease_ms: u64) -> redis::Cmd {
        let mut c = eval(&self.heartbeat, &[super::keys::NODES, registry]);
        c.arg(node).arg(lease_ms);
        c
    }

    /// The live nodes (see `LIVE_BODY`).
    pub fn live(&self) -> redis::Cmd {
        eval(&self.live, &[super::keys::NODES])
    }
}
