//! [`Problems`]: what settings validation found, one `key: message` line
//! each, with the checks shared by `validate` and `validate_outbound`.

use std::net::ToSocketAddrs;

/// Problems found so far, one line each.
#[derive(Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    /// Every problem recorded, in order.
    pub(super) fn into_lines(self) -> Vec<String> {
        self.0
    }

    /// Records `key: msg`.
    pub(super) fn push(&mut self, key: &str, msg: &str) {
        self.0.push(format!("{key}: {msg}"));
    }

    /// Records a problem unless `min <= v <= max`.
    pub(super) fn range(&mut self, key: &str, v: u64, min: u64, max: u64) {
        if v < min || v > max {
            self.push(key, &format!("must be between {min} and {max}, got {v}"));
        }
    }

    /// Records a problem unless `v` resolves to a socket address.
    pub(super) fn addr(&mut self, key: &str, v: &str) {
        if v.to_socket_addrs()
            .map(|mut a| a.next().is_none())
            .unwrap_or(true)
        {
            self.push(key, &format!("{v:?} is not a host:port address"));
        }
    }

    /// Records a problem unless `v` is a plausible environment variable name.
    pub(super) fn env_name(&mut self, key: &str, v: &str) {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.push(key, &format!("{v:?} is not an environment variable name"));
        }
    }
}
