//! `wsplus token`: print an HS256 JWT for development and tests.

use std::process::ExitCode;

use crate::auth::mint;

/// Arguments of `wsplus token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Environment variable holding the HS256 secret.
    #[arg(long)]
    pub secret_env: String,
    /// Tenant claim value.
    #[arg(long)]
    pub tenant: String,
    /// `sub` claim.
    #[arg(long)]
    pub sub: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// `iss` claim.
    #[arg(long)]
    pub iss: Option<String>,
    /// `aud` claim.
    #[arg(long)]
    pub aud: Option<String>,
    /// Name of the tenant claim.
    #[arg(long, default_value = "tenant_id")]
    pub claim: String,
}

/// Prints the token on stdout.
/// Exit 1 with a message naming the variable when the secret is unset.
pub fn run(args: TokenArgs) -> ExitCode {
    let secret = match std::env::var(&args.secret_env) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            eprintln!(
                "--secret-env: environment variable {} is unset or empty",
                args.secret_env
            );
            return ExitCode::FAILURE;
        }
    };
    if args.tenant.is_empty() {
        eprintln!("--tenant: must not be empty");
        return ExitCode::FAILURE;
    }
    let mut claims = mint::Claims::new(&args.tenant, args.sub.as_deref(), args.ttl, &args.claim);
    if let Some(iss) = &args.iss {
        claims = claims.issuer(iss);
    }
    if let Some(aud) = &args.aud {
        claims = claims.audience(aud);
    }
    match mint::hs256(&secret, &claims) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(_) => {
            eprintln!(
                "--secret-env: the secret in {} cannot be used as an HS256 key",
                args.secret_env
            );
            ExitCode::FAILURE
        }
    }
}
