//! The KeyValue pattern: the capability traits adapters implement and the gRPC service over them.

pub mod keys;
pub mod service;
pub mod store;
pub mod validate;
pub mod walk;

pub use service::KeyValueService;
