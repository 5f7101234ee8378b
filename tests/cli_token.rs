//! Secrets through the real binary: `wsplus token` output verifies with the
//! server; a configuration of one's own with its secret missing refuses to
//! start; `secret_file` works. (The development default is in cli_serve.rs.)

use common::auth::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::Mode;

/// Runs `wsplus token` with `args` and the secret variable `vars`.
fn token_cmd(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let mut c = wsplus_bin();
    c.arg("token").args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A server with `/ws/events` and `/ws/strict` (message mode, issuer,
/// audience, tenant claim `org`), both signed with [`SECRET`].
fn strict_app() -> TestApp {
    let mut s = base_settings();
    let mut l = listener("/ws/strict");
    l.mode = Mode::Message;
    l.auth.issuer = Some("https://issuer.test/".into());
    l.auth.audience = Some("wsplus".into());
    l.tenant.claim = "org".into();
    s.listeners.push(l);
    TestApp::spawn(s)
}

/// The token printed by a `wsplus token` run that must succeed: one line,
/// and the secret nowhere on stderr.
fn minted(args: &[&str], vars: &[(&str, &str)]) -> String {
    let out = token_cmd(args, vars);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    for (_, secret) in vars {
        assert!(!stderr.contains(secret), "a secret on stderr: {stderr}");
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    stdout.trim().to_owned()
}

#[tokio::test]
async fn wsplus_token_output_verifies_with_the_server() {
    let app = strict_app();

    let token = minted(
        &[
            "--secret-env",
            "MY_SECRET",
            "--tenant",
            "acme",
            "--sub",
            "bob",
            "--ttl",
            "60",
            "--iss",
            "https://issuer.test/",
            "--aud",
            "wsplus",
            "--claim",
            "org",
        ],
        &[("MY_SECRET", SECRET)],
    );
    let c = claims_of(&token);
    assert_eq!(c["org"], "acme");
    assert_eq!(c["sub"], "bob");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);

    let mut ws = Ws::connect(&app.ws_url("/ws/strict", Some(&token))).await;
    ws.send_text("{}").await;
    let got = ws.recv_json().await;
    assert_eq!(got["_session"]["tenantId"], "acme");
    assert_eq!(got["_session"]["subject"], "bob");
    ws.close().await;

    // Default claim and lifetime work on a default listener.
    let out = token_cmd(
        &["--secret-env", "MY_SECRET", "--tenant", "t1"],
        &[("MY_SECRET", SECRET)],
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let c = claims_of(&token);
    assert_eq!(c["tenant_id"], "t1");
    assert!(c.get("sub").is_none());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    Ws::connect(&app.ws_url("/ws/events", Some(&token)))
        .await
        .close()
        .await;
    // Signed with another secret: refused by the server.
    let out = token_cmd(
        &["--secret-env", "MY_SECRET", "--tenant", "t1"],
        &[("MY_SECRET", "not-the-server-secret-0123456789")],
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = Ws::try_connect(&app.ws_url("/ws/events", Some(&token)))
        .await
        .err()
        .expect("refused");
    assert!(r.body.contains("invalid_signature"), "{r:?}");
}

#[test]
fn wsplus_token_refuses_bad_input_naming_it() {
    for (args, vars, want) in [
        (
            vec!["--secret-env", "NOT_SET_ANYWHERE", "--tenant", "a"],
            vec![],
            "NOT_SET_ANYWHERE",
        ),
        (
            vec!["--secret-env", "EMPTY_SECRET", "--tenant", "a"],
            vec![("EMPTY_SECRET", "")],
            "EMPTY_SECRET",
        ),
        (
            vec!["--secret-env", "S", "--tenant", ""],
            vec![("S", "x")],
            "--tenant",
        ),
        (vec!["--tenant", "a"], vec![], "--secret-env"),
    ] {
        let out = token_cmd(&args, &vars);
        // 1 for our checks, 2 for clap's (a missing argument).
        assert!(matches!(out.status.code(), Some(1 | 2)), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn a_configuration_of_ones_own_with_no_secret_refuses_to_start() {
    let dir = temp_dir("nosecret");
    let (port, admin) = (free_port(), free_port());
    let missing_file = dir.join("no-such-secret");
    for (auth, want) in [
        (
            "secret_env = \"WSPLUS_TEST_UNSET_SECRET\"".to_owned(),
            "listeners[0].auth: environment variable WSPLUS_TEST_UNSET_SECRET is unset or empty",
        ),
        (
            "secret_env = \"WSPLUS_TEST_EMPTY_SECRET\"".to_owned(),
            "listeners[0].auth: environment variable WSPLUS_TEST_EMPTY_SECRET is unset or empty",
        ),
        (
            format!("secret_file = {:?}", missing_file.display().to_string()),
            "is unreadable or empty",
        ),
    ] {
        let cfg = dir.join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nbind = \"127.0.0.1:{port}\"\n[admin]\nbind = \"127.0.0.1:{admin}\"\n\
                 [[listeners]]\npath = \"/ws/events\"\n[listeners.auth]\nmode = \"hs256\"\n{auth}\n"
            ),
        )
        .unwrap();
        let out = wsplus_bin()
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("WSPLUS_TEST_EMPTY_SECRET", "")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{auth}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{auth}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing printed: {:?}", out.stdout);
    }
    // The default configuration with the secret set is not development mode.
    let out_dir = temp_dir("withsecret");
    let mut cmd = wsplus_bin();
    cmd.arg("serve")
        .current_dir(out_dir)
        .env("WSPLUS_JWT_SECRET", "a-real-secret-0123456789-0123456789")
        .env("WSPLUS_ADMIN_TOKEN", "admin-0123456789")
        .env("WSPLUS__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("WSPLUS__ADMIN__BIND", format!("127.0.0.1:{admin}"));
    let mut server = Server::spawn(cmd);
    server.wait_log("listening", |l| l.contains("listening on"));
    let (log, stdout) = server.stop();
    assert!(stdout.is_empty(), "{stdout:?}");
    assert!(log.iter().all(|l| !l.contains("DEVELOPMENT MODE")));
    assert!(log.iter().all(|l| !l.contains("RFC 7518")), "{log:?}");

    // A short secret works, with a warning that never shows it.
    let mut cmd = wsplus_bin();
    cmd.arg("serve")
        .current_dir(temp_dir("shortsecret"))
        .env("WSPLUS_JWT_SECRET", "hunter2")
        .env("WSPLUS_ADMIN_TOKEN", "admin-0123456789")
        .env("WSPLUS__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("WSPLUS__ADMIN__BIND", format!("127.0.0.1:{admin}"));
    let mut server = Server::spawn(cmd);
    server.wait_log("the short-secret warning", |l| {
        l.contains("listeners[0].auth: the HS256 secret is 7 bytes") && l.contains("RFC 7518")
    });
    server.wait_log("listening", |l| l.contains("listening on"));
    let (log, _) = server.stop();
    assert!(log.iter().all(|l| !l.contains("hunter2")), "{log:?}");
}

#[tokio::test]
async fn secret_file_works() {
    let dir = temp_dir("secretfile");
    let path = dir.join("jwt-secret");
    let file_secret = "file-secret-0123456789-0123456789";
    std::fs::write(&path, format!("{file_secret}\n")).unwrap();
    let mut s = base_settings();
    let mut l = listener("/ws/file");
    l.auth.secret_env = None;
    l.auth.secret_file = Some(path.display().to_string());
    s.listeners.push(l);
    let app = TestApp::spawn(s);

    let from_file = sign(
        &json!({"alg": "HS256"}),
        &claims("acme"),
        &hmac(file_secret.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    );
    Ws::connect(&app.ws_url("/ws/file", Some(&from_file)))
        .await
        .close()
        .await;
    // The env secret of the other listener does not open this one, nor the
    // file's secret with its newline.
    for wrong in [
        token("acme", None, 60),
        sign(
            &json!({"alg": "HS256"}),
            &claims("acme"),
            &hmac(format!("{file_secret}\n").as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        ),
    ] {
        let r = Ws::try_connect(&app.ws_url("/ws/file", Some(&wrong)))
            .await
            .err()
            .expect("refused");
        assert!(r.body.contains("invalid_signature"), "{r:?}");
    }
}

/// A configuration file with a strict listener (`org` claim, issuer,
/// audience, secret in `MY_SECRET`) after a default one, and a jwks listener.
fn strict_config(name: &str, jwks_uri: &str) -> std::path::PathBuf {
    temp_config(
        name,
        &format!(
            r#"
[[listeners]]
path = "/ws/events"
[[listeners]]
path = "/ws/strict"
mode = "message"
[listeners.auth]
secret_env = "MY_SECRET"
issuer = "https://issuer.test/"
audience = "wsplus"
[listeners.tenant]
claim = "org"
[[listeners]]
path = "/ws/jwks"
[listeners.auth]
mode = "jwks"
jwks_uri = "{jwks_uri}"
"#
        ),
    )
}

/// `--config` and `--listener`: the listener's claim, issuer, audience and
/// secret are used without naming them; flags still override.
#[tokio::test]
async fn wsplus_token_takes_claim_issuer_audience_and_secret_from_the_listener() {
    let app = strict_app();
    let cfg = strict_config("token-listener", "http://127.0.0.1:9/jwks");
    let cfg = cfg.to_str().unwrap();

    let token = minted(
        &[
            "--config",
            cfg,
            "--listener",
            "/ws/strict",
            "--tenant",
            "acme",
            "--sub",
            "bob",
        ],
        &[("MY_SECRET", SECRET)],
    );
    let c = claims_of(&token);
    assert_eq!(c["org"], "acme");
    assert_eq!(c["iss"], "https://issuer.test/");
    assert_eq!(c["aud"], "wsplus");
    assert!(c.get("tenant_id").is_none(), "{c}");
    let mut ws = Ws::connect(&app.ws_url("/ws/strict", Some(&token))).await;
    ws.send_text("{}").await;
    assert_eq!(ws.recv_json().await["_session"]["tenantId"], "acme");
    ws.close().await;

    // A flag wins over the listener's setting.
    let out = token_cmd(
        &[
            "--config",
            cfg,
            "--listener",
            "/ws/strict",
            "--tenant",
            "acme",
            "--aud",
            "other",
        ],
        &[("MY_SECRET", SECRET)],
    );
    assert_eq!(
        claims_of(String::from_utf8(out.stdout).unwrap().trim())["aud"],
        "other"
    );

    // Without --listener: the first listener, whose secret is WSPLUS_JWT_SECRET.
    let out = token_cmd(
        &["--config", cfg, "--tenant", "t1"],
        &[("WSPLUS_JWT_SECRET", SECRET)],
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(claims_of(&token)["tenant_id"], "t1");
    Ws::connect(&app.ws_url("/ws/events", Some(&token)))
        .await
        .close()
        .await;
}

#[test]
fn wsplus_token_refuses_a_bad_ttl_listener_or_secret_and_warns_on_a_short_secret() {
    let cfg = strict_config("token-bad", "http://127.0.0.1:9/jwks");
    let cfg = cfg.to_str().unwrap();
    for (args, vars, want) in [
        (vec!["--secret-env", "S", "--tenant", "a", "--ttl", "0"], vec![("S", SECRET)], "--ttl: must be a positive number of seconds, got 0"),
        (vec!["--secret-env", "S", "--tenant", "a", "--ttl", "-5"], vec![("S", SECRET)], "--ttl: must be a positive number of seconds, got -5"),
        (vec!["--secret-env", "S", "--tenant", "a", "--ttl=-1"], vec![("S", SECRET)], "--ttl: must be a positive number of seconds, got -1"),
        (vec!["--config", cfg, "--listener", "/nope", "--tenant", "a"], vec![], "--listener: no listener /nope in the configuration (listeners: /ws/events, /ws/strict, /ws/jwks)"),
        (vec!["--config", cfg, "--listener", "/ws/strict", "--tenant", "a"], vec![], "listeners[1].auth: environment variable MY_SECRET is unset or empty (or name another variable with --secret-env)"),
        (vec!["--config", cfg, "--listener", "/ws/jwks", "--tenant", "a"], vec![], "listeners[2].auth.mode: the listener /ws/jwks does not use hs256"),
    ] {
        let out = token_cmd(&args, &vars);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // A short secret works, with serve's warning, which never shows it.
    let out = token_cmd(&["--secret-env", "S", "--tenant", "a"], &[("S", "hunter2")]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("--secret-env S: the HS256 secret is 7 bytes; RFC 7518 asks for at least 32"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // A long one draws no warning.
    let out = token_cmd(&["--secret-env", "S", "--tenant", "a"], &[("S", SECRET)]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `wsplus verify-token` with `args`; (exit code, stdout lines, stderr).
fn verify_cmd(args: &[&str], vars: &[(&str, &str)]) -> (i32, Vec<String>, String) {
    let mut c = wsplus_bin();
    c.arg("verify-token").args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        out.status.code().unwrap(),
        stdout.lines().map(str::to_owned).collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The verdict line for `token` on the strict listener (and exit code).
fn strict_verdict(cfg: &str, token: &str) -> (i32, String) {
    let (code, lines, stderr) = verify_cmd(
        &["--config", cfg, "--listener", "/ws/strict", token],
        &[("MY_SECRET", SECRET)],
    );
    assert_eq!(lines.len(), 3, "{lines:?} {stderr}");
    (code, lines[2].clone())
}

#[test]
fn verify_token_prints_header_claims_and_the_listeners_verdict() {
    let cfg = strict_config("verify", "http://127.0.0.1:9/jwks");
    let cfg = cfg.to_str().unwrap();
    let key = hmac(SECRET.as_bytes());
    let hs = |claims: &Value| {
        sign(
            &json!({"alg": "HS256"}),
            claims,
            &key,
            jsonwebtoken::Algorithm::HS256,
        )
    };
    let good = with(
        claims("acme"),
        json!({"tenant_id": null, "org": "acme", "iss": "https://issuer.test/", "aud": "wsplus"}),
    );

    let (code, lines, _) = verify_cmd(
        &["--config", cfg, "--listener", "/ws/strict", &hs(&good)],
        &[("MY_SECRET", SECRET)],
    );
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0], r#"header: {"alg":"HS256"}"#);
    let shown: Value = serde_json::from_str(lines[1].strip_prefix("claims: ").unwrap()).unwrap();
    assert_eq!(shown, good);
    assert_eq!(lines[2], "ok: tenant acme, expires in 59m");

    for (claims, want) in [
        (
            with(good.clone(), json!({"org": null})),
            "invalid_tenant: claim \"org\" missing (token has: aud, exp, iat, iss, sub)",
        ),
        (
            with(good.clone(), json!({"org": 7})),
            "invalid_tenant: claim \"org\" must be a string, got 7",
        ),
        (
            with(good.clone(), json!({"exp": now() - 600})),
            "expired: exp was 10m ago (leeway 0s)",
        ),
        (
            with(good.clone(), json!({"iss": "https://evil.test/"})),
            "invalid_issuer: iss is \"https://evil.test/\", the listener requires \"https://issuer.test/\"",
        ),
        (
            with(good.clone(), json!({"aud": null})),
            "invalid_audience: aud is missing, the listener requires \"wsplus\" (a string, or an array of strings containing it)",
        ),
    ] {
        let (code, verdict) = strict_verdict(cfg, &hs(&claims));
        assert_eq!((code, verdict.as_str()), (1, want));
    }
    let forged = sign(
        &json!({"alg": "HS256"}),
        &good,
        &hmac(b"not-the-secret-0123456789-0123456789"),
        jsonwebtoken::Algorithm::HS256,
    );
    let (code, verdict) = strict_verdict(cfg, &forged);
    assert_eq!(code, 1);
    assert_eq!(
        verdict,
        "invalid_signature: the signature does not match the listener's secret (variable MY_SECRET)"
    );
    let (code, lines, _) = verify_cmd(
        &["--config", cfg, "--listener", "/ws/strict", "not.a.jwt"],
        &[("MY_SECRET", SECRET)],
    );
    assert_eq!(code, 1);
    assert_eq!(lines[0], "header: (not base64url-encoded JSON)");
    assert!(lines[2].starts_with("malformed: not a JWT"), "{lines:?}");
    // Never the secret; a missing secret is an error naming its variable.
    let (code, lines, stderr) = verify_cmd(
        &["--config", cfg, "--listener", "/ws/strict", &hs(&good)],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("listeners[1].auth: environment variable MY_SECRET is unset or empty"),
        "{stderr}"
    );
    assert_eq!(lines.len(), 2, "no verdict without a secret: {lines:?}");
}

/// A jwks listener fetches its keys to judge the token.
#[test]
fn verify_token_fetches_the_keys_of_a_jwks_listener() {
    let rsa = &rsa_keys()[0];
    let fake = FakeJwks::start(FakeJwks::keys(vec![rsa.jwk("rsa-a")]));
    let cfg = strict_config("verify-jwks", &fake.uri());
    let cfg = cfg.to_str().unwrap();
    let good = rsa.token("rsa-a", &claims("acme"));
    let (code, lines, stderr) =
        verify_cmd(&["--config", cfg, "--listener", "/ws/jwks", &good], &[]);
    assert_eq!(
        (code, lines.get(2).map(String::as_str)),
        (0, Some("ok: tenant acme, expires in 59m")),
        "{lines:?} {stderr}"
    );
    assert!(fake.requests() >= 1);
    let unknown = rsa.token("rsa-z", &claims("acme"));
    let (code, lines, _) = verify_cmd(&["--config", cfg, "--listener", "/ws/jwks", &unknown], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        lines[2],
        "unknown_key: no key with kid \"rsa-z\" in the listener's JWKS"
    );
}
