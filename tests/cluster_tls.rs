//! The cluster over a Redis that speaks TLS only and knows one ACL user (a
//! real `redis-server` with a certificate from a CA made by the test): nodes
//! that trust the CA and hold the password deliver to each other; a wrong
//! password or an untrusted certificate stops the node with a clear error;
//! the password never appears in the logs (at debug level) or in
//! `check-config`, whether it comes from a variable or from the URL.

use std::collections::HashMap;
use std::net::SocketAddr;

use common::auth::Server;
use common::client::{wsplus, Cli};
use common::cluster::*;
use common::*;
use wsplus::settings::{Settings, TenantStore};

/// The environment of a node reading the password from [`REDIS_PASSWORD_ENV`].
fn password_env(password: &str) -> HashMap<String, String> {
    [(REDIS_PASSWORD_ENV.to_owned(), password.to_owned())].into()
}

/// `settings` on fixed free ports, written to a config file for the binary.
fn config_file(name: &str, mut settings: Settings) -> (std::path::PathBuf, SocketAddr) {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    settings.server.bind = http.to_string();
    settings.admin.bind = format!("127.0.0.1:{}", free_port());
    let path = temp_config(name, &toml::to_string(&settings).unwrap());
    (path, http)
}

/// `wsplus <args> --config <config>` with the test secrets and `password`.
fn wsplus_with(args: &[&str], config: &std::path::Path, password: &str) -> std::process::Command {
    let mut cmd = wsplus();
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("TEST_JWT_SECRET", SECRET)
        .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .env(REDIS_PASSWORD_ENV, password);
    cmd
}

#[tokio::test]
async fn two_nodes_over_rediss_with_an_acl_user_deliver_to_each_other() {
    let redis = RedisServer::start_secure();
    let nodes: Vec<TestApp> = ["a", "b"]
        .into_iter()
        .map(|n| {
            let mut s = secure_node_settings(&redis, n);
            // The tenant store takes the same way to Redis as the backplane.
            s.tenants.store = TenantStore::Redis;
            TestApp::spawn_with_env(s, password_env(REDIS_PASSWORD))
        })
        .collect();
    wait_cluster_state(&[nodes[0].admin, nodes[1].admin], "connected").await;

    let mut on_a = nodes[0].connect("/ws/events", "acme").await;
    let mut on_b = nodes[1].connect("/ws/events", "acme").await;
    on_a.send_text("from a").await;
    assert_eq!(on_b.recv_text().await, "from a");
    assert_eq!(on_a.recv_text().await, "from a");
    on_b.send_text("from b").await;
    assert_eq!(on_a.recv_text().await, "from b");
    assert_eq!(on_b.recv_text().await, "from b");

    // Both nodes are known to Redis through the ACL user (the default user is
    // off, and the server has no plain-text port).
    let nodes_known: Vec<String> = redis::cmd("ZRANGE")
        .arg("wsplus:nodes")
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(nodes_known.len(), 2, "{nodes_known:?}");
}

#[test]
fn a_wrong_password_or_an_untrusted_certificate_stops_the_node_with_a_clear_error() {
    let redis = RedisServer::start_secure();
    let wrong = "not-the-redis-pw-4711";
    let mut untrusted = secure_node_settings(&redis, "u");
    untrusted.cluster.tls_ca_file = None;
    // A wrong password inside the URL: the error shows the URL redacted.
    let mut in_url = secure_node_settings(&redis, "x");
    in_url.cluster.password_env = None;
    in_url.cluster.username = None;
    let with_credentials = format!("rediss://{REDIS_USER}:{wrong}@");
    in_url.cluster.redis_url = Some(redis.url().replace("rediss://", &with_credentials));
    let redacted = redis.url().replace("rediss://", "rediss://[redacted]@");
    let bad_password = "Password authentication failed";
    let cases = [
        (
            secure_node_settings(&redis, "w"),
            wrong,
            bad_password,
            redis.url(),
        ),
        (
            untrusted,
            REDIS_PASSWORD,
            "invalid peer certificate: UnknownIssuer",
            redis.url(),
        ),
        (in_url, wrong, bad_password, redacted),
    ];
    for (i, (settings, password, why, url)) in cases.into_iter().enumerate() {
        let (config, _) = config_file(&format!("redis-refused-{i}"), settings);
        let mut cmd = wsplus_with(&["serve"], &config, password);
        cmd.env("RUST_LOG", "debug");
        let mut node = Cli::spawn(cmd);
        let status = node.wait();
        let stderr = node.stderr();
        assert!(!status.success(), "case {i} started: {stderr}");
        let shown = format!("cluster: Redis at {url} refused this node: ");
        assert!(
            stderr.contains(&shown) && stderr.contains(why),
            "case {i}: no clear error in:\n{stderr}"
        );
        assert!(
            !stderr.contains(password),
            "case {i}: the password in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn the_password_never_appears_in_debug_logs_or_check_config() {
    let redis = RedisServer::start_secure();
    let (config, http) = config_file("redis-pw-env", secure_node_settings(&redis, "p"));
    let mut cmd = wsplus_with(&["serve"], &config, REDIS_PASSWORD);
    cmd.env("RUST_LOG", "debug");
    let mut server = Server::spawn(cmd);
    server.wait_log("connected", |l| {
        l.contains("cluster: connected to Redis as node p")
    });
    let url = format!("ws://{http}/ws/events?token={}", token("acme", None, 60));
    let mut ws = Ws::connect(&url).await;
    ws.send_text("hello").await;
    assert_eq!(ws.recv_text().await, "hello");
    ws.close().await;
    let (log, stdout) = server.stop();
    assert!(log.len() > 10, "debug logging was on: {log:#?}");
    for line in log.iter().chain(&stdout) {
        assert!(!line.contains(REDIS_PASSWORD), "the password in: {line}");
    }

    // A password inside the URL works and is shown redacted by check-config.
    let mut s = secure_node_settings(&redis, "q");
    s.cluster.password_env = None;
    s.cluster.username = None;
    s.cluster.redis_url = Some(redis.url().replace(
        "rediss://",
        &format!("rediss://{REDIS_USER}:{REDIS_PASSWORD}@"),
    ));
    let (config, _) = config_file("redis-pw-url", s);
    let out = wsplus_with(&["check-config"], &config, "")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let shown = redis.url().replace("rediss://", "rediss://[redacted]@");
    assert!(
        stdout.contains(&format!("redis_url = \"{shown}\"")),
        "{stdout}"
    );
    assert!(!stdout.contains(REDIS_PASSWORD) && !stderr.contains(REDIS_PASSWORD));
}

#[test]
fn check_config_reports_a_missing_password_variable_and_ca_file() {
    let redis = RedisServer::start_secure();
    let mut s = secure_node_settings(&redis, "m");
    s.cluster.tls_ca_file = Some("/nonexistent/redis-ca.pem".into());
    let (config, _) = config_file("redis-missing", s);
    let mut cmd = wsplus_with(&["check-config"], &config, "");
    cmd.env_remove(REDIS_PASSWORD_ENV);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "cluster.password_env/password_file: environment variable {REDIS_PASSWORD_ENV} is unset or empty"
        )),
        "{stderr}"
    );
    // Without secrets, only the CA file remains a problem.
    let mut cmd = wsplus_with(&["check-config", "--no-secrets"], &config, "");
    cmd.env_remove(REDIS_PASSWORD_ENV);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("password_env"), "{stderr}");
    assert!(
        stderr.contains("cluster.tls_ca_file: CA file /nonexistent/redis-ca.pem"),
        "{stderr}"
    );
}
