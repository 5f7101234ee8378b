//! What the server logs about a URL it was configured with is redacted the
//! same way as `check-config` and the admin API show it: a JWKS endpoint that
//! fails logs its URI without credentials and without the query (which may
//! carry an API key), on every retry.

use common::auth::*;
use common::*;

#[tokio::test]
async fn a_failing_jwks_fetch_logs_its_uri_without_credentials_or_query() {
    let fake = FakeJwks::start(Answer::Status(500));
    let (port, admin) = (free_port(), free_port());
    let uri = format!(
        "http://svc:jwks-pass@{}/.well-known/jwks.json?api_key=k3y-in-the-query",
        fake.addr
    );
    let cfg = temp_config(
        "jwks-log-redaction",
        &format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\n[admin]\nbind = \"127.0.0.1:{admin}\"\n\
             [[listeners]]\npath = \"/ws/jwks\"\n[listeners.auth]\nmode = \"jwks\"\n\
             jwks_uri = \"{uri}\"\n"
        ),
    );
    let mut cmd = wsplus_bin();
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env("WSPLUS_ADMIN_TOKEN", "admin-0123456789");
    let mut server = Server::spawn(cmd);
    let shown = format!(
        "uri=http://[redacted]@{}/.well-known/jwks.json?[redacted] ",
        fake.addr
    );
    // The start fetch and its first retry: the same redacted line each time.
    for attempt in ["first", "second"] {
        server.wait_log(&format!("for the {attempt} failed fetch"), |l| {
            l.contains("jwks fetch failed") && l.contains(&shown)
        });
    }
    let (log, stdout) = server.stop();
    for line in log.iter().chain(&stdout) {
        assert!(
            !line.contains("k3y-in-the-query") && !line.contains("jwks-pass"),
            "a credential in the log: {line}"
        );
    }
}
