//! The service suite on the socket transport (`IPCKIT_TRANSPORT=socket`
//! for this process and the servers it starts). See `service_suite/mod.rs`.

/// This flavor sets `IPCKIT_TRANSPORT=socket`.
const SOCKET: bool = true;

mod service_suite;
mod support;
