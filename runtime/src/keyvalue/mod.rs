//! The KeyValue pattern: the capability traits adapters implement and the gRPC service over them.

pub mod keys;
pub mod service;
pub mod store;
mod validate;

pub use service::KeyValueService;

use crate::auth::Permission;

/// The gRPC service name of the KeyValue pattern.
pub const SERVICE: &str = "prism.keyvalue.v1.KeyValue";

/// The permission a KeyValue method needs: reads are `read`, writes are `write`.
pub fn permission(method: &str) -> Option<Permission> {
    match method {
        "Get" | "Exists" | "Scan" | "BatchGet" => Some(Permission::Read),
        "Set" | "Delete" | "Expire" | "BatchSet" | "BatchDelete" => Some(Permission::Write),
        _ => None,
    }
}
