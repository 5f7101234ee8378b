//! Redaction of what settings may carry in clear (URL credentials, query
//! strings that may hold an API key), in one place for every output that
//! shows them: logs, the admin API (`GET /admin/v1/listeners`) and
//! `check-config`. Secrets themselves never appear in settings (only the
//! names of their variables and files), so these are the only places.

use crate::settings::{ListenerSettings, Settings};

/// A copy safe to print: credentials inside URLs, and the `jwks_uri` query,
/// are replaced.
pub fn settings(mut s: Settings) -> Settings {
    if let Some(u) = s.cluster.redis_url.as_mut() {
        *u = userinfo(u);
    }
    s.listeners.iter_mut().for_each(listener);
    for u in [&mut s.proxy.https_proxy, &mut s.proxy.http_proxy]
        .into_iter()
        .flatten()
    {
        *u = password(u);
    }
    for b in &mut s.bridges {
        b.url = userinfo(&b.url);
    }
    for w in &mut s.webhooks {
        w.url = url(&w.url);
    }
    s
}

/// Redacts one listener's settings in place: the `jwks_uri` and the hooks'
/// `url` lose their credentials and query (see [`url`]).
pub fn listener(l: &mut ListenerSettings) {
    let hooks_url = l.hooks.as_mut().map(|h| &mut h.url);
    for u in [l.auth.jwks_uri.as_mut(), hooks_url].into_iter().flatten() {
        *u = url(u);
    }
}

/// [`userinfo`], and the query string (which may carry an API key)
/// replaced: `https://u:p@h/jwks?key=k` → `https://[redacted]@h/jwks?[redacted]`.
pub fn url(url: &str) -> String {
    let without = userinfo(url);
    match without.split_once('?') {
        Some((base, _)) => format!("{base}?[redacted]"),
        None => without,
    }
}

/// `scheme://user:pass@host` → `scheme://user:[redacted]@host` (the user name
/// stays visible, the password never is).
pub fn password(url: &str) -> String {
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
pub fn userinfo(url: &str) -> String {
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
            settings(s).listeners[0].auth.jwks_uri.as_deref(),
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
        let r = settings(s);
        assert_eq!(
            r.proxy.https_proxy.as_deref(),
            Some("http://alice:[redacted]@proxy:3128")
        );
        assert_eq!(r.proxy.http_proxy.as_deref(), Some("http://proxy:3128"));
        assert_eq!(r.bridges[0].url, "wss://[redacted]@hq.example/ws");
        assert_eq!(password("http://bob@p:1"), "http://bob@p:1");
    }

    #[test]
    fn hook_and_webhook_urls_are_redacted() {
        let mut s = Settings::default();
        s.listeners[0].hooks = Some(crate::settings::HooksSettings {
            url: "https://u:p@app/wsplus?key=k".into(),
            ..Default::default()
        });
        s.webhooks.push(crate::settings::WebhookSettings {
            url: "https://app/events?sig=s".into(),
            ..Default::default()
        });
        let r = settings(s);
        assert_eq!(
            r.listeners[0].hooks.as_ref().unwrap().url,
            "https://[redacted]@app/wsplus?[redacted]"
        );
        assert_eq!(r.webhooks[0].url, "https://app/events?[redacted]");
    }

    #[test]
    fn queries_are_redacted() {
        assert_eq!(
            url("https://u:p@idp.example/jwks?api_key=k#frag"),
            "https://[redacted]@idp.example/jwks?[redacted]"
        );
        assert_eq!(url("https://idp/jwks"), "https://idp/jwks");
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            userinfo("redis://:pw@h:6379/0"),
            "redis://[redacted]@h:6379/0"
        );
        assert_eq!(userinfo("redis://h:6379/"), "redis://h:6379/");
    }
}
