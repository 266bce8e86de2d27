//! # ipckit
//!
//! The classic Windows inter-process toolbox — named pipes, anonymous
//! pipes, named shared memory, named sync objects, a shared map with change
//! broadcast, mailslots, window-style messages, a multi-format clipboard
//! board, DDE data links, RPC to a compute server — on Linux, under one API.
//!
//! Every named object lives in a [`Namespace`] (a private per-user
//! directory) and every call returns the one [`Error`] type, whose
//! [`ErrorKind`] says what happened.
//!
//! ```
//! # #[cfg(feature = "pipe")] {
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
//! # }
//! ```
//!
//! # Modules
//!
//! | module | Win32 original | feature |
//! |---|---|---|
//! | [`name`] | object names, `ERROR_ALREADY_EXISTS`, stale endpoints | always |
//! | [`shm`] | `CreateFileMapping` / `MapViewOfFile` | always |
//! | [`sync`] | `CreateMutex` (abandoned), events, semaphores | always |
//! | [`map`] | the Delphi `TFileMap`: a shared value with change broadcast | always |
//! | `pipe` | `CreatePipe`, `CreateNamedPipe` / `ConnectNamedPipe` / `WaitNamedPipe` / `TransactNamedPipe` | `pipe` |
//! | `mailslot` | `CreateMailslot`, broadcast groups, UDP | `mailslot` |
//! | `message` | `SendMessage` / `PostMessage` / `WM_COPYDATA` / `RegisterWindowMessage` | `message` |
//! | `clipboard` | `OpenClipboard` / `SetClipboardData` / `RegisterClipboardFormat`, delayed rendering | `clipboard` |
//! | `dde` | DDEML: `DdeConnect`, request, poke, execute, hot and warm advise | `dde` (with `clipboard`) |
//! | `service` | RPC to a compute server (the seed's `SendMessage` + `ReadProcessMemory`) | `service` |
//! | [`Limits`], [`ConnStats`] | what every server accepts, and its counters | always |
//!
//! Every mechanism with a blocking API also has an async one for tokio
//! applications in its `tokio` submodule (`ipckit::pipe::tokio`,
//! `ipckit::sync::tokio` …), behind the `tokio` feature.
//!
//! # Features
//!
//! - `pipe`, `service`, `mailslot`, `message`, `clipboard`, `dde`: one per
//!   mechanism, all on by default. Shared memory, sync objects and the
//!   shared map are always there; `--no-default-features` builds only them
//!   (without `postcard`, which only services need, and `crossbeam-channel`,
//!   which only pipes need).
//! - `tokio`: the async forms (off by default).
//!
//! # Platforms
//!
//! Linux (built and tested on x86-64). The Win32 backend is not written
//! yet: building for any other OS stops with a `compile_error!` saying so.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Dead code is checked in the default build (every mechanism on); a build
// without some mechanism leaves parts of the shared layers unused.
#![cfg_attr(
    not(all(
        feature = "pipe",
        feature = "service",
        feature = "mailslot",
        feature = "message",
        feature = "clipboard",
        feature = "dde"
    )),
    allow(dead_code, unused_imports)
)]

#[cfg(not(target_os = "linux"))]
compile_error!("ipckit runs on Linux only for now: its Windows backend (the Win32 objects themselves) is not written yet");

#[cfg(feature = "clipboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "clipboard")))]
pub mod clipboard;
// Unit tests that run the crate's own test helpers (tests/support) name
// it `ipckit`, as the integration tests do.
#[cfg(test)]
extern crate self as ipckit;

mod conn;
#[cfg(feature = "dde")]
#[cfg_attr(docsrs, doc(cfg(feature = "dde")))]
pub mod dde;
pub mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
#[cfg(feature = "mailslot")]
#[cfg_attr(docsrs, doc(cfg(feature = "mailslot")))]
pub mod mailslot;
pub mod map;
#[cfg(feature = "message")]
#[cfg_attr(docsrs, doc(cfg(feature = "message")))]
pub mod message;
pub mod name;
#[cfg(feature = "pipe")]
#[cfg_attr(docsrs, doc(cfg(feature = "pipe")))]
pub mod pipe;
#[cfg(all(
    test,
    feature = "pipe",
    feature = "service",
    feature = "mailslot",
    feature = "message"
))]
mod process_tests;
#[cfg(any(feature = "message", feature = "clipboard"))]
mod registry;
#[cfg(feature = "service")]
#[cfg_attr(docsrs, doc(cfg(feature = "service")))]
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
