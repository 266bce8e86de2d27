//! The named-pipe suite (`pipes_suite`) with `IPCKIT_TRANSPORT=socket`:
//! every connection, in this process and its children, stays on the socket.

mod pipes_suite;
mod support;

/// Run the suite on the socket transport.
const SOCKET_FLAVOR: bool = true;
