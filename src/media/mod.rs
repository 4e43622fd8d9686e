//! Media processing of plaintext previews: the child process that decodes untrusted files.

pub mod child;
