//! Async form of a board's change listener: [`BoardChanges`], a
//! [`Stream`](futures_core::Stream) of [`BoardChange`]s for tokio applications
//! (the async [`Board::watch`], `WM_CLIPBOARDUPDATE`).
//!
//! It yields what [`Board::watch`] yields, with the same coalescing: each
//! item describes the newest item on the board when the stream is polled
//! after a change; the latest item is never missed.
//!
//! ```
//! use futures_util::StreamExt as _;
//! use ipckit::clipboard::{tokio::BoardChanges, BoardOptions, Format};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let ns = ipckit::Namespace::at(dir.path()).unwrap();
//! let board = BoardOptions::new().namespace(&ns).open("clipboard").unwrap();
//! let mut changes = BoardChanges::new(&board).unwrap();
//! // another process sets the clipboard
//! BoardOptions::new().namespace(&ns).open("clipboard").unwrap().set_text("hi").unwrap();
//! let c = changes.next().await.unwrap().unwrap();
//! assert_eq!(c.sequence, 1);
//! assert!(c.formats.contains(&Format::UNICODE_TEXT));
//! # BoardOptions::new().namespace(&ns).remove("clipboard").unwrap();
//! # }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Board, BoardChange};
use crate::error::Result;
use crate::map::tokio::Feed;

/// The changes of a [`Board`] as a [`Stream`](futures_core::Stream): one
/// [`BoardChange`] per newest item after the previous one (by any process, this
/// one included). The stream ends after yielding an error (a corrupt
/// board, say); it never ends otherwise.
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
/// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
/// let mut changes = ipckit::clipboard::tokio::BoardChanges::new(&b).unwrap();
/// b.set_text("1").unwrap();
/// b.set_text("2").unwrap();
/// assert_eq!(changes.next().await.unwrap().unwrap().sequence, 2); // the latest
/// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct BoardChanges {
    feed: Feed<BoardChange>,
}

impl BoardChanges {
    /// Listen for changes of `board` after its current item
    /// (`AddClipboardFormatListener`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let b = ipckit::clipboard::BoardOptions::new().namespace(&ns).open("b").unwrap();
    /// let changes = ipckit::clipboard::tokio::BoardChanges::new(&b).unwrap();
    /// drop(changes); // stops its thread
    /// # ipckit::clipboard::BoardOptions::new().namespace(&ns).remove("b").unwrap();
    /// ```
    #[doc(alias = "AddClipboardFormatListener")]
    pub fn new(board: &Board) -> Result<BoardChanges> {
        let mut watch = board.watch()?;
        let feed = Feed::spawn("ipckit-clip-stream", board.name(), move |wait| {
            watch.next_timeout(Some(wait)).map(Some)
        })?;
        Ok(BoardChanges { feed })
    }
}

impl futures_core::Stream for BoardChanges {
    type Item = Result<BoardChange>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<BoardChange>>> {
        self.get_mut().feed.poll_next(cx)
    }
}
