//! gRPC status codes by their canonical names (`INVALID_ARGUMENT`, …), as scenarios write them.

use std::fmt;
use tonic::Code;

/// A gRPC status code usable as a map key and printable by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(pub i32);

const NAMES: [(Code, &str); 17] = [
    (Code::Ok, "OK"),
    (Code::Cancelled, "CANCELLED"),
    (Code::Unknown, "UNKNOWN"),
    (Code::InvalidArgument, "INVALID_ARGUMENT"),
    (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (Code::NotFound, "NOT_FOUND"),
    (Code::AlreadyExists, "ALREADY_EXISTS"),
    (Code::PermissionDenied, "PERMISSION_DENIED"),
    (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (Code::FailedPrecondition, "FAILED_PRECONDITION"),
    (Code::Aborted, "ABORTED"),
    (Code::OutOfRange, "OUT_OF_RANGE"),
    (Code::Unimplemented, "UNIMPLEMENTED"),
    (Code::Internal, "INTERNAL"),
    (Code::Unavailable, "UNAVAILABLE"),
    (Code::DataLoss, "DATA_LOSS"),
    (Code::Unauthenticated, "UNAUTHENTICATED"),
];

impl StatusCode {
    /// Looks a code up by its canonical name.
    pub fn from_name(name: &str) -> Option<Self> {
        NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| StatusCode(*c as i32))
    }

    /// Every canonical name, for "expected one of" messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(_, n)| *n)
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(c, _)| *c as i32 == self.0)
            .map_or("UNKNOWN", |(_, n)| n)
    }
}

impl From<Code> for StatusCode {
    fn from(code: Code) -> Self {
        StatusCode(code as i32)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for name in StatusCode::names() {
            assert_eq!(StatusCode::from_name(name).unwrap().name(), name);
        }
        assert_eq!(StatusCode::from(Code::Aborted).name(), "ABORTED");
        assert_eq!(StatusCode::from_name("invalid_argument"), None);
    }
}
