//! What the client port bounds per TCP connection, below HTTP: how long a
//! connection may take to send its upgrade request, how many may be open, and
//! how long the kernel keeps data for a peer that acknowledges nothing.
//!
//! Why the last one lives in the kernel: actix-web-actors runs a Session inside
//! its response body, which the HTTP dispatcher stops polling while its write
//! buffer is full. A peer that stops reading under traffic therefore freezes its
//! Session — no heartbeat, no close frame, no clean-up — until the socket moves
//! again. `TCP_USER_TIMEOUT` aborts such a socket (Linux also applies it to a
//! zero receive window), the dispatcher sees the error, drops the Session, and
//! its drop guard frees the registry entry, the tenant slot and the timers.
//!
//! The ports themselves are bound here too, with an explicit listen backlog.

use std::net::{TcpListener, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::settings::LimitsSettings;

/// The per-connection limits of the client port, from `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to receive the whole request head (actix `client_request_timeout`;
    /// each connection carries one request, see `conn`).
    pub request_timeout: Duration,
    /// `TCP_USER_TIMEOUT` on each accepted socket; `None` keeps the kernel default.
    pub send_timeout: Option<Duration>,
    /// Open connections per worker (actix `max_connections`).
    pub per_worker: usize,
}

impl ConnectionLimits {
    /// Splits `max_tcp_connections` over `workers` (rounding up, so the total
    /// is never below the configured value).
    pub fn new(limits: &LimitsSettings, workers: usize) -> Self {
        Self {
            request_timeout: Duration::from_millis(limits.request_timeout_ms),
            send_timeout: (limits.send_timeout_s > 0)
                .then(|| Duration::from_secs(limits.send_timeout_s)),
            per_worker: limits.max_tcp_connections.div_ceil(workers.max(1)),
        }
    }
}

/// Applies the send timeout to an accepted TCP socket (nothing when `None`).
pub fn apply_send_timeout(tcp: &actix_web::rt::net::TcpStream, send_timeout: Option<Duration>) {
    let Some(timeout) = send_timeout else {
        return;
    };
    if let Err(e) = set_send_timeout(tcp, timeout) {
        log::warn!("could not set limits.send_timeout_s on a connection: {e}");
    }
}

/// Warns once at start when the send timeout cannot be enforced here.
pub fn warn_if_unsupported(send_timeout: Option<Duration>) {
    if send_timeout.is_some() && cfg!(not(target_os = "linux")) {
        log::warn!("limits.send_timeout_s is only enforced on Linux (TCP_USER_TIMEOUT)");
    }
}

#[cfg(target_os = "linux")]
fn set_send_timeout(tcp: &actix_web::rt::net::TcpStream, timeout: Duration) -> std::io::Result<()> {
    socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout))
}

/// Elsewhere the kernel option does not exist (warned about once at start).
#[cfg(not(target_os = "linux"))]
fn set_send_timeout(_: &actix_web::rt::net::TcpStream, _: Duration) -> std::io::Result<()> {
    Ok(())
}

/// Connections the kernel keeps waiting to be accepted on each port (the
/// standard library's `TcpListener::bind` asks for only 128).
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds `addr` (the first of its addresses that binds) with
/// [`LISTEN_BACKLOG`] and `SO_REUSEADDR`, as `TcpListener::bind` would.
pub fn bind_listener(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        let bound = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))
            .and_then(|s| {
                #[cfg(unix)]
                s.set_reuse_address(true)?;
                s.bind(&a.into())?;
                s.listen(LISTEN_BACKLOG)?;
                Ok(s)
            });
        match bound {
            Ok(s) => return Ok(s.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_split_over_workers_round_up() {
        let mut l = LimitsSettings {
            max_tcp_connections: 10,
            send_timeout_s: 0,
            ..Default::default()
        };
        let c = ConnectionLimits::new(&l, 3);
        assert_eq!(c.per_worker, 4);
        assert_eq!(c.send_timeout, None);
        assert_eq!(c.request_timeout, Duration::from_millis(5000));
        l.send_timeout_s = 7;
        assert_eq!(
            ConnectionLimits::new(&l, 1).send_timeout,
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn bind_listener_binds_port_zero_and_names_bad_addresses() {
        let l = bind_listener("127.0.0.1:0").unwrap();
        assert_ne!(l.local_addr().unwrap().port(), 0);
        let taken = l.local_addr().unwrap().to_string();
        assert_eq!(
            bind_listener(&taken).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );
        assert!(bind_listener("not an address").is_err());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn send_timeout_is_set_on_accepted_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        apply_send_timeout(&server, Some(Duration::from_millis(1500)));
        let got = socket2::SockRef::from(&server).tcp_user_timeout().unwrap();
        assert_eq!(got, Some(Duration::from_millis(1500)));
    }
}
