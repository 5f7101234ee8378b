//! wsplus: a tenant-isolated WebSocket pub/sub broker.
//!
//! The library exposes the server as a function of settings and bound sockets
//! ([`server::start`], or [`server::Plan`] to check before binding); `main.rs`
//! only parses the command line, loads settings and starts logging.

#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod bridge;
pub mod channels;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod env;
pub mod error;
pub mod hooks;
pub mod metrics;
pub mod redact;
pub mod server;
pub mod settings;
pub mod tenants;
