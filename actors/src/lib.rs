//! `wsplus-actors`: the actor core of the wsplus broker.
//!
//! Four actors do all the routing:
//!
//! * [`Session`] — one per WebSocket connection. Parses inbound
//!   frames, stamps the verified `_session`, hands messages to its route and writes
//!   deliveries out.
//! * [`TenantRoom`] — one per (listener, tenant) with at least one
//!   session. The only holder of a tenant's delivery queues, so a tenant message
//!   cannot reach another tenant.
//! * [`GlobalRouter`] — one per global-scope listener: fans its sessions'
//!   messages out to every room of the listener, off the Broker's mailbox.
//! * [`Broker`] — one per process: registry, per-tenant caps, admin queries
//!   and commands, expiry and timeout timers.
//!
//! The crate knows nothing of HTTP routing, configuration files or JWT parsing: the
//! server crate hands it a verified [`SessionInfo`] and a
//! [`ListenerPolicy`].

#![warn(missing_docs)]

pub mod backplane;
pub mod broker;
pub mod channels;
pub mod close;
pub mod counters;
pub mod delivery;
pub mod gate;
pub mod ids;
pub mod info;
pub mod outbox;
pub mod policy;
pub mod protocol;
pub mod rate;
pub mod room;
pub mod router;
pub mod session;
pub mod views;

pub use backplane::{Backplane, LocalBackplane};
pub use broker::Broker;
pub use close::CloseCode;
pub use counters::Counters;
pub use delivery::Delivery;
pub use ids::{ListenerId, Mode, Scope, SessionId, TenantId};
pub use info::{AuthStatus, SessionInfo};
pub use outbox::{outbox, Outbox, OutboxReceiver};
pub use policy::{ListenerPolicy, OnRateLimit, OnTokenExpiry};
pub use room::TenantRoom;
pub use router::GlobalRouter;
pub use session::Session;
