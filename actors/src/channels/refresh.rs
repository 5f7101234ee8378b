//! In-band token refresh: the seam through which a Session has a new token
//! verified without the actors crate parsing JWTs. The server injects a
//! [`TokenVerifier`] per listener (it verifies exactly like the handshake);
//! the Session compares the verified identity with its own and applies it.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use super::permissions::Grants;
use crate::ids::TenantId;

/// What a verified refresh token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Its tenant (must equal the session's).
    pub tenant: TenantId,
    /// Its `sub` (must equal the session's).
    pub subject: Option<String>,
    /// Its deadline (`exp` plus leeway), if any.
    pub expires_at: Option<SystemTime>,
    /// The permission patterns of its claim.
    pub grants: Grants,
}

/// The future a verification returns: the token, or the handshake's 401
/// reason (`expired`, `invalid_signature`, ...).
pub type Verification = Pin<Box<dyn Future<Output = Result<VerifiedToken, &'static str>>>>;

/// Verifies refresh tokens for one listener.
pub trait TokenVerifier: Send + Sync + std::fmt::Debug {
    /// Verifies `token` as the handshake would.
    fn verify(&self, token: String) -> Verification;
}

/// Why a refresh was refused although the token verified.
pub const IDENTITY_CHANGED: &str = "identity_changed";

/// Checks that the verified token names the same tenant and subject.
pub fn same_identity(
    token: &VerifiedToken,
    tenant: &TenantId,
    subject: Option<&str>,
) -> Result<(), &'static str> {
    if &token.tenant == tenant && token.subject.as_deref() == subject {
        Ok(())
    } else {
        Err(IDENTITY_CHANGED)
    }
}

/// When to push `expiring` for a token ending at `expires_at`: `notice` before
/// it, or at once when less is left (`Duration::ZERO`). `None` without `exp`.
pub fn expiring_in(
    expires_at: Option<SystemTime>,
    notice: std::time::Duration,
    now: SystemTime,
) -> Option<std::time::Duration> {
    let left = expires_at?.duration_since(now).unwrap_or_default();
    Some(left.saturating_sub(notice))
}

/// Seconds since the epoch, for the wire.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn token(tenant: &str, sub: Option<&str>) -> VerifiedToken {
        VerifiedToken {
            tenant: TenantId::new(tenant),
            subject: sub.map(str::to_owned),
            expires_at: None,
            grants: Grants::default(),
        }
    }

    #[test]
    fn identity_must_match_tenant_and_subject() {
        let t = TenantId::new("a");
        assert_eq!(same_identity(&token("a", Some("u")), &t, Some("u")), Ok(()));
        assert_eq!(same_identity(&token("a", None), &t, None), Ok(()));
        for bad in [
            token("b", Some("u")),
            token("a", Some("v")),
            token("a", None),
        ] {
            assert_eq!(same_identity(&bad, &t, Some("u")), Err(IDENTITY_CHANGED));
        }
        assert_eq!(
            same_identity(&token("a", Some("u")), &t, None),
            Err(IDENTITY_CHANGED)
        );
    }

    #[test]
    fn expiring_is_due_notice_before_exp_or_at_once() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let notice = Duration::from_secs(30);
        assert_eq!(expiring_in(None, notice, now), None);
        let exp = |s| Some(now + Duration::from_secs(s));
        assert_eq!(
            expiring_in(exp(100), notice, now),
            Some(Duration::from_secs(70))
        );
        assert_eq!(expiring_in(exp(30), notice, now), Some(Duration::ZERO));
        assert_eq!(expiring_in(exp(10), notice, now), Some(Duration::ZERO));
        assert_eq!(
            expiring_in(Some(now - Duration::from_secs(5)), notice, now),
            Some(Duration::ZERO)
        );
        assert_eq!(unix_seconds(now), 1000);
    }
}
