//! A message ready to be written to sockets: serialized once, shared by every
//! delivery (cloning only bumps a reference count).

use bytes::Bytes;
use bytestring::ByteString;

/// One outbound WebSocket message. Clones share the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A text frame.
    Text(ByteString),
    /// A binary frame.
    Binary(Bytes),
}

impl Delivery {
    /// Payload length in bytes (what the outbound byte budget counts).
    pub fn len(&self) -> usize {
        match self {
            Delivery::Text(s) => s.len(),
            Delivery::Binary(b) => b.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
