//! `publish_hook`: channel publications with the `publish` hook on — asking
//! a loopback backend that allows at once — against the same channel fan-out
//! with the hook off, alternating `--rounds` times on one broker.
//!
//! The backend is an actix-web server in this process (its own thread and
//! one worker), answering `{"allow": true}` without reading the signature; its
//! CPU time is read from its threads' `/proc/self/task/*/stat`, so the report
//! says how much of the machine the backend took and whether the broker was
//! the bottleneck.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};

use crate::load::{self, Spec, Wire};
use crate::support::{self, fail, thousands, Args, Broker};

/// The channels listener whose publications ask the backend.
const CH_HOOK: &str = "/ws/ch-hook";
/// The name of the backend's threads (their CPU time is the backend's).
const BACKEND_THREAD: &str = "hook-backend";

/// Starts the backend on a loopback port; returns its base URL.
fn backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("{e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| fail(&format!("{e}")));
    std::thread::Builder::new()
        .name(BACKEND_THREAD.into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(|| {
                    App::new().default_service(web::to(|| async {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(r#"{"allow":true}"#)
                    }))
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
    format!("http://{addr}/hooks")
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
            comm.starts_with(BACKEND_THREAD)
                || comm.starts_with("actix-server w")
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

/// Publications per second and latency with the `publish` hook on and off.
pub async fn publish_hook(args: &Args) {
    support::print_conditions("publish hook on vs off");
    let subs: usize = args.get("subs", 10);
    let msgs: u64 = args.get("msgs", 5_000);
    let size: usize = args.get("size", 128);
    let rounds: usize = args.get("rounds", 3);
    let url = backend();
    let extra = format!(
        "[[listeners]]\npath = \"{CH_HOOK}\"\nmode = \"channels\"\nscope = \"tenant\"\n\
         [listeners.auth]\nmode = \"hs256\"\nsecret_env = \"WSPLUS_BENCH_SECRET\"\n\
         [listeners.channels]\npublish = \"hook\"\n\
         [listeners.hooks]\nurl = \"{url}\"\nhooks = [\"publish\"]\nmax_in_flight = 100000\n\
         secret_env = \"WSPLUS_BENCH_SECRET\"\n"
    );
    let broker = Broker::start_with(&extra, "-hooks");
    let mut added = Vec::new();
    for round in 1..=rounds {
        let mut figures = Vec::new();
        for (name, path) in [("hook off", support::CH_PLAIN), ("hook on ", CH_HOOK)] {
            let spec = Spec::one_to_many(path, Wire::Channel("hot"), subs, msgs, size);
            let (cpu, backend) = (broker.cpu(), backend_cpu());
            let out = load::run(&broker, &spec).await;
            let broker_cpu = broker.cpu().saturating_sub(cpu).as_secs_f64();
            let backend_cpu = backend_cpu().saturating_sub(backend).as_secs_f64();
            let secs = out.elapsed.as_secs_f64().max(1e-9);
            println!(
                "round {round} {name}: 1 publisher -> {subs} subscribers x {msgs} msgs x {size} B: \
                 {} publications/s, lost {}, latency {}, broker CPU {:.0}%, backend CPU {:.0}%",
                thousands(out.rate() / subs as f64),
                out.lost(),
                out.latency.summary(),
                100.0 * broker_cpu / secs,
                100.0 * backend_cpu / secs,
            );
            if out.lost() > 0 {
                fail("publications were lost");
            }
            figures.push((
                out.rate() / subs as f64,
                out.latency.at(50.0),
                out.latency.at(99.0),
            ));
        }
        let (off, on) = (figures[0], figures[1]);
        added.push((
            on.0 / off.0,
            on.1 as i64 - off.1 as i64,
            on.2 as i64 - off.2 as i64,
        ));
    }
    added.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, p50, p99) = added[added.len() / 2];
    println!(
        "publish hook on / off publications/s: median {ratio:.2}; added latency in that round: \
         p50 {:+.2} ms, p99 {:+.2} ms",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3
    );
}
