//! The Prism runtime: proxy configuration, namespace router, pattern services and backend adapters.
//!
//! A call flows `server (transport, protocol checks) → guard (auth) → namespace resolution →
//! pattern service → capability check → backend adapter`. [`patterns`] holds the registry of
//! patterns and each pattern's adapter traits and service; [`backends`] holds each backend's bundle
//! of adapters; [`server::Proxy`] wires it together.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod backends;
pub mod budget;
pub mod config;
pub mod limits;
pub mod patterns;
pub mod reload;
pub mod router;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod telemetry;
