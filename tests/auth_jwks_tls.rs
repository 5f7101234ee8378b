//! JWKS over https: a certificate the system does not trust is refused (fail
//! closed), one issued by a CA the system trusts (`SSL_CERT_FILE`) works.

use common::auth::*;
use common::*;
use wsplus::settings::AuthMode;

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_the_listener_fails_closed() {
    let fake = FakeJwks::start_tls(FakeJwks::keys(vec![rsa_keys()[0].jwk("rsa-a")]));
    let mut s = base_settings();
    let mut l = listener("/ws/jwks");
    l.auth.mode = AuthMode::Jwks;
    l.auth.secret_env = None;
    l.auth.jwks_uri = Some(fake.uri());
    s.listeners.push(l);
    let app = TestApp::spawn(s);

    // The server connects (twice: the start fetch and its first retry) but
    // never completes a request: the TLS handshake fails.
    let fake_ref = &fake;
    eventually("two TLS attempts", async || fake_ref.connections() >= 2).await;
    assert_eq!(fake.requests(), 0);
    let admin = app.admin;
    let (status, _) = http_get(admin, "/readyz").await;
    assert_eq!(status, 503);
    let token = rsa_keys()[0].token("rsa-a", &claims("acme"));
    let r = Ws::try_connect(&app.ws_url("/ws/jwks", Some(&token)))
        .await
        .err()
        .expect("refused");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("unknown_key"), "{r:?}");
}

#[tokio::test]
async fn a_trusted_https_endpoint_serves_keys() {
    let fake = FakeJwks::start_tls(FakeJwks::keys(vec![ec_keys()[0].jwk("ec-a")]));
    let dir = temp_dir("jwks-tls");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, fake.ca_pem.as_deref().unwrap()).unwrap();
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\n[admin]\nbind = \"127.0.0.1:{admin}\"\n\
             [[listeners]]\npath = \"/ws/jwks\"\n[listeners.auth]\nmode = \"jwks\"\n\
             jwks_uri = \"{}\"\n",
            fake.uri()
        ),
    )
    .unwrap();
    let mut cmd = wsplus_bin();
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env("SSL_CERT_FILE", &ca)
        .env("WSPLUS_ADMIN_TOKEN", "admin-0123456789");
    let mut server = Server::spawn(cmd);
    server.wait_log("jwks loaded", |l| l.contains("jwks loaded"));
    assert_eq!(fake.requests(), 1);
    let admin_addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let (status, _) = http_get(admin_addr, "/readyz").await;
    assert_eq!(status, 200);

    let token = ec_keys()[0].token("ec-a", &claims("acme"));
    let mut ws = Ws::connect(&format!("ws://127.0.0.1:{port}/ws/jwks?token={token}")).await;
    ws.send_text("over https keys").await;
    assert_eq!(ws.recv_text().await, "over https keys");
    ws.close().await;
    let (log, _) = server.stop();
    assert!(log.iter().all(|l| !l.contains(&token)));
}
