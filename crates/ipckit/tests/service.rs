//! The service suite on the default transport: shared memory (rings in a
//! memfd; the socket only detects the peer's death). See
//! `service_suite/mod.rs`; `service_socket.rs` runs it on the socket.

/// This flavor keeps the default transport.
const SOCKET: bool = false;

mod service_suite;
mod support;
