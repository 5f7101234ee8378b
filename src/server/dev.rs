//! The development default: `wsplus serve` with the default configuration,
//! its JWT secret unset and `server.bind` a loopback address, generates a
//! secret for this run, turns the demo page on and prints what a developer
//! needs to see the point in a minute: a URL with a token for tenants `demo`
//! and `other` on every listener (two terminals show that tenants do not
//! meet), the demo page, and a ready admin `curl` line.
//!
//! Only on loopback: a container or an env-only deployment with a typo in
//! the secret's variable name must fail to start, not serve the world with a
//! random secret. In every other case a missing secret is a startup error.
//! The printed text goes to stdout once and never into the log.

use std::fmt::Write;
use std::net::{SocketAddr, ToSocketAddrs};

use super::state::Listener;
use crate::auth::mint::Claims;
use crate::settings::{Mode, Settings, Source};

/// The tenants printed for each listener, with the subject of their token.
pub const TENANTS: [(&str, &str); 2] = [("demo", "demo-user"), ("other", "other-user")];

/// Lifetime of the printed tokens, seconds (they die with the process's
/// secret anyway).
pub const TOKEN_TTL_S: u64 = 24 * 3600;

/// True when the development default may apply: the default configuration
/// (environment overrides included) served on loopback addresses only.
pub fn allowed(settings: &Settings, source: &Source) -> bool {
    *source == Source::Default && is_loopback(&settings.server.bind)
}

/// True when every address `bind` resolves to is a loopback address.
fn is_loopback(bind: &str) -> bool {
    let Ok(addrs) = bind.to_socket_addrs() else {
        return false;
    };
    let addrs: Vec<SocketAddr> = addrs.collect();
    !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
}

/// How the admin `curl` line authenticates.
#[derive(Debug, Clone, Copy)]
pub enum AdminToken<'a> {
    /// Generated for this run: printed in the line.
    Generated(&'a str),
    /// Configured: the line names the variable, never its value.
    FromEnv(&'a str),
}

/// Where the servers listen, as the printed URLs show them.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// The client port.
    pub http: SocketAddr,
    /// The admin port.
    pub admin: SocketAddr,
    /// True when the client port speaks TLS.
    pub secure: bool,
}

/// What `serve` says in the development default: a warning for the log and
/// the text for stdout (which alone holds tokens).
#[derive(Debug, Clone)]
pub struct Announcement {
    /// The log line: development mode, and which variable to set.
    pub warning: String,
    /// The stdout text (see [`announcement`]).
    pub text: String,
}

/// The log line of the development default, naming the secret variables
/// whose absence made it (never a value).
pub fn warning(listeners: &[Listener]) -> String {
    let mut vars: Vec<&str> = listeners
        .iter()
        .filter(|l| l.auth.generated_secret())
        .filter_map(|l| l.settings.auth.secret_env.as_deref())
        .collect();
    vars.sort_unstable();
    vars.dedup();
    format!(
        "DEVELOPMENT MODE: no JWT secret configured; a random secret was generated for this run \
         and the demo page is on (URLs with tokens on stdout). Set {} for real use.",
        vars.join(", ")
    )
}

/// The text `serve` prints in the development default: for each listener
/// whose secret this run generated, one URL per tenant of [`TENANTS`]; then
/// the demo page and the admin `curl` line. A listener added to the default
/// configuration gets its URLs here without further work.
pub fn announcement(listeners: &[Listener], at: Addresses, admin: AdminToken<'_>) -> String {
    let (ws, http) = if at.secure {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DEVELOPMENT MODE: a random JWT secret was generated for this run; these tokens \
         (valid {} h) stop working when the server stops.",
        TOKEN_TTL_S / 3600
    );
    let _ = writeln!(
        out,
        "Connect one terminal as tenant demo and one as tenant other: each sees only its own tenant's messages."
    );
    for l in listeners.iter().filter(|l| l.auth.generated_secret()) {
        let s = &l.settings;
        let _ = writeln!(
            out,
            "{} ({} mode, {} scope{})",
            s.path,
            s.mode.as_str(),
            s.scope.as_str(),
            if s.mode == Mode::Message {
                ": each message carries the sender's verified _session"
            } else {
                ""
            }
        );
        for (tenant, sub) in TENANTS {
            let claims = Claims::for_listener(s, tenant, Some(sub), TOKEN_TTL_S);
            if let Some(token) = l.auth.mint(&claims) {
                let label = format!("tenant {tenant}:");
                let _ = writeln!(
                    out,
                    "  {label:<14}{ws}://{}{}?token={token}",
                    at.http, s.path
                );
            }
        }
    }
    let _ = writeln!(out, "demo page: {http}://{}/demo", at.http);
    let bearer = match admin {
        AdminToken::Generated(t) => t.to_owned(),
        AdminToken::FromEnv(var) => format!("${var}"),
    };
    let _ = writeln!(
        out,
        "admin API: curl -H \"Authorization: Bearer {bearer}\" http://{}/admin/v1/tenants",
        at.admin
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_binds_qualify() {
        for bind in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "127.0.0.2:1",
        ] {
            assert!(is_loopback(bind), "{bind}");
        }
        for bind in ["0.0.0.0:8080", "[::]:8080", "192.0.2.1:8080", "nowhere"] {
            assert!(!is_loopback(bind), "{bind}");
        }
    }

    #[test]
    fn only_the_default_configuration_qualifies() {
        let s = Settings::default();
        assert!(allowed(&s, &Source::Default));
        assert!(!allowed(&s, &Source::File("mine.toml".into())));
        let mut open = Settings::default();
        open.server.bind = "0.0.0.0:8080".into();
        assert!(!allowed(&open, &Source::Default));
    }
}
