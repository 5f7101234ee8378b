//! The server's side of channels mode: what the actors crate cannot do
//! itself because it never parses JWTs — reading a token's permission claim
//! and verifying refresh tokens exactly like the handshake does.

use std::sync::Arc;

use wsplus_actors::channels::refresh::{TokenVerifier, Verification, VerifiedToken};
use wsplus_actors::channels::{ChannelsPolicy, Grants};
use wsplus_actors::TenantId;

use crate::auth::{Authenticator, Identity};

/// The permission patterns a verified identity carries for `policy`'s claim.
pub fn grants(identity: &Identity, policy: &ChannelsPolicy) -> Grants {
    Grants::from_claim(
        identity.claims.get(&policy.claim),
        identity.subject.as_deref(),
    )
}

/// Verifies refresh tokens with a listener's [`Authenticator`].
#[derive(Debug)]
pub struct ListenerVerifier {
    auth: Arc<Authenticator>,
    policy: Arc<ChannelsPolicy>,
}

impl ListenerVerifier {
    /// A verifier for one channels-mode listener.
    pub fn new(auth: Arc<Authenticator>, policy: Arc<ChannelsPolicy>) -> Self {
        Self { auth, policy }
    }
}

impl TokenVerifier for ListenerVerifier {
    fn verify(&self, token: String) -> Verification {
        let auth = self.auth.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let identity = auth.verify(Some(&token)).await.map_err(|e| e.reason())?;
            Ok(VerifiedToken {
                tenant: TenantId::new(identity.tenant.as_str()),
                grants: grants(&identity, &policy),
                subject: identity.subject,
                expires_at: identity.expires_at,
            })
        })
    }
}
