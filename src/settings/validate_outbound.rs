//! Validation of the outbound settings (docs/configuration.md): `[proxy]` and
//! every `[[bridges]]` entry, one line per problem naming the key by its full
//! path (`bridges[0].into.listener: no listener has path "/nope"`).

use std::collections::HashMap;

use awc::http::header::HeaderName;

use super::problems::Problems;
use super::{BridgeAuth, BridgeEndpoint, BridgeSettings, Mode, ProxySettings, Settings};
use crate::client::proxy::ProxyUrl;
use crate::client::target::Target;
use crate::client::{is_token, template};

/// Upgrade headers the client sets itself; a bridge may not override them.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// `[proxy]`: each URL must parse once its `${VAR}` references are expanded.
pub(super) fn proxy(p: &mut Problems, s: &ProxySettings) {
    for (key, value) in [
        ("proxy.https_proxy", &s.https_proxy),
        ("proxy.http_proxy", &s.http_proxy),
    ] {
        let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        match template::variables(v) {
            Err(e) => p.push(key, &e.to_string()),
            Ok(vars) => {
                // The variables' values are not known here: check the shape
                // with a placeholder in their place.
                let mut shape = v.to_owned();
                for var in vars {
                    shape = shape.replace(&format!("${{{var}}}"), "x");
                }
                if let Err(e) = ProxyUrl::parse(shape.trim()) {
                    p.push(key, &e.to_string());
                }
            }
        }
    }
}

/// Every `[[bridges]]` entry, and name uniqueness across them.
pub(super) fn bridges(p: &mut Problems, s: &Settings) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, b) in s.bridges.iter().enumerate() {
        let at = format!("bridges[{i}]");
        bridge(p, &at, b, s);
        if b.name.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(b.name.as_str(), i) {
            p.push(
                &format!("{at}.name"),
                &format!("duplicates bridges[{first}].name {:?}", b.name),
            );
        }
    }
}

fn bridge(p: &mut Problems, at: &str, b: &BridgeSettings, s: &Settings) {
    let key = |k: &str| format!("{at}.{k}");
    if b.name.is_empty()
        || b.name.len() > 64
        || !b
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        p.push(
            &key("name"),
            "required: 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.'",
        );
    }
    match Target::parse(&b.url, None) {
        Err(e) => p.push(&key("url"), &e.to_string()),
        Ok(_) if has_token_param(&b.url) => p.push(
            &key("url"),
            "must not carry a token: use token_env or token_file",
        ),
        Ok(_) => {}
    }
    if b.mode == Mode::Channels {
        p.push(&key("mode"), "must be \"payload\" or \"message\"");
    }
    if !b.subprotocol.is_empty() && !is_token(&b.subprotocol) {
        p.push(
            &key("subprotocol"),
            &format!(
                "{:?} is not a valid Sec-WebSocket-Protocol token",
                b.subprotocol
            ),
        );
    }
    match (b.auth, &b.token_env, &b.token_file) {
        (BridgeAuth::Jwt, None, None) => p.push(
            &key("token_env"),
            "auth = \"jwt\" needs token_env or token_file",
        ),
        (BridgeAuth::Jwt, Some(_), Some(_)) => {
            p.push(&key("token_file"), "set token_env or token_file, not both")
        }
        (BridgeAuth::Jwt, Some(v), None) => p.env_name(&key("token_env"), v),
        (BridgeAuth::Jwt, None, Some(f)) if f.trim().is_empty() => {
            p.push(&key("token_file"), "must not be empty")
        }
        (BridgeAuth::None, Some(_), _) => p.push(
            &key("token_env"),
            "only used with auth = \"jwt\" (auth is \"none\")",
        ),
        (BridgeAuth::None, None, Some(_)) => p.push(
            &key("token_file"),
            "only used with auth = \"jwt\" (auth is \"none\")",
        ),
        _ => {}
    }
    p.range(&key("heartbeat_s"), b.heartbeat_s, 0, 3600);
    p.range(&key("reconnect_min_ms"), b.reconnect_min_ms, 10, 60_000);
    p.range(&key("reconnect_max_s"), b.reconnect_max_s, 1, 3600);
    if b.reconnect_min_ms > b.reconnect_max_s.saturating_mul(1000) {
        p.push(
            &key("reconnect_min_ms"),
            "must not exceed reconnect_max_s (in milliseconds)",
        );
    }
    p.range(&key("queue"), b.queue as u64, 1, 1 << 20);
    p.range(
        &key("max_message_bytes"),
        b.max_message_bytes as u64,
        1,
        16 << 20,
    );
    for (name, value) in &b.headers {
        let hkey = key(&format!("headers.{name}"));
        match HeaderName::from_bytes(name.trim().as_bytes()) {
            Err(_) => p.push(&hkey, "not a valid header name"),
            Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => p.push(
                &hkey,
                "is set by the client itself (use subprotocol for Sec-WebSocket-Protocol)",
            ),
            Ok(_) => {}
        }
        if let Err(e) = template::variables(value) {
            p.push(&hkey, &e.to_string());
        }
    }
    if b.into.is_none() && b.from.is_none() {
        p.push(&key("into"), "a bridge needs into, from or both");
    }
    for (k, endpoint) in [("into", &b.into), ("from", &b.from)] {
        if let Some(e) = endpoint {
            self::endpoint(p, &key(k), e, s);
        }
    }
}

fn endpoint(p: &mut Problems, at: &str, e: &BridgeEndpoint, s: &Settings) {
    match s.listeners.iter().find(|l| l.path == e.listener) {
        None => p.push(
            &format!("{at}.listener"),
            &format!("no listener has path {:?}", e.listener),
        ),
        // A bridge forwards whole tenant streams; a channels listener has no
        // tenant stream, only channels.
        Some(l) if l.mode == Mode::Channels => p.push(
            &format!("{at}.listener"),
            &format!(
                "{:?} is a channels-mode listener; bridges join payload or message listeners",
                e.listener
            ),
        ),
        Some(_) => {}
    }
    if e.tenant.trim().is_empty() {
        p.push(&format!("{at}.tenant"), "must not be empty");
    }
}

/// True when the URL's query already has a `token` parameter.
fn has_token_param(url: &str) -> bool {
    url::Url::parse(url)
        .map(|u| u.query_pairs().any(|(k, _)| k == "token"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use crate::settings::load::from_toml_with_env;
    use crate::settings::validate::tests::problems;
    use crate::settings::BridgeAuth;

    #[test]
    fn a_good_bridge_and_proxy_pass() {
        let toml = r#"
[proxy]
https_proxy = "http://alice:${PROXY_PW}@proxy.internal:3128"
no_proxy = ".internal,localhost"
[[bridges]]
name = "hq"
url = "wss://hq.example.com/ws/events?site=7"
auth = "jwt"
token_env = "HQ_TOKEN"
headers = { "X-Site" = "plant-7", "X-Key" = "${SITE_KEY}" }
into = { listener = "/ws/events", tenant = "acme" }
from = { listener = "/ws/events", tenant = "acme" }
"#;
        assert!(problems(toml).is_empty(), "{:?}", problems(toml));
    }

    #[test]
    fn every_bridge_problem_is_reported_with_its_key() {
        let toml = r#"
[proxy]
https_proxy = "https://proxy:3128"
http_proxy = "http://${BROKEN"
[[bridges]]
name = "hq"
url = "http://hq.example.com/"
auth = "jwt"
subprotocol = "a b"
reconnect_min_ms = 5000
reconnect_max_s = 2
queue = 0
max_message_bytes = 0
headers = { "Bad Name" = "x", "Host" = "h", "X-Ok" = "${UNCLOSED" }
into = { listener = "/nope", tenant = "" }
[[bridges]]
name = "hq"
url = "ws://h/ws?token=abc"
auth = "none"
token_env = "T"
from = { listener = "/ws/events", tenant = "acme" }
[[bridges]]
name = "has space"
url = "ws://h/"
auth = "jwt"
token_env = "A"
token_file = "/t"
heartbeat_s = 4000
"#;
        let p = problems(toml);
        let expect = [
            "proxy.https_proxy: only http:// proxies are supported (CONNECT over plain HTTP)",
            "proxy.http_proxy: invalid ${VAR} reference in \"http://${BROKEN\"",
            "bridges[0].url: URL scheme must be ws:// or wss://, got http://",
            "bridges[0].subprotocol: \"a b\" is not a valid Sec-WebSocket-Protocol token",
            "bridges[0].token_env: auth = \"jwt\" needs token_env or token_file",
            "bridges[0].reconnect_min_ms: must not exceed reconnect_max_s (in milliseconds)",
            "bridges[0].queue: must be between 1 and 1048576, got 0",
            "bridges[0].max_message_bytes: must be between 1 and 16777216, got 0",
            "bridges[0].headers.Bad Name: not a valid header name",
            "bridges[0].headers.Host: is set by the client itself (use subprotocol for Sec-WebSocket-Protocol)",
            "bridges[0].headers.X-Ok: invalid ${VAR} reference in \"${UNCLOSED\"",
            "bridges[0].into.listener: no listener has path \"/nope\"",
            "bridges[0].into.tenant: must not be empty",
            "bridges[1].url: must not carry a token: use token_env or token_file",
            "bridges[1].token_env: only used with auth = \"jwt\" (auth is \"none\")",
            "bridges[1].name: duplicates bridges[0].name \"hq\"",
            "bridges[2].name: required: 1 to 64 characters of A-Z, a-z, 0-9, '-', '_', '.'",
            "bridges[2].token_file: set token_env or token_file, not both",
            "bridges[2].heartbeat_s: must be between 0 and 3600, got 4000",
            "bridges[2].into: a bridge needs into, from or both",
        ];
        for e in expect {
            assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn auth_defaults_to_jwt_when_a_token_is_named() {
        let toml = r#"
[[bridges]]
name = "env"
url = "ws://h/"
token_env = "T"
into = { listener = "/ws/events", tenant = "acme" }
[[bridges]]
name = "file"
url = "ws://h/"
token_file = "/run/secrets/t"
into = { listener = "/ws/events", tenant = "acme" }
[[bridges]]
name = "open"
url = "ws://h/"
into = { listener = "/ws/events", tenant = "acme" }
"#;
        let s = from_toml_with_env(toml, Vec::new()).unwrap();
        let auth: Vec<BridgeAuth> = s.bridges.iter().map(|b| b.auth).collect();
        assert_eq!(auth, [BridgeAuth::Jwt, BridgeAuth::Jwt, BridgeAuth::None]);
        assert!(problems(toml).is_empty(), "{:?}", problems(toml));
    }

    #[test]
    fn unknown_auth_value_names_the_key() {
        let toml = "[[bridges]]\nname = \"x\"\nurl = \"ws://h/\"\nauth = \"basic\"\n\
                    into = { listener = \"/ws/events\", tenant = \"t\" }\n";
        let e = from_toml_with_env(toml, Vec::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "bridges[0].auth: unknown value \"basic\", expected one of jwt, none"
        );
    }
}
