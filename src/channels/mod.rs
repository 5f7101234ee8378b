//! The server's side of channels mode: what the actors crate cannot do
//! itself because it never parses JWTs — reading a token's permission claim
//! and verifying refresh tokens exactly like the handshake does.

use std::sync::Arc;

use wsplus_actors::channels::hooks::ChannelHooks;
use wsplus_actors::channels::hub::HubRoute;
use wsplus_actors::channels::refresh::{TokenVerifier, Verification, VerifiedToken};
use wsplus_actors::channels::{ChannelName, ChannelsPolicy, Grants};
use wsplus_actors::session::ChannelsParts;
use wsplus_actors::{Mode, Outbox, TenantId};

use crate::settings::ListenerSettings;

use crate::auth::{Authenticator, Identity};

/// The permission patterns a verified identity carries for `policy`'s claim.
pub fn grants(identity: &Identity, policy: &ChannelsPolicy) -> Grants {
    Grants::from_claim(
        identity.claims.get(&policy.claim),
        identity.subject.as_deref(),
    )
}

/// What the upgrade needs for a channels-mode listener.
#[derive(Debug, Clone)]
pub struct ChannelsListener {
    /// The enforced `[listeners.channels]`.
    pub policy: Arc<ChannelsPolicy>,
    /// Refresh verification, shared by the listener's sessions.
    pub verifier: Arc<dyn TokenVerifier>,
    /// The listener's channel hooks (`subscribe`, `publish`, `rpc`), if any.
    pub hooks: Option<Arc<dyn ChannelHooks>>,
}

impl ChannelsListener {
    /// `Some` for a channels-mode listener; `hooks` is its hook client.
    pub fn new(
        l: &ListenerSettings,
        auth: &Arc<Authenticator>,
        hooks: Option<&Arc<crate::hooks::HookClient>>,
    ) -> Option<Self> {
        if l.mode != Mode::Channels {
            return None;
        }
        let policy = Arc::new(l.channels.clone().unwrap_or_default().policy());
        Some(Self {
            verifier: Arc::new(ListenerVerifier::new(auth.clone(), policy.clone())),
            policy,
            hooks: hooks
                .and_then(crate::hooks::ChannelBackend::new)
                .map(|b| Arc::new(b) as Arc<dyn ChannelHooks>),
        })
    }

    /// The permissions `identity`'s token grants on this listener.
    pub fn grants(&self, identity: &Identity) -> Grants {
        grants(identity, &self.policy)
    }

    /// The session's channel parts: its hub, its queue, its token's grants
    /// and the server-side subscriptions the `connect` hook asked for.
    pub fn parts(
        &self,
        grants: Grants,
        route: HubRoute,
        outbox: Outbox,
        server_channels: Vec<ChannelName>,
    ) -> ChannelsParts {
        ChannelsParts {
            policy: self.policy.clone(),
            route,
            outbox,
            grants,
            verifier: self.verifier.clone(),
            hooks: self.hooks.clone(),
            server_channels,
        }
    }
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
