//! Why a round trip to Redis failed. Every failure means the same thing to the
//! backplane (the node is degraded until it has rewritten its state), so the
//! variants only say what to log.

use std::time::Duration;

/// A failed Redis round trip.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Redis answered with an error, or the connection failed.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within `cluster.timeout_ms`.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// A resync could not be queued (the queue to a task was full).
    #[error("queue full")]
    QueueFull,
    /// The task that was to do the work is gone (the node is stopping).
    #[error("backplane task stopped")]
    Stopped,
}

/// Runs one round trip bounded by `timeout`.
pub(super) async fn bounded<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, LinkError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LinkError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_round_trip_is_a_timeout_and_an_error_is_kept() {
        let slow = bounded(Duration::from_millis(5), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
        assert!(matches!(slow, Err(LinkError::Timeout(_))));
        assert_eq!(slow.unwrap_err().to_string(), "no answer within 5 ms");

        let failed: Result<(), _> = bounded(Duration::from_secs(1), async {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "connection refused",
            )))
        })
        .await;
        let e = failed.unwrap_err();
        assert!(matches!(e, LinkError::Redis(_)));
        assert!(e.to_string().contains("connection refused"), "{e}");

        let ok = bounded(Duration::from_secs(1), async { Ok(7) }).await;
        assert_eq!(ok.unwrap(), 7);
    }
}
