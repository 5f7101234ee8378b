//! `wsplus token`: print an HS256 JWT for development and tests, by default
//! one that a listener of the configuration accepts (its tenant claim, issuer,
//! audience and secret).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::auth::{self, mint};
use crate::env::Env;
use crate::settings::AuthMode;

/// Arguments of `wsplus token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Configuration whose listener the token is for (default:
    /// config/default.toml, else built in).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Path of that listener (default: the first).
    #[arg(long)]
    pub listener: Option<String>,
    /// Environment variable holding the HS256 secret (default: the
    /// listener's `secret_env` or `secret_file`).
    #[arg(long)]
    pub secret_env: Option<String>,
    /// Tenant claim value.
    #[arg(long)]
    pub tenant: String,
    /// `sub` claim.
    #[arg(long)]
    pub sub: Option<String>,
    /// Lifetime in seconds (at least 1).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    pub ttl: i64,
    /// `iss` claim (default: the listener's `issuer`).
    #[arg(long)]
    pub iss: Option<String>,
    /// `aud` claim (default: the listener's `audience`).
    #[arg(long)]
    pub aud: Option<String>,
    /// Name of the tenant claim (default: the listener's `tenant.claim`).
    #[arg(long)]
    pub claim: Option<String>,
}

/// Prints the token on stdout. Exit 1, with a message naming the argument,
/// key or variable, on bad input or a missing secret.
pub fn run(args: TokenArgs) -> ExitCode {
    match token(&args) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("{problem}");
            ExitCode::FAILURE
        }
    }
}

/// The token, or the line explaining why there is none.
fn token(args: &TokenArgs) -> Result<String, String> {
    if args.tenant.is_empty() {
        return Err("--tenant: must not be empty".into());
    }
    let ttl = u64::try_from(args.ttl)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| {
            format!(
                "--ttl: must be a positive number of seconds, got {}",
                args.ttl
            )
        })?;
    let (settings, index) = super::listener(args.config.as_deref(), args.listener.as_deref())?;
    let mut listener = settings.listeners[index].clone();
    // Explicit flags win over the listener's settings.
    if let Some(claim) = &args.claim {
        listener.tenant.claim.clone_from(claim);
    }
    if args.iss.is_some() {
        listener.auth.issuer.clone_from(&args.iss);
    }
    if args.aud.is_some() {
        listener.auth.audience.clone_from(&args.aud);
    }
    let env = Env::process();
    let (key, secret) = match &args.secret_env {
        Some(var) => {
            let secret = env.var(var).filter(|s| !s.is_empty()).ok_or_else(|| {
                format!("--secret-env: environment variable {var} is unset or empty")
            })?;
            (format!("--secret-env {var}"), secret)
        }
        None => {
            let key = format!("listeners[{index}].auth");
            if listener.auth.mode != AuthMode::Hs256 {
                return Err(format!(
                    "{key}.mode: the listener {} does not use hs256; name a secret with \
                     --secret-env to sign an HS256 token anyway",
                    listener.path
                ));
            }
            let secret = auth::hs256_secret(&listener.auth, &env)
                .map_err(|e| format!("{key}: {e} (or name another variable with --secret-env)"))?;
            (key, secret)
        }
    };
    auth::warn_if_short(&key, &secret);
    let claims = mint::Claims::for_listener(&listener, &args.tenant, args.sub.as_deref(), ttl);
    mint::hs256(&secret, &claims)
        .map_err(|_| format!("{key}: the secret cannot be used as an HS256 key"))
}
