//! wss:// end to end: the server with `[server] tls_cert`/`tls_key` (a CA and
//! a server certificate generated here with rcgen), `wsplus connect` trusting
//! that CA with `--ca-file`, and the failures: unknown CA, plain ws:// against
//! a TLS port, unusable certificate files.

use std::path::Path;

use common::client::{test_pki, wsplus, Cli, TestPki};
use common::*;

fn tls_settings(pki: &TestPki) -> wsplus::settings::Settings {
    let mut s = base_settings();
    s.server.tls_cert = Some(pki.cert.display().to_string());
    s.server.tls_key = Some(pki.key.display().to_string());
    s
}

fn connect(url: &str, ca: Option<&Path>) -> Cli {
    let mut c = wsplus();
    c.args(["connect", url, "--token-env", "T"])
        .env("T", token("acme", Some("tls"), 600));
    if let Some(ca) = ca {
        c.arg("--ca-file").arg(ca);
    }
    Cli::spawn(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_over_wss_with_a_private_ca() {
    let pki = test_pki("ok");
    let app = TestApp::spawn(tls_settings(&pki));
    let url = format!("wss://127.0.0.1:{}/ws/events", app.http.port());
    let mut cli = connect(&url, Some(&pki.ca));
    // Tenant scope echoes to the sender: the line comes back over TLS.
    cli.send_line("over tls");
    assert_eq!(cli.next_line(), "over tls");
    cli.close_stdin();
    assert!(cli.wait().success(), "{}", cli.stderr());

    // The host name works too (the certificate names localhost).
    let url = format!("wss://localhost:{}/ws/events", app.http.port());
    let mut cli = connect(&url, Some(&pki.ca));
    cli.send_line("by name");
    assert_eq!(cli.next_line(), "by name");
    cli.close_stdin();
    assert!(cli.wait().success(), "{}", cli.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ca_and_plain_ws_are_refused() {
    let pki = test_pki("refused");
    let app = TestApp::spawn(tls_settings(&pki));
    let url = format!("wss://127.0.0.1:{}/ws/events", app.http.port());
    let mut cli = connect(&url, None);
    assert_eq!(cli.wait().code(), Some(1));
    let err = cli.stderr();
    assert!(err.contains("cannot connect"), "{err}");

    // A CA that did not sign the server certificate.
    let other = test_pki("other");
    let mut cli = connect(&url, Some(&other.ca));
    assert_eq!(cli.wait().code(), Some(1));

    // Plain ws:// to the TLS port never upgrades.
    let mut cli = connect(
        &format!("ws://127.0.0.1:{}/ws/events", app.http.port()),
        None,
    );
    assert_eq!(cli.wait().code(), Some(1));

    // A CA file that is not PEM is a startup error naming it.
    let mut cli = connect(&url, Some(&pki.key));
    assert_eq!(cli.wait().code(), Some(1));
    assert!(cli.stderr().contains("server.key"), "{}", cli.stderr());
}

/// Why `server::start` refused these settings.
fn start_error(s: wsplus::settings::Settings) -> wsplus::server::StartError {
    let sockets = wsplus::server::Sockets::bind(&s).unwrap();
    actix_rt::System::new()
        .block_on(wsplus::server::start(
            s,
            wsplus::settings::Source::File("t".into()),
            sockets,
            wsplus::env::Env::from_map(Default::default()),
        ))
        .err()
        .expect("start must fail")
}

#[test]
fn unusable_certificate_files_stop_the_start() {
    let pki = test_pki("bad");
    let mut s = tls_settings(&pki);
    s.server.tls_cert = Some("/nonexistent/cert.pem".into());
    let err = start_error(s);
    assert!(
        err.to_string()
            .starts_with("server.tls_cert: /nonexistent/cert.pem"),
        "{err}"
    );

    let mut s = tls_settings(&pki);
    s.server.tls_key = Some(pki.cert.display().to_string());
    let err = start_error(s);
    assert!(err.to_string().starts_with("server.tls_key:"), "{err}");
}
