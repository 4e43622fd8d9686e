//! Resumable uploads at `/v1/uploads`: tus 1.0.0 and the IETF resumable-upload draft over one
//! state machine.

pub mod api_doc;
mod concat;
pub mod protocol;
pub mod routes;
pub mod service;
mod sink;
mod takeover;
mod transfers;

pub use service::UploadService;
