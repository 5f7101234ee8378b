//! `publish_hook`: channel publications with the `publish` hook on — asking
//! a loopback backend that allows at once — against the same channel fan-out
//! with the hook off, alternating `--rounds` times on one broker.
//!
//! `--publishers P` sessions publish at once (each in a tenant of its own, to
//! its tenant's channel with `--subs` subscribers), so that one session's
//! depth of calls in flight does not cap the rate and the run shows which of
//! the broker and the backend saturates first.
//!
//! The backend is an actix-web server in this process on threads of its own
//! (its own actix system and one worker, not the load generator's tokio
//! runtime), reading the body and answering `{"allow": true}` without
//! checking the signature — after `--backend-work-us` microseconds of its
//! own CPU time per call (default 0; stands for a backend's lookup); its
//! CPU time is read from those threads' `/proc/self/task/*/stat`, so the
//! report says how much of the machine the backend took. It also counts the
//! TCP connections the broker opened to it: with keep-alive working that is
//! at most a few per broker worker, not one per call.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};

use crate::load::{self, Spec, Wire};
use crate::support::{self, fail, thousands, Args, Broker};

/// The channels listener whose publications ask the backend.
const CH_HOOK: &str = "/ws/ch-hook";
/// The name of the backend's threads (their CPU time is the backend's).
const BACKEND_THREAD: &str = "hook-backend";

/// What the backend counts.
#[derive(Debug, Default)]
struct Counts {
    /// TCP connections accepted.
    connections: AtomicU64,
    /// Requests answered.
    requests: AtomicU64,
}

impl Counts {
    fn now(&self) -> (u64, u64) {
        (
            self.connections.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
    }
}

/// Spends `work` of this thread's CPU time (a backend deciding something).
fn spend(work: Duration) {
    if work.is_zero() {
        return;
    }
    let thread_cpu = || {
        support::clock_time(libc::CLOCK_THREAD_CPUTIME_ID)
            .unwrap_or_else(|| fail("this thread's CPU clock cannot be read"))
    };
    let until = thread_cpu() + work;
    while thread_cpu() < until {
        std::hint::spin_loop();
    }
}

/// Starts the backend on a loopback port, spending `work` of CPU per call;
/// returns its base URL and counts.
fn backend(work: Duration) -> (String, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("{e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| fail(&format!("{e}")));
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    std::thread::Builder::new()
        .name(BACKEND_THREAD.into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let (on_connect, on_request) = (shared.clone(), shared);
                let server = HttpServer::new(move || {
                    let counts = on_request.clone();
                    // The body is read (as a backend verifying the
                    // signature must): actix-web closes a connection whose
                    // request body was left unread, so keep-alive needs it.
                    App::new().default_service(web::to(move |_body: web::Bytes| {
                        counts.requests.fetch_add(1, Ordering::Relaxed);
                        spend(work);
                        async {
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .body(r#"{"allow":true}"#)
                        }
                    }))
                })
                .on_connect(move |_, _| {
                    on_connect.connections.fetch_add(1, Ordering::Relaxed);
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap_or_else(|e| fail(&format!("backend: {e}")))
                .run();
                let _ = server.await;
            });
        })
        .unwrap_or_else(|e| fail(&format!("{e}")));
    (format!("http://{addr}/hooks"), counts)
}

/// CPU time of this process's threads named like the backend's (its system
/// thread and its actix worker).
fn backend_cpu() -> Duration {
    let hz = {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        hz.max(1) as u64
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let ticks: u64 = tasks
        .flatten()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            // The backend's system thread, its acceptor and its worker (an
            // arbiter); this process runs no other actix system.
            comm.starts_with(BACKEND_THREAD)
                || comm.starts_with("actix-server")
                || comm.starts_with("actix-rt|syste")
        })
        .map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let rest = stat.rsplit(')').next().unwrap_or_default().to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            [11, 12]
                .iter()
                .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum::<u64>()
        })
        .sum();
    Duration::from_millis(ticks * 1000 / hz)
}

/// One run's figures.
struct Figures {
    /// Publications per second.
    rate: f64,
    /// Latency percentiles, microseconds.
    p50: u64,
    p99: u64,
    /// Broker CPU per publication, microseconds.
    broker_us: f64,
    /// Backend CPU per call, microseconds.
    backend_us: f64,
}

/// The broker's `publish` hook calls so far: total seconds from sending a
/// request to its answer, and how many.
async fn call_time(broker: &Broker) -> (f64, f64) {
    let labels = "hook=\"publish\"";
    (
        broker
            .metric("wsplus_hook_duration_seconds_sum", labels)
            .await,
        broker
            .metric("wsplus_hook_duration_seconds_count", labels)
            .await,
    )
}

/// Publications per second and latency with the `publish` hook on and off.
pub async fn publish_hook(args: &Args) {
    support::print_conditions("publish hook on vs off");
    let publishers: u32 = args.get("publishers", 16);
    let subs: usize = args.get("subs", 10);
    let msgs: u64 = args.get("msgs", 2_000);
    let size: usize = args.get("size", 128);
    let rounds: usize = args.get("rounds", 3);
    let work = Duration::from_micros(args.get("backend-work-us", 0));
    if !work.is_zero() {
        println!(
            "   the backend spends {} us of CPU per call",
            work.as_micros()
        );
    }
    let (url, counts) = backend(work);
    let extra = format!(
        "[[listeners]]\npath = \"{CH_HOOK}\"\nmode = \"channels\"\nscope = \"tenant\"\n\
         [listeners.auth]\nmode = \"hs256\"\nsecret_env = \"WSPLUS_BENCH_SECRET\"\n\
         [listeners.channels]\npublish = \"hook\"\n\
         [listeners.hooks]\nurl = \"{url}\"\nhooks = [\"publish\"]\nmax_in_flight = 100000\n\
         secret_env = \"WSPLUS_BENCH_SECRET\"\n"
    );
    let broker = Broker::start_with(&extra, "-hooks");
    let mut added = Vec::new();
    let mut per_call = Vec::new();
    for round in 1..=rounds {
        let mut figures = Vec::new();
        for (name, path) in [("hook off", support::CH_PLAIN), ("hook on ", CH_HOOK)] {
            let spec = Spec {
                tenants: publishers,
                publishers,
                ..Spec::one_to_many(path, Wire::Channel("hot"), subs, msgs, size)
            };
            let (cpu, backend, before) = (broker.cpu(), backend_cpu(), counts.now());
            let calls_before = call_time(&broker).await;
            let out = load::run(&broker, &spec).await;
            let calls = call_time(&broker).await;
            let broker_cpu = broker.cpu().saturating_sub(cpu).as_secs_f64();
            let backend_cpu = backend_cpu().saturating_sub(backend).as_secs_f64();
            let after = counts.now();
            let secs = out.elapsed.as_secs_f64().max(1e-9);
            let publications = u64::from(publishers) * (msgs + spec.warmup);
            let calls_made = after.1 - before.1;
            let broker_us = 1e6 * broker_cpu / publications as f64;
            let backend_us = 1e6 * backend_cpu / calls_made.max(1) as f64;
            println!(
                "round {round} {name}: {publishers} publishers -> {subs} subscribers each x {msgs} \
                 msgs x {size} B: {} publications/s, lost {}, latency {}, broker CPU {:.0}% \
                 ({broker_us:.1} us/publication), backend CPU {:.0}% ({backend_us:.1} us/call), \
                 backend connections opened {}, calls {calls_made} (mean round trip {:.2} ms)",
                thousands(out.rate() / subs as f64),
                out.lost(),
                out.latency.summary(),
                100.0 * broker_cpu / secs,
                100.0 * backend_cpu / secs,
                after.0 - before.0,
                1e3 * (calls.0 - calls_before.0) / (calls.1 - calls_before.1).max(1.0),
            );
            if out.lost() > 0 {
                fail("publications were lost");
            }
            figures.push(Figures {
                rate: out.rate() / subs as f64,
                p50: out.latency.at(50.0),
                p99: out.latency.at(99.0),
                broker_us,
                backend_us,
            });
        }
        let (off, on) = (&figures[0], &figures[1]);
        added.push((
            on.rate / off.rate,
            on.p50 as i64 - off.p50 as i64,
            on.p99 as i64 - off.p99 as i64,
        ));
        per_call.push((on.broker_us - off.broker_us, on.backend_us));
    }
    added.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, p50, p99) = added[added.len() / 2];
    println!(
        "publish hook on / off publications/s: median {ratio:.2}; added latency in that round: \
         p50 {:+.2} ms, p99 {:+.2} ms",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3
    );
    per_call.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (broker_us, backend_us) = per_call[per_call.len() / 2];
    let first = if broker_us > backend_us {
        "the broker"
    } else {
        "the backend"
    };
    println!(
        "CPU per hooked publication (median round): broker +{broker_us:.1} us over hook off, \
         backend {backend_us:.1} us per call: with equal CPU, {first} saturates first"
    );
}
