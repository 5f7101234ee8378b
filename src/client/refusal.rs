//! Keeps the body of a refused upgrade. awc's WebSocket handshake reports only
//! the status of a non-101 answer; this client middleware reads the answer's
//! body (bounded in size and time) before awc drops the connection, so the
//! caller can show why the server refused (e.g. wsplus' `{"error", "reason"}`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix_service::Service;
use awc::error::SendRequestError;
use awc::http::header::CONTENT_LENGTH;
use awc::http::StatusCode;
use awc::middleware::Transform;
use awc::{ConnectRequest, ConnectResponse};
use futures_util::future::LocalBoxFuture;
use tokio::io::AsyncReadExt;

/// Largest body kept.
const MAX_BODY: usize = 8 * 1024;
/// Time allowed to read it.
const BODY_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the body of a refused upgrade is left.
pub type RefusalBody = Rc<RefCell<Option<String>>>;

/// The middleware (one per client).
pub struct CaptureRefusal(pub RefusalBody);

impl<S> Transform<S, ConnectRequest> for CaptureRefusal
where
    S: Service<ConnectRequest, Response = ConnectResponse, Error = SendRequestError> + 'static,
{
    type Transform = CaptureRefusalService<S>;

    fn new_transform(self, service: S) -> Self::Transform {
        CaptureRefusalService {
            inner: Rc::new(service),
            body: self.0,
        }
    }
}

/// The middleware's service.
pub struct CaptureRefusalService<S> {
    inner: Rc<S>,
    body: RefusalBody,
}

impl<S> Service<ConnectRequest> for CaptureRefusalService<S>
where
    S: Service<ConnectRequest, Response = ConnectResponse, Error = SendRequestError> + 'static,
{
    type Response = ConnectResponse;
    type Error = SendRequestError;
    type Future = LocalBoxFuture<'static, Result<ConnectResponse, SendRequestError>>;

    actix_service::forward_ready!(inner);

    fn call(&self, req: ConnectRequest) -> Self::Future {
        let inner = self.inner.clone();
        let slot = self.body.clone();
        Box::pin(async move {
            match inner.call(req).await? {
                ConnectResponse::Tunnel(head, framed)
                    if head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    let mut parts = framed.into_parts();
                    let length = head
                        .headers
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok());
                    let want = length.unwrap_or(MAX_BODY).min(MAX_BODY);
                    let mut body = parts.read_buf.split().to_vec();
                    let _ = tokio::time::timeout(BODY_TIMEOUT, async {
                        let mut chunk = [0u8; 1024];
                        while body.len() < want {
                            match parts.io.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => body.extend_from_slice(&chunk[..n]),
                            }
                        }
                    })
                    .await;
                    body.truncate(want);
                    *slot.borrow_mut() = Some(String::from_utf8_lossy(&body).into_owned());
                    Ok(ConnectResponse::Tunnel(
                        head,
                        actix_codec::Framed::from_parts(parts),
                    ))
                }
                other => Ok(other),
            }
        })
    }
}
