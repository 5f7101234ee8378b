//! Helpers for the outbound-client tests: the real `wsplus` binary with piped
//! stdio and bounded waits, and a scriptable fake WebSocket server that
//! records what the client sent in its upgrade request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

pub use crate::free_port;

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// `wsplus` with a clean environment (no proxy or WSPLUS variables leaking in).
pub fn wsplus() -> Command {
    let mut c = Command::new(crate::wsplus_exe());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    c
}

/// A running `wsplus connect` with its stdout lines on a channel.
pub struct Cli {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Cli {
    /// Starts `cmd` with piped stdio.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsplus");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let err = Arc::new(Mutex::new(String::new()));
        let sink = err.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: err,
        }
    }

    /// Writes one line to stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin (the client then closes the connection).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line.
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no stdout line; stderr: {}", self.stderr()))
    }

    /// Waits for the exit status.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the stderr reader drain.
                std::thread::sleep(Duration::from_millis(50));
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("wsplus did not exit; stderr: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the fake server does after the upgrade.
#[derive(Clone, Debug)]
pub enum Script {
    /// Echo every data frame back.
    Echo,
    /// Send these texts, then close with 1000.
    SendThenClose(Vec<Message>),
    /// Never read again (pings go unanswered).
    Silent,
}

/// What a client sent in its upgrade request.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Path and query.
    pub uri: String,
    /// Headers, names lowercased.
    pub headers: HashMap<String, String>,
}

/// A fake WebSocket server on 127.0.0.1:0 serving any number of connections.
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeServer {
    /// Starts it; `agree` is the subprotocol it answers with (if any).
    pub async fn start(script: Script, agree: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    #[allow(clippy::result_large_err)] // tungstenite's callback signature
                    let callback = |req: &Request, mut resp: Response| {
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                            })
                            .collect();
                        record.lock().unwrap().push(Seen {
                            uri: req.uri().to_string(),
                            headers,
                        });
                        if let Some(p) = agree {
                            resp.headers_mut()
                                .insert("sec-websocket-protocol", HeaderValue::from_static(p));
                        }
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    match script {
                        Script::Echo => {
                            while let Some(Ok(m)) = ws.next().await {
                                if m.is_text() || m.is_binary() {
                                    let _ = ws.send(m).await;
                                }
                            }
                        }
                        Script::SendThenClose(msgs) => {
                            for m in msgs {
                                let _ = ws.send(m).await;
                            }
                            let _ = ws.close(None).await;
                            while let Some(Ok(_)) = ws.next().await {}
                        }
                        Script::Silent => {
                            tokio::time::sleep(WAIT * 2).await;
                            drop(ws);
                        }
                    }
                });
            }
        });
        Self { addr, seen }
    }

    /// `ws://addr/path`
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Upgrade requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// PEM files of a test CA and a server certificate for 127.0.0.1/localhost.
pub struct TestPki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// Generates a CA and a server certificate signed by it into a fresh directory.
pub fn test_pki(name: &str) -> TestPki {
    let dir = std::env::temp_dir().join(format!("wsplus-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wsplus test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "wsplus test server");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |file: &str, pem: String| {
        let p = dir.join(file);
        std::fs::write(&p, pem).unwrap();
        p
    };
    TestPki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
    }
}

/// A real tinyproxy on 127.0.0.1 (Debian package `tinyproxy`), configured for
/// one test: its own port, `Allow 127.0.0.1`, CONNECT only to `connect_ports`,
/// optional basic auth, and a log file the test can read.
pub struct Tinyproxy {
    /// Where it listens.
    pub port: u16,
    log: PathBuf,
    child: Child,
}

impl Tinyproxy {
    /// Starts tinyproxy and waits until it accepts connections.
    pub fn start(name: &str, connect_ports: &[u16], auth: Option<(&str, &str)>) -> Self {
        let dir = std::env::temp_dir().join(format!("wsplus-proxy-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let _ = std::fs::remove_file(&log);
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\n\
             LogFile \"{}\"\nLogLevel Info\n",
            log.display()
        );
        for p in connect_ports {
            conf.push_str(&format!("ConnectPort {p}\n"));
        }
        if let Some((user, pass)) = auth {
            conf.push_str(&format!("BasicAuth {user} {pass}\n"));
        }
        let conf_path = dir.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy must be installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tinyproxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, log, child }
    }

    /// `http://127.0.0.1:port`, with `userinfo@` when given.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("http://{u}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails unless the proxy's log shows a CONNECT to `target` (host:port).
    pub fn assert_tunnelled(&self, target: &str) {
        let log = self.log();
        assert!(
            log.contains(&format!("CONNECT {target} HTTP/1.1")),
            "no CONNECT {target} in the proxy log:\n{log}"
        );
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
