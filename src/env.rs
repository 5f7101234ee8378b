//! Where secrets are read from: the process environment, or (in tests) a fixed
//! map, so concurrent tests never race on process-wide variables.

use std::collections::HashMap;
use std::sync::Arc;

/// A source of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    fixed: Option<Arc<HashMap<String, String>>>,
}

impl Env {
    /// The real process environment.
    pub fn process() -> Self {
        Self { fixed: None }
    }

    /// A fixed set of variables (nothing else is visible).
    pub fn from_map(vars: HashMap<String, String>) -> Self {
        Self {
            fixed: Some(Arc::new(vars)),
        }
    }

    /// The value of `name`, if set.
    pub fn var(&self, name: &str) -> Option<String> {
        match &self.fixed {
            Some(m) => m.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }
}
