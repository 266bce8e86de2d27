//! Async form of a shared map's changes: [`Changes`], a
//! [`Stream`](futures_core::Stream) of [`Change`]s for tokio applications.
//!
//! It yields what [`SharedMap::watch`] yields, with the same coalescing:
//! each item is the newest content when the stream is polled after a
//! change (versions overtaken meanwhile are counted in
//! [`Change::skipped`], the latest is never missed).
//!
//! ```
//! use futures_util::StreamExt as _;
//! use ipckit::map::{tokio::Changes, SharedMapOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let opts = SharedMapOptions::new().namespace(&ns);
//! // process A (async) watches
//! let mut changes = Changes::new(opts.open_or_create("settings").unwrap()).unwrap();
//! // process B writes
//! opts.open("settings").unwrap().write_text("volume=3").unwrap();
//! let c = changes.next().await.unwrap().unwrap();
//! assert_eq!(c.content, b"volume=3");
//! # ipckit::shm::MappingOptions::new().namespace(&ns).remove("settings").unwrap();
//! # }
//! ```

use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tokio::sync::mpsc as async_mpsc;

use super::{Change, SharedMap};
use crate::error::{Error, ErrorKind, Result};

/// How long a feeder thread waits in one go before looking whether its
/// stream was dropped.
const SLICE: Duration = Duration::from_millis(100);

/// A stream fed by a thread that waits for the next item only when the
/// stream asks for one (so an item is as fresh as a blocking iterator's
/// `next()` would return), shared by the map, clipboard and DDE streams.
///
/// The thread stops within one [`SLICE`] once the stream is dropped.
#[derive(Debug)]
pub(crate) struct Feed<T> {
    /// One `()` per item asked for; dropped with the stream, which ends
    /// the thread's loop.
    ask: mpsc::Sender<()>,
    items: async_mpsc::UnboundedReceiver<Result<T>>,
    asked: bool,
    done: bool,
}

impl<T: Send + 'static> Feed<T> {
    /// Start the thread `thread`: on each request it calls `step` with at
    /// most [`SLICE`] to wait; `Ok(Some(item))` is delivered,
    /// `Err(Timeout)` means "nothing yet" (asked again after checking the
    /// stream is still there), `Ok(None)` ends the stream, and any other
    /// error is delivered and ends it.
    pub(crate) fn spawn(
        thread: &str,
        object: &str,
        mut step: impl FnMut(Duration) -> Result<Option<T>> + Send + 'static,
    ) -> Result<Feed<T>> {
        let (ask, asks) = mpsc::channel::<()>();
        let (tx, items) = async_mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                for () in asks.iter() {
                    loop {
                        if tx.is_closed() {
                            return;
                        }
                        match step(SLICE) {
                            Ok(Some(item)) => {
                                if tx.send(Ok(item)).is_err() {
                                    return;
                                }
                                break;
                            }
                            Err(e) if e.kind() == ErrorKind::Timeout => {}
                            Ok(None) => return,
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::os(e, "cannot start the stream's thread").with_name(object))?;
        Ok(Feed {
            ask,
            items,
            asked: false,
            done: false,
        })
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.asked {
            // If the thread has ended, `items` reports the end below.
            let _ = self.ask.send(());
            self.asked = true;
        }
        match self.items.poll_recv(cx) {
            Poll::Ready(Some(item)) => {
                self.asked = false;
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The changes of a [`SharedMap`] as a [`Stream`](futures_core::Stream)
/// (the async [`SharedMap::watch`]): each item is the newest content after
/// the previous item, with the number of versions overtaken. The stream
/// ends after yielding an error (the map is corrupt, say); it never ends
/// otherwise.
///
/// A thread of its own waits for changes while the stream is polled; it
/// stops when the stream is dropped.
///
/// ```
/// # use futures_util::StreamExt as _;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// let opts = ipckit::map::SharedMapOptions::new().namespace(&ns);
/// let mut w = opts.create("m").unwrap();
/// let mut changes = ipckit::map::tokio::Changes::new(opts.open("m").unwrap()).unwrap();
/// w.write(b"1").unwrap();
/// w.write(b"2").unwrap();
/// let c = changes.next().await.unwrap().unwrap();
/// assert_eq!((c.content.as_slice(), c.version, c.skipped), (&b"2"[..], 2, 1));
/// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct Changes {
    feed: Feed<Change>,
}

impl Changes {
    /// Watch `map` (the handle moves into the stream's thread): changes
    /// after the version this handle last saw, as [`SharedMap::watch`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let m = ipckit::map::SharedMapOptions::new().namespace(&ns).create("m").unwrap();
    /// let changes = ipckit::map::tokio::Changes::new(m).unwrap();
    /// drop(changes); // stops its thread
    /// # ipckit::shm::MappingOptions::new().namespace(&ns).remove("m").unwrap();
    /// ```
    #[doc(alias = "OnChange")]
    pub fn new(mut map: SharedMap) -> Result<Changes> {
        let name = map.name().to_string();
        let feed = Feed::spawn("ipckit-map-stream", &name, move |wait| {
            map.wait_change(Some(wait)).map(Some)
        })?;
        Ok(Changes { feed })
    }
}

impl futures_core::Stream for Changes {
    type Item = Result<Change>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Change>>> {
        self.get_mut().feed.poll_next(cx)
    }
}
