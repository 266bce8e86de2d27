//! The clipboard board (`OpenClipboard` / `SetClipboardData` /
//! `GetClipboardData`): a named board holding one item in several formats.

mod format;

pub use format::Format;
