//! Every gRPC method the proxy serves, numbered once: a call's `rpc.method` label is an index into
//! this table, so a caller inventing paths cannot create series (an unknown path is `_OTHER`, as
//! the OpenTelemetry conventions name it).

use crate::auth::layer::{ADMIN_METHODS, ADMIN_SERVICE};
use std::sync::LazyLock;

/// The label of every path the table does not know.
pub const OTHER: &str = "_OTHER";

/// Methods outside the pattern registry and Admin that the proxy serves.
const SERVED: [&str; 4] = [
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The numbered methods: `pkg.Service/Method` labels, the last being [`OTHER`].
#[derive(Debug)]
pub struct Methods {
    labels: Vec<String>,
    /// `/pkg.Service/Method` paths and their numbers, sorted for a binary search (cheaper than
    /// hashing a 30-byte path on every call).
    index: Vec<(String, MethodId)>,
}

/// A method's number in [`methods()`].
pub type MethodId = u16;

static METHODS: LazyLock<Methods> = LazyLock::new(|| {
    let mut labels: Vec<String> = crate::patterns::REGISTRY
        .iter()
        .flat_map(|spec| {
            spec.methods
                .iter()
                .map(move |m| format!("{}/{}", spec.service, m.name))
        })
        .chain(ADMIN_METHODS.iter().map(|m| format!("{ADMIN_SERVICE}/{m}")))
        .chain(SERVED.iter().map(|s| s.to_string()))
        .collect();
    let mut index: Vec<(String, MethodId)> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| (format!("/{label}"), i as MethodId))
        .collect();
    index.sort();
    labels.push(OTHER.to_string());
    Methods { labels, index }
});

/// The process's method table.
pub fn methods() -> &'static Methods {
    &METHODS
}

impl Methods {
    /// The number of a request path `/pkg.Service/Method` ([`Methods::other`] when unknown).
    pub fn of_path(&self, path: &str) -> MethodId {
        self.index
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .map_or_else(|_| self.other(), |i| self.index[i].1)
    }

    /// The number of `_OTHER`.
    pub fn other(&self) -> MethodId {
        (self.labels.len() - 1) as MethodId
    }

    /// How many numbers there are (`_OTHER` included).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Never empty (`_OTHER` is always there).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `rpc.method` label of a number.
    pub fn label(&self, id: MethodId) -> &str {
        self.labels
            .get(usize::from(id))
            .map_or(OTHER, String::as_str)
    }

    /// The method name alone (`Get`), for operation labels.
    pub fn short(&self, id: MethodId) -> &str {
        let label = self.label(id);
        label.rsplit_once('/').map_or(label, |(_, m)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_have_their_own_number_and_the_rest_share_other() {
        let m = methods();
        let get = m.of_path("/prism.keyvalue.v1.KeyValue/Get");
        assert_eq!(m.label(get), "prism.keyvalue.v1.KeyValue/Get");
        assert_eq!(m.short(get), "Get");
        assert_ne!(get, m.other());
        let check = m.of_path("/grpc.health.v1.Health/Check");
        assert_eq!(m.label(check), "grpc.health.v1.Health/Check");
        for invented in ["/x.Y/Z", "prism.keyvalue.v1.KeyValue/Get", "/", ""] {
            assert_eq!(m.of_path(invented), m.other(), "{invented:?}");
        }
        assert_eq!(m.label(m.other()), OTHER);
    }
}
