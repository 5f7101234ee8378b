//! HTTP CONNECT proxies against a real tinyproxy: tunnels for ws:// and
//! wss:// shown in the proxy's own log, NO_PROXY bypass, basic auth from the
//! proxy URL (407 without it), 403 for a refused destination, and an
//! unreachable proxy.

use common::client::{test_pki, wsplus, Cli, Tinyproxy};
use common::*;

/// `wsplus connect` to `url` with a token and the given environment.
fn connect(url: &str, env: &[(&str, String)]) -> Cli {
    let mut c = wsplus();
    c.args(["connect", url, "--token-env", "T"])
        .env("T", token("acme", Some("proxied"), 600));
    for (k, v) in env {
        c.env(k, v);
    }
    Cli::spawn(c)
}

/// Sends a line and expects it back (tenant scope echoes to the sender), then
/// closes cleanly.
fn round_trip(mut cli: Cli, line: &str) {
    cli.send_line(line);
    assert_eq!(cli.next_line(), line, "stderr: {}", cli.stderr());
    cli.close_stdin();
    assert!(cli.wait().success(), "{}", cli.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_goes_through_the_proxy_with_connect() {
    let app = TestApp::spawn(base_settings());
    let port = app.http.port();
    let proxy = Tinyproxy::start("plain", &[port], None);
    let url = format!("ws://127.0.0.1:{port}/ws/events");
    round_trip(
        connect(&url, &[("http_proxy", proxy.url(None))]),
        "via proxy",
    );
    proxy.assert_tunnelled(&format!("127.0.0.1:{port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_is_tunnelled_then_tls_inside() {
    let pki = test_pki("proxy");
    let mut s = base_settings();
    s.server.tls_cert = Some(pki.cert.display().to_string());
    s.server.tls_key = Some(pki.key.display().to_string());
    let app = TestApp::spawn(s);
    let port = app.http.port();
    let proxy = Tinyproxy::start("tls", &[port], None);
    let url = format!("wss://localhost:{port}/ws/events");
    let mut c = wsplus();
    c.args(["connect", &url, "--token-env", "T", "--ca-file"])
        .arg(&pki.ca)
        .env("T", token("acme", None, 600))
        .env("HTTPS_PROXY", proxy.url(None));
    round_trip(Cli::spawn(c), "tls in a tunnel");
    proxy.assert_tunnelled(&format!("localhost:{port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_bypasses_the_proxy() {
    let app = TestApp::spawn(base_settings());
    let port = app.http.port();
    let proxy = Tinyproxy::start("bypass", &[port], None);
    let url = format!("ws://127.0.0.1:{port}/ws/events");
    for no_proxy in ["127.0.0.1", "*", &format!("127.0.0.1:{port}")] {
        round_trip(
            connect(
                &url,
                &[
                    ("https_proxy", proxy.url(None)),
                    ("NO_PROXY", format!("example.com, {no_proxy}")),
                ],
            ),
            "direct",
        );
    }
    assert!(
        !proxy.log().contains("CONNECT 127.0.0.1"),
        "{}",
        proxy.log()
    );
    // A host:port entry for another port does not exclude this one.
    round_trip(
        connect(
            &url,
            &[
                ("https_proxy", proxy.url(None)),
                ("no_proxy", "127.0.0.1:1".to_owned()),
            ],
        ),
        "proxied again",
    );
    assert!(proxy.log().contains("CONNECT 127.0.0.1"), "{}", proxy.log());
    // Excluded hosts never touch even an unreachable proxy.
    let dead = format!("http://127.0.0.1:{}", free_port());
    round_trip(
        connect(
            &url,
            &[
                ("HTTP_PROXY", dead),
                ("no_proxy", ".local,127.0.0.1".into()),
            ],
        ),
        "still direct",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_auth_407_and_userinfo() {
    let app = TestApp::spawn(base_settings());
    let port = app.http.port();
    let proxy = Tinyproxy::start("auth", &[port], Some(("alice", "s3cret")));
    let url = format!("ws://127.0.0.1:{port}/ws/events");

    let mut cli = connect(&url, &[("http_proxy", proxy.url(None))]);
    assert_eq!(cli.wait().code(), Some(1));
    let err = cli.stderr();
    assert!(err.contains("407"), "{err}");

    let mut cli = connect(&url, &[("http_proxy", proxy.url(Some("alice:wrong")))]);
    assert_eq!(cli.wait().code(), Some(1));
    let err = cli.stderr();
    assert!(
        err.contains("authentication required") && err.contains("were refused"),
        "{err}"
    );
    assert!(!err.contains("wrong"), "password leaked: {err}");

    round_trip(
        connect(&url, &[("http_proxy", proxy.url(Some("alice:s3cret")))]),
        "authenticated",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destination_and_unreachable_proxy() {
    let app = TestApp::spawn(base_settings());
    let port = app.http.port();
    // tinyproxy only allows CONNECT to another port: 403.
    let proxy = Tinyproxy::start("forbidden", &[free_port()], None);
    let url = format!("ws://127.0.0.1:{port}/ws/events");
    let mut cli = connect(&url, &[("http_proxy", proxy.url(None))]);
    assert_eq!(cli.wait().code(), Some(1));
    let err = cli.stderr();
    assert!(err.contains("403"), "{err}");

    let mut cli = connect(
        &url,
        &[("http_proxy", format!("http://127.0.0.1:{}", free_port()))],
    );
    assert_eq!(cli.wait().code(), Some(1));
    assert!(cli.stderr().contains("unreachable"), "{}", cli.stderr());

    let mut cli = connect(&url, &[("http_proxy", "https://127.0.0.1:1".into())]);
    assert_eq!(cli.wait().code(), Some(1));
    assert!(
        cli.stderr().contains("http_proxy: only http://"),
        "{}",
        cli.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_proxy_wins_over_the_environment() {
    let app = TestApp::spawn(base_settings());
    let port = app.http.port();
    let proxy = Tinyproxy::start("configured", &[port], Some(("carol", "pw-from-env")));
    let config = temp_dir("proxy-cfg").join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nhttps_proxy = \"http://carol:${{PROXY_PW}}@127.0.0.1:{}\"\n",
            proxy.port
        ),
    )
    .unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws/events");
    // The environment names an unreachable proxy: only the configured one works.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut c = wsplus();
    c.args(["connect", &url, "--token-env", "T", "--config"])
        .arg(&config)
        .env("T", token("acme", None, 600))
        .env("PROXY_PW", "pw-from-env")
        .env("https_proxy", &dead)
        .env("HTTPS_PROXY", &dead);
    round_trip(Cli::spawn(c), "configured proxy");
    proxy.assert_tunnelled(&format!("127.0.0.1:{port}"));
}
