//! Tenants as first-class objects: records with limits, an enabled flag and an
//! optional identity provider, registered in the config file or through the
//! admin API and persisted in a store.
//!
//! - [`record`]: the record and its validation;
//! - [`registry`]: the merged view (an API change wins over the config file's
//!   record until it is deleted), what a handshake may do, and the changes;
//! - [`store`]: where API changes persist.

pub mod admission;
pub mod record;
pub mod registry;
pub mod store;

pub use admission::{Admission, Refusal};
pub use record::{FieldError, Source, TenantRecord, TenantSpec};
pub use registry::{ChangeError, TenantRegistry};
pub use store::StoreError;
