//! Headless Chromium for the browser tests, driven over WebDriver
//! (fantoccini + chromedriver): finding the tools (skip when missing, fail
//! under `CI=true`), a chromedriver on a free port, a fresh profile per run,
//! polling a script in the page, and several pages (windows) of one browser,
//! each with its own scripts.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder};
use futures_util::FutureExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest any single browser-side condition may take.
pub const BROWSER_WAIT: Duration = Duration::from_secs(20);

/// Runs `script` (a function body) in the page.
pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Polls `script` until it returns something other than null/false, failing
/// after [`BROWSER_WAIT`] with what `logs` (a script) returns.
pub async fn wait_js_logging(c: &Client, what: &str, script: &str, logs: &str) -> Value {
    match poll_js(c, script, BROWSER_WAIT).await {
        Some(v) => v,
        None => {
            let logs = js(c, logs).await;
            panic!("timed out waiting for: {what}\npage logs: {logs:#}");
        }
    }
}

/// Runs `script` every 100 ms until it returns something other than
/// null/false (that value), or `limit` passed (None).
pub async fn poll_js(c: &Client, script: &str, limit: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let v = js(c, script).await;
        if !(v.is_null() || v == Value::Bool(false)) {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where chromium and chromedriver are.
pub struct BrowserTools {
    /// The browser.
    pub chromium: PathBuf,
    /// Its WebDriver.
    pub chromedriver: PathBuf,
}

impl BrowserTools {
    /// Finds both on PATH; None (skip) when missing, a failure under CI.
    pub fn find() -> Option<Self> {
        let chromium = which("chromium").or_else(|| which("chromium-browser"));
        let chromedriver = which("chromedriver");
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => Some(Self {
                chromium,
                chromedriver,
            }),
            _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
                "chromium and chromedriver are required under CI \
                 (Debian packages chromium, chromium-driver; scripts/test.sh installs them)"
            ),
            _ => {
                eprintln!(
                    "SKIPPED: chromium and/or chromedriver not installed (run scripts/test.sh)"
                );
                None
            }
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A chromedriver on a free loopback port, killed when dropped.
pub struct Chromedriver {
    port: u16,
    _child: Child,
}

impl Chromedriver {
    /// Starts the chromedriver at `path`.
    pub async fn start(path: &Path) -> Self {
        let mut child = Command::new(path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(BROWSER_WAIT, async {
            while let Some(line) = lines.next_line().await.expect("chromedriver output") {
                // "ChromeDriver was started successfully on port 34941."
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .expect("chromedriver did not start in time")
        .expect("chromedriver did not report its port");
        // Keep draining its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            port,
            _child: child,
        }
    }

    /// A headless Chromium session with a fresh, empty profile.
    pub async fn session(&self, chromium: &Path, profile: &Path) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--disable-quic",
            "--no-proxy-server",
            // Several pages run at once: none may be throttled as a background one.
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--disable-renderer-backgrounding",
            "--window-size=1400,1000",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        tokio::time::timeout(
            BROWSER_WAIT,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{}", self.port)),
        )
        .await
        .expect("browser session timed out")
        .expect("browser session")
    }
}

/// A new empty Chromium profile directory, removed when dropped.
pub struct Profile(pub PathBuf);

impl Profile {
    /// Creates the directory.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wsplus-chromium-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("profile dir");
        Self(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts chromedriver and a headless Chromium with a fresh profile, runs
/// `scenario` with the browser, and closes the browser even when the scenario
/// panics (then re-raises the panic).
pub async fn with_browser<F, Fut>(tools: &BrowserTools, scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let driver = Chromedriver::start(&tools.chromedriver).await;
    let profile = Profile::new();
    let browser = driver.session(&tools.chromium, &profile.0).await;
    let outcome = AssertUnwindSafe(scenario(browser.clone()))
        .catch_unwind()
        .await;
    let _ = browser.close().await; // ends the browser even when the scenario failed
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A page: one window of the browser, with its own document and scripts.
#[derive(Debug, Clone)]
pub struct Page {
    /// The window's WebDriver handle.
    pub window: WindowHandle,
    /// A name for failure messages.
    pub name: String,
}

impl Page {
    /// Opens `url` in the browser's current window (the first page) or in a
    /// new window (`new_window`).
    pub async fn open(c: &Client, name: &str, url: &str, new_window: bool) -> Page {
        let window = if new_window {
            c.new_window(false).await.expect("new window").handle
        } else {
            c.window().await.expect("current window")
        };
        c.switch_to_window(window.clone())
            .await
            .expect("switch to window");
        c.goto(url)
            .await
            .unwrap_or_else(|e| panic!("{name}: open {url}: {e}"));
        Page {
            window,
            name: name.to_owned(),
        }
    }

    /// Makes this page the one scripts run in.
    async fn focus(&self, c: &Client) {
        c.switch_to_window(self.window.clone())
            .await
            .expect("switch to window");
    }

    /// Runs `script` (a function body) in this page.
    pub async fn js(&self, c: &Client, script: &str) -> Value {
        self.focus(c).await;
        js(c, script).await
    }

    /// Polls `script` in this page until it returns something other than
    /// null/false, failing after `limit` with what `logs` returns there.
    pub async fn wait(
        &self,
        c: &Client,
        what: &str,
        script: &str,
        logs: &str,
        limit: Duration,
    ) -> Value {
        self.focus(c).await;
        match poll_js(c, script, limit).await {
            Some(v) => v,
            None => {
                let logs = js(c, logs).await;
                panic!(
                    "{}: timed out waiting for: {what}\npage state: {logs:#}",
                    self.name
                );
            }
        }
    }
}
