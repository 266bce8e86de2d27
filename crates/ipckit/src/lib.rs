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
//! | module | Win32 original | feature | on Windows |
//! |---|---|---|---|
//! | [`name`] | object names, `ERROR_ALREADY_EXISTS`, stale endpoints | always | names, [`Namespace`] and endpoint records (of services, DDE servers and window-message receivers; locked with `LockFileEx`) |
//! | [`shm`] | `CreateFileMapping` / `MapViewOfFile` | always | yes: the Win32 sections themselves |
//! | [`sync`] | `CreateMutex` (abandoned), events, semaphores | always | yes: the Win32 named objects themselves, async too (`sync::tokio`); no in-mapping forms |
//! | [`map`] | the Delphi `TFileMap`: a shared value with change broadcast | always | yes: a section, a named mutex and one event per watcher, async too (`map::tokio`) |
//! | `pipe` | `CreatePipe`, `CreateNamedPipe` / `ConnectNamedPipe` / `WaitNamedPipe` / `TransactNamedPipe` | `pipe` | yes: the system's named pipes (`\\.\pipe\ipckit.<H>.<name>`) and `CreatePipe`, async too (`pipe::tokio`); no TCP, fd passing or shared-memory transport |
//! | `mailslot` | `CreateMailslot`, broadcast groups, UDP | `mailslot` | yes: the system's mailslots (`\\.\mailslot\ipckit.<H>.<name>`) and UDP, async too (`mailslot::tokio`); no groups |
//! | `message` | `SendMessage` / `PostMessage` / `WM_COPYDATA` / `RegisterWindowMessage` | `message` | yes: over byte-mode named pipes (`\\.\pipe\ipckit.<H>.<name>`), the same frames, async too (`message::tokio`); no Zenoh broadcasts |
//! | `clipboard` | `OpenClipboard` / `SetClipboardData` / `RegisterClipboardFormat`, delayed rendering | `clipboard` | yes: the board is the Windows shared map, an owner's render endpoint a byte-mode named pipe (`\\.\pipe\ipckit.<H>..clip-<token>`), the same bytes; async too (`clipboard::tokio`) |
//! | `dde` | DDEML: `DdeConnect`, request, poke, execute, hot and warm advise | `dde` (with `clipboard`) | yes: over byte-mode named pipes (`\\.\pipe\ipckit.<H>.<name>`), the same frames, async too (`dde::tokio`); no TCP or Zenoh |
//! | `service` | RPC to a compute server (`SendMessage` a request, `ReadProcessMemory` the result) | `service` | yes: over byte-mode named pipes (`\\.\pipe\ipckit.<H>.<name>`), the same frames, async too; no shared-memory lanes, TCP or Zenoh |
//! | [`Limits`], [`ConnStats`] | what every server accepts, and its counters | always | yes (counters not published for `ipckit ls`) |
//! | [`transport`] | which path a connection takes ([`Transport`], [`WaitStrategy`]) | always | yes: always the pipe ([`Transport::Socket`]) |
//! | [`error`] | `GetLastError` | always | yes |
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
//! - `schema` (on by default; implies `service`): JSON Schemas of a
//!   handler's argument and result in `ipckit.describe`
//!   (`ServerBuilder::handler_with_schema`), generated with `schemars` 1.x.
//! - `zenoh` (off by default; implies `service`): [`fabric`], services
//!   found by name across machines over an Eclipse Zenoh fabric, with
//!   discovery; with `dde`, `mailslot` or `message` also DDE links, group
//!   broadcasts and window-message broadcasts across it (`zenoh://` names);
//!   `zenoh-tls` and `zenoh-quic` add those links.
//!
//! On Windows `pipe` builds the system's pipes, `mailslot` the system's
//! mailslots, and `service`, `message`, `clipboard` and `dde` run over
//! named pipes (see Platforms); `zenoh` is Linux-only.
//!
//! # Platforms
//!
//! - **Linux**: everything (built and tested on x86-64).
//! - **Windows** (built for `x86_64-pc-windows-gnu` and tested under Wine):
//!   [`error`], [`limits`], [`name`] (name rules and [`Namespace`]),
//!   [`shm`] (named mappings are Win32 file mappings, `CreateFileMappingW` /
//!   `OpenFileMappingW`, `Local\ipckit.<H>.<name>`), [`sync`] (the Win32
//!   named mutex, event and semaphore), [`map`] (a section, a named mutex
//!   and an event per watcher), `pipe` (Win32 named pipes and `CreatePipe`),
//!   `mailslot` (Win32 mailslots), and `service`, `message`, `clipboard`
//!   and `dde` over the connection layer's byte-mode named pipes (same API
//!   and frames; no shared-memory lanes, TCP or Zenoh); each module says
//!   what differs.
//!
//! Building for any other OS stops with a `compile_error!`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Dead code is checked in the default build (every mechanism on); a build
// without some mechanism leaves parts of the shared layers unused.
// On Windows, where most of the crate is not ported yet, likewise.
#![cfg_attr(
    any(
        not(unix),
        not(all(
            feature = "pipe",
            feature = "service",
            feature = "mailslot",
            feature = "message",
            feature = "clipboard",
            feature = "dde"
        ))
    ),
    allow(dead_code, unused_imports)
)]

#[cfg(not(any(target_os = "linux", windows)))]
compile_error!("ipckit builds for Linux and Windows only: this target is neither");

#[cfg(feature = "clipboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "clipboard")))]
pub mod clipboard;
// Unit tests that run the crate's own test helpers (tests/support) name
// it `ipckit`, as the integration tests do.
#[cfg(test)]
extern crate self as ipckit;

// The connection layer: on Windows (named pipes behind `sys::net`) it
// carries services, window messages, clipboard render requests and DDE.
mod conn;
#[cfg(feature = "dde")]
#[cfg_attr(docsrs, doc(cfg(feature = "dde")))]
pub mod dde;
pub mod error;
#[cfg(all(feature = "zenoh", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "zenoh")))]
pub mod fabric;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
#[cfg(all(feature = "mailslot", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "mailslot")))]
pub mod mailslot;
// On Windows mailslots are the system's (`CreateMailslotW`): mailslot/windows.rs.
#[cfg(all(feature = "mailslot", windows))]
#[cfg_attr(docsrs, doc(cfg(feature = "mailslot")))]
#[path = "mailslot/windows.rs"]
pub mod mailslot;
#[cfg(unix)]
pub mod map;
// On Windows the shared map is a section, a named mutex and a change event: map/windows.rs.
#[cfg(windows)]
#[path = "map/windows.rs"]
pub mod map;
#[cfg(feature = "message")]
#[cfg_attr(docsrs, doc(cfg(feature = "message")))]
pub mod message;
pub mod name;
#[cfg(all(feature = "pipe", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "pipe")))]
pub mod pipe;
// On Windows named and anonymous pipes are the system's: pipe/windows.rs.
#[cfg(all(feature = "pipe", windows))]
#[cfg_attr(docsrs, doc(cfg(feature = "pipe")))]
#[path = "pipe/windows.rs"]
pub mod pipe;
#[cfg(all(
    test,
    unix,
    feature = "pipe",
    feature = "service",
    feature = "mailslot",
    feature = "message"
))]
mod process_tests;
#[cfg(any(feature = "message", feature = "clipboard"))]
mod registry;
// On Windows services run over named pipes (the connection layer's
// Windows flavor), without shared-memory lanes or TCP.
#[cfg(feature = "service")]
#[cfg_attr(docsrs, doc(cfg(feature = "service")))]
pub mod service;
pub mod shm;
#[cfg(unix)]
pub mod sync;
// On Windows the sync objects are the system's own (sync/windows.rs): the
// same types and methods, without the in-mapping forms.
#[cfg(windows)]
#[path = "sync/windows.rs"]
pub mod sync;
mod sys;
pub mod transport;

pub use conn::ConnStats;
pub use error::{Error, ErrorKind, Result};
pub use limits::Limits;
pub use name::Namespace;
pub use transport::{Transport, WaitStrategy};
