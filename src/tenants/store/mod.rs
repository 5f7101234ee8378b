//! Where admin-API tenant records persist (`tenants.store`). Only API records
//! are stored: the config file's records are read from the config at start.

mod redis;
mod sqlite;

pub use redis::{RedisStore, FOLLOW_INTERVAL};
pub use sqlite::{SqliteStore, SCHEMA_VERSION};

/// A store that cannot be read or written. At start this stops the server;
/// for an admin change it is a 503 and the change is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant store ({store}): {problem}")]
pub struct StoreError {
    /// Which store (kind and location).
    pub store: String,
    /// What went wrong.
    pub problem: String,
}
