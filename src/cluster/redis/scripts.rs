//! Lua scripts run atomically in Redis, and how they are sent. Times come
//! from Redis (`TIME`), so node clocks never matter; expiries are in
//! milliseconds.
//!
//! A script is sent by its SHA1 (`EVALSHA` and 40 hex digits), never by its
//! source (up to 1 KB): Redis keeps the scripts it has loaded by digest.
//! Every script call goes through a [`Batch`] (one pipeline or transaction,
//! also for a single call), which loads a script Redis has lost (a restart,
//! `SCRIPT FLUSH`) and runs its calls again. (`redis::Script` does this for
//! a call sent alone, not for calls in a pipeline, which is where ours run.)

use std::sync::LazyLock;

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

/// A Lua script with the clock prelude, called by its SHA1 (kept in a
/// `static`: its calls point to it).
#[derive(Debug)]
pub(super) struct Script {
    src: String,
    sha: String,
}

impl Script {
    /// `body` after the clock prelude ([`NOW`]).
    pub fn new(body: &str) -> Self {
        use sha1::{Digest, Sha1};
        let src = format!("{NOW}{body}");
        let sha = Sha1::digest(src.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { src, sha }
    }

    /// A call of this script with `keys` (its arguments follow with
    /// [`Call::arg`]).
    pub fn call(&'static self, keys: &[&str]) -> Call {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        Call { cmd, script: self }
    }
}

/// One call of a script: its `EVALSHA`, and the script to load if Redis has
/// lost it.
#[derive(Debug, Clone)]
pub(super) struct Call {
    cmd: redis::Cmd,
    script: &'static Script,
}

impl Call {
    /// Appends an argument (`ARGV[n]`).
    pub fn arg(&mut self, a: impl redis::ToRedisArgs) -> &mut Self {
        self.cmd.arg(a);
        self
    }
}

/// Commands sent as one pipeline (or one `MULTI`/`EXEC` transaction), whose
/// script calls survive Redis losing its scripts.
///
/// A script call is an `EVALSHA`. Redis forgets its scripts when it
/// restarts or on `SCRIPT FLUSH`, and then answers `NOSCRIPT` without
/// running the call; [`Batch::answers`] then loads the scripts it missed
/// (`SCRIPT LOAD`) and runs those calls again, in order, in one more round
/// trip. They did not run, so running them again repeats nothing. One
/// exception keeps the calls of a batch in order: a call that found its
/// script missing *before* a later call of the batch that ran (the cache was
/// refilled meanwhile, by another node) keeps its `NOSCRIPT` error, since
/// running it now would put it after that one.
#[derive(Debug)]
pub(super) struct Batch {
    p: redis::Pipeline,
    /// Per command: the script it calls, if it is a script call.
    scripts: Vec<Option<&'static Script>>,
    /// Per command: whether [`Batch::query`] leaves its answer out.
    ignored: Vec<bool>,
}

impl Batch {
    /// An empty pipeline.
    pub fn new() -> Self {
        let mut p = redis::pipe();
        p.ignore_errors();
        Self {
            p,
            scripts: Vec::new(),
            ignored: Vec::new(),
        }
    }

    /// An empty transaction (`MULTI`/`EXEC`: nothing else runs between its
    /// commands; the calls run again after a `NOSCRIPT` run after it).
    pub fn atomic() -> Self {
        let mut b = Self::new();
        b.p.atomic();
        b
    }

    /// Adds a plain command.
    pub fn cmd(&mut self, cmd: redis::Cmd) -> &mut Self {
        self.push(cmd, None)
    }

    /// Adds a script call.
    pub fn call(&mut self, call: Call) -> &mut Self {
        self.push(call.cmd, Some(call.script))
    }

    fn push(&mut self, cmd: redis::Cmd, script: Option<&'static Script>) -> &mut Self {
        self.p.add_command(cmd);
        self.scripts.push(script);
        self.ignored.push(false);
        self
    }

    /// Leaves the last command's answer out of [`Batch::query`] (its error
    /// still fails the query).
    pub fn ignore(&mut self) -> &mut Self {
        if let Some(i) = self.ignored.last_mut() {
            *i = true;
        }
        self
    }

    /// Commands added.
    pub fn len(&self) -> usize {
        self.scripts.len()
    }

    /// True if no command was added.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }

    /// Every command's answer, in order, an error answer as
    /// [`redis::Value::ServerError`]; `Err` only if a round trip failed.
    pub async fn answers(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let mut answers: Vec<redis::Value> = self.p.query_async(conn).await?;
        if answers.len() != self.scripts.len() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a pipeline answer per command",
            )));
        }
        let again = self.to_run_again(&answers);
        if again.is_empty() {
            return Ok(answers);
        }
        let mut p = redis::pipe();
        p.ignore_errors();
        let mut loaded: Vec<&Script> = Vec::new();
        for s in again.iter().filter_map(|&i| self.scripts[i]) {
            if !loaded.iter().any(|l| std::ptr::eq(*l, s)) {
                p.cmd("SCRIPT").arg("LOAD").arg(&s.src).ignore();
                loaded.push(s);
            }
        }
        let cmds: Vec<&redis::Cmd> = self.p.cmd_iter().collect();
        for &i in &again {
            p.add_command(cmds[i].clone());
        }
        let redone: Vec<redis::Value> = p.query_async(conn).await?;
        if redone.len() != again.len() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a pipeline answer per command",
            )));
        }
        for (i, v) in again.into_iter().zip(redone) {
            answers[i] = v;
        }
        Ok(answers)
    }

    /// The script calls to run again: those answered `NOSCRIPT` after the
    /// last script call that ran.
    fn to_run_again(&self, answers: &[redis::Value]) -> Vec<usize> {
        let missing = |v: &redis::Value| {
            matches!(v, redis::Value::ServerError(e)
                if e.kind() == Some(redis::ServerErrorKind::NoScript))
        };
        let call = |i: &usize| self.scripts[*i].is_some();
        let from = (0..answers.len())
            .filter(call)
            .rfind(|&i| !missing(&answers[i]))
            .map_or(0, |i| i + 1);
        (from..answers.len())
            .filter(|i| call(i) && missing(&answers[*i]))
            .collect()
    }

    /// The answers not ignored, as `T`; the first error answer if any.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<T> {
        let mut kept = Vec::with_capacity(self.len());
        for (v, ignored) in self.answers(conn).await?.into_iter().zip(&self.ignored) {
            if let redis::Value::ServerError(e) = v {
                return Err(e.into());
            }
            if !ignored {
                kept.push(v);
            }
        }
        Ok(redis::from_redis_value(redis::Value::Array(kept))?)
    }
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

static SLOTS: LazyLock<Script> = LazyLock::new(|| Script::new(SLOTS_BODY));
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| Script::new(HEARTBEAT_BODY));
static LIVE: LazyLock<Script> = LazyLock::new(|| Script::new(LIVE_BODY));
static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(APPEND_BODY));
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_BODY));

/// A slots operation (see `SLOTS_BODY`).
pub(super) fn slots(key: &str, op: SlotOp, node: &str, lease_ms: u64) -> Call {
    let (mode, n) = op.args();
    let mut c = SLOTS.call(&[key]);
    c.arg(mode).arg(node).arg(lease_ms).arg(n);
    c
}

/// A node heartbeat (see `HEARTBEAT_BODY`).
pub(super) fn heartbeat(registry: &str, node: &str, lease_ms: u64) -> Call {
    let mut c = HEARTBEAT.call(&[crate::cluster::keys::NODES, registry]);
    c.arg(node).arg(lease_ms);
    c
}

/// Appends to a channel's stream (see `APPEND_BODY`).
pub(super) fn history_append(keys: &HistoryKeys, a: &AppendArgs<'_>) -> Call {
    let mut c = APPEND.call(&[&keys.meta, &keys.stream]);
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
pub(super) fn history_read(
    keys: &HistoryKeys,
    epoch: &str,
    ttl_ms: u64,
    meta_ttl_ms: u64,
    after: Option<u64>,
) -> Call {
    let mut c = READ.call(&[&keys.meta, &keys.stream]);
    let after = after.map_or(-1, |a| a.min(i64::MAX as u64) as i64);
    c.arg(epoch).arg(ttl_ms).arg(meta_ttl_ms).arg(after);
    c
}

/// The live nodes (see `LIVE_BODY`).
pub(super) fn live() -> Call {
    LIVE.call(&[crate::cluster::keys::NODES])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cluster::redis::test_redis::TestRedis;
    use redis::aio::MultiplexedConnection as Conn;

    /// One call's answer, through a [`Batch`] as the backplane runs it.
    pub async fn run<T: redis::FromRedisValue>(c: &mut Conn, call: Call) -> T {
        let mut b = Batch::new();
        b.call(call);
        let (t,): (T,) = b.query(c).await.unwrap();
        t
    }

    async fn slots(c: &mut Conn, node: &str, op: SlotOp, lease: u64) -> i64 {
        run(c, super::slots("k", op, node, lease)).await
    }

    async fn hkeys(c: &mut Conn) -> Vec<String> {
        redis::cmd("HKEYS").arg("k").query_async(c).await.unwrap()
    }

    #[tokio::test]
    async fn slots_are_capped_across_nodes_and_rewritten_from_the_truth() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        let lease = 60_000;
        assert_eq!(slots(&mut c, "a", SlotOp::Acquire(3), lease).await, 1);
        assert_eq!(slots(&mut c, "a", SlotOp::Acquire(3), lease).await, 2);
        assert_eq!(slots(&mut c, "b", SlotOp::Acquire(3), lease).await, 3);
        assert_eq!(
            slots(&mut c, "b", SlotOp::Acquire(3), lease).await,
            -1,
            "at the cap"
        );
        // A release writes the node's new count.
        slots(&mut c, "a", SlotOp::Set(1), lease).await;
        assert_eq!(slots(&mut c, "b", SlotOp::Acquire(3), lease).await, 3);
        // Node a lost a release on the way: its next heartbeat writes its truth.
        slots(&mut c, "a", SlotOp::Set(0), lease).await;
        assert_eq!(hkeys(&mut c).await, ["b"]);
        assert_eq!(slots(&mut c, "a", SlotOp::Acquire(3), lease).await, 3);
        assert_eq!(slots(&mut c, "c", SlotOp::Acquire(3), lease).await, -1);
    }

    #[tokio::test]
    async fn expired_shares_stop_counting() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        slots(&mut c, "gone", SlotOp::Set(5), 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(slots(&mut c, "a", SlotOp::Acquire(1), 60_000).await, 1);
        assert_eq!(hkeys(&mut c).await, ["a"], "the expired field was dropped");
    }

    #[tokio::test]
    async fn nodes_live_while_they_renew_their_lease() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        let _: () = redis::cmd("HSET")
            .arg("reg")
            .arg("s1")
            .arg("v")
            .query_async(&mut c)
            .await
            .unwrap();
        let _: i64 = run(&mut c, heartbeat("reg", "a", 60_000)).await;
        let _: i64 = run(&mut c, heartbeat("reg-b", "b", 1)).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let live: Vec<String> = run(&mut c, live()).await;
        assert_eq!(live, ["a"]);
        let ttl: i64 = redis::cmd("PTTL")
            .arg("reg")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(ttl > 50_000, "registry TTL renewed: {ttl}");
    }

    async fn flush_scripts(c: &mut Conn) {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(c)
            .await
            .unwrap();
    }

    async fn info(c: &mut Conn, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query_async(c)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn scripts_are_sent_by_sha_and_loaded_again_after_a_script_flush() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        // Unknown to a fresh Redis: loaded, then run.
        assert_eq!(slots(&mut c, "a", SlotOp::Acquire(5), 60_000).await, 1);
        let known: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&SLOTS.sha)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(known, [1], "the SHA1 is Redis' own digest of the source");
        // The cache emptied (as by a restart): the next calls run all the same.
        flush_scripts(&mut c).await;
        assert_eq!(slots(&mut c, "a", SlotOp::Acquire(5), 60_000).await, 2);
        // A pipeline whose calls all miss their script, between plain
        // commands: each runs once, in order, and every answer is in its place.
        flush_scripts(&mut c).await;
        let mut b = Batch::new();
        b.cmd(redis::Cmd::set("plain", 1)).ignore();
        b.call(super::slots("k", SlotOp::Acquire(5), "a", 60_000));
        b.cmd(redis::Cmd::incr("plain", 1));
        b.call(super::slots("k", SlotOp::Acquire(5), "b", 60_000));
        b.call(live());
        let (first, plain, second, nodes): (i64, i64, i64, Vec<String>) =
            b.query(&mut c).await.unwrap();
        assert_eq!((first, plain, second), (3, 2, 4));
        assert!(nodes.is_empty());
        // The same in a transaction.
        flush_scripts(&mut c).await;
        let mut t = Batch::atomic();
        t.call(super::slots("k", SlotOp::Set(1), "a", 60_000))
            .ignore();
        t.call(super::slots("k", SlotOp::Acquire(5), "c", 60_000));
        let (n,): (i64,) = t.query(&mut c).await.unwrap();
        assert_eq!(n, 3, "a: 1, b: 1, c: 1");
        // Never the source: not one EVAL reached Redis.
        let stats = info(&mut c, "commandstats").await;
        assert!(stats.contains("cmdstat_evalsha:"), "{stats}");
        assert!(!stats.contains("cmdstat_eval:"), "{stats}");
    }

    #[tokio::test]
    async fn a_call_missing_its_script_before_one_that_ran_is_not_reordered() {
        let redis = TestRedis::start();
        let mut c = redis.aconn().await;
        // LIVE is loaded, SLOTS is not (as when another node reloaded LIVE
        // while this pipeline ran).
        let _: Vec<String> = run(&mut c, live()).await;
        let mut b = Batch::new();
        b.call(super::slots("k", SlotOp::Acquire(5), "a", 60_000));
        b.call(live());
        let answers = b.answers(&mut c).await.unwrap();
        assert!(
            matches!(&answers[0], redis::Value::ServerError(e)
                if e.kind() == Some(redis::ServerErrorKind::NoScript)),
            "{answers:?}"
        );
        assert_eq!(answers[1], redis::Value::Array(vec![]));
        assert!(hkeys(&mut c).await.is_empty(), "the slots call never ran");
        assert!(
            b.query::<()>(&mut c).await.is_err(),
            "its error fails a query"
        );
        // Missing after the last call that ran: loaded and run.
        let mut b = Batch::new();
        b.call(live());
        b.call(super::slots("k", SlotOp::Acquire(5), "a", 60_000));
        let (_, n): (Vec<String>, i64) = b.query(&mut c).await.unwrap();
        assert_eq!(n, 1);
    }
}
