//! The messaging steps of the scenario model (PubSub and Queue): opening named stream handles,
//! publishing and enqueueing, receiving from handles with ordering and timeouts, silence, acks,
//! nacks and disconnects. Parsed in `parse.rs`, printed in `print.rs`, executed by `exec.rs` (all in
//! this folder).

use crate::scenario::code::StatusCode;
use crate::scenario::model::{NumExpect, Template, ValueSpec};
use prism_runtime::patterns::capability::Capability;
use std::collections::BTreeMap;
use std::time::Duration;

/// Which stream a handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleKind {
    /// A Subscribe stream.
    Subscription,
    /// A Consume stream.
    Consumer,
    /// A Multicast Registry Listen stream.
    Listener,
    /// A Multicast Registry Watch stream.
    Watcher,
}

/// How received messages are compared with `payloads`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// In exactly the listed order (per handle).
    #[default]
    Strict,
    /// The same messages in any order.
    Any,
}

/// Which deliveries of a handle an ack or nack names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// Every delivery received and not yet acked or nacked.
    All,
    /// The n-th (from 0) of those.
    Position(u64),
    /// The first of those with this payload.
    Payload(ValueSpec),
    /// A delivery id the proxy never issued (to check the error).
    Unknown,
}

/// What a call step (publish, enqueue, subscribe, consume, ack, nack) must return; `None` fields
/// mean "must succeed".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallExpect {
    /// The call must fail with this code.
    pub error: Option<StatusCode>,
    /// The error message must contain this.
    pub message_contains: Option<String>,
}

/// What a `receive` must see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiveExpect {
    /// The payloads, compared per `order`.
    pub payloads: Option<Vec<ValueSpec>>,
    /// Headers every received message carries.
    pub headers: BTreeMap<String, Template>,
    /// Every received delivery's attempt.
    pub attempt: Option<NumExpect>,
    /// Messages the proxy dropped for the subscriber, summed over the received ones.
    pub dropped: Option<NumExpect>,
    /// Instead of messages: the stream ends with this code.
    pub error: Option<StatusCode>,
    /// The ending status's message contains this.
    pub message_contains: Option<String>,
}

pub use crate::scenario::model::{Caller, Via};

/// One messaging step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsgStep {
    /// Subscribe and name the stream.
    Subscribe {
        /// Topic.
        topic: Template,
        /// Handle name.
        name: String,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome of opening it.
        expect: CallExpect,
    },
    /// Publish one message.
    Publish {
        /// Topic.
        topic: Template,
        /// Payload.
        payload: ValueSpec,
        /// Headers.
        headers: BTreeMap<String, Template>,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: CallExpect,
    },
    /// Consume and name the stream.
    Consume {
        /// Queue.
        queue: Template,
        /// Group (`None`: the default group).
        group: Option<Template>,
        /// Most unacked deliveries.
        max_in_flight: u64,
        /// Visibility timeout (0: the proxy's default).
        visibility_timeout_ms: u64,
        /// Ack every delivery as it arrives.
        auto_ack: bool,
        /// Handle name.
        name: String,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome of opening it.
        expect: CallExpect,
    },
    /// Enqueue one message (recorded in the delivery ledger when acknowledged).
    Enqueue {
        /// Queue.
        queue: Template,
        /// Payload.
        payload: ValueSpec,
        /// Headers.
        headers: BTreeMap<String, Template>,
        /// Delay.
        delay_ms: u64,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: CallExpect,
    },
    /// Take `count` messages from handles within a bound.
    Receive {
        /// Handle names (messages from all of them count).
        from: Vec<String>,
        /// How many.
        count: u64,
        /// Give up after this long.
        within: Duration,
        /// How payloads compare.
        order: Order,
        /// What they must be.
        expect: ReceiveExpect,
    },
    /// Nothing arrives on the handles for a while.
    ExpectSilence {
        /// Handle names.
        from: Vec<String>,
        /// How long.
        duration: Duration,
    },
    /// Acknowledge deliveries of a consumer handle.
    Ack {
        /// Handle name.
        from: String,
        /// Which deliveries.
        which: Which,
        /// Expected outcome.
        expect: CallExpect,
    },
    /// Return a delivery of a consumer handle.
    Nack {
        /// Handle name.
        from: String,
        /// Which delivery.
        which: Which,
        /// Requeue delay.
        requeue_delay_ms: u64,
        /// Expected outcome.
        expect: CallExpect,
    },
    /// End a handle's stream (as a client going away does).
    Disconnect {
        /// Handle name.
        from: String,
    },
}

/// Messaging step names, as written in YAML.
pub const MSG_STEPS: [&str; 9] = [
    "subscribe",
    "publish",
    "consume",
    "enqueue",
    "receive",
    "expect_silence",
    "ack",
    "nack",
    "disconnect",
];

impl MsgStep {
    /// The namespace and token of a call step.
    pub fn caller(&self) -> Option<&Caller> {
        match self {
            MsgStep::Subscribe { caller, .. }
            | MsgStep::Publish { caller, .. }
            | MsgStep::Consume { caller, .. }
            | MsgStep::Enqueue { caller, .. } => Some(caller),
            _ => None,
        }
    }

    /// The step's name as written in YAML.
    pub fn name(&self) -> &'static str {
        match self {
            MsgStep::Subscribe { .. } => "subscribe",
            MsgStep::Publish { .. } => "publish",
            MsgStep::Consume { .. } => "consume",
            MsgStep::Enqueue { .. } => "enqueue",
            MsgStep::Receive { .. } => "receive",
            MsgStep::ExpectSilence { .. } => "expect_silence",
            MsgStep::Ack { .. } => "ack",
            MsgStep::Nack { .. } => "nack",
            MsgStep::Disconnect { .. } => "disconnect",
        }
    }

    /// Capabilities a backend needs to accept this call as written (a backend without one must
    /// refuse it with UNIMPLEMENTED).
    pub fn needs(&self) -> Vec<Capability> {
        match self {
            MsgStep::Subscribe { .. } | MsgStep::Publish { .. } => vec![Capability::PubSubBasic],
            MsgStep::Consume { group, .. } => {
                let mut caps = vec![Capability::QueueBasic];
                if group.as_deref().is_some_and(|g| g != "default") {
                    caps.push(Capability::QueueGroups);
                }
                caps
            }
            MsgStep::Enqueue { delay_ms, .. } => {
                let mut caps = vec![Capability::QueueBasic];
                if *delay_ms > 0 {
                    caps.push(Capability::QueueDelay);
                }
                caps
            }
            MsgStep::Ack { .. } => vec![Capability::QueueBasic],
            MsgStep::Nack { .. } => vec![Capability::QueueRedelivery],
            MsgStep::Receive { .. }
            | MsgStep::ExpectSilence { .. }
            | MsgStep::Disconnect { .. } => Vec::new(),
        }
    }
}
