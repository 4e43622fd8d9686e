//! Sealpost's media service: accounts, resumable uploads into a content-addressed blob store,
//! downloads, and the `sealpost` binary that assembles it.

pub mod app;
pub mod blobs;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod media;
pub mod metrics;
pub mod openapi;
pub mod state;
pub mod uploads;

pub use app::Application;
pub use config::{Role, Settings};
