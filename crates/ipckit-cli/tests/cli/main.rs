//! The `ipckit` command itself: each subcommand run as a real process
//! against real peers, its output and exit status checked. (What the
//! library does across processes is tested in `crates/ipckit/tests`; here
//! the other side is usually this test process, through the library.)

#[path = "../common/mod.rs"]
mod common;

mod clip;
mod dde;
mod demo;
mod ls;
mod map;
mod markdown;
mod msg;
mod pipe;
mod quickstart;
mod service;
mod shm;
mod signals;
mod slot;
mod sync;
