//! Whole-configuration validation: every problem, one line each, naming the key
//! by its full path (`listeners[0].path: must not start with /debug/ws`).

use std::collections::HashMap;

use super::problems::Problems;
use super::{AuthMode, AuthSettings, ClusterBackend, ListenerSettings, Settings, TenantFrom};

/// Largest frame a listener may accept (16 MiB).
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 16 << 20;
/// Largest admin request body that may be configured (16 MiB).
pub const MAX_ADMIN_BODY_BYTES: usize = 16 << 20;
/// Paths the server uses for itself.
const RESERVED_PREFIXES: [&str; 2] = ["/debug/ws", "/admin"];
const RESERVED_PATHS: [&str; 3] = ["/wsplus.js", "/demo", "/demo/token"];

/// Returns every problem found; empty means valid.
pub fn validate(s: &Settings) -> Vec<String> {
    let mut p = Problems::default();
    p.addr("server.bind", &s.server.bind);
    p.addr("admin.bind", &s.admin.bind);
    if s.server.bind == s.admin.bind && !s.server.bind.ends_with(":0") {
        p.push(
            "admin.bind",
            "must differ from server.bind (admin traffic has its own port)",
        );
    }
    p.range("server.workers", s.server.workers as u64, 0, 1024);
    p.range(
        "server.shutdown_grace_s",
        s.server.shutdown_grace_s,
        0,
        3600,
    );
    match (&s.server.tls_cert, &s.server.tls_key) {
        (Some(_), None) => p.push("server.tls_key", "required when server.tls_cert is set"),
        (None, Some(_)) => p.push("server.tls_cert", "required when server.tls_key is set"),
        _ => {}
    }
    p.env_name("admin.token_env", &s.admin.token_env);
    p.range(
        "admin.max_body_bytes",
        s.admin.max_body_bytes as u64,
        1,
        MAX_ADMIN_BODY_BYTES as u64,
    );

    if s.listeners.is_empty() {
        p.push("listeners", "at least one listener is required");
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, l) in s.listeners.iter().enumerate() {
        listener(&mut p, &format!("listeners[{i}]"), l);
        if let Some(first) = seen.insert(l.path.as_str(), i) {
            p.push(
                &format!("listeners[{i}].path"),
                &format!("duplicates listeners[{first}].path {:?}", l.path),
            );
        }
    }

    let lim = &s.limits;
    p.range(
        "limits.outbound_queue_messages",
        lim.outbound_queue_messages as u64,
        1,
        1 << 20,
    );
    p.range(
        "limits.outbound_queue_bytes",
        lim.outbound_queue_bytes as u64,
        1024,
        1 << 30,
    );
    p.range(
        "limits.slow_consumer_timeout_ms",
        lim.slow_consumer_timeout_ms,
        10,
        600_000,
    );
    p.range("limits.room_queue", lim.room_queue as u64, 16, 1 << 20);
    p.range(
        "limits.max_connections",
        lim.max_connections as u64,
        0,
        10_000_000,
    );
    p.range(
        "limits.request_timeout_ms",
        lim.request_timeout_ms,
        100,
        300_000,
    );
    p.range("limits.send_timeout_s", lim.send_timeout_s, 0, 3600);
    p.range(
        "limits.max_tcp_connections",
        lim.max_tcp_connections as u64,
        1,
        10_000_000,
    );
    if lim.max_connections > 0 && lim.max_tcp_connections <= lim.max_connections {
        p.push(
            "limits.max_tcp_connections",
            "must exceed limits.max_connections (room for the handshakes that get 503)",
        );
    }

    cluster(&mut p, &s.cluster);
    p.range(
        "metrics.tenant_series",
        s.metrics.tenant_series as u64,
        1,
        super::MAX_TENANT_SERIES as u64,
    );
    super::validate_outbound::proxy(&mut p, &s.proxy);
    super::validate_outbound::bridges(&mut p, s);
    super::tenants::validate(&mut p, s);
    for (i, w) in s.webhooks.iter().enumerate() {
        super::hooks::check_webhooks(&mut p, &format!("webhooks[{i}]"), w);
    }
    p.into_lines()
}

/// The Redis URL, ACL credentials and TLS trust of a redis backend.
fn redis_access(p: &mut Problems, c: &super::ClusterSettings, u: &str) {
    let tls = u.starts_with("rediss://");
    let parsed = match url::Url::parse(u) {
        Ok(url) if tls || u.starts_with("redis://") => url,
        _ => return p.push("cluster.redis_url", "must start with redis:// or rediss://"),
    };
    if parsed.fragment().is_some() {
        // `#insecure` would turn certificate checks off.
        p.push("cluster.redis_url", "must not have a #fragment");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        p.push("cluster.redis_url", "must name a host");
    }
    if let Some(user) = &c.username {
        if user.is_empty() || user.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            p.push(
                "cluster.username",
                "must be a non-empty name without spaces",
            );
        }
        if !parsed.username().is_empty() {
            p.push(
                "cluster.username",
                "set the user in redis_url or in username, not both",
            );
        }
    }
    match (&c.password_env, &c.password_file) {
        (Some(_), Some(_)) => p.push(
            "cluster.password_file",
            "set password_env or password_file, not both",
        ),
        (Some(v), None) => p.env_name("cluster.password_env", v),
        (None, _) => {}
    }
    let from_setting = c.password_env.is_some() || c.password_file.is_some();
    if from_setting && parsed.password().is_some() {
        p.push(
            "cluster.redis_url",
            "has a password and password_env/password_file names one: keep only password_env/password_file",
        );
    }
    if c.tls_ca_file.is_some() && !tls {
        p.push("cluster.tls_ca_file", "only with a rediss:// redis_url");
    }
}

/// Longest node lease: a crashed node's slots expire within 30 s (`lease_s` in
/// docs/configuration.md#cluster).
pub const MAX_LEASE_S: u64 = 30;

fn cluster(p: &mut Problems, c: &super::ClusterSettings) {
    match (c.backend, &c.redis_url) {
        (ClusterBackend::Local, _) => {}
        (ClusterBackend::Redis, None) => p.push(
            "cluster.redis_url",
            "required when cluster.backend = \"redis\"",
        ),
        (ClusterBackend::Redis, Some(u)) => redis_access(p, c, u),
    }
    if c.node_id.len() > 64
        || !c
            .node_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        p.push(
            "cluster.node_id",
            "must be at most 64 characters of A-Z, a-z, 0-9, '-', '_', '.' (empty = random)",
        );
    }
    p.range("cluster.lease_s", c.lease_s, 2, MAX_LEASE_S);
    p.range("cluster.timeout_ms", c.timeout_ms, 50, 60_000);
    p.range("cluster.queue", c.queue as u64, 16, 1 << 20);
    p.range("cluster.queue_bytes", c.queue_bytes, 64 << 10, 16 << 30);
}

fn listener(p: &mut Problems, at: &str, l: &ListenerSettings) {
    let key = |k: &str| format!("{at}.{k}");
    let path = &l.path;
    if !path.starts_with('/') {
        p.push(&key("path"), "must start with /");
    }
    for prefix in RESERVED_PREFIXES {
        if path.starts_with(prefix) {
            p.push(&key("path"), &format!("must not start with {prefix}"));
        }
    }
    if RESERVED_PATHS.contains(&path.as_str()) {
        p.push(&key("path"), &format!("{path} is served by wsplus itself"));
    }
    if path.len() > 256
        || path
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#' || c.is_control())
    {
        p.push(
            &key("path"),
            "must be at most 256 characters without spaces, '?' or '#'",
        );
    }
    p.range(
        &key("max_message_bytes"),
        l.max_message_bytes as u64,
        1,
        MAX_MESSAGE_BYTES_LIMIT as u64,
    );
    p.range(&key("heartbeat_s"), l.heartbeat_s, 0, 3600);
    super::channels::validate_scope(p, at, l);
    super::channels::validate(p, at, l);
    for (j, o) in l.allowed_origins.iter().enumerate() {
        if !valid_origin(o) {
            p.push(
                &key(&format!("allowed_origins[{j}]")),
                &format!("{o:?} is not an origin (scheme://host[:port], no path)"),
            );
        }
    }

    let a = &l.auth;
    match a.mode {
        AuthMode::None => {}
        AuthMode::Hs256 => match (&a.secret_env, &a.secret_file) {
            (None, None) => p.push(
                &key("auth.secret_env"),
                "hs256 needs secret_env or secret_file",
            ),
            // `secret_env` has a default: a `secret_file` given alone replaces it.
            (Some(v), Some(_)) if *v != AuthSettings::default_secret_env() => p.push(
                &key("auth.secret_file"),
                "set secret_env or secret_file, not both",
            ),
            (Some(_), Some(_)) => {}
            (Some(v), None) => p.env_name(&key("auth.secret_env"), v),
            (None, Some(_)) => {}
        },
        AuthMode::Jwks => match &a.jwks_uri {
            None => p.push(&key("auth.jwks_uri"), "required when auth.mode = \"jwks\""),
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                p.push(&key("auth.jwks_uri"), "must be an http:// or https:// URL")
            }
            Some(_) => {}
        },
        AuthMode::Tenant => {
            for (k, set) in [("jwks_uri", &a.jwks_uri), ("issuer", &a.issuer)] {
                if set.is_some() {
                    p.push(
                        &key(&format!("auth.{k}")),
                        "not used with auth.mode = \"tenant\": each [[tenants.registered]] has its own",
                    );
                }
            }
            if l.tenant.from == TenantFrom::Static {
                p.push(
                    &key("tenant.from"),
                    "must be \"claim\" with auth.mode = \"tenant\" (the issuer selects the tenant; the claim, when present, must agree)",
                );
            }
        }
    }
    p.range(&key("auth.leeway_s"), a.leeway_s, 0, 3600);
    p.range(&key("auth.jwks_refresh_s"), a.jwks_refresh_s, 10, 86400);

    let t = &l.tenant;
    match t.from {
        TenantFrom::Claim if a.mode == AuthMode::None => p.push(
            &key("tenant.from"),
            "\"claim\" needs a token: use from = \"static\" with auth.mode = \"none\"",
        ),
        TenantFrom::Claim if t.claim.trim().is_empty() => {
            p.push(&key("tenant.claim"), "must not be empty")
        }
        TenantFrom::Static if t.static_id.as_deref().is_none_or(|s| s.trim().is_empty()) => p.push(
            &key("tenant.static_id"),
            "required (non-empty) when tenant.from = \"static\"",
        ),
        _ => {}
    }

    if let Some(h) = &l.hooks {
        super::hooks::check_hooks(p, &key("hooks"), l.mode, h);
    }

    let s = &l.session;
    p.range(&key("session.timeout_s"), s.timeout_s, 0, 30 * 86400);
    p.range(
        &key("session.rate_limit_per_s"),
        u64::from(s.rate_limit_per_s),
        0,
        1_000_000,
    );
    p.range(
        &key("session.max_connections_per_tenant"),
        s.max_connections_per_tenant as u64,
        0,
        10_000_000,
    );
}

fn valid_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::settings::load::from_toml_with_env;

    /// Every problem `validate` finds in `toml` (which must parse).
    pub(in crate::settings) fn problems(toml: &str) -> Vec<String> {
        let s = from_toml_with_env(toml, Vec::new()).expect("parses");
        validate(&s)
    }

    #[test]
    fn every_listener_problem_is_reported_with_its_key() {
        let toml = r#"
[[listeners]]
path = "/debug/ws/x"
max_message_bytes = 0
[[listeners]]
path = "no-slash"
heartbeat_s = 99999
[[listeners]]
path = "/admin"
[[listeners]]
path = "/ok"
allowed_origins = ["https://a.example", "not an origin", "https://b.example/path"]
[[listeners]]
path = "/ok"
"#;
        let p = problems(toml);
        let expect = [
            "listeners[0].path: must not start with /debug/ws",
            "listeners[0].max_message_bytes: must be between 1 and 16777216, got 0",
            "listeners[1].path: must start with /",
            "listeners[1].heartbeat_s: must be between 0 and 3600, got 99999",
            "listeners[2].path: must not start with /admin",
            "listeners[3].allowed_origins[1]: \"not an origin\" is not an origin (scheme://host[:port], no path)",
            "listeners[3].allowed_origins[2]: \"https://b.example/path\" is not an origin (scheme://host[:port], no path)",
            "listeners[4].path: duplicates listeners[3].path \"/ok\"",
        ];
        for e in expect {
            assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn auth_and_tenant_problems() {
        let toml = r#"
[[listeners]]
path = "/a"
[listeners.auth]
mode = "jwks"
secret_env = "X"
[listeners.tenant]
from = "static"
[[listeners]]
path = "/b"
[listeners.auth]
mode = "none"
[[listeners]]
path = "/c"
[listeners.auth]
mode = "hs256"
secret_env = "BAD NAME"
secret_file = "/x"
"#;
        let p = problems(toml);
        for e in [
            "listeners[0].auth.jwks_uri: required when auth.mode = \"jwks\"",
            "listeners[0].tenant.static_id: required (non-empty) when tenant.from = \"static\"",
            "listeners[1].tenant.from: \"claim\" needs a token: use from = \"static\" with auth.mode = \"none\"",
            "listeners[2].auth.secret_file: set secret_env or secret_file, not both",
        ] {
            assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
        }
    }

    #[test]
    fn secret_file_alone_replaces_the_default_secret_env() {
        let toml = "[[listeners]]\npath = \"/a\"\n[listeners.auth]\nsecret_file = \"/run/s\"\n";
        assert!(problems(toml).is_empty(), "{:?}", problems(toml));
    }

    #[test]
    fn server_problems() {
        let toml = r#"
[server]
bind = "nowhere"
tls_cert = "c.pem"
[admin]
bind = "127.0.0.1:9090"
token_env = ""
max_body_bytes = 0
[limits]
outbound_queue_messages = 0
slow_consumer_timeout_ms = 0
[cluster]
backend = "redis"
"#;
        let p = problems(toml);
        for e in [
            "server.bind: \"nowhere\" is not a host:port address",
            "server.tls_key: required when server.tls_cert is set",
            "admin.token_env: \"\" is not an environment variable name",
            "admin.max_body_bytes: must be between 1 and 16777216, got 0",
            "limits.outbound_queue_messages: must be between 1 and 1048576, got 0",
            "limits.slow_consumer_timeout_ms: must be between 10 and 600000, got 0",
            "cluster.redis_url: required when cluster.backend = \"redis\"",
        ] {
            assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
        }
    }

    #[test]
    fn cluster_problems() {
        let ok = problems("[cluster]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/\"\nnode_id = \"node-1.a_b\"\n");
        assert!(ok.is_empty(), "{ok:?}");
        let toml = r#"
[cluster]
backend = "redis"
redis_url = "http://x"
node_id = "has space"
lease_s = 31
timeout_ms = 0
queue = 1
queue_bytes = 1000
"#;
        let p = problems(toml);
        let expect = [
            "cluster.redis_url: must start with redis:// or rediss://",
            "cluster.node_id: must be at most 64 characters of A-Z, a-z, 0-9, '-', '_', '.' (empty = random)",
            "cluster.lease_s: must be between 2 and 30, got 31",
            "cluster.timeout_ms: must be between 50 and 60000, got 0",
            "cluster.queue: must be between 16 and 1048576, got 1",
            "cluster.queue_bytes: must be between 65536 and 17179869184, got 1000",
        ];
        for e in expect {
            assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
        let tls = problems("[cluster]\nbackend = \"redis\"\nredis_url = \"rediss://h:6380/\"\ntls_ca_file = \"/ca.pem\"\nusername = \"wsplus\"\npassword_env = \"REDIS_PASSWORD\"\n");
        assert!(tls.is_empty(), "{tls:?}");
    }

    #[test]
    fn redis_access_problems() {
        let cases = [
            ("redis_url = \"rediss://h/#insecure\"", "cluster.redis_url: must not have a #fragment"),
            ("redis_url = \"redis://\"", "cluster.redis_url: must name a host"),
            ("redis_url = \"redis://h/\"\ntls_ca_file = \"/ca.pem\"", "cluster.tls_ca_file: only with a rediss:// redis_url"),
            ("redis_url = \"redis://u@h/\"\nusername = \"v\"", "cluster.username: set the user in redis_url or in username, not both"),
            ("redis_url = \"redis://h/\"\nusername = \"a b\"", "cluster.username: must be a non-empty name without spaces"),
            ("redis_url = \"redis://h/\"\npassword_env = \"P\"\npassword_file = \"/p\"", "cluster.password_file: set password_env or password_file, not both"),
            ("redis_url = \"redis://h/\"\npassword_env = \"not-a-var\"", "cluster.password_env: \"not-a-var\" is not an environment variable name"),
            ("redis_url = \"redis://u:pw@h/\"\npassword_file = \"/p\"", "cluster.redis_url: has a password and password_env/password_file names one: keep only password_env/password_file"),
        ];
        for (keys, want) in cases {
            let p = problems(&format!("[cluster]\nbackend = \"redis\"\n{keys}\n"));
            assert_eq!(p, [want], "{keys}");
        }
    }

    #[test]
    fn paths_the_server_serves_itself_are_reserved() {
        let toml = r#"
[[listeners]]
path = "/wsplus.js"
[[listeners]]
path = "/demo"
[[listeners]]
path = "/demo/token"
[[listeners]]
path = "/demo/x"
"#;
        let p = problems(toml);
        for (i, path) in ["/wsplus.js", "/demo", "/demo/token"].iter().enumerate() {
            let e = format!("listeners[{i}].path: {path} is served by wsplus itself");
            assert!(p.contains(&e), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), 3, "{p:#?}");
    }

    #[test]
    fn connection_limits_problems() {
        let toml = r#"
[limits]
request_timeout_ms = 0
send_timeout_s = 3601
max_connections = 100
max_tcp_connections = 100
"#;
        let p = problems(toml);
        let expect = [
            "limits.request_timeout_ms: must be between 100 and 300000, got 0",
            "limits.send_timeout_s: must be between 0 and 3600, got 3601",
            "limits.max_tcp_connections: must exceed limits.max_connections (room for the handshakes that get 503)",
        ];
        for e in expect {
            assert!(p.iter().any(|x| x == e), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
        let zero = problems("[limits]\nmax_tcp_connections = 0\n");
        assert_eq!(
            zero,
            ["limits.max_tcp_connections: must be between 1 and 10000000, got 0"]
        );
        let ok = problems(
            "[limits]\nsend_timeout_s = 0\nmax_connections = 10\nmax_tcp_connections = 11\n",
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn metrics_problems() {
        let ok = problems("[metrics]\ntenant_labels = true\ntenant_series = 10000\n");
        assert!(ok.is_empty(), "{ok:?}");
        assert_eq!(
            problems("[metrics]\ntenant_series = 0\n"),
            ["metrics.tenant_series: must be between 1 and 10000, got 0"]
        );
    }
}
