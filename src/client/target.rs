//! The upstream URL: `ws://` or `wss://`, with the token appended as the
//! `token` query parameter (percent-encoded, other parameters kept byte for
//! byte). The token is only ever in the URL sent on the wire: everything that
//! is shown or logged uses [`Target::redacted`].

use std::fmt;

use url::Url;

/// Why a URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("not a valid URL: {0}")]
    Invalid(String),
    /// Not ws:// or wss://.
    #[error("URL scheme must be ws:// or wss://, got {0}://")]
    Scheme(String),
    /// No host.
    #[error("URL has no host")]
    NoHost,
}

/// A parsed upstream URL and the token to send with it.
#[derive(Clone)]
pub struct Target {
    url: Url,
    token: Option<String>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Target {
    /// Parses a `ws://` or `wss://` URL. A `token` parameter already in it is
    /// replaced by `token` when one is given.
    pub fn parse(url: &str, token: Option<String>) -> Result<Self, UrlError> {
        let url = Url::parse(url).map_err(|e| UrlError::Invalid(e.to_string()))?;
        match url.scheme() {
            "ws" | "wss" => {}
            other => return Err(UrlError::Scheme(other.to_owned())),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost);
        }
        Ok(Self { url, token })
    }

    /// True for `wss://`.
    pub fn secure(&self) -> bool {
        self.url.scheme() == "wss"
    }

    /// The host (IPv6 without brackets).
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }

    /// The port, explicit or the scheme's default (80, 443).
    pub fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.secure() { 443 } else { 80 })
    }

    /// The URL to request, with the token. Never log this.
    pub fn request_url(&self) -> String {
        let encoded = self
            .token
            .as_ref()
            .map(|t| form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>());
        self.render(encoded.as_deref())
    }

    /// The URL safe to show: the token and any userinfo replaced.
    pub fn redacted(&self) -> String {
        let mut shown = self.url.clone();
        if shown.password().is_some() || !shown.username().is_empty() {
            let _ = shown.set_username("redacted");
            let _ = shown.set_password(None);
        }
        let query = shown.query().map(redact_query);
        shown.set_query(query.as_deref());
        let without = Self {
            url: shown,
            token: None,
        };
        without.render(self.token.as_ref().map(|_| "[redacted]"))
    }

    /// The URL with `token=<encoded>` replacing any token parameter.
    fn render(&self, encoded: Option<&str>) -> String {
        let mut url = self.url.clone();
        let Some(encoded) = encoded else {
            return url.into();
        };
        let mut parts: Vec<String> = url
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !is_token_pair(p))
            .map(str::to_owned)
            .collect();
        parts.push(format!("token={encoded}"));
        url.set_query(Some(&parts.join("&")));
        url.into()
    }
}

fn is_token_pair(pair: &str) -> bool {
    let key = pair.split('=').next().unwrap_or("");
    form_urlencoded::parse(key.as_bytes())
        .next()
        .is_some_and(|(k, _)| k == "token")
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|p| {
            if is_token_pair(p) {
                "token=[redacted]".to_owned()
            } else {
                p.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_appended_encoded_and_other_parameters_kept() {
        let t = Target::parse(
            "ws://h:1/ws?a=1&b=x%20y&token=old",
            Some("a+b/c=d&e".into()),
        )
        .unwrap();
        assert_eq!(
            t.request_url(),
            "ws://h:1/ws?a=1&b=x%20y&token=a%2Bb%2Fc%3Dd%26e"
        );
        let t = Target::parse("wss://h/p", Some("abc.def".into())).unwrap();
        assert_eq!(t.request_url(), "wss://h/p?token=abc.def");
        assert!(t.secure());
        assert_eq!(t.port(), 443);
        let t = Target::parse("ws://h/p?x=1", None).unwrap();
        assert_eq!(t.request_url(), "ws://h/p?x=1");
    }

    #[test]
    fn redacted_never_contains_the_token() {
        let t = Target::parse("ws://u:pw@h/p?token=inline&k=v", Some("SECRET".into())).unwrap();
        let shown = t.redacted();
        assert!(
            !shown.contains("SECRET") && !shown.contains("pw"),
            "{shown}"
        );
        assert_eq!(shown, "ws://redacted@h/p?k=v&token=[redacted]");
        let t = Target::parse("ws://h/p?token=inline", None).unwrap();
        assert_eq!(t.redacted(), "ws://h/p?token=[redacted]");
    }

    #[test]
    fn bad_urls() {
        assert!(matches!(
            Target::parse("http://h/", None),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            Target::parse("nonsense", None),
            Err(UrlError::Invalid(_))
        ));
        assert_eq!(Target::parse("ws://[::1]:9/x", None).unwrap().host(), "::1");
    }
}
