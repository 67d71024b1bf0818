//! The Queue pattern: producers enqueue, consumer groups take messages and acknowledge them, at least
//! once. The adapter trait backends implement; the delivery table the proxy keeps (what is
//! outstanding on which stream, visibility deadlines, back-pressure); and the gRPC service. Redelivery
//! after a visibility timeout, a nack or a finished stream, and the move to `<queue>.dlq` after
//! `max_attempts`, are decided here once for every backend.

pub mod adapter;
pub mod deliveries;
pub mod fetcher;
pub mod service;

pub use service::QueueService;

/// The suffix of a queue's dead-letter queue.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// The group a Consume without one joins.
pub const DEFAULT_GROUP: &str = "default";
