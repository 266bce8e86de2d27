//! Clipboard formats: the standard ones with their Win32 numbers, and
//! formats registered by name (`RegisterClipboardFormat`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::name::Namespace;
use crate::registry::Registry;

/// The namespace's registry of clipboard format names
/// (`DIR/.clipformats`, see `docs/PROTOCOL.md`).
const REGISTRY: Registry = Registry {
    file: ".clipformats",
    lock: ".clipformats.lock",
    what: "clipboard format",
};

/// A clipboard format: a standard one (`CF_TEXT` = 1 …), or one registered
/// by name, whose id in `0xC000..=0xFFFF` is the same in every process of
/// the namespace ([`Format::register`]).
///
/// ```
/// use ipckit::clipboard::Format;
/// assert_eq!(Format::UNICODE_TEXT.id(), 13);
/// assert_eq!(Format::standard("files"), Some(Format::HDROP));
/// assert_eq!(Format::TEXT.standard_name(), Some("text"));
/// assert!(Format::from_id(0xC001).is_registered());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Format(u32);

/// The standard formats: Win32 number, constant, ipckit name.
const STANDARD: &[(u32, &str)] = &[
    (1, "text"),
    (2, "bitmap"),
    (3, "metafile-pict"),
    (4, "sylk"),
    (5, "dif"),
    (6, "tiff"),
    (7, "oem-text"),
    (8, "dib"),
    (9, "palette"),
    (10, "pen-data"),
    (11, "riff"),
    (12, "wave"),
    (13, "unicode-text"),
    (14, "enh-metafile"),
    (15, "files"),
    (16, "locale"),
    (17, "dib-v5"),
];

impl Format {
    /// `CF_TEXT` (1): text, one byte per character, NUL-terminated.
    #[doc(alias = "CF_TEXT")]
    pub const TEXT: Format = Format(1);
    /// `CF_BITMAP` (2).
    #[doc(alias = "CF_BITMAP")]
    pub const BITMAP: Format = Format(2);
    /// `CF_METAFILEPICT` (3).
    #[doc(alias = "CF_METAFILEPICT")]
    pub const METAFILE_PICT: Format = Format(3);
    /// `CF_SYLK` (4).
    #[doc(alias = "CF_SYLK")]
    pub const SYLK: Format = Format(4);
    /// `CF_DIF` (5).
    #[doc(alias = "CF_DIF")]
    pub const DIF: Format = Format(5);
    /// `CF_TIFF` (6).
    #[doc(alias = "CF_TIFF")]
    pub const TIFF: Format = Format(6);
    /// `CF_OEMTEXT` (7).
    #[doc(alias = "CF_OEMTEXT")]
    pub const OEM_TEXT: Format = Format(7);
    /// `CF_DIB` (8).
    #[doc(alias = "CF_DIB")]
    pub const DIB: Format = Format(8);
    /// `CF_PALETTE` (9).
    #[doc(alias = "CF_PALETTE")]
    pub const PALETTE: Format = Format(9);
    /// `CF_PENDATA` (10).
    #[doc(alias = "CF_PENDATA")]
    pub const PEN_DATA: Format = Format(10);
    /// `CF_RIFF` (11).
    #[doc(alias = "CF_RIFF")]
    pub const RIFF: Format = Format(11);
    /// `CF_WAVE` (12).
    #[doc(alias = "CF_WAVE")]
    pub const WAVE: Format = Format(12);
    /// `CF_UNICODETEXT` (13): UTF-16LE text, NUL-terminated.
    #[doc(alias = "CF_UNICODETEXT")]
    pub const UNICODE_TEXT: Format = Format(13);
    /// `CF_ENHMETAFILE` (14).
    #[doc(alias = "CF_ENHMETAFILE")]
    pub const ENH_METAFILE: Format = Format(14);
    /// `CF_HDROP` (15): a list of files.
    #[doc(alias = "CF_HDROP")]
    pub const HDROP: Format = Format(15);
    /// `CF_LOCALE` (16).
    #[doc(alias = "CF_LOCALE")]
    pub const LOCALE: Format = Format(16);
    /// `CF_DIBV5` (17).
    #[doc(alias = "CF_DIBV5")]
    pub const DIB_V5: Format = Format(17);

    /// The format with this number (standard, registered, or private).
    ///
    /// ```
    /// assert_eq!(ipckit::clipboard::Format::from_id(1), ipckit::clipboard::Format::TEXT);
    /// ```
    pub const fn from_id(id: u32) -> Format {
        Format(id)
    }

    /// Its number (the Win32 `UINT uFormat`).
    ///
    /// ```
    /// assert_eq!(ipckit::clipboard::Format::HDROP.id(), 15);
    /// ```
    pub const fn id(self) -> u32 {
        self.0
    }

    /// Whether its id is in the registered range `0xC000..=0xFFFF`.
    ///
    /// ```
    /// assert!(!ipckit::clipboard::Format::TEXT.is_registered());
    /// ```
    pub const fn is_registered(self) -> bool {
        self.0 >= crate::registry::MIN && self.0 <= crate::registry::MAX
    }

    /// The standard format called `name` (`text`, `unicode-text`, `files`
    /// …; ASCII case ignored).
    ///
    /// ```
    /// use ipckit::clipboard::Format;
    /// assert_eq!(Format::standard("Unicode-Text"), Some(Format::UNICODE_TEXT));
    /// assert_eq!(Format::standard("png"), None);
    /// ```
    pub fn standard(name: &str) -> Option<Format> {
        STANDARD
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(id, _)| Format(*id))
    }

    /// The ipckit name of a standard format.
    ///
    /// ```
    /// assert_eq!(ipckit::clipboard::Format::UNICODE_TEXT.standard_name(), Some("unicode-text"));
    /// assert_eq!(ipckit::clipboard::Format::from_id(0xC000).standard_name(), None);
    /// ```
    pub fn standard_name(self) -> Option<&'static str> {
        STANDARD
            .iter()
            .find(|(id, _)| *id == self.0)
            .map(|(_, n)| *n)
    }

    /// Every standard format, in number order.
    ///
    /// ```
    /// assert_eq!(ipckit::clipboard::Format::all_standard().next(), Some(ipckit::clipboard::Format::TEXT));
    /// ```
    pub fn all_standard() -> impl Iterator<Item = Format> {
        STANDARD.iter().map(|(id, _)| Format(*id))
    }

    /// Register a format by name in the namespace from the environment
    /// (see [`Format::register_in`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::env::set_var("IPCKIT_NAMESPACE", dir.path());
    /// assert_eq!(ipckit::clipboard::Format::register("PNG").unwrap().id(), 0xC000);
    /// ```
    #[doc(alias = "RegisterClipboardFormat")]
    pub fn register(name: &str) -> Result<Format> {
        Format::register_in(&Namespace::from_env()?, name)
    }

    /// Register a format by name in `ns`: the same name (ASCII case
    /// ignored) gets the same id in every process of the namespace, the
    /// first free one of `0xC000..=0xFFFF` the first time. A standard
    /// format's name gives that format. Names are 1 to 255 bytes.
    ///
    /// ```
    /// use ipckit::clipboard::Format;
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// let png = Format::register_in(&ns, "PNG").unwrap();
    /// assert_eq!(png.id(), 0xC000);
    /// assert_eq!(Format::register_in(&ns, "png").unwrap(), png);
    /// assert_eq!(Format::register_in(&ns, "HTML Format").unwrap().id(), 0xC001);
    /// assert_eq!(Format::register_in(&ns, "text").unwrap(), Format::TEXT);
    /// assert_eq!(png.name_in(&ns).unwrap().as_deref(), Some("PNG"));
    /// ```
    #[doc(alias = "RegisterClipboardFormat")]
    pub fn register_in(ns: &Namespace, name: &str) -> Result<Format> {
        if let Some(f) = Format::standard(name) {
            return Ok(f);
        }
        REGISTRY.register(ns, name).map(Format)
    }

    /// The format a user wrote: a standard name, a number (`13`,
    /// `0xC001`), or a name registered in `ns` — registering it when
    /// `register` is set, else [`ErrorKind::NotFound`].
    ///
    /// ```
    /// use ipckit::clipboard::Format;
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert_eq!(Format::parse_in(&ns, "files", false).unwrap(), Format::HDROP);
    /// assert_eq!(Format::parse_in(&ns, "0x0d", false).unwrap(), Format::UNICODE_TEXT);
    /// assert_eq!(Format::parse_in(&ns, "PNG", false).unwrap_err().kind(), ipckit::ErrorKind::NotFound);
    /// assert_eq!(Format::parse_in(&ns, "PNG", true).unwrap().id(), 0xC000);
    /// ```
    pub fn parse_in(ns: &Namespace, text: &str, register: bool) -> Result<Format> {
        if let Some(f) = Format::standard(text) {
            return Ok(f);
        }
        let number = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => text.parse::<u32>().ok(),
        };
        if let Some(id) = number {
            if id == 0 {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "format 0 does not exist; formats are numbered from 1",
                )
                .with_name(text));
            }
            return Ok(Format(id));
        }
        if register {
            return Format::register_in(ns, text);
        }
        match REGISTRY.find(ns, text)? {
            Some(id) => Ok(Format(id)),
            None => Err(Error::new(
                ErrorKind::NotFound,
                "no clipboard format of this name is registered in the namespace; register it first (ipckit clip register NAME)",
            )
            .with_name(text)),
        }
    }

    /// The name of this format: the standard name, or the name registered
    /// in `ns` (`GetClipboardFormatName`), or `None` for an unregistered
    /// number.
    ///
    /// ```
    /// use ipckit::clipboard::Format;
    /// let dir = tempfile::tempdir().unwrap();
    /// let ns = ipckit::Namespace::at(dir.path()).unwrap();
    /// assert_eq!(Format::TEXT.name_in(&ns).unwrap().as_deref(), Some("text"));
    /// assert_eq!(Format::from_id(0xC123).name_in(&ns).unwrap(), None);
    /// ```
    #[doc(alias = "GetClipboardFormatName")]
    pub fn name_in(self, ns: &Namespace) -> Result<Option<String>> {
        if let Some(n) = self.standard_name() {
            return Ok(Some(n.to_string()));
        }
        if !self.is_registered() {
            return Ok(None);
        }
        REGISTRY.text(ns, self.0)
    }
}

impl fmt::Display for Format {
    /// The standard name, else the number in hex (`0xc000`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.standard_name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}
