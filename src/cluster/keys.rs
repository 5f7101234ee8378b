//! Redis names of the cluster: pub/sub channels and keys.
//!
//! Every name carries a hash tag (`{...}`) so it is ready for Redis 7 sharded
//! pub/sub and Redis Cluster: a tenant's channel and its slot counter share the
//! tag `{listener:tenant}`, so they live on the same shard. Listener paths and
//! tenants are escaped (`%`, `:`, `{`, `}` and control characters as `%XX`) so
//! that no two (listener, tenant) pairs can produce the same name.

/// Prefix of every name.
const PREFIX: &str = "wsplus";

/// The sorted set of live nodes (member = node id, score = lease expiry in ms).
pub const NODES: &str = "wsplus:nodes";

/// The sorted set of nodes counting channel occupancy (member = node id,
/// score = lease expiry in ms); a member whose lease ran out is claimed by
/// one live node, which sweeps the dead node out of its channels.
pub const OCCUPANCY_NODES: &str = "wsplus:occ:nodes";

/// The set of the channel occupancy keys a node is counted in (what a live
/// node sweeps once that node is dead).
pub fn occupancy_index(node: &str) -> String {
    format!("{PREFIX}:occ:{{{}}}", escape(node))
}

/// Escapes `s` for use inside a name.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | ':' | '{' | '}' => push_hex(&mut out, c),
            c if c.is_control() => push_hex(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

fn push_hex(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("%{b:02X}"));
    }
}

/// Reverses [`escape`]; `None` on a malformed escape.
pub fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The channel of one tenant of one listener.
pub fn tenant_channel(listener: &str, tenant: &str) -> String {
    format!("{PREFIX}:t:{{{}:{}}}", escape(listener), escape(tenant))
}

/// The channel of a listener's global messages.
pub fn global_channel(listener: &str) -> String {
    format!("{PREFIX}:g:{{{}}}", escape(listener))
}

/// The Redis channel of one channel of a channels-mode listener: of a tenant
/// (`Some`) or of the whole listener (global scope, `None`).
pub fn topic_channel(listener: &str, tenant: Option<&str>, channel: &str) -> String {
    match tenant {
        Some(t) => format!(
            "{PREFIX}:c:{{{}:{}:{}}}",
            escape(listener),
            escape(t),
            escape(channel)
        ),
        None => format!("{PREFIX}:cg:{{{}:{}}}", escape(listener), escape(channel)),
    }
}

/// The keys of a channel's history: (meta hash, stream), sharing the hash
/// tag of the channel's pub/sub name.
pub fn history_keys(listener: &str, tenant: Option<&str>, channel: &str) -> (String, String) {
    let name = topic_channel(listener, tenant, channel);
    (format!("{name}:meta"), format!("{name}:stream"))
}

/// The channel of one node (admin requests and replies).
pub fn node_channel(node: &str) -> String {
    format!("{PREFIX}:n:{{{}}}", escape(node))
}

/// The hash of a tenant's connection slots (field = node, value = `count:expiry_ms`).
pub fn slots_key(listener: &str, tenant: &str) -> String {
    format!("{PREFIX}:slots:{{{}:{}}}", escape(listener), escape(tenant))
}

/// The hash of a tenant's connection slots on every listener (a tenant
/// record's `max_connections`; same layout as [`slots_key`]).
pub fn tenant_slots_key(tenant: &str) -> String {
    format!("{PREFIX}:tslots:{{{}}}", escape(tenant))
}

/// The hash of a node's sessions (field = session id, value = `listener:tenant`).
pub fn registry_key(node: &str) -> String {
    format!("{PREFIX}:reg:{{{}}}", escape(node))
}

/// What a subscribed channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// A tenant's messages: (listener path, tenant).
    Tenant(String, String),
    /// A listener's global messages.
    Global(String),
    /// A node's admin traffic.
    Node(String),
    /// A channel of a channels-mode listener: (listener path, tenant or
    /// `None` for a global-scope listener, channel).
    Topic(String, Option<String>, String),
}

/// Parses a channel name made by this module.
pub fn parse_channel(name: &str) -> Option<Channel> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix(':')?;
    let (kind, tagged) = rest.split_once(':')?;
    let inner = tagged.strip_prefix('{')?.strip_suffix('}')?;
    match kind {
        "t" => {
            let (l, t) = inner.split_once(':')?;
            Some(Channel::Tenant(unescape(l)?, unescape(t)?))
        }
        "g" => Some(Channel::Global(unescape(inner)?)),
        "n" => Some(Channel::Node(unescape(inner)?)),
        "c" => {
            let mut parts = inner.split(':');
            let (l, t, c) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            Some(Channel::Topic(
                unescape(l)?,
                Some(unescape(t)?),
                unescape(c)?,
            ))
        }
        "cg" => {
            let (l, c) = inner.split_once(':')?;
            Some(Channel::Topic(unescape(l)?, None, unescape(c)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hash_tagged_and_unambiguous() {
        assert_eq!(
            tenant_channel("/ws/events", "acme"),
            "wsplus:t:{/ws/events:acme}"
        );
        assert_eq!(
            slots_key("/ws/events", "acme"),
            "wsplus:slots:{/ws/events:acme}"
        );
        assert_eq!(global_channel("/ws"), "wsplus:g:{/ws}");
        assert_eq!(node_channel("n1"), "wsplus:n:{n1}");
        // Same concatenation, different pairs: different names.
        assert_ne!(tenant_channel("/a:b", "c"), tenant_channel("/a", "b:c"));
        assert_eq!(tenant_channel("/a", "{x}"), "wsplus:t:{/a:%7Bx%7D}");
    }

    #[test]
    fn channels_parse_back() {
        for (l, t) in [("/ws", "acme"), ("/a:b", "c%d{e}\n"), ("/ü", "日本")] {
            assert_eq!(
                parse_channel(&tenant_channel(l, t)),
                Some(Channel::Tenant(l.into(), t.into()))
            );
        }
        assert_eq!(
            parse_channel(&global_channel("/g")),
            Some(Channel::Global("/g".into()))
        );
        assert_eq!(
            parse_channel(&node_channel("n-1")),
            Some(Channel::Node("n-1".into()))
        );
        for (t, c) in [(Some("acme"), "doc:1/a"), (None, "all"), (Some("a:b"), "x")] {
            let name = topic_channel("/ws/c", t, c);
            assert_eq!(
                parse_channel(&name),
                Some(Channel::Topic("/ws/c".into(), t.map(Into::into), c.into()))
            );
        }
        assert_eq!(
            topic_channel("/c", Some("t"), "a:b"),
            "wsplus:c:{/c:t:a%3Ab}"
        );
        assert_ne!(topic_channel("/c", None, "t"), tenant_channel("/c", "t"));
        for bad in [
            "wsplus:c:{a:b}",
            "wsplus:c:{a:b:c:d}",
            "",
            "other:t:{a:b}",
            "wsplus:t:{ab}",
            "wsplus:x:{a}",
            "wsplus:t:{a:%zz}",
        ] {
            assert_eq!(parse_channel(bad), None, "{bad}");
        }
    }
}
