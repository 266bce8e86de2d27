//! The byte encoding of a board's item (the content of its shared map),
//! and its checked decoding: the board's memory is untrusted input, so
//! every count, length and offset read from it is checked here, in one
//! place, before use. The layout is in `docs/PROTOCOL.md`, "Clipboard
//! boards"; all integers little-endian.
//!
//! ```text
//! 0   [u8; 8] magic "IPCKCLIP"
//! 8   u32     layout version (1)
//! 12  u32     number of formats N (at most MAX_FORMATS)
//! 16  u64     sequence number
//! 24  u32     owner pid (0: none)
//! 28  u32     flags (0)
//! 32  u64     owner start time (Linux: /proc/PID/stat field 22; Windows:
//!             the creation time, 100 ns since 1601; 0: unknown)
//! 40  u64     render token (0: no render endpoint)
//! 48  N x 16  entries: u32 format id, u32 flags (bit 0: promised), u64 length
//! ..          the data of each entry, in entry order, back to back
//! ```
//!
//! An empty content is the fresh board: sequence 0, no owner, no formats.

use super::Format;

pub(crate) const MAGIC: &[u8; 8] = b"IPCKCLIP";
pub(crate) const LAYOUT: u32 = 1;
pub(crate) const HEADER: usize = 48;
pub(crate) const ENTRY: usize = 16;
/// Most formats one item holds.
pub(crate) const MAX_FORMATS: usize = 1024;
/// Bytes an item takes beyond its format data, at most.
pub(crate) const OVERHEAD: usize = HEADER + ENTRY * MAX_FORMATS;
/// Entry flag: promised (delayed rendering), no data.
pub(crate) const PROMISED: u32 = 1;

/// One format of an item: its data, or a promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub format: Format,
    /// `None`: promised (the owner renders it on request).
    pub data: Option<Vec<u8>>,
}

/// A decoded item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Item {
    pub sequence: u64,
    pub owner_pid: u32,
    pub owner_start: u64,
    pub token: u64,
    pub entries: Vec<Entry>,
}

impl Item {
    /// Bytes of format data.
    pub(crate) fn data_len(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.data.as_ref().map_or(0, Vec::len))
            .sum()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER + ENTRY * self.entries.len() + self.data_len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&LAYOUT.to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.sequence.to_le_bytes());
        b.extend_from_slice(&self.owner_pid.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.owner_start.to_le_bytes());
        b.extend_from_slice(&self.token.to_le_bytes());
        for e in &self.entries {
            b.extend_from_slice(&e.format.id().to_le_bytes());
            let (flags, len) = match &e.data {
                Some(d) => (0u32, d.len() as u64),
                None => (PROMISED, 0),
            };
            b.extend_from_slice(&flags.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
        }
        for e in &self.entries {
            if let Some(d) = &e.data {
                b.extend_from_slice(d);
            }
        }
        b
    }

    /// Decode `b` (untrusted), whose format data may be at most `max`
    /// bytes; `Err` says what is wrong.
    pub(crate) fn decode(b: &[u8], max: usize) -> Result<Item, String> {
        let t = Table::read(&|off, out| slice_read(b, off, out), b.len(), max)?;
        Ok(t.into_item(|slot| b[slot.offset..slot.offset + slot.len].to_vec()))
    }
}

fn slice_read(b: &[u8], off: usize, out: &mut [u8]) -> Result<(), String> {
    let end = off
        .checked_add(out.len())
        .filter(|e| *e <= b.len())
        .ok_or("a read past the end of the item")?;
    out.copy_from_slice(&b[off..end]);
    Ok(())
}

/// Reads bytes of an item at an offset (bounded to the item).
pub(crate) type ReadAt<'a> = dyn Fn(usize, &mut [u8]) -> Result<(), String> + 'a;

/// Where one format's data is in an item's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub format: Format,
    pub promised: bool,
    /// Offset of its data from the item's start (checked: within it).
    pub offset: usize,
    pub len: usize,
}

/// An item's header and entry table, checked, without its data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Table {
    pub sequence: u64,
    pub owner_pid: u32,
    pub owner_start: u64,
    pub token: u64,
    pub slots: Vec<Slot>,
}

impl Table {
    /// Read and check the header and entry table of an item of `len`
    /// bytes through `read(offset, buf)`; every slot is then known to lie
    /// within the item, and all the checks of the layout hold.
    pub(crate) fn read(read: &ReadAt<'_>, len: usize, max: usize) -> Result<Table, String> {
        if len == 0 {
            return Ok(Table::default());
        }
        if len < HEADER {
            return Err(format!(
                "its item is {len} bytes, shorter than the {HEADER}-byte header"
            ));
        }
        let mut h = [0u8; HEADER];
        read(0, &mut h)?;
        if &h[..8] != MAGIC {
            return Err("its content is not a clipboard item (bad magic)".into());
        }
        let layout = u32_at(&h, 8);
        if layout != LAYOUT {
            return Err(format!("unknown item layout {layout}"));
        }
        let n = u32_at(&h, 12) as usize;
        if n > MAX_FORMATS {
            return Err(format!(
                "its item claims {n} formats, over the limit of {MAX_FORMATS}"
            ));
        }
        let table_end = HEADER + n * ENTRY;
        if len < table_end {
            return Err(format!(
                "its item claims {n} formats but is only {len} bytes"
            ));
        }
        let mut table = vec![0u8; n * ENTRY];
        read(HEADER, &mut table)?;
        let mut slots: Vec<Slot> = Vec::with_capacity(n);
        let mut off = table_end;
        for i in 0..n {
            let e = i * ENTRY;
            let id = u32_at(&table, e);
            let flags = u32_at(&table, e + 4);
            let dlen = u64_at(&table, e + 8);
            if id == 0 {
                return Err(format!("its format #{i} has id 0"));
            }
            let format = Format::from_id(id);
            if slots.iter().any(|x| x.format == format) {
                return Err(format!("its format {format} appears twice"));
            }
            if flags & !PROMISED != 0 {
                return Err(format!("its format {format} has unknown flags {flags:#x}"));
            }
            if flags & PROMISED != 0 {
                if dlen != 0 {
                    return Err(format!("its promised format {format} claims {dlen} bytes"));
                }
                slots.push(Slot {
                    format,
                    promised: true,
                    offset: off,
                    len: 0,
                });
                continue;
            }
            let end = usize::try_from(dlen)
                .ok()
                .and_then(|l| off.checked_add(l))
                .filter(|end| *end <= len && end - table_end <= max);
            let Some(end) = end else {
                return Err(format!(
                    "its format {format} claims {dlen} bytes, past the end of the item or over the board's limit of {max}"
                ));
            };
            slots.push(Slot {
                format,
                promised: false,
                offset: off,
                len: end - off,
            });
            off = end;
        }
        if off != len {
            return Err(format!(
                "its item has {} bytes after the last format's data",
                len - off
            ));
        }
        Ok(Table {
            sequence: u64_at(&h, 16),
            owner_pid: u32_at(&h, 24),
            owner_start: u64_at(&h, 32),
            token: u64_at(&h, 40),
            slots,
        })
    }

    /// The item, with each slot's data from `data`.
    pub(crate) fn into_item(self, mut data: impl FnMut(&Slot) -> Vec<u8>) -> Item {
        Item {
            sequence: self.sequence,
            owner_pid: self.owner_pid,
            owner_start: self.owner_start,
            token: self.token,
            entries: self
                .slots
                .iter()
                .map(|s| Entry {
                    format: s.format,
                    data: (!s.promised).then(|| data(s)),
                })
                .collect(),
        }
    }

    pub(crate) fn slot(&self, f: Format) -> Option<&Slot> {
        self.slots.iter().find(|s| s.format == f)
    }

    pub(crate) fn has_promises(&self) -> bool {
        self.slots.iter().any(|s| s.promised)
    }
}

/// The header of the item `b` starts with (only the first [`HEADER`]
/// bytes are needed), as (sequence, owner pid, owner start, token); `Err`
/// if it is not an item's. An empty content is the fresh board (all 0).
pub(crate) fn header_of(b: &[u8]) -> Result<(u64, u32, u64, u64), String> {
    if b.is_empty() {
        return Ok((0, 0, 0, 0));
    }
    if b.len() < HEADER || &b[..8] != MAGIC || u32_at(b, 8) != LAYOUT {
        return Err("its content does not start with a clipboard item's header".into());
    }
    Ok((u64_at(b, 16), u32_at(b, 24), u64_at(b, 32), u64_at(b, 40)))
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(
        b[o..o + 4]
            .try_into()
            .expect("4 bytes, checked by the caller"),
    )
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(
        b[o..o + 8]
            .try_into()
            .expect("8 bytes, checked by the caller"),
    )
}

/// When process `pid` started (on Linux `/proc/PID/stat` field 22, clock
/// ticks after boot; on Windows its creation time, 100 ns units since
/// 1601); `None` if it does not exist.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    crate::sys::process_start_time(pid)
}

/// This process's start time, read once per pid.
pub(crate) fn own_start_time() -> u64 {
    static CACHE: std::sync::Mutex<Option<(u32, u64)>> = std::sync::Mutex::new(None);
    let pid = std::process::id();
    let mut c = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    match *c {
        Some((p, t)) if p == pid => t,
        _ => {
            let t = start_time(pid).unwrap_or(0);
            *c = Some((pid, t));
            t
        }
    }
}

/// Whether the owner recorded as (`pid`, `start`) is still running (a pid
/// reused by another process does not count).
pub(crate) fn owner_alive(pid: u32, start: u64) -> bool {
    if pid == 0 || !crate::sys::process_exists(pid) {
        return false;
    }
    start == 0 || start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Item {
        Item {
            sequence: 7,
            owner_pid: 42,
            owner_start: 99,
            token: 0xabc,
            entries: vec![
                Entry {
                    format: Format::TEXT,
                    data: Some(b"hi\0".to_vec()),
                },
                Entry {
                    format: Format::from_id(0xC000),
                    data: None,
                },
                Entry {
                    format: Format::DIB,
                    data: Some(vec![]),
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let i = sample();
        assert_eq!(Item::decode(&i.encode(), 100).unwrap(), i);
        assert_eq!(Item::decode(&[], 0).unwrap(), Item::default());
    }

    #[test]
    fn every_truncation_and_every_byte_flip_is_refused_or_decoded_in_bounds() {
        let b = sample().encode();
        for cut in 1..b.len() {
            assert!(Item::decode(&b[..cut], 100).is_err(), "cut at {cut}");
        }
        for i in 0..b.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut c = b.clone();
                c[i] = v;
                let _ = Item::decode(&c, 100);
            }
        }
        // Over the board's limit.
        assert!(Item::decode(&b, 2).is_err());
    }

    #[test]
    fn this_process_is_alive_with_its_start_time() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        assert!(owner_alive(me, start));
        assert!(!owner_alive(me, start + 1));
        assert!(!owner_alive(0, 0));
    }
}
