//! The Prism runtime: proxy configuration, namespace router, pattern services and backend adapters.
//!
//! A call flows `tonic server → layers (namespace resolution; later auth, limits, metrics) →
//! pattern service → capability check → backend adapter`. [`server::Proxy`] wires it together.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod backends;
pub mod capability;
pub mod config;
pub mod keyvalue;
pub mod limits;
pub mod router;
pub mod secret;
pub mod server;
pub mod shutdown;
