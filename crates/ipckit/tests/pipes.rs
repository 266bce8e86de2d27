//! The named-pipe suite (`pipes_suite`) on the shared-memory transport (the
//! default for local message-mode pipes), plus the tests that only make
//! sense there: a peer corrupting the shared pages (`pipes_shm`).

mod pipes_shm;
mod pipes_suite;
mod support;

/// Run the suite with the default transport.
const SOCKET_FLAVOR: bool = false;
