//! Secrets through the real binary: `wsplus token` output verifies with the
//! server; a configuration of one's own with its secret missing refuses to
//! start; `secret_file` works. (The development default is in cli_serve.rs.)

use common::auth::*;
use common::*;
use serde_json::json;
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

#[tokio::test]
async fn wsplus_token_output_verifies_with_the_server() {
    let mut s = base_settings();
    let mut l = listener("/ws/strict");
    l.mode = Mode::Message;
    l.auth.issuer = Some("https://issuer.test/".into());
    l.auth.audience = Some("wsplus".into());
    l.tenant.claim = "org".into();
    s.listeners.push(l);
    let app = TestApp::spawn(s);

    let out = token_cmd(
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let token = lines[0];
    let c = claims_of(token);
    assert_eq!(c["org"], "acme");
    assert_eq!(c["sub"], "bob");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET));

    let mut ws = Ws::connect(&app.ws_url("/ws/strict", Some(token))).await;
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
