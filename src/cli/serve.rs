//! `wsplus serve`: load settings, bind, run until SIGINT/SIGTERM, shut down.

use std::path::Path;
use std::process::ExitCode;

use crate::server::{self, Sockets};
use crate::settings;

/// Runs the broker; exit 0 after a clean shutdown.
pub fn run(config: Option<&Path>) -> ExitCode {
    let (settings, source) = match settings::load(config) {
        Ok(x) => x,
        Err(e) => {
            super::report_config_error(&e);
            return ExitCode::FAILURE;
        }
    };
    let sockets = match Sockets::bind(&settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "server.bind / admin.bind: cannot bind ({} / {}): {e}",
                settings.server.bind, settings.admin.bind
            );
            return ExitCode::FAILURE;
        }
    };
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let running = server::start(settings, source, sockets, crate::env::Env::process()).await?;
        announce(&running);
        let handle = running.shutdown_handle();
        wait_for_signal().await;
        handle.shutdown().await;
        Ok::<_, server::StartError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints what a developer needs to connect: generated tokens go to stdout once,
/// never into the log.
fn announce(running: &server::Running) {
    for (path, token) in &running.dev_tokens {
        log::warn!(
            "DEVELOPMENT MODE: no JWT secret configured for {path}; a random secret was generated for this run. \
             Set the secret variable (WSPLUS_JWT_SECRET) for real use."
        );
        println!(
            "connect: ws://{}{}?token={}",
            running.http_addr, path, token
        );
    }
    if let Some(t) = &running.generated_admin_token {
        log::warn!("no admin token configured; one was generated for this run (printed on stdout)");
        println!("admin token: {t}");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => log::info!("SIGINT received"),
            _ = term.recv() => log::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
