//! Async form of a DDE advise loop: [`Updates`], a
//! [`Stream`](futures_core::Stream) of [`Update`]s for tokio applications.
//!
//! It yields what iterating an [`Advise`] yields: the updates in order
//! (with [`Update::skipped`] counting those the bounded queues dropped),
//! then, if the server went away, one [`ErrorKind::PeerGone`] error, then
//! the end; after [`Conversation::unadvise`](super::Conversation::unadvise)
//! it just ends.
//!
//! [`ErrorKind::PeerGone`]: crate::ErrorKind::PeerGone
//!
//! ```
//! use futures_util::StreamExt as _;
//! use ipckit::clipboard::Format;
//! use ipckit::dde::{tokio::Updates, ConversationOptions, Link, DdeServerOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! // process A: the server
//! let s = DdeServerOptions::new().namespace(&ns).topic("prices").create("quotes").unwrap();
//! s.set_item("prices", "ACME", Format::TEXT, b"10").unwrap();
//! // process B (async): a hot link
//! let c = ConversationOptions::new().namespace(&ns).connect("quotes", "prices").unwrap();
//! let mut updates = Updates::new(c.advise("ACME", Format::TEXT, Link::Hot).unwrap()).unwrap();
//! s.set_item("prices", "ACME", Format::TEXT, b"11").unwrap();
//! let u = updates.next().await.unwrap().unwrap();
//! assert_eq!(u.data.unwrap(), b"11");
//! drop(s); // the server goes away: one PeerGone, then the end
//! let e = updates.next().await.unwrap().unwrap_err();
//! assert_eq!(e.kind(), ipckit::ErrorKind::PeerGone);
//! assert!(updates.next().await.is_none());
//! # }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Advise, Update};
use crate::error::{ErrorKind, Result};
use crate::map::tokio::Feed;

/// The updates of an advise loop as a [`Stream`](futures_core::Stream)
/// (see the [module docs](self) for how it ends). The [`Advise`] moves into
/// a thread of its own that waits for updates while the stream is polled;
/// dropping the stream stops the thread and ends the link as dropping the
/// `Advise` does.
///
/// ```
/// # use futures_util::StreamExt as _;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
/// use ipckit::{clipboard::Format, dde::Link};
/// let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
/// s.set_item("t", "x", Format::TEXT, b"0").unwrap();
/// let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
/// let warm = c.advise("x", Format::TEXT, Link::Warm).unwrap();
/// let mut updates = ipckit::dde::tokio::Updates::new(warm).unwrap();
/// s.set_item("t", "x", Format::TEXT, b"1").unwrap();
/// let u = updates.next().await.unwrap().unwrap();
/// assert_eq!((u.item.as_str(), u.data), ("x", None)); // warm: request it
/// assert_eq!(c.request("x", Format::TEXT).unwrap(), b"1");
/// # }
/// ```
#[derive(Debug)]
pub struct Updates {
    feed: Feed<Update>,
}

impl Updates {
    /// The stream of `advise`'s updates.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// # use ipckit::{clipboard::Format, dde::Link};
    /// # let s = ipckit::dde::DdeServerOptions::new().namespace(&ns).topic("t").create("svc").unwrap();
    /// # s.set_item("t", "x", Format::TEXT, b"0").unwrap();
    /// # let c = ipckit::dde::ConversationOptions::new().namespace(&ns).connect("svc", "t").unwrap();
    /// let a = c.advise("x", Format::TEXT, Link::Hot).unwrap();
    /// let updates = ipckit::dde::tokio::Updates::new(a).unwrap();
    /// drop(updates); // stops its thread; the link ends
    /// ```
    #[doc(alias = "XTYP_ADVSTART")]
    pub fn new(mut advise: Advise) -> Result<Updates> {
        let name = advise.item().to_string();
        let feed = Feed::spawn("ipckit-dde-stream", &name, move |wait| {
            match advise.recv_timeout(wait) {
                Ok(u) => Ok(Some(u)),
                // Unadvised (or replaced): the iterator just ends too.
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        Ok(Updates { feed })
    }
}

impl futures_core::Stream for Updates {
    type Item = Result<Update>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Update>>> {
        self.get_mut().feed.poll_next(cx)
    }
}
