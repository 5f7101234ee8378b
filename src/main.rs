//! The `wsplus` binary: parse the command line, start logging, run.
//!
//! Memory comes from jemalloc rather than glibc's malloc: glibc keeps the
//! memory freed after a peak (thousands of connections closing, a burst of
//! large messages) until `malloc_trim`, so the process stayed at its
//! high-water mark. jemalloc with a background thread purges freed pages
//! on its own after `dirty_decay_ms`, so RSS returns near its baseline
//! within seconds of a peak, busy or idle (docs/performance.md).

use clap::Parser;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it starts (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): a background thread returns freed
/// pages to the system 10 s after they were last used, without waiting for
/// the next allocation in the thread that freed them.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:10000,muzzy_decay_ms:0\0"[0];

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    wsplus::cli::Cli::parse().run()
}
