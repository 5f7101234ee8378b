//! `wsplus check-config`: validate and print the effective configuration.

use std::path::Path;
use std::process::ExitCode;

use crate::settings::{self, ListenerSettings, Settings};

/// Loads, validates and prints the configuration (TOML, secrets redacted).
/// Exit 0 when valid, 1 with one line per problem on stderr otherwise.
pub fn run(config: Option<&Path>) -> ExitCode {
    match settings::load(config) {
        Ok((s, source)) => {
            let text = toml::to_string_pretty(&redacted(s)).unwrap_or_default();
            println!("# effective configuration from {source}; secrets redacted");
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            super::report_config_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// A copy safe to print: credentials inside URLs are replaced. Secrets
/// themselves never appear in settings (only the names of their variables).
pub fn redacted(mut s: Settings) -> Settings {
    if let Some(url) = s.cluster.redis_url.as_mut() {
        *url = redact_userinfo(url);
    }
    s.listeners.iter_mut().for_each(redact_listener);
    for url in [&mut s.proxy.https_proxy, &mut s.proxy.http_proxy]
        .into_iter()
        .flatten()
    {
        *url = redact_password(url);
    }
    for b in &mut s.bridges {
        b.url = redact_userinfo(&b.url);
    }
    s
}

/// Redacts one listener's settings in place: the `jwks_uri` loses its
/// credentials and query (see [`redact_url`]).
pub fn redact_listener(l: &mut ListenerSettings) {
    if let Some(url) = l.auth.jwks_uri.as_mut() {
        *url = redact_url(url);
    }
}

/// [`redact_userinfo`], and the query string (which may carry an API key)
/// replaced: `https://u:p@h/jwks?key=k` → `https://[redacted]@h/jwks?[redacted]`.
pub fn redact_url(url: &str) -> String {
    let url = redact_userinfo(url);
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?[redacted]"),
        None => url,
    }
}

/// `scheme://user:pass@host` → `scheme://user:[redacted]@host` (the user name
/// stays visible, the password never is).
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:[redacted]{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// `scheme://user:pass@host/..` → `scheme://[redacted]@host/..`.
pub fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://[redacted]{}", &rest[at..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_uri_credentials_are_redacted() {
        let mut s = Settings::default();
        s.listeners[0].auth.jwks_uri = Some("https://u:p@idp.example/jwks".into());
        assert_eq!(
            redacted(s).listeners[0].auth.jwks_uri.as_deref(),
            Some("https://[redacted]@idp.example/jwks")
        );
    }

    #[test]
    fn proxy_passwords_and_bridge_userinfo_are_redacted() {
        let mut s = Settings::default();
        s.proxy.https_proxy = Some("http://alice:s3cret@proxy:3128".into());
        s.proxy.http_proxy = Some("http://proxy:3128".into());
        s.bridges.push(crate::settings::BridgeSettings {
            url: "wss://u:p@hq.example/ws".into(),
            ..Default::default()
        });
        let r = redacted(s);
        assert_eq!(
            r.proxy.https_proxy.as_deref(),
            Some("http://alice:[redacted]@proxy:3128")
        );
        assert_eq!(r.proxy.http_proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(r.bridges[0].url, "wss://[redacted]@hq.example/ws");
        assert_eq!(redact_password("http://bob@p:1"), "http://bob@p:1");
    }

    #[test]
    fn queries_are_redacted() {
        assert_eq!(
            redact_url("https://u:p@idp.example/jwks?api_key=k#frag"),
            "https://[redacted]@idp.example/jwks?[redacted]"
        );
        assert_eq!(redact_url("https://idp/jwks"), "https://idp/jwks");
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("redis://:pw@h:6379/0"),
            "redis://[redacted]@h:6379/0"
        );
        assert_eq!(redact_userinfo("redis://h:6379/"), "redis://h:6379/");
    }
}
