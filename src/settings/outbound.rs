//! Settings of outbound connections (docs/configuration.md): `[[bridges]]` and
//! `[proxy]`. Secrets are never stored here: tokens come from
//! `token_env`/`token_file`, header values and proxy credentials may name
//! variables as `${VAR}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Mode;

/// How a bridge authenticates to its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeAuth {
    /// A JWT (from `token_env` or `token_file`) appended as `?token=`.
    Jwt,
    /// No token.
    None,
}

/// Fills in `auth` for every `[[bridges]]` entry of the loaded configuration
/// that does not set it: `"jwt"` when it names a token (`token_env` or
/// `token_file`), else the default `"none"`. docs/client.md shows
/// `auth = "jwt"` next to `token_env`; a bridge that names a token without
/// repeating the mode means to use it. An explicit `auth` is never changed
/// (`auth = "none"` with a token stays a configuration error).
pub fn infer_bridge_auth(root: &mut config::Value) {
    use config::ValueKind;
    let ValueKind::Table(top) = &mut root.kind else {
        return;
    };
    let Some(ValueKind::Array(bridges)) = top.get_mut("bridges").map(|b| &mut b.kind) else {
        return;
    };
    for bridge in bridges {
        if let ValueKind::Table(keys) = &mut bridge.kind {
            let names_a_token = keys.contains_key("token_env") || keys.contains_key("token_file");
            if names_a_token && !keys.contains_key("auth") {
                keys.insert("auth".into(), "jwt".into());
            }
        }
    }
}

/// A local (listener, tenant) a bridge publishes into or forwards from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeEndpoint {
    /// Path of a configured listener.
    pub listener: String,
    /// The local tenant.
    pub tenant: String,
}

/// `[[bridges]]`: a persistent outbound WebSocket connection joined to a local
/// tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeSettings {
    /// Unique name; the `subject` of messages it publishes locally.
    pub name: String,
    /// `ws://` or `wss://` URL of the upstream.
    pub url: String,
    /// payload (frames are opaque payloads) | message (frames are JSON messages).
    pub mode: Mode,
    /// Sec-WebSocket-Protocol to request; empty = none.
    pub subprotocol: String,
    /// jwt | none. When the file does not say, `jwt` if it names a token
    /// (`token_env` or `token_file`), else `none` (`infer_bridge_auth`).
    pub auth: BridgeAuth,
    /// jwt: environment variable holding the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// jwt: file holding the token (instead of `token_env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Ping interval in seconds; 0 = off. No answer for two intervals → reconnect.
    pub heartbeat_s: u64,
    /// Extra upgrade headers; values may contain `${VAR}`.
    pub headers: BTreeMap<String, String>,
    /// Extra CA certificate (PEM) trusted for wss://, besides the system roots.
    pub tls_ca_file: String,
    /// First reconnect delay, milliseconds (doubled per failure, with jitter).
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, seconds. A connection that stayed up this
    /// long counts as healthy: the next delay starts again from the minimum.
    pub reconnect_max_s: u64,
    /// Messages waiting to go upstream (`from`) or into the local tenant
    /// (`into`); beyond, new ones are dropped and counted.
    pub queue: usize,
    /// Largest message accepted from the upstream, in bytes (a frame
    /// declaring more, or a reassembled message over it, closes with 1009).
    pub max_message_bytes: usize,
    /// Frames received upstream are published into this local tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub into: Option<BridgeEndpoint>,
    /// Messages of this local tenant are sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<BridgeEndpoint>,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            mode: Mode::Payload,
            subprotocol: String::new(),
            auth: BridgeAuth::None,
            token_env: None,
            token_file: None,
            heartbeat_s: 0,
            headers: BTreeMap::new(),
            tls_ca_file: String::new(),
            reconnect_min_ms: 500,
            reconnect_max_s: 30,
            queue: 1024,
            max_message_bytes: crate::client::DEFAULT_MAX_MESSAGE_BYTES,
            into: None,
            from: None,
        }
    }
}

/// `[proxy]`: HTTP CONNECT proxy for outbound connections. Unset keys fall back
/// to the environment (`https_proxy`, `HTTPS_PROXY`, `http_proxy`, `HTTP_PROXY`,
/// `NO_PROXY`, `no_proxy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// Proxy URL (`http://[user:${VAR}@]host:port`), tried first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
    /// Proxy URL, tried when `https_proxy` is unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    /// Comma-separated exclusions: hosts, `.domain` suffixes, `host:port`, `*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
}
