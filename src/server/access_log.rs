//! Access logging with the `token` query parameter redacted.

use actix_web::middleware::Logger;

/// The access-log middleware: remote, method, path with redacted query, status,
/// bytes, duration. Tokens never reach the log.
pub fn logger() -> Logger {
    Logger::new(r#"%a "%{request}xi" %s %b %Dms"#).custom_request_replace("request", |req| {
        format!("{} {}", req.method(), redact_uri(req.uri()))
    })
}

/// The request target with every `token` parameter's value replaced.
pub fn redact_uri(uri: &actix_web::http::Uri) -> String {
    match uri.query() {
        None => uri.path().to_owned(),
        Some(q) => format!("{}?{}", uri.path(), redact_query(q)),
    }
}

/// A query string with the value of every `token` parameter replaced by
/// `[redacted]`. Names are compared decoded, as the upgrade reads them:
/// `%74oken=` is the token parameter too.
pub fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_token_name(k) => format!("{k}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// True when the (still URL-encoded) parameter name `k` decodes to `token`
/// in any letter case.
fn is_token_name(k: &str) -> bool {
    form_urlencoded::parse(k.as_bytes())
        .next()
        .is_some_and(|(name, _)| name.eq_ignore_ascii_case("token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(
            redact_query("a=1&token=secret.jwt.x&b=2"),
            "a=1&token=[redacted]&b=2"
        );
        assert_eq!(redact_query("TOKEN=x"), "TOKEN=[redacted]");
        // Percent-encoded names are the same parameter to the upgrade.
        assert_eq!(
            redact_query("%74oken=x&to%6Ben=y&tok%65n=z&tokens=w&t=v"),
            "%74oken=[redacted]&to%6Ben=[redacted]&tok%65n=[redacted]&tokens=w&t=v"
        );
        let uri: actix_web::http::Uri = "/ws/events?token=abc".parse().unwrap();
        assert_eq!(redact_uri(&uri), "/ws/events?token=[redacted]");
    }
}
