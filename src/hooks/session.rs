//! [`ListenerHooks`]: what the Sessions of one listener are given (as
//! `wsplus_actors::SessionHooks`) to reach the backend: the `message` hook,
//! and the session events of the webhooks.

use std::future::ready;
use std::sync::Arc;

use serde_json::Value;
use wsplus_actors::protocol::{encode_value, Frame};
use wsplus_actors::session::{HookAnswer, HookCall, SessionHooks};
use wsplus_actors::{Delivery, Mode, SessionInfo};

use super::wire::{MessageAnswer, MessageBody};
use super::{detached, HookClient, Webhooks};
use crate::settings::HookName;

/// One listener's backend side of its sessions.
#[derive(Debug)]
pub struct ListenerHooks {
    mode: Mode,
    /// Present when the listener has the `message` hook on.
    message: Option<Arc<HookClient>>,
    webhooks: Arc<Webhooks>,
}

impl ListenerHooks {
    /// The hooks of a listener in `mode` with `client` (its
    /// `[listeners.hooks]`, if any) and the process's webhooks; `None` when
    /// there is nothing for its sessions to do.
    pub fn new(
        mode: Mode,
        client: Option<&Arc<HookClient>>,
        webhooks: &Arc<Webhooks>,
    ) -> Option<Self> {
        let message = client.filter(|c| c.has(HookName::Message)).cloned();
        (message.is_some() || !webhooks.is_empty()).then(|| Self {
            mode,
            message,
            webhooks: webhooks.clone(),
        })
    }
}

impl SessionHooks for ListenerHooks {
    fn message_depth(&self) -> Option<usize> {
        self.message.as_ref().map(|c| c.session_depth())
    }

    fn message(&self, info: &Arc<SessionInfo>, frame: Frame) -> HookCall {
        let Some(client) = self.message.clone() else {
            return Box::pin(ready(HookAnswer::default()));
        };
        let body = MessageBody::new(self.mode, &frame);
        let mode = self.mode;
        let info = info.clone();
        let call = async move {
            // Taken when the session starts the call, not while the message
            // waits in its stage (the session's share is bounded there).
            let Ok(permit) = client.begin(HookName::Message) else {
                return HookAnswer::default();
            };
            match client.message(&permit, &info, body).await {
                Ok(answer) => answer_deliveries(mode, answer, &info),
                Err(_) => HookAnswer::default(),
            }
        };
        // A task of its own, like the channel hooks' calls: the session
        // does not poll its pending calls through awc at each wake-up.
        Box::pin(detached(call, HookAnswer::default()))
    }

    fn opened(&self, info: &Arc<SessionInfo>) {
        self.webhooks.session_opened(info);
    }

    fn closed(&self, info: &Arc<SessionInfo>, code: u16) {
        self.webhooks.session_closed(info, code);
    }
}

/// The frames a `message` answer asks for. Payload mode: a string as it is,
/// any other value as its JSON text. Message mode: stamped with the sender's
/// `_session` (an object as it is, another value as `{"payload": value}`).
/// `null` or absent: nothing.
pub fn answer_deliveries(mode: Mode, answer: MessageAnswer, info: &SessionInfo) -> HookAnswer {
    let stamp = match mode {
        Mode::Message | Mode::Channels => info.stamp(),
        Mode::Payload => Value::Null,
    };
    let frame = |v: Option<Value>| -> Option<Delivery> {
        v.filter(|v| !v.is_null())
            .map(|v| encode_value(mode, v, &stamp))
    };
    HookAnswer {
        reply: frame(answer.reply),
        publish: frame(answer.publish),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> SessionInfo {
        crate::hooks::test_info()
    }

    fn text(d: Option<Delivery>) -> String {
        match d {
            Some(Delivery::Text(s)) => s.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn payload_mode_sends_strings_as_they_are() {
        let a = MessageAnswer {
            reply: Some(json!("pong")),
            publish: Some(json!({"n": 1})),
        };
        let out = answer_deliveries(Mode::Payload, a, &info());
        assert_eq!(text(out.reply), "pong");
        assert_eq!(text(out.publish), r#"{"n":1}"#);
    }

    #[test]
    fn message_mode_stamps_the_sender() {
        let i = info();
        let a = MessageAnswer {
            reply: Some(json!({"ok": true, "_session": "forged"})),
            publish: Some(json!("hi")),
        };
        let out = answer_deliveries(Mode::Message, a, &i);
        let reply: Value = serde_json::from_str(&text(out.reply)).unwrap();
        assert_eq!(reply, json!({"ok": true, "_session": i.stamp()}));
        let publish: Value = serde_json::from_str(&text(out.publish)).unwrap();
        assert_eq!(publish, json!({"payload": "hi", "_session": i.stamp()}));
    }

    #[test]
    fn null_or_absent_sends_nothing() {
        let a = MessageAnswer {
            reply: Some(Value::Null),
            publish: None,
        };
        assert_eq!(
            answer_deliveries(Mode::Message, a, &info()),
            HookAnswer::default()
        );
    }
}
