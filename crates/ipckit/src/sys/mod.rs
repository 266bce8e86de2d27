//! Operating-system calls. Everything ipckit asks of the kernel goes through
//! this module. One backend per operating system provides its items, and
//! `cfg` picks it: `linux/` (every call through `rustix`) and `windows/`
//! (every call through `windows-sys`). Nothing above `sys/` names an OS
//! call.
//!
//! # The contract a backend meets
//!
//! Linux is the complete backend. A Windows (or macOS) backend provides the
//! same items with the same meaning; the Windows one so far provides shared
//! memory, the named sync objects, pipes, mailslots, and the sockets and
//! readiness the connection layer needs (see "Windows" below):
//!
//! - **identity** ([`uid`]): the caller's user id; [`MAX_UNIX_PATH`], the
//!   longest socket path the platform accepts.
//! - **records** ([`try_lock_exclusive`], [`is_locked`]): an advisory lock
//!   on an open file that the kernel releases when its holder dies, however
//!   it dies, and a probe telling whether someone holds it.
//! - **sockets** ([`net`]): stream sockets (local and TCP) created
//!   close-on-exec, whole-buffer send that never raises `SIGPIPE`, exact
//!   receive that tells a clean end-of-stream from a torn one, waiting for
//!   readability with a timeout, peer credentials (pid, uid, gid), shutting
//!   down only the receiving direction so a blocked reader wakes with
//!   end-of-stream while replies can still be written (service shutdown).
//! - **socket types** (in [`net`]): `Socket` (one end of a connection, or
//!   a listener; dropping it closes it and the peer sees end of stream),
//!   `SocketRef<'a>` (a `Copy` borrow of one), the trait `AsSocket` every
//!   call that closes takes, and `PassedFd` (a descriptor passed along a
//!   socket). On Linux they are `OwnedFd`, `BorrowedFd`, any `AsFd` and
//!   `OwnedFd`; on Windows a struct, `&Socket`, and an uninhabited enum.
//! - **readiness** ([`poll`], and in [`net`]): one poller watching many
//!   sockets for readability and hang-up (epoll on Linux), level-triggered,
//!   with wakers (`Poller::waker(token)`: `wake` from any thread makes the
//!   next or current `wait` report `token` until the loop calls `drain`; a
//!   non-blocking pipe on Linux, a flag on Windows), listeners that accept without blocking, receives
//!   that return at once when nothing is there (passing descriptors along),
//!   sends bounded by a timeout, and telling "out of descriptors or kernel
//!   memory" from other accept failures (a server then backs off). On
//!   Windows, named pipes take the place of Unix sockets behind the same
//!   calls.
//! - **pipes** ([`pipe`]): an anonymous pipe with both ends close-on-exec,
//!   and placing one fd at a chosen number in a child about to be started.
//! - **registries** ([`lock_exclusive`]): a blocking exclusive advisory lock
//!   (released by the kernel when the holder dies), used to serialise
//!   read-modify-write of small shared files such as the message-id registry.
//! - **datagrams** ([`udp`]): a UDP socket bound close-on-exec (joining a
//!   multicast group when the address is one), sending with broadcast
//!   allowed and multicast kept to the local link, and receiving with a
//!   timeout.
//! - **shared memory** ([`shm`]): an unnamed memory object that gets its
//!   name atomically once initialised (exactly one racing creator wins),
//!   open/unlink by name (the `shm_open` namespace), anonymous objects
//!   (`memfd`), file-backed objects, shared read-write mappings, free-space
//!   query, and shared/exclusive `flock`s telling whether anyone has an
//!   object open; an anonymous object whose size is sealed, and a check
//!   that a received object is sealed (mapping an object a peer can shrink
//!   would let it crash us with `SIGBUS`).
//! - **futexes** ([`futex`]): wait on a 32-bit word in shared memory with a
//!   timeout and wake any number of waiters in any process; the calling
//!   thread's id and whether a thread id still names a live, non-zombie
//!   thread (lock-owner death detection).
//!
//! - **scheduling** ([`yield_now`]): let another runnable thread have the
//!   CPU (a spinning waiter on an overcommitted machine).
//!
//! Errors are `std::io::Error`; the layers above turn them into
//! [`crate::Error`] with the object's name.
//!
//! # Windows
//!
//! `windows/` provides **shared memory**: named section objects
//! (`CreateFileMappingW` on the paging file / `OpenFileMappingW`, with
//! `ERROR_ALREADY_EXISTS` telling an opened object from a created one),
//! unnamed ones, file-backed ones, views (`MapViewOfFile`), the size of a
//! view (`VirtualQuery`), the commit memory still free, and a security
//! descriptor granting only the calling user (plus everyone when widened).
//! A Win32 object vanishes with its last handle, so there is no unlink, no
//! `flock` liveness and no orphan to replace. The **named sync objects**
//! (`windows/sync.rs`): `CreateMutexW` / `CreateEventW` /
//! `CreateSemaphoreW` and their `Open…` forms under the same names as
//! sections, waits with `WAIT_ABANDONED` reported, and the state queries
//! (`NtQueryEvent`, `NtQuerySemaphore`). **Pipes** (`windows/pipe.rs`):
//! named pipe instances (`CreateNamedPipeW` with a user-only descriptor),
//! clients (`CreateFileW`, `WaitNamedPipeW`), overlapped reads, writes,
//! connects and transactions bounded by a timeout (`CancelIoEx`), the
//! peer's pid, the check that a server process runs as the calling user,
//! and `CreatePipe` with inheritance switched on only around one spawn.
//! **Mailslots** (`windows/mailslot.rs`): `CreateMailslotW` with a
//! user-only descriptor, `GetMailslotInfo` / `SetMailslotInfo`, reads and
//! writes, and the UDP socket that carries datagrams from other machines.
//! **Sockets** (`windows/net.rs`) emulate a connected stream socket over
//! one instance of a byte-mode duplex named pipe,
//! `\\.\pipe\ipckit.<H>.<name>` (the name the pipe mechanism uses, so a
//! service and a pipe of one name collide): `pipe_listen` (its first
//! instance made with `FILE_FLAG_FIRST_PIPE_INSTANCE`: a name already
//! served is `AlreadyExists`; instances user-only, remote clients refused)
//! and `pipe_connect` (`NotFound`, `TimedOut` when every instance stayed
//! busy, `PermissionDenied`); a reader thread per connection fills a
//! bounded buffer that receives, waits and readiness are served from.
//! `peer_cred` gives `(pid, uid, 0)` with `uid == uid()` for a peer of the
//! calling user and `u32::MAX` for any other; `unread_outgoing` is `Ok(0)`
//! and `take_error` false (Windows cannot tell); TCP is `Unsupported`.
//! **Readiness** (`windows/poll.rs`): the same `Poller` over those
//! sockets. Linux-only (no Windows form, and their callers are `cfg(unix)`):
//! `unix_listen`, `unix_connect`, `send_with_fd`, `send_some_nowait`,
//! `recv_some_nowait`, `shutdown_write`, futexes and records; so are the
//! shared-memory ring, descriptor passing, TCP endpoints and the async
//! socket forms of the connection layer. Services and window messages run
//! on Windows over these sockets; the clipboard and DDE are Linux-only for
//! now.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
