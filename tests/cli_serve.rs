//! What `wsplus serve` tells its operator, through the real binary: the
//! development default's first-run output (URLs that work and show tenant
//! isolation, the demo page, the admin `curl` line) and when it applies; why a
//! handshake was refused (at info, never with the token); which port could
//! not be bound. No log line ever contains a token.

use common::auth::*;
use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET_VAR: &str = "WSPLUS_CLI_SERVE_SECRET";
const SECRET_VALUE: &str = "cli-serve-secret-0123456789-0123456789";

/// A config with one hs256 listener at `/ws` that allows one Origin.
fn config(port: u16, admin: u16) -> String {
    format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\n[admin]\nbind = \"127.0.0.1:{admin}\"\n\
         [[listeners]]\npath = \"/ws\"\nallowed_origins = [\"https://app.example\"]\n\
         [listeners.auth]\nmode = \"hs256\"\nsecret_env = \"{SECRET_VAR}\"\n"
    )
}

#[tokio::test]
async fn refused_handshakes_are_logged_at_info_with_their_reason_and_no_token() {
    let (port, admin) = (free_port(), free_port());
    let cfg = temp_config("refusal-log", &config(port, admin));
    let mut cmd = wsplus_bin();
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env(SECRET_VAR, SECRET_VALUE)
        .env("WSPLUS_ADMIN_TOKEN", "admin-0123456789");
    let mut server = Server::spawn(cmd);
    server.wait_log("listening", |l| l.contains("listening on"));

    let secret = hmac(SECRET_VALUE.as_bytes());
    let expired = sign(
        &json!({"alg": "HS256"}),
        &with(claims("acme"), json!({"exp": now() - 60})),
        &secret,
        jsonwebtoken::Algorithm::HS256,
    );
    let url = format!("ws://127.0.0.1:{port}/ws?token={expired}");
    let r = Ws::try_connect(&url).await.err().expect("expired: refused");
    assert_eq!(r.status, 401);
    server.wait_log("for the expired token", |l| {
        l.contains(" INFO ") && l.contains("handshake refused: 401 expired path=/ws")
    });

    let good = sign(
        &json!({"alg": "HS256"}),
        &claims("acme"),
        &secret,
        jsonwebtoken::Algorithm::HS256,
    );
    let mut req = format!("ws://127.0.0.1:{port}/ws?token={good}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    let r = Ws::try_connect_request(req)
        .await
        .err()
        .expect("foreign origin: refused");
    assert_eq!(r.status, 403);
    server.wait_log("for the foreign origin", |l| {
        l.contains(" INFO ") && l.contains("handshake refused: 403 origin path=/ws")
    });

    let (log, _) = server.stop();
    for token in [&expired, &good] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            log.iter().all(|l| !l.contains(signature)),
            "a log line contains a token: {log:?}"
        );
    }
}

/// Runs `serve` with `port` (client) and `admin` while this test holds one of
/// them; exit code 1 and stderr.
fn serve_with_taken(port: u16, admin: u16) -> String {
    let cfg = temp_config(&format!("taken-{port}-{admin}"), &config(port, admin));
    let out = wsplus_bin()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env(SECRET_VAR, SECRET_VALUE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bind_failure_names_the_address_and_which_port() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let stderr = serve_with_taken(taken, free_port());
    assert!(
        stderr.contains(&format!(
            "server.bind: cannot bind 127.0.0.1:{taken} (the client port): "
        )),
        "{stderr}"
    );
    let stderr = serve_with_taken(free_port(), taken);
    assert!(
        stderr.contains(&format!(
            "admin.bind: cannot bind 127.0.0.1:{taken} (the admin port): "
        )),
        "{stderr}"
    );
}

/// The development default's stdout, up to and including the admin line.
struct FirstRun {
    /// (listener path, tenant, URL with token), in printed order.
    urls: Vec<(String, String, String)>,
    /// The demo page URL.
    demo: String,
    /// The admin `curl` line.
    curl: String,
    /// Every line.
    lines: Vec<String>,
}

impl FirstRun {
    fn read(server: &Server) -> Self {
        let mut lines = Vec::new();
        let (mut urls, mut demo, mut listener) = (Vec::new(), None, None);
        loop {
            let line = server.stdout_line();
            lines.push(line.clone());
            if let Some(curl) = line.strip_prefix("admin API: ") {
                return Self {
                    urls,
                    demo: demo.expect("a demo page line"),
                    curl: curl.to_owned(),
                    lines,
                };
            }
            if let Some(d) = line.strip_prefix("demo page: ") {
                demo = Some(d.to_owned());
            } else if let Some(rest) = line.strip_prefix("  tenant ") {
                let (tenant, url) = rest.split_once(':').expect("tenant: url");
                let path: &String = listener.as_ref().expect("a listener line first");
                urls.push((path.clone(), tenant.to_owned(), url.trim().to_owned()));
            } else if line.starts_with('/') {
                listener = Some(line.split(' ').next().unwrap().to_owned());
            }
        }
    }

    fn url(&self, path: &str, tenant: &str) -> &str {
        self.urls
            .iter()
            .find(|(p, t, _)| p == path && t == tenant)
            .map(|(_, _, u)| u.as_str())
            .unwrap_or_else(|| panic!("no URL for {tenant} on {path}: {:?}", self.lines))
    }
}

/// `wsplus serve` in an empty directory (so the embedded default) on free
/// loopback ports, with `vars` in its environment.
fn serve_default(name: &str, bind_host: &str, vars: &[(&str, &str)]) -> (Server, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let mut cmd = wsplus_bin();
    cmd.arg("serve")
        .current_dir(temp_dir(name))
        .env("WSPLUS__SERVER__BIND", format!("{bind_host}:{port}"))
        .env("WSPLUS__ADMIN__BIND", format!("127.0.0.1:{admin}"));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    (Server::spawn(cmd), port, admin)
}

/// The first run shows the point: every default listener has a URL for
/// tenants `demo` and `other`; they work, `other` never sees `demo`'s
/// messages, message mode stamps the verified `_session`; the demo page is
/// served and the admin line works as printed.
#[tokio::test]
async fn the_development_default_prints_working_urls_for_two_tenants_the_demo_page_and_admin_curl()
{
    let (mut server, port, admin) = serve_default("dev", "127.0.0.1", &[]);
    let run = FirstRun::read(&server);
    server.wait_log("announcing development mode", |l| {
        l.contains("DEVELOPMENT MODE") && l.contains("WSPLUS_JWT_SECRET")
    });
    // Every listener of the default configuration, each for both tenants.
    let listeners: Vec<&str> = run
        .lines
        .iter()
        .filter(|l| l.starts_with('/'))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let default = wsplus::settings::Settings::default();
    let paths: Vec<&str> = default.listeners.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(listeners, paths, "{:?}", run.lines);
    assert!(paths.contains(&"/ws/chat"));
    assert_eq!(run.urls.len(), 2 * paths.len(), "{:?}", run.lines);
    for (path, tenant, url) in &run.urls {
        let prefix = format!("ws://127.0.0.1:{port}{path}?token=");
        let token = url
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{url:?} does not start with {prefix:?}"));
        let c = claims_of(token);
        assert_eq!(c["tenant_id"], tenant.as_str());
        assert!(c["exp"].as_i64().unwrap() > now() + 3600);
    }

    // The channels listener speaks wsplus.v1 from its first message.
    let mut ch = Ws::connect(run.url("/ws/channels", "demo")).await;
    let connected = ch.recv_json().await;
    assert_eq!(connected["push"], "connected");
    assert_eq!(connected["session"]["tenantId"], "demo");

    // Two terminals: demo and other on /ws/chat (message mode).
    let mut demo = Ws::connect(run.url("/ws/chat", "demo")).await;
    let mut other = Ws::connect(run.url("/ws/chat", "other")).await;
    demo.send_text(r#"{"text":"hello from demo"}"#).await;
    let got = demo.recv_json().await;
    assert_eq!(got["text"], "hello from demo");
    assert_eq!(got["_session"]["tenantId"], "demo");
    assert_eq!(got["_session"]["subject"], "demo-user");
    assert_eq!(got["_session"]["authStatus"], "verified");
    // other's first message is its own: demo's never reached it.
    other.send_text(r#"{"text":"hello from other"}"#).await;
    let got = other.recv_json().await;
    assert_eq!(got["text"], "hello from other");
    assert_eq!(got["_session"]["tenantId"], "other");
    // Payload mode works with its own URL too.
    let mut events = Ws::connect(run.url("/ws/events", "demo")).await;
    events.send_text("plain").await;
    assert_eq!(events.recv_text().await, "plain");

    // The demo page, as printed.
    assert_eq!(run.demo, format!("http://127.0.0.1:{port}/demo"));
    let (status, body) = http_get(([127, 0, 0, 1], port).into(), "/demo").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<html") || body.contains("<!doctype"),
        "{body}"
    );

    // The admin line, as printed: curl -H "Authorization: Bearer T" URL.
    let (header, url) = run
        .curl
        .strip_prefix("curl -H \"")
        .and_then(|r| r.split_once("\" "))
        .unwrap_or_else(|| panic!("{:?}", run.curl));
    let bearer = header.strip_prefix("Authorization: Bearer ").unwrap();
    let path = url
        .strip_prefix(&format!("http://127.0.0.1:{admin}"))
        .unwrap_or_else(|| panic!("{url}"));
    let res = common::admin::Req::new("GET", path)
        .authorization(Some(&format!("Bearer {bearer}")))
        .send_to(([127, 0, 0, 1], admin).into())
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let tenants: Value = serde_json::from_str(&res.body).unwrap();
    let mut seen: Vec<&str> = tenants
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tenant"].as_str().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["demo", "other"]);

    // Refused requests carrying a token are logged with it redacted.
    let token = run
        .url("/ws/chat", "demo")
        .split_once("?token=")
        .unwrap()
        .1
        .to_owned();
    let wrong_path = Ws::try_connect(&format!("ws://127.0.0.1:{port}/nowhere?token={token}"))
        .await
        .err()
        .expect("404");
    assert_eq!(wrong_path.status, 404);
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let r = Ws::try_connect(&format!(
        "ws://127.0.0.1:{port}/ws/chat?a=1&token={tampered}"
    ))
    .await
    .err()
    .expect("401");
    assert_eq!(r.status, 401);
    // A percent-encoded name is still the token parameter (and still redacted).
    let encoded = Ws::connect(&format!("ws://127.0.0.1:{port}/ws/chat?%74oken={token}")).await;
    encoded.close().await;
    server.wait_log("for the 404 with the token redacted", |l| {
        l.contains("/nowhere?token=[redacted]")
    });
    server.wait_log("for the 401 with the token redacted", |l| {
        l.contains("/ws/chat?a=1&token=[redacted]") && l.contains(" 401 ")
    });
    server.wait_log("for the encoded name with the token redacted", |l| {
        l.contains("/ws/chat?%74oken=[redacted]")
    });
    for ws in [demo, other, events] {
        ws.close().await;
    }

    let (log, rest_of_stdout) = server.stop();
    assert!(rest_of_stdout.is_empty(), "{rest_of_stdout:?}");
    for (_, _, url) in &run.urls {
        let signature = url.rsplit('.').next().unwrap();
        for line in &log {
            assert!(
                !line.contains(signature),
                "a log line contains a token: {line}"
            );
        }
    }
    assert!(log
        .iter()
        .all(|l| !l.contains(&tampered) && !l.contains(bearer)));
}

/// Beyond loopback (a container, an env-only deployment with a typo in the
/// secret's variable) the default configuration without its secret refuses
/// to start, before binding, and says why.
#[test]
fn the_development_default_needs_a_loopback_bind() {
    let (port, admin) = (free_port(), free_port());
    let out = wsplus_bin()
        .arg("serve")
        .current_dir(temp_dir("dev-open"))
        .env("WSPLUS__SERVER__BIND", format!("0.0.0.0:{port}"))
        .env("WSPLUS__ADMIN__BIND", format!("127.0.0.1:{admin}"))
        .env("WSPLUS_JWT_SECRTE", "a typo: the real variable stays unset")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "listeners[0].auth: environment variable WSPLUS_JWT_SECRET is unset or empty \
             (the default configuration generates a development secret only when server.bind \
             is a loopback address; it is 0.0.0.0:"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("DEVELOPMENT MODE"), "{stderr}");
}

/// With its secret set, the default configuration is not the development
/// default: nothing is printed and the demo page is off.
#[tokio::test]
async fn the_default_configuration_with_its_secret_is_not_development_mode() {
    let (mut server, port, _) = serve_default(
        "dev-secret",
        "127.0.0.1",
        &[
            ("WSPLUS_JWT_SECRET", "a-real-secret-0123456789-0123456789"),
            ("WSPLUS_ADMIN_TOKEN", "admin-0123456789"),
        ],
    );
    server.wait_log("listening", |l| l.contains("listening on"));
    let (status, _) = http_get(([127, 0, 0, 1], port).into(), "/demo").await;
    assert_eq!(status, 404);
    let (log, stdout) = server.stop();
    assert!(stdout.is_empty(), "{stdout:?}");
    assert!(log
        .iter()
        .all(|l| !l.contains("DEVELOPMENT MODE") && !l.contains("DEMO MODE")));
}
