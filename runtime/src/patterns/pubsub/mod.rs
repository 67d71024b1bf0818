//! The PubSub pattern: fan-out of published messages to every live subscriber of a topic. The
//! adapter trait backends implement, and the gRPC service over it (validation, bounded per-subscriber
//! buffers with counted drops, drain and token expiry on streams).

pub mod adapter;
pub mod service;

pub use service::PubSubService;
