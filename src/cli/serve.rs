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
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        // Installed before "listening on" is logged: a signal sent as soon as
        // the server says it listens must not hit the default action (exit
        // without a graceful shutdown).
        let signals = Signals::install();
        // Secrets, TLS files and bridges are checked before anything is bound.
        let plan = server::Plan::new(settings.clone(), source, crate::env::Env::process())?;
        let sockets = Sockets::bind(&settings)?;
        let running = plan.start(sockets).await?;
        announce(&running);
        let handle = running.shutdown_handle();
        signals.wait().await;
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
    if let Some(dev) = &running.dev_announcement {
        log::warn!("{}", dev.warning);
        print!("{}", dev.text);
    } else if let Some(t) = &running.generated_admin_token {
        log::warn!("no admin token configured; one was generated for this run (printed on stdout)");
        println!("admin token: {t}");
    }
}

/// SIGINT and SIGTERM handlers.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Registers the handlers now (inside the runtime).
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Waits for the first of them.
    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(self.int) => log::info!("SIGINT received"),
                () = recv(self.term) => log::info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
