//! What `wsplus serve` tells its operator, through the real binary: why a
//! handshake was refused (at info, never with the token) and which port could
//! not be bound.

use common::auth::*;
use common::*;
use serde_json::json;
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
