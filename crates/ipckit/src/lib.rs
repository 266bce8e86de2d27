//! # ipckit
//!
//! The classic Windows inter-process toolbox — named pipes, anonymous
//! pipes, named shared memory, named sync objects, mailslots, window-style
//! messages, RPC to a compute server — on Linux, under one API.
//!
//! Every named object lives in a [`Namespace`] (a private per-user
//! directory) and every call returns the one [`Error`] type, whose
//! [`ErrorKind`] says what happened.
//!
//! ```
//! use std::time::Duration;
//! use ipckit::pipe::{ClientOptions, ServerOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//!
//! // process A: an echo server
//! let server = ServerOptions::new().namespace(&ns).create("echo").unwrap();
//! let t = std::thread::spawn(move || {
//!     let mut conn = server.accept().unwrap();
//!     let msg = conn.recv().unwrap();
//!     conn.send(&msg).unwrap();
//! });
//!
//! // process B: a client
//! let mut pipe = ClientOptions::new()
//!     .namespace(&ns)
//!     .timeout(Duration::from_secs(5))
//!     .connect("echo")
//!     .unwrap();
//! assert_eq!(pipe.transact(b"ping").unwrap(), b"ping");
//! t.join().unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod clipboard;
// Unit tests that run the crate's own test helpers (tests/support) name
// it `ipckit`, as the integration tests do.
#[cfg(test)]
extern crate self as ipckit;

mod conn;
pub mod dde;
pub mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod mailslot;
pub mod map;
pub mod message;
pub mod name;
pub mod pipe;
#[cfg(test)]
mod process_tests;
mod registry;
pub mod service;
pub mod shm;
pub mod sync;
mod sys;
pub mod transport;

pub use conn::ConnStats;
pub use error::{Error, ErrorKind, Result};
pub use limits::Limits;
pub use name::Namespace;
pub use transport::{Transport, WaitStrategy};
