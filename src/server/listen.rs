//! The HTTP servers of both ports, built on actix-server with each accepted
//! connection wrapped in [`OneRequest`]: one request per connection
//! (no keep-alive), and the socket closed as soon as the response is written
//! (no linger waiting for the peer to close first, RFC 6455 §7.1.1).
//!
//! actix-web's `HttpServer` offers no way to wrap a connection's I/O, so the
//! few things it does here are done by hand: the TLS acceptor, the per-socket
//! send timeout, and the app factory's config.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Protocol, Request, Response};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_tls::accept::TlsError;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use actix_web::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{Connections, OneRequest, Port};
use super::socket;

/// How one port's connections are served.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// Counts the open connections.
    pub open: Connections,
    /// Which port (what [`OneRequest`] lets through).
    pub port: Port,
    /// Worker threads.
    pub workers: usize,
    /// Open connections per worker.
    pub per_worker: usize,
    /// `limits.request_timeout_ms`: the request head (both ports) and the
    /// admin request body.
    pub request_timeout: Duration,
    /// `TCP_USER_TIMEOUT` per socket; `None` keeps the kernel default.
    pub send_timeout: Option<Duration>,
}

/// Serves `factory`'s app on `lst` (TLS when `tls` is set). The returned
/// server runs once spawned.
pub fn serve<F, I, S, B>(
    lst: TcpListener,
    tls: Option<rustls::ServerConfig>,
    cfg: PortConfig,
    factory: F,
) -> std::io::Result<(actix_server::Server, PortHandle)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = lst.local_addr()?;
    let open = cfg.open.clone();
    // Shutdown waits for `open` itself (see `ShutdownHandle`), then stops the
    // workers forcefully: actix-server's graceful stop polls once a second.
    let builder = actix_server::Server::build()
        .workers(cfg.workers)
        .max_concurrent_connections(cfg.per_worker)
        .disable_signals()
        .shutdown_timeout(0);
    let name = format!("wsplus-{addr}");
    let builder = match tls {
        None => builder.listen(name, lst, move || {
            let cfg = cfg.clone();
            let http = http(&factory, &cfg, addr);
            fn_service(move |io: TcpStream| {
                socket::apply_send_timeout(&io, cfg.send_timeout);
                let peer = io.peer_addr().ok();
                let io = OneRequest::new(io, cfg.port, cfg.request_timeout, &cfg.open);
                std::future::ready(Ok((io, Protocol::Http1, peer)))
            })
            .and_then(http)
        })?,
        Some(mut config) => {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            builder.listen(name, lst, move || {
                let cfg = cfg.clone();
                let http = http(&factory, &cfg, addr);
                Acceptor::new(config.clone())
                    .map_init_err(|_| ())
                    .map_err(|e: TlsError<std::io::Error, std::convert::Infallible>| {
                        DispatchError::Io(match e {
                            TlsError::Tls(e) => e,
                            TlsError::Timeout => std::io::ErrorKind::TimedOut.into(),
                            TlsError::Service(never) => match never {},
                        })
                    })
                    .and_then(fn_service(move |io: TlsStream<TcpStream>| {
                        let tcp = io.get_ref().0;
                        socket::apply_send_timeout(tcp, cfg.send_timeout);
                        let peer = tcp.peer_addr().ok();
                        let io = OneRequest::new(io, cfg.port, cfg.request_timeout, &cfg.open);
                        std::future::ready(Ok((io, Protocol::Http1, peer)))
                    }))
                    .and_then(http)
            })?
        }
    };
    let server = builder.run();
    let handle = PortHandle {
        server: server.handle(),
        open,
    };
    Ok((server, handle))
}

/// Stops one port.
#[derive(Clone)]
pub struct PortHandle {
    server: actix_server::ServerHandle,
    open: Connections,
}

impl PortHandle {
    /// Stops accepting connections (they wait in the listen backlog).
    pub async fn stop_accepting(&self) {
        self.server.pause().await;
    }

    /// Waits up to `within` for every open connection to end, then stops the
    /// workers, dropping whatever is left. False if some were left.
    pub async fn stop(&self, within: Duration) -> bool {
        let all_closed = tokio::time::timeout(within, self.open.all_closed())
            .await
            .is_ok();
        self.server.stop(false).await;
        all_closed
    }
}

/// The HTTP/1 service over a connection of type `T`.
fn http<T, F, I, S, B>(
    factory: &F,
    cfg: &PortConfig,
    addr: SocketAddr,
) -> impl ServiceFactory<
    (T, Protocol, Option<SocketAddr>),
    Config = (),
    Response = (),
    Error = DispatchError,
    InitError = (),
>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    F: Fn() -> I,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let app = factory()
        .into_factory()
        .map_err(|err| err.into().error_response());
    HttpService::build()
        .keep_alive(KeepAlive::Disabled)
        .client_request_timeout(cfg.request_timeout)
        .client_disconnect_timeout(Duration::ZERO)
        .local_addr(addr)
        .finish(map_config(app, |_| AppConfig::default()))
}
