//! Prism's public gRPC API, generated from the `.proto` files under `proto/prism`, plus [`client`],
//! a small ergonomic Rust client (connect, namespace, optional bearer token).
#![forbid(unsafe_code)]

pub mod client;

/// The KeyValue pattern API.
pub mod keyvalue {
    /// Version 1 of the KeyValue API.
    pub mod v1 {
        tonic::include_proto!("prism.keyvalue.v1");
    }
}

/// The PubSub pattern API.
pub mod pubsub {
    /// Version 1 of the PubSub API.
    pub mod v1 {
        tonic::include_proto!("prism.pubsub.v1");
    }
}

/// The Queue pattern API.
pub mod queue {
    /// Version 1 of the Queue API.
    pub mod v1 {
        tonic::include_proto!("prism.queue.v1");
    }
}

/// The filter language shared by the patterns that select by metadata or headers.
pub mod filter {
    /// Version 1 of the filter language.
    pub mod v1 {
        tonic::include_proto!("prism.filter.v1");
    }
}

/// The Multicast Registry pattern API.
pub mod registry {
    /// Version 1 of the Multicast Registry API.
    pub mod v1 {
        tonic::include_proto!("prism.registry.v1");
    }
}

/// The Mailbox pattern API.
pub mod mailbox {
    /// Version 1 of the Mailbox API.
    pub mod v1 {
        tonic::include_proto!("prism.mailbox.v1");
    }
}

/// The Admin API: capabilities and namespaces.
pub mod admin {
    /// Version 1 of the Admin API.
    pub mod v1 {
        tonic::include_proto!("prism.admin.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Prism proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("prism_descriptor");

/// Metadata key that names the namespace a call addresses.
pub const NAMESPACE_HEADER: &str = "x-prism-namespace";

/// Largest message the client and the proxy accept by default: a 4 MiB value plus generous overhead.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
