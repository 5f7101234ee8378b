//! Shared pieces of the wsplus benchmarks: start the real broker binary with a
//! real HS256 configuration, mint tokens, open WebSocket connections over
//! loopback, stamp and parse bench messages, read the server's memory and CPU,
//! and print figures.
//!
//! Everything is bounded: counts, per-step timeouts and a whole-run deadline
//! (`--max-seconds`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsplus::auth::mint;

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The HS256 secret the bench broker verifies tokens with (its environment only).
pub const SECRET: &str = "wsplus-bench-secret-0123456789abcdef";
/// Tenant-scope listener.
pub const EVENTS: &str = "/ws/events";
/// Session-scope listener (echo).
pub const ECHO: &str = "/ws/echo";
/// Global-scope listener.
pub const GLOBAL: &str = "/ws/global";
/// Tenant-scope listener in message mode.
pub const MESSAGES: &str = "/ws/messages";
/// Channels-mode listener with history (size 100, TTL 300 s).
pub const CH_HISTORY: &str = "/ws/ch-history";
/// Channels-mode listener without history.
pub const CH_PLAIN: &str = "/ws/ch-plain";
/// Channels-mode listener without history or heartbeat, up to
/// [`MAX_PER_SESSION`] subscriptions per session (the `channels` scenarios).
pub const CHANNELS: &str = "/ws/channels";
/// Subscriptions one session may hold on [`CHANNELS`].
pub const MAX_PER_SESSION: usize = 10_000;

/// Command-line options: scenario names and `--name value` pairs; anything else
/// (such as the `--bench` flag cargo passes) is ignored.
#[derive(Debug, Clone)]
pub struct Args(Vec<String>);

impl Args {
    /// The process arguments.
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1).collect())
    }

    /// The words that are neither flags nor flag values.
    pub fn words(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut it = self.0.iter();
        while let Some(a) = it.next() {
            if a == "--bench" {
                continue;
            }
            if a.starts_with("--") {
                it.next();
            } else {
                out.push(a.as_str());
            }
        }
        out
    }

    /// The value of `--name`, or `default`.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| fail(&format!("{flag}: cannot parse {v:?}")))
            })
            .unwrap_or(default)
    }
}

/// Prints `msg` and exits non-zero.
pub fn fail(msg: &str) -> ! {
    eprintln!("bench failed: {msg}");
    std::process::exit(1)
}

/// Runs `body` on a multi-threaded tokio runtime, bounded by `--max-seconds`
/// (default 600).
pub fn run<F, Fut>(args: Args, body: F)
where
    F: FnOnce(Args) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let max = Duration::from_secs(args.get("max-seconds", 600));
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    rt.block_on(async move {
        if tokio::time::timeout(max, body(args)).await.is_err() {
            fail(&format!("did not finish within {} s", max.as_secs()));
        }
    });
}

/// Raises this process's open-file soft limit to its hard limit (the broker it
/// starts inherits it): thousands of connections need thousands of descriptors.
pub fn raise_nofile_limit() -> libc::rlim_t {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        lim.rlim_cur
    }
}

/// The wsplus binary: `WSPLUS_BIN`, else the one cargo built with this bench
/// (optimized under `cargo bench`).
fn broker_binary() -> PathBuf {
    std::env::var_os("WSPLUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wsplus")))
}

/// Queues sized like the published comparison (most scenarios).
pub const BENCH_LIMITS: &str =
    "[limits]\noutbound_queue_messages = 8192\noutbound_queue_bytes = 16777216\n";
/// The admin token of the bench broker.
const ADMIN_TOKEN: &str = "wsplus-bench-admin-token-0123456789";

/// The broker's configuration: three HS256 payload-mode listeners (tenant,
/// session and global scope), a message-mode one (tenant scope), three
/// channels-mode ones (tenant scope: with history, without, and without with
/// room for many subscriptions per session), and `limits` (a `[limits]`
/// table, or nothing for the defaults).
fn config_toml(limits: &str) -> String {
    let listener_with = |path: &str, scope: &str, top: &str| {
        format!(
            "[[listeners]]\npath = \"{path}\"\nscope = \"{scope}\"\n{top}\
             [listeners.auth]\nmode = \"hs256\"\nsecret_env = \"WSPLUS_BENCH_SECRET\"\n"
        )
    };
    let listener = |path: &str, scope: &str| listener_with(path, scope, "");
    // Channels mode, with and without history (the `history` scenarios).
    let channels = |path: &str, keys: &str| {
        format!(
            "{}[listeners.channels]\n{keys}",
            listener_with(path, "tenant", "mode = \"channels\"\n")
        )
    };
    // No heartbeat: `subscription_memory` leaves sessions unread for longer
    // than two intervals while it subscribes the others.
    let many = format!(
        "{}[listeners.channels]\nmax_per_session = {MAX_PER_SESSION}\n",
        listener_with(CHANNELS, "tenant", "mode = \"channels\"\nheartbeat_s = 0\n")
    );
    format!(
        "[server]\nbind = \"127.0.0.1:0\"\n\
         [admin]\nbind = \"127.0.0.1:0\"\ntoken_env = \"WSPLUS_BENCH_ADMIN_TOKEN\"\n\
         {}{}{}{}{}{}{}{limits}",
        listener(EVENTS, "tenant"),
        listener(ECHO, "session"),
        listener(GLOBAL, "global"),
        listener_with(MESSAGES, "tenant", "mode = \"message\"\n"),
        channels(
            CH_HISTORY,
            "max_per_session = 8\nhistory_size = 100\nhistory_ttl_s = 300\n"
        ),
        channels(CH_PLAIN, "max_per_session = 8\n"),
        many,
    )
}

/// A broker process started for one benchmark; stopped (SIGTERM) when dropped.
pub struct Broker {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The admin port.
    pub admin: SocketAddr,
    dir: PathBuf,
}

impl Broker {
    /// Starts `wsplus serve` on an ephemeral loopback port and waits until it
    /// listens. Logs go through `RUST_LOG` (default `info`, as users run it).
    pub fn start() -> Self {
        Self::start_with("", "")
    }

    /// [`Broker::start`] with `extra` appended to the configuration (e.g. a
    /// `[cluster]` table); `tag` tells apart brokers running at once.
    pub fn start_with(extra: &str, tag: &str) -> Self {
        Self::launch(BENCH_LIMITS, extra, tag)
    }

    /// [`Broker::start`] with the configuration's default `[limits]`
    /// (1024 messages, 1 MiB per outbound queue).
    pub fn start_default_limits() -> Self {
        Self::launch("", "", "")
    }

    fn launch(limits: &str, extra: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wsplus-bench-{}{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("{dir:?}: {e}")));
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml(limits) + extra)
            .unwrap_or_else(|e| fail(&format!("{e}")));
        let mut command = Command::new(broker_binary());
        // SAFETY: prctl is async-signal-safe and touches nothing of ours. The
        // broker gets SIGTERM when this process ends, also through `fail`
        // (which exits without running Drop): an orphan broker would keep
        // running, and keep holding the lock of `flock /work/bench.lock`.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("WSPLUS_BENCH_SECRET", SECRET)
            .env("WSPLUS_BENCH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting {:?}: {e}", broker_binary())));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log until the address appears, then keeps draining it so the
        // broker never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let admin = rest.split("(admin on ").nth(1).unwrap_or_default();
                        let admin = admin.trim_end_matches(')');
                        let _ = tx.send((addr.to_owned(), admin.to_owned()));
                    }
                } else if tx.is_some() && line.contains("ERROR") {
                    eprintln!("broker: {line}");
                }
            }
        });
        let (addr, admin) = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| fail("the broker did not report its address within 20 s"));
        let parse = |a: &str| -> SocketAddr {
            a.parse()
                .unwrap_or_else(|_| fail(&format!("unexpected address {a:?}")))
        };
        Self {
            child,
            addr: parse(&addr),
            admin: parse(&admin),
            dir,
        }
    }

    /// The broker's peak resident memory so far (VmHWM), KiB.
    pub fn rss_peak_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// The sum of the samples of the metric family `name` whose labels
    /// contain `labels` (e.g. `code="4009"`), from `GET /metrics`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(self.admin)
            .await
            .unwrap_or_else(|e| fail(&format!("admin port: {e}")));
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Connection: close\r\n\r\n",
            self.admin
        );
        s.write_all(req.as_bytes())
            .await
            .unwrap_or_else(|e| fail(&format!("{e}")));
        let mut body = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut body));
        if !matches!(read.await, Ok(Ok(_))) {
            fail("GET /metrics did not answer within 10 s");
        }
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ws://addr<path>?token=<token>`.
    pub fn url(&self, path: &str, token: &str) -> String {
        format!("ws://{}{path}?token={token}", self.addr)
    }

    /// The broker's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// CPU time the broker has used so far (user + system, all threads).
    pub fn cpu(&self) -> Duration {
        process_cpu(self.pid() as libc::pid_t).unwrap_or_else(|| self.cpu_from_proc())
    }

    /// [`Broker::cpu`] from `/proc` (10 ms ticks), should the CPU clock of
    /// another process be unreadable.
    fn cpu_from_proc(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may contain spaces).
        let rest = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

/// CPU time (all threads, nanosecond resolution) of process `pid`, through
/// its CPU-time clock; `None` when it cannot be read.
fn process_cpu(pid: libc::pid_t) -> Option<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid out-pointer; a gone process is an error code.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    clock_time(clock)
}

/// CPU time this process (the load generator, all threads) has used so far.
pub fn own_cpu() -> Duration {
    clock_time(libc::CLOCK_PROCESS_CPUTIME_ID).unwrap_or_default()
}

/// The time of `clock` (a CPU-time clock here); `None` when it cannot be read.
pub fn clock_time(clock: libc::clockid_t) -> Option<Duration> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return None;
    }
    Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SAFETY: kill with a pid we spawned; a failure only means it is gone.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An HS256 token for `tenant` valid for a day, signed like `wsplus token` does.
pub fn token(tenant: &str, subject: &str) -> String {
    mint::hs256(
        SECRET,
        &mint::Claims::new(tenant, Some(subject), 86_400, "tenant_id"),
    )
    .unwrap_or_else(|e| fail(&format!("minting a token: {e}")))
}

/// Opens one WebSocket connection (Nagle off), bounded by 10 s.
pub async fn connect(url: &str) -> Result<Ws, String> {
    let fut = tokio_tungstenite::connect_async_with_config(url, None, true);
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The result of opening many connections.
pub struct Opened {
    /// Open connections, in the order of the URLs given.
    pub conns: Vec<Ws>,
    /// Failures (error text, count).
    pub failures: Vec<(String, usize)>,
    /// Time from the first handshake to the last.
    pub elapsed: Duration,
    /// Per-handshake latency.
    pub latencies: Vec<Duration>,
}

/// Opens a connection to each URL with at most `concurrency` handshakes in
/// flight. Failed connections are reported, not retried.
pub async fn connect_many(urls: Vec<String>, concurrency: usize) -> Opened {
    let started = Instant::now();
    let mut results: Vec<(usize, Result<Ws, String>, Duration)> =
        stream::iter(urls.into_iter().enumerate())
            .map(|(i, url)| async move {
                let t = Instant::now();
                let r = connect(&url).await;
                (i, r, t.elapsed())
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let elapsed = started.elapsed();
    results.sort_by_key(|(i, _, _)| *i);
    let mut conns = Vec::with_capacity(results.len());
    let mut failures: Vec<(String, usize)> = Vec::new();
    let mut latencies = Vec::with_capacity(results.len());
    for (_, r, lat) in results {
        match r {
            Ok(ws) => {
                conns.push(ws);
                latencies.push(lat);
            }
            Err(e) => match failures.iter_mut().find(|(k, _)| *k == e) {
                Some((_, n)) => *n += 1,
                None => failures.push((e, 1)),
            },
        }
    }
    Opened {
        conns,
        failures,
        elapsed,
        latencies,
    }
}

/// Microseconds since the first call in this process (the clock stamped into
/// bench messages, so latencies are measured within one process).
pub fn now_us() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// What a bench message says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Warm-up (`w`) messages are not measured.
    pub warmup: bool,
    /// The publishing tenant's index.
    pub tenant: u32,
    /// The publisher's sequence number.
    pub seq: u64,
    /// `now_us()` when sent.
    pub sent_us: u64,
}

/// A text message `wsp <m|w> <tenant> <seq> <sent_us> xxx…` padded to `size` bytes.
pub fn message(warmup: bool, tenant: u32, seq: u64, size: usize) -> Message {
    let kind = if warmup { 'w' } else { 'm' };
    let mut s = format!("wsp {kind} {tenant} {seq} {} ", now_us());
    if s.len() < size {
        s.extend(std::iter::repeat_n('x', size - s.len()));
    }
    Message::text(s)
}

/// Parses a bench message; `None` for anything else.
pub fn parse(text: &str) -> Option<Stamp> {
    let mut it = text.splitn(6, ' ');
    if it.next()? != "wsp" {
        return None;
    }
    let warmup = match it.next()? {
        "w" => true,
        "m" => false,
        _ => return None,
    };
    Some(Stamp {
        warmup,
        tenant: it.next()?.parse().ok()?,
        seq: it.next()?.parse().ok()?,
        sent_us: it.next()?.parse().ok()?,
    })
}

/// Latency percentiles of a set of samples (microseconds).
pub struct Percentiles(Vec<u64>);

impl Percentiles {
    /// Sorts the samples.
    pub fn new(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// The `p`-th percentile, microseconds (0 when empty).
    pub fn at(&self, p: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        let i = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[i.min(self.0.len() - 1)]
    }

    /// `p50 … p99 … max` in milliseconds, for a report line.
    pub fn summary(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.at(50.0) as f64 / 1e3,
            self.at(99.0) as f64 / 1e3,
            self.0.last().copied().unwrap_or(0) as f64 / 1e3
        )
    }
}

/// A figure with thousands separators.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints the machine's load and the broker binary, so a figure is read with
/// its conditions.
pub fn print_conditions(name: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "== {name} == broker {:?}, {cores} cores, load average {}",
        broker_binary(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Prints the broker's CPU time and memory for a run.
pub fn print_server(broker: &Broker, cpu_before: Duration) {
    println!(
        "   broker: {:.2} s CPU, RSS {} KiB",
        (broker.cpu().saturating_sub(cpu_before)).as_secs_f64(),
        broker.rss_kib()
    );
}
