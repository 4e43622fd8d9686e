//! Media processing of plaintext previews: the worker that takes jobs from the bus, the
//! sandbox that runs the decoding child process under limits, and the child itself.

pub mod child;
pub mod sandbox;
pub mod worker;
