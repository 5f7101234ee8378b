//! The real binary: check-config output and errors, serve refusing bad
//! configuration, and SIGTERM shutdown with 1001 and exit code 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Stdout of a run that must have succeeded (else fails showing stderr).
fn succeeded(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `check-config --config path`.
fn check_config(path: &std::path::Path) -> std::process::Output {
    wsplus_bin()
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

/// `check-config` on the default configuration (run where there is no
/// config/default.toml) with `vars` in the environment.
fn check_default(vars: &[(&str, &str)]) -> std::process::Output {
    let mut c = wsplus_bin();
    c.args(["check-config"]).current_dir(std::env::temp_dir());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `check-config` on `text`, which must fail with exit code 1 and nothing on
/// stdout; returns stderr.
fn check_config_refuses(name: &str, text: &str) -> String {
    let out = check_config(&temp_config(name, text));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(out.stdout.is_empty(), "{text}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn check_config_prints_the_effective_default() {
    let out = check_default(&[]);
    let stdout = succeeded(out);
    assert!(
        stdout.starts_with(
            "# effective configuration from the default configuration; secrets redacted\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("path = \"/ws/events\""), "{stdout}");
    assert!(
        stdout.contains("secret_env = \"WSPLUS_JWT_SECRET\""),
        "{stdout}"
    );
}

#[test]
fn every_example_configuration_is_valid_and_keeps_its_listeners() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut seen = 0;
    let pki = common::client::test_pki("examples");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // No secrets here (as in a CI image); the examples' TLS files live
        // on the machines they describe, so without them the only problem
        // may be the TLS pair: checked with the files in place below.
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace("/etc/wsplus/tls/cert.pem", &pki.cert.display().to_string())
            .replace("/etc/wsplus/tls/key.pem", &pki.key.display().to_string());
        let local = temp_config("example", &text);
        let out = wsplus_bin()
            .args(["check-config", "--no-secrets", "--config"])
            .arg(&local)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every listener path of the example survives into the effective config.
        for line in text.lines().filter(|l| l.starts_with("path = ")) {
            assert!(stdout.contains(line), "{}: {line} missing", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 3, "examples found: {seen}");
}

/// `check-config` runs the checks `serve` runs before binding, with the same
/// lines, and fails on any; `--no-secrets` skips only the secret checks.
#[test]
fn check_config_checks_what_serve_checks_and_no_secrets_skips_only_secrets() {
    let config = |extra: &str| {
        format!(
            "[server]\nbind = \"127.0.0.1:{}\"\n{extra}\n[admin]\nbind = \"127.0.0.1:0\"\n\
             [[listeners]]\npath = \"/ws\"\n[listeners.auth]\nsecret_env = \"WSPLUS_CC_UNSET\"\n\
             [[bridges]]\nname = \"hq\"\nurl = \"ws://127.0.0.1:9/ws\"\ntoken_env = \"WSPLUS_CC_HQ\"\n\
             into = {{ listener = \"/ws\", tenant = \"acme\" }}\n",
            free_port()
        )
    };
    let secret_lines = [
        "listeners[0].auth: environment variable WSPLUS_CC_UNSET is unset or empty",
        "bridges[0] (hq): token: environment variable WSPLUS_CC_HQ is unset or empty",
    ];
    let cfg = temp_config("cc-secrets", &config(""));
    let stderr = check_config_refuses("cc-secrets", &std::fs::read_to_string(&cfg).unwrap());
    assert_eq!(stderr.lines().collect::<Vec<_>>(), secret_lines, "{stderr}");
    // serve stops with the same lines, before binding.
    let serve_err = serve_refuses(&cfg);
    for line in secret_lines {
        assert!(
            serve_err.lines().any(|l| l == line),
            "{line:?} not in {serve_err}"
        );
    }
    // Without secrets: the same file passes.
    let out = wsplus_bin()
        .args(["check-config", "--no-secrets", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(succeeded(out).contains("path = \"/ws\""));
    // A file problem is reported with or without secrets.
    let missing = temp_dir("cc-tls").join("missing.pem").display().to_string();
    let broken = config(&format!("tls_cert = {missing:?}\ntls_key = {missing:?}"));
    for flags in [&["check-config"][..], &["check-config", "--no-secrets"][..]] {
        let cfg = temp_config("cc-tls", &broken);
        let out = wsplus_bin()
            .args(flags)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("server.tls_cert: {missing}: "))),
            "{flags:?}: {stderr}"
        );
        assert_eq!(
            stderr.lines().any(|l| l.contains("WSPLUS_CC_UNSET")),
            flags.len() == 1,
            "{flags:?}: {stderr}"
        );
    }
    // With the secrets set, everything passes.
    let out = wsplus_bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .env("WSPLUS_CC_UNSET", "a-secret-0123456789-0123456789-01")
        .env("WSPLUS_CC_HQ", "hq-token")
        .output()
        .unwrap();
    succeeded(out);
}

/// The file has no such key to look for: the variable is named instead.
#[test]
fn an_unknown_key_from_the_environment_names_the_variable() {
    let out = check_default(&[("WSPLUS__SERVER__BINDD", "0.0.0.0:1")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "WSPLUS__SERVER__BINDD: unknown key server.bindd\n"
    );
}

#[test]
fn check_config_reports_every_problem_with_its_key_and_fails() {
    let stderr = check_config_refuses(
        "bad",
        r#"
[server]
bind = "127.0.0.1:8080"
[admin]
bind = "127.0.0.1:8080"
[[listeners]]
path = "/debug/ws/x"
max_message_bytes = 0
[[listeners]]
path = "/dup"
[[listeners]]
path = "/dup"
[listeners.session]
max_connections_per_tenant = 99999999999
"#,
    );
    let lines: Vec<&str> = stderr.lines().collect();
    for want in [
        "admin.bind: must differ from server.bind (admin traffic has its own port)",
        "listeners[0].path: must not start with /debug/ws",
        "listeners[0].max_message_bytes: must be between 1 and 16777216, got 0",
        "listeners[2].path: duplicates listeners[1].path \"/dup\"",
        "listeners[2].session.max_connections_per_tenant: must be between 0 and 10000000, got 99999999999",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    assert_eq!(lines.len(), 5, "{stderr}");
}

#[test]
fn parse_errors_name_the_key() {
    for (text, want) in [
        ("[server]\nbindd = \"x\"\n", "server.bindd: unknown key"),
        (
            "[[listeners]]\npath = \"/a\"\nscope = \"planet\"\n",
            "listeners[0].scope: ",
        ),
        (
            "[[listeners]]\npath = \"/a\"\n[listeners.auth]\nmode = \"basic\"\n",
            "listeners[0].auth.mode: ",
        ),
        ("[limits]\nroom_queue = \"many\"\n", "limits.room_queue: "),
        ("[bogus]\nx = 1\n", "bogus: unknown key"),
        ("not toml at all [", "config: "),
    ] {
        let stderr = check_config_refuses("parse", text);
        assert!(
            stderr.starts_with(want),
            "{text:?}: want prefix {want:?}, got {stderr:?}"
        );
    }
}

/// Keys that cannot be read and keys that fail validation are all reported
/// in one run, one line each; a defaulted key adds no line of its own.
#[test]
fn unreadable_and_invalid_keys_are_all_reported_at_once() {
    let stderr = check_config_refuses(
        "mixed",
        r#"
[server]
workers = "many"
bogus = 1
[[listeners]]
path = "/debug/ws/x"
mode = "loud"
scope = "planet"
[listeners.auth]
mode = "basic"
[[listeners]]
path = "nope"
[listeners.session]
on_rate_limit = "explode"
"#,
    );
    let lines: Vec<&str> = stderr.lines().collect();
    for want in [
        "server.workers: invalid type: string \"many\", expected an integer",
        "server.bogus: unknown key",
        "listeners[0].mode: unknown value \"loud\", expected one of payload, message",
        "listeners[0].scope: unknown value \"planet\", expected one of session, tenant, global",
        "listeners[0].auth.mode: unknown value \"basic\", expected one of none, hs256, jwks",
        "listeners[1].session.on_rate_limit: unknown value \"explode\", expected one of drop, close",
        "listeners[0].path: must not start with /debug/ws",
        "listeners[1].path: must start with /",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in:\n{stderr}"
        );
    }
    assert_eq!(lines.len(), 8, "{stderr}");
}

/// `check-config` shows where secrets come from, never a secret: credentials
/// in URLs (from the file or the environment) are redacted, and the values of
/// the variables it names are not read into the output.
#[test]
fn check_config_redacts_every_secret() {
    let cfg = temp_config(
        "redact",
        r#"
[[listeners]]
path = "/ws/jwks"
[listeners.auth]
mode = "jwks"
jwks_uri = "https://svc:jwks-pass@idp.example/jwks?api_key=jwks-key"
[cluster]
backend = "redis"
[proxy]
https_proxy = "http://alice:proxy-pass@proxy.example:3128"
"#,
    );
    let out = wsplus_bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .env(
            "WSPLUS__CLUSTER__REDIS_URL",
            "redis://:redis-pass@127.0.0.1:6379/",
        )
        .env("WSPLUS_JWT_SECRET", "jwt-secret-value")
        .env("WSPLUS_ADMIN_TOKEN", "admin-token-value")
        .output()
        .unwrap();
    let stdout = succeeded(out);
    for secret in [
        "jwks-pass",
        "jwks-key",
        "redis-pass",
        "proxy-pass",
        "jwt-secret-value",
        "admin-token-value",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    for shown in [
        "redis_url = \"redis://[redacted]@127.0.0.1:6379/\"",
        "jwks_uri = \"https://[redacted]@idp.example/jwks?[redacted]\"",
        "https_proxy = \"http://alice:[redacted]@proxy.example:3128\"",
        "token_env = \"WSPLUS_ADMIN_TOKEN\"",
    ] {
        assert!(stdout.contains(shown), "missing {shown:?} in:\n{stdout}");
    }
}

/// Array elements are addressed by index: `WSPLUS__LISTENERS__0__PATH`.
#[test]
fn env_overrides_reach_listener_keys_by_index() {
    let out = check_default(&[
        ("WSPLUS__LISTENERS__0__PATH", "/ws/from-env"),
        ("WSPLUS__LISTENERS__0__SCOPE", "global"),
        ("WSPLUS__LISTENERS__0__AUTH__LEEWAY_S", "7"),
        (
            "WSPLUS__LISTENERS__0__ALLOWED_ORIGINS__0",
            "https://a.example",
        ),
    ]);
    let stdout = succeeded(out);
    for want in [
        "path = \"/ws/from-env\"",
        "scope = \"global\"",
        "leeway_s = 7",
        "allowed_origins = [\"https://a.example\"]",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    // A second listener can be added from the environment alone.
    let out = check_default(&[("WSPLUS__LISTENERS__1__PATH", "/debug/ws/nope")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "listeners[1].path: must not start with /debug/ws\n"
    );
}

#[test]
fn env_overrides_apply_and_bad_ones_are_reported() {
    let out = check_default(&[("WSPLUS__SERVER__BIND", "127.0.0.1:18080")]);
    assert!(succeeded(out).contains("bind = \"127.0.0.1:18080\""));
    let out = check_default(&[("WSPLUS__SERVER__WORKERS", "lots")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("server.workers: "));
}

#[test]
fn missing_config_file_is_an_error() {
    let out = wsplus_bin()
        .args(["serve", "--config", "/nonexistent/wsplus.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/wsplus.toml"));
}

/// Runs `serve` on `config` (given the server port) while this test holds
/// that port; expects exit code 1 and returns stderr.
fn serve_with_port_taken(name: &str, config: impl FnOnce(u16) -> String) -> String {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let cfg = temp_config(name, &config(port));
    serve_refuses(&cfg)
}

/// Runs `serve --config cfg`, which must exit with 1; returns stderr.
fn serve_refuses(cfg: &std::path::Path) -> String {
    let out = wsplus_bin()
        .args(["serve", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A server that bound its port before finding a problem would report the
/// port in use instead of the problem.
fn assert_refused_before_binding(stderr: &str, problem: &[&str]) {
    assert!(!stderr.contains("cannot bind"), "bound first: {stderr}");
    for p in problem {
        assert!(stderr.contains(p), "{p:?} not in {stderr}");
    }
}

#[test]
fn serve_refuses_a_bad_config_before_binding() {
    let stderr = serve_with_port_taken("serve-bad", |port| {
        format!("[server]\nbind = \"127.0.0.1:{port}\"\n[[listeners]]\npath = \"/admin/x\"\n")
    });
    assert_refused_before_binding(&stderr, &["listeners[0].path: must not start with /admin"]);
}

/// `serve` is the default command, so `wsplus --config FILE` serves FILE.
#[test]
fn config_without_a_subcommand_is_served() {
    let cfg = temp_config(
        "toplevel",
        "[[listeners]]\npath = \"/admin/x\"\n[[listeners]]\npath = \"nope\"\n",
    );
    let out = wsplus_bin().arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "listeners[0].path: must not start with /admin\nlisteners[1].path: must start with /\n"
    );
    // A subcommand's flags stay its own.
    let out = wsplus_bin()
        .args(["--config", "x.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A listener config on the server `port` with the given `[listeners.auth]` lines.
fn one_listener(port: u16, auth: &str) -> String {
    format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\n[admin]\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\npath = \"/ws\"\n[listeners.auth]\n{auth}\n\
         [listeners.tenant]\nfrom = \"static\"\nstatic_id = \"t\"\n"
    )
}

#[test]
fn serve_refuses_a_missing_secret_before_binding() {
    let stderr = serve_with_port_taken("serve-nosecret", |port| {
        one_listener(
            port,
            "mode = \"hs256\"\nsecret_env = \"WSPLUS_CLI_TEST_UNSET_SECRET\"",
        )
    });
    assert_refused_before_binding(
        &stderr,
        &["listeners[0].auth", "WSPLUS_CLI_TEST_UNSET_SECRET"],
    );
}

#[tokio::test]
async fn sigterm_closes_sessions_with_1001_and_exits_0() {
    signal_closes_sessions_with_1001_and_exits_0("TERM").await;
}

#[tokio::test]
async fn sigint_closes_sessions_with_1001_and_exits_0() {
    signal_closes_sessions_with_1001_and_exits_0("INT").await;
}

/// docs/operations.md#running-it: on `signal` the server stops accepting,
/// closes every session with 1001 and exits 0 within `shutdown_grace_s`.
async fn signal_closes_sessions_with_1001_and_exits_0(signal: &str) {
    let (port, admin) = (free_port(), free_port());
    let cfg = temp_config(
        &format!("serve-{signal}"),
        &format!(
            r#"
[server]
bind = "127.0.0.1:{port}"
shutdown_grace_s = 5
[admin]
bind = "127.0.0.1:{admin}"
[[listeners]]
path = "/ws/events"
[listeners.auth]
mode = "none"
[listeners.tenant]
from = "static"
static_id = "public"
"#
        ),
    );
    let mut child = wsplus_bin()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("WSPLUS_ADMIN_TOKEN", "x")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the "listening" log line rather than sleeping.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx.recv_timeout(WAIT).expect("server logs that it listens");
        if line.contains("listening on") {
            break;
        }
    }
    let mut a = Ws::connect(&format!("ws://127.0.0.1:{port}/ws/events")).await;
    a.send_text("hi").await;
    assert_eq!(a.recv_text().await, "hi");

    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(a.recv_close().await.0, 1001);
    // No new session is accepted while shutting down.
    let url = format!("ws://127.0.0.1:{port}/ws/events");
    let late = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .expect("a late handshake is answered or refused at once");
    assert!(late.is_err(), "a session was accepted after SIGINT/SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not exit within shutdown_grace_s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    let logs: Vec<String> = rx.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("shutdown complete")),
        "{logs:?}"
    );
}
