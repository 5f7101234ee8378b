//! `wsplus connect` against real servers: the wsplus test server and a fake
//! upstream that records the upgrade request. Covers stdin → frames → stdout,
//! binary output, token encoding, `${VAR}` headers, subprotocols, refused
//! handshakes, heartbeats and exit codes.

use base64::Engine;
use common::client::{wsplus, Cli, FakeServer, Script};
use common::*;
use tokio_tungstenite::tungstenite::Message;
use wsplus_actors::broker::Snapshot;

fn connect_cmd(url: &str) -> std::process::Command {
    let mut c = wsplus();
    c.arg("connect").arg(url);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_become_frames_and_frames_become_lines() {
    let app = TestApp::spawn(base_settings());
    let tok = token("acme", Some("cli"), 3600);
    let mut cmd = connect_cmd(&format!("ws://{}/ws/events?keep=1", app.http));
    cmd.args(["--token-env", "CLI_TOKEN"])
        .env("CLI_TOKEN", &tok);
    let mut cli = Cli::spawn(cmd);
    let mut peer = app.connect("/ws/events", "acme").await;
    app.wait_snapshot(Snapshot {
        sessions: 2,
        rooms: 1,
        timers: 2,
    })
    .await;

    peer.send_text("hello from peer").await;
    assert_eq!(cli.next_line(), "hello from peer");
    peer.send_binary(&[0, 1, 2, 255]).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 255]);
    assert_eq!(cli.next_line(), format!("binary:{b64}"));
    // Drain the peer's own echoes (tenant scope includes the sender).
    assert_eq!(peer.recv_text().await, "hello from peer");
    assert!(matches!(peer.next_message().await, Message::Binary(_)));

    cli.send_line("from the cli");
    assert_eq!(peer.recv_text().await, "from the cli");
    assert_eq!(cli.next_line(), "from the cli");

    cli.close_stdin();
    let status = cli.wait();
    assert!(
        status.success(),
        "exit {status:?}; stderr: {}",
        cli.stderr()
    );
    assert!(
        !cli.stderr().contains(&tok),
        "token leaked: {}",
        cli.stderr()
    );
    app.wait_snapshot(Snapshot {
        sessions: 1,
        rooms: 1,
        timers: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshake_prints_status_and_body_and_fails() {
    let app = TestApp::spawn(base_settings());
    let bad = mint_with("wrong-secret-0123456789-0123456789");
    let mut cmd = connect_cmd(&app.ws_url("/ws/events", None));
    cmd.args(["--token-env", "CLI_TOKEN"])
        .env("CLI_TOKEN", &bad);
    let mut cli = Cli::spawn(cmd);
    let status = cli.wait();
    let err = cli.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("invalid_signature"), "body missing: {err}");
    assert!(!err.contains(&bad), "token leaked: {err}");

    let mut cli = Cli::spawn(connect_cmd(&app.ws_url("/nowhere", None)));
    assert_eq!(cli.wait().code(), Some(1));
    assert!(cli.stderr().contains("404"), "{}", cli.stderr());
}

fn mint_with(secret: &str) -> String {
    wsplus::auth::mint::hs256(
        secret,
        &wsplus::auth::mint::Claims::new("acme", None, 3600, "tenant_id"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_url_encoded_and_existing_query_kept() {
    let fake = FakeServer::start(Script::SendThenClose(vec![]), None).await;
    let mut cmd = connect_cmd(&fake.url("/in?a=1&b=two%20words"));
    cmd.args(["--token-env", "T"]).env("T", "x+y/z=&q");
    let mut cli = Cli::spawn(cmd);
    assert!(cli.wait().success(), "{}", cli.stderr());
    let seen = fake.seen();
    assert_eq!(seen[0].uri, "/in?a=1&b=two%20words&token=x%2By%2Fz%3D%26q");

    // Unset token variable: a startup error naming it, nothing dialled.
    let mut cmd = connect_cmd(&fake.url("/in"));
    cmd.args(["--token-env", "NOT_SET_ANYWHERE"]);
    let mut cli = Cli::spawn(cmd);
    assert_eq!(cli.wait().code(), Some(1));
    assert!(
        cli.stderr().contains("NOT_SET_ANYWHERE"),
        "{}",
        cli.stderr()
    );
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_expand_variables_and_unset_ones_are_startup_errors() {
    let fake = FakeServer::start(Script::SendThenClose(vec![]), None).await;
    let mut cmd = connect_cmd(&fake.url("/h"));
    cmd.args(["--header", "X-Site: plant-7"])
        .args(["--header", "X-Key: k-${SITE_KEY}-end"])
        .env("SITE_KEY", "s3cret");
    let mut cli = Cli::spawn(cmd);
    assert!(cli.wait().success(), "{}", cli.stderr());
    let seen = &fake.seen()[0];
    assert_eq!(seen.headers["x-site"], "plant-7");
    assert_eq!(seen.headers["x-key"], "k-s3cret-end");

    let mut cmd = connect_cmd(&fake.url("/h"));
    cmd.args(["--header", "X-Key: ${MISSING_KEY}"]);
    let mut cli = Cli::spawn(cmd);
    assert_eq!(cli.wait().code(), Some(1));
    let err = cli.stderr();
    assert!(
        err.contains("X-Key") && err.contains("MISSING_KEY"),
        "{err}"
    );
    assert_eq!(fake.seen().len(), 1, "nothing dialled");

    let mut cli = Cli::spawn({
        let mut c = connect_cmd(&fake.url("/h"));
        c.args(["--header", "no colon"]);
        c
    });
    assert_eq!(cli.wait().code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_is_requested_and_must_be_agreed() {
    let fake = FakeServer::start(
        Script::SendThenClose(vec![Message::text("agreed")]),
        Some("wsplus.v1"),
    )
    .await;
    let mut cmd = connect_cmd(&fake.url("/p"));
    cmd.args(["--subprotocol", "wsplus.v1"]);
    let mut cli = Cli::spawn(cmd);
    assert_eq!(cli.next_line(), "agreed");
    assert!(cli.wait().success(), "{}", cli.stderr());
    assert_eq!(
        fake.seen()[0].headers["sec-websocket-protocol"],
        "wsplus.v1"
    );

    // wsplus itself does not agree to any subprotocol.
    let app = TestApp::spawn(base_settings());
    let mut cmd = connect_cmd(&app.ws_url("/ws/events", None));
    cmd.args(["--token-env", "T", "--subprotocol", "mqtt"])
        .env("T", token("acme", None, 60));
    let mut cli = Cli::spawn(cmd);
    assert_eq!(cli.wait().code(), Some(1));
    let err = cli.stderr();
    assert!(
        err.contains("did not agree") && err.contains("mqtt"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_1000_exits_zero_and_other_codes_exit_one() {
    let fake = FakeServer::start(
        Script::SendThenClose(vec![Message::text("one"), Message::text("two")]),
        None,
    )
    .await;
    let mut cli = Cli::spawn(connect_cmd(&fake.url("/c")));
    assert_eq!(cli.next_line(), "one");
    assert_eq!(cli.next_line(), "two");
    assert!(cli.wait().success(), "{}", cli.stderr());

    // An administrator kick (4003) is not a clean end.
    let app = TestApp::spawn(base_settings());
    let mut cmd = connect_cmd(&app.ws_url("/ws/events", None));
    cmd.args(["--token-env", "T"])
        .env("T", token("acme", None, 60));
    let mut cli = Cli::spawn(cmd);
    app.wait_snapshot(Snapshot {
        sessions: 1,
        rooms: 1,
        timers: 1,
    })
    .await;
    let n = app
        .broker
        .send(wsplus_actors::broker::KickTenant {
            tenant: wsplus_actors::TenantId::new("acme"),
            listener: None,
            subject: None,
            code: wsplus_actors::CloseCode::Kicked,
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(cli.wait().code(), Some(1));
    assert!(cli.stderr().contains("4003"), "{}", cli.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_without_answer_exits_non_zero_within_two_intervals() {
    let fake = FakeServer::start(Script::Silent, None).await;
    let mut cmd = connect_cmd(&fake.url("/quiet"));
    cmd.args(["--heartbeat", "1"]);
    let started = std::time::Instant::now();
    let mut cli = Cli::spawn(cmd);
    assert_eq!(cli.wait().code(), Some(1));
    let took = started.elapsed();
    assert!(
        cli.stderr().contains("no answer to pings"),
        "{}",
        cli.stderr()
    );
    assert!(
        took >= std::time::Duration::from_millis(1900) && took < std::time::Duration::from_secs(6),
        "{took:?}"
    );

    // An answering server keeps the connection up across several intervals.
    let fake = FakeServer::start(Script::Echo, None).await;
    let mut cmd = connect_cmd(&fake.url("/alive"));
    cmd.args(["--heartbeat", "1"]);
    let mut cli = Cli::spawn(cmd);
    cli.send_line("ping-check");
    assert_eq!(cli.next_line(), "ping-check");
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    cli.send_line("still here");
    assert_eq!(cli.next_line(), "still here");
    cli.close_stdin();
    assert!(cli.wait().success(), "{}", cli.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_fail_before_dialling() {
    for url in ["http://127.0.0.1:1/x", "not a url"] {
        let mut cli = Cli::spawn(connect_cmd(url));
        assert_eq!(cli.wait().code(), Some(1));
        assert!(cli.stderr().contains("url:"), "{}", cli.stderr());
    }
    // Nothing listening: a connect error, exit 1.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cli = Cli::spawn(connect_cmd(&format!("ws://127.0.0.1:{port}/x")));
    assert_eq!(cli.wait().code(), Some(1));
    assert!(cli.stderr().contains("cannot connect"), "{}", cli.stderr());
}

/// A one-connection upstream that upgrades, writes `bytes` raw, and returns
/// the close code the client then sends (`None` if it sent none).
async fn raw_upstream(bytes: Vec<u8>) -> (String, tokio::task::JoinHandle<Option<u16>>) {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/raw", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.get_mut().write_all(&bytes).await.unwrap();
        loop {
            match tokio::time::timeout(WAIT, ws.next()).await.ok()?? {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    });
    (url, task)
}

/// An unmasked server frame header declaring `len` bytes.
fn server_header(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first, 127];
    out.extend_from_slice(&len.to_be_bytes());
    out
}

/// The upstream is not trusted either: a frame declaring more than
/// `--max-message-bytes` closes with 1009 at its header, a control frame
/// declaring more than 125 bytes with 1002, without waiting for the payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_oversized_frames_from_the_server_at_their_header() {
    for (first, want) in [(0x82u8, 1009u16), (0x81, 1009), (0x89, 1002), (0x88, 1002)] {
        let mut bytes = server_header(first, 200_000_000);
        bytes.extend_from_slice(&[0u8; 4096]);
        let (url, upstream) = raw_upstream(bytes).await;
        let started = std::time::Instant::now();
        let mut cli = Cli::spawn(connect_cmd(&url));
        assert_eq!(upstream.await.unwrap(), Some(want), "opcode {first:#x}");
        assert_eq!(cli.wait().code(), Some(1), "{}", cli.stderr());
        assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    }
    // --max-message-bytes: exactly the limit is printed, one more closes 1009.
    let mut bytes = vec![0x81, 10];
    bytes.extend_from_slice(b"0123456789");
    bytes.extend_from_slice(&[0x81, 11]);
    bytes.extend_from_slice(b"0123456789X");
    let (url, upstream) = raw_upstream(bytes).await;
    let mut cmd = connect_cmd(&url);
    cmd.args(["--max-message-bytes", "10"]);
    let mut cli = Cli::spawn(cmd);
    assert_eq!(cli.next_line(), "0123456789");
    assert_eq!(upstream.await.unwrap(), Some(1009));
    assert_eq!(cli.wait().code(), Some(1), "{}", cli.stderr());
}
