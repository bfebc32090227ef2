//! HPACK side of the `:authority` fix: re-encodes a client's header block
//! fragments so that h2's decoder sees `localhost` wherever the client sent
//! an `:authority` that h2 would reject.
//!
//! Changing a value that the client also put into its dynamic table changes
//! that entry's size, so the client's table and h2's may evict at different
//! moments. The translator therefore mirrors both tables — the client's
//! (what its indices mean) and h2's (what the indices it forwards will mean)
//! — with the same insertions in the same order, and rewrites an index
//! whenever the two disagree: to the same entry's index in h2's table, or to
//! a literal when h2 has already evicted it. While no `:authority` had to be
//! replaced the two tables are identical and every representation is
//! forwarded byte for byte.
//!
//! Only what the mirror needs is decoded: names of literals, and values
//! that are inserted into the table or belong to `:authority`. Everything
//! else (and every check of it: header names, values, pseudo-header order)
//! is left to h2, which receives the client's own bytes.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use tonic::codegen::http::uri::Authority;

/// What replaces an `:authority` that h2 would reject: the name grpc-go and
/// tonic's own clients send over a Unix socket.
pub(super) const REPLACEMENT: &[u8] = b"localhost";

/// The dynamic table size h2 allows: the HTTP/2 default for
/// `SETTINGS_HEADER_TABLE_SIZE`, which the daemon does not change (hyper
/// only sends the setting when asked to). A client may lower it, never
/// raise it.
pub(super) const MAX_TABLE_SIZE: usize = 4096;

/// RFC 7541 §4.1: an entry's size is its name and value plus 32.
const ENTRY_OVERHEAD: usize = 32;

/// Index of `:authority` (with an empty value) in the static table.
const AUTHORITY_INDEX: usize = 1;

/// Number of entries of the static table; dynamic indices follow.
const STATIC_LEN: usize = 61;

/// The names of the static table (RFC 7541 appendix A), index 1 first.
/// Only names matter here: a full static match other than index 1 is
/// forwarded untouched, and an entry inserted with a static name needs its
/// length.
const STATIC_NAMES: [&[u8]; STATIC_LEN] = [
    b":authority",
    b":method",
    b":method",
    b":path",
    b":path",
    b":scheme",
    b":scheme",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b"accept-charset",
    b"accept-encoding",
    b"accept-language",
    b"accept-ranges",
    b"accept",
    b"access-control-allow-origin",
    b"age",
    b"allow",
    b"authorization",
    b"cache-control",
    b"content-disposition",
    b"content-encoding",
    b"content-language",
    b"content-length",
    b"content-location",
    b"content-range",
    b"content-type",
    b"cookie",
    b"date",
    b"etag",
    b"expect",
    b"expires",
    b"from",
    b"host",
    b"if-match",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"if-unmodified-since",
    b"last-modified",
    b"link",
    b"location",
    b"max-forwards",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"range",
    b"referer",
    b"refresh",
    b"retry-after",
    b"server",
    b"set-cookie",
    b"strict-transport-security",
    b"transfer-encoding",
    b"user-agent",
    b"vary",
    b"via",
    b"www-authenticate",
];

/// The header block is not valid HPACK; h2 would end the connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed;

/// Why a representation could not be read.
enum Stop {
    /// It continues in the next fragment.
    NeedMore,
    /// It is invalid.
    Malformed,
}

/// A string literal as it lies in the fragment.
#[derive(Clone, Copy)]
struct Str {
    /// Where its length prefix starts.
    start: usize,
    /// Where its octets start.
    data: usize,
    /// Where it ends.
    end: usize,
    huffman: bool,
}

/// How a literal's name is given.
#[derive(Clone, Copy)]
enum Name {
    Index(usize),
    Literal(Str),
}

/// The three kinds of literal representation (RFC 7541 §6.2), as the first
/// bits of their first octet and the size of their index prefix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Incremental,
    WithoutIndexing,
    NeverIndexed,
}

impl Kind {
    fn pattern(self) -> (u8, u8) {
        match self {
            Kind::Incremental => (0x40, 6),
            Kind::WithoutIndexing => (0x00, 4),
            Kind::NeverIndexed => (0x10, 4),
        }
    }
}

/// One representation of a header block.
enum Rep {
    Indexed(usize),
    Literal { kind: Kind, name: Name, value: Str },
    SizeUpdate(usize),
}

/// An entry of the client's dynamic table.
struct Entry {
    name: Bytes,
    value: Bytes,
    /// An `:authority` that h2 would reject: h2's copy holds
    /// [`REPLACEMENT`] instead.
    replaced: bool,
}

impl Entry {
    fn size(&self) -> usize {
        self.name.len() + self.value.len() + ENTRY_OVERHEAD
    }

    /// The size of h2's copy of this entry.
    fn forwarded_size(&self) -> usize {
        let value = if self.replaced {
            REPLACEMENT.len()
        } else {
            self.value.len()
        };
        self.name.len() + value + ENTRY_OVERHEAD
    }

    fn forwarded_value(&self) -> &[u8] {
        if self.replaced {
            REPLACEMENT
        } else {
            &self.value
        }
    }
}

/// The translation state of one connection: the client's dynamic table and
/// the sizes of h2's, newest first, with the same insertions.
pub(super) struct Translator {
    client: VecDeque<Entry>,
    client_size: usize,
    h2: VecDeque<usize>,
    h2_size: usize,
    /// Insertion number of `h2`'s newest entry (meaningful when non-empty).
    h2_newest: u64,
    /// How many entries were inserted so far, into both tables alike.
    inserted: u64,
    max_size: usize,
    /// Whether an inserted entry was replaced: from then on the tables may
    /// differ, and the client's bytes may no longer reach h2 untranslated.
    diverged: bool,
}

impl Default for Translator {
    fn default() -> Self {
        Self {
            client: VecDeque::new(),
            client_size: 0,
            h2: VecDeque::new(),
            h2_size: 0,
            h2_newest: 0,
            inserted: 0,
            max_size: MAX_TABLE_SIZE,
            diverged: false,
        }
    }
}

/// Whether h2 accepts `value` as `:authority` (it parses it exactly so).
pub(super) fn acceptable(value: &[u8]) -> bool {
    Authority::try_from(value).is_ok()
}

impl Translator {
    /// Whether h2's dynamic table may differ from the client's.
    pub(super) fn diverged(&self) -> bool {
        self.diverged
    }

    /// Translates the complete representations at the start of `fragment`
    /// (one decoding call of h2's: a frame's fragment behind what was left
    /// over from the previous one) into `out`, and returns how many bytes
    /// were consumed; the rest is an incomplete representation.
    pub(super) fn translate(
        &mut self,
        fragment: &[u8],
        out: &mut BytesMut,
    ) -> Result<usize, Malformed> {
        let mut pos = 0;
        // h2 accepts size updates only before any field of a fragment.
        let mut can_resize = true;
        while pos < fragment.len() {
            let mut end = pos;
            let rep = match parse(fragment, &mut end) {
                Ok(rep) => rep,
                Err(Stop::NeedMore) => break,
                Err(Stop::Malformed) => return Err(Malformed),
            };
            let original = &fragment[pos..end];
            match rep {
                Rep::SizeUpdate(size) => {
                    if !can_resize || size > MAX_TABLE_SIZE {
                        return Err(Malformed);
                    }
                    self.max_size = size;
                    self.evict();
                    out.extend_from_slice(original);
                }
                Rep::Indexed(index) => {
                    can_resize = false;
                    self.indexed(index, original, out)?;
                }
                Rep::Literal { kind, name, value } => {
                    can_resize = false;
                    self.literal(fragment, kind, name, value, original, out)?;
                }
            }
            pos = end;
        }
        Ok(pos)
    }

    fn indexed(&self, index: usize, original: &[u8], out: &mut BytesMut) -> Result<(), Malformed> {
        match index {
            0 => Err(Malformed),
            AUTHORITY_INDEX => {
                // The static `:authority` has an empty value.
                put_int(out, 0x00, 4, AUTHORITY_INDEX);
                put_raw(out, REPLACEMENT);
                Ok(())
            }
            2..=STATIC_LEN => {
                out.extend_from_slice(original);
                Ok(())
            }
            _ => {
                let entry = self.client.get(index - STATIC_LEN - 1).ok_or(Malformed)?;
                match self.h2_index(index) {
                    Some(forwarded) if forwarded == index => out.extend_from_slice(original),
                    Some(forwarded) => put_int(out, 0x80, 7, forwarded),
                    None => {
                        put_int(out, 0x00, 4, 0);
                        put_raw(out, &entry.name);
                        put_raw(out, entry.forwarded_value());
                    }
                }
                Ok(())
            }
        }
    }

    fn literal(
        &mut self,
        fragment: &[u8],
        kind: Kind,
        name: Name,
        value: Str,
        original: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), Malformed> {
        let name_bytes = match name {
            Name::Index(0) => return Err(Malformed),
            Name::Index(index @ 1..=STATIC_LEN) => Bytes::from_static(STATIC_NAMES[index - 1]),
            Name::Index(index) => self
                .client
                .get(index - STATIC_LEN - 1)
                .ok_or(Malformed)?
                .name
                .clone(),
            Name::Literal(s) => decode(fragment, s)?,
        };
        let is_authority = name_bytes.as_ref() == STATIC_NAMES[AUTHORITY_INDEX - 1];
        let value_bytes = if is_authority || kind == Kind::Incremental {
            Some(decode(fragment, value)?)
        } else {
            None
        };
        let replaced = is_authority && value_bytes.as_deref().is_some_and(|v| !acceptable(v));
        // Where the name is in h2's table, if it is given by index.
        let forwarded_name = match name {
            Name::Index(index @ 1..=STATIC_LEN) => Some(index),
            Name::Index(index) => self.h2_index(index),
            Name::Literal(_) => None,
        };
        let name_unchanged = match name {
            Name::Index(index) => forwarded_name == Some(index),
            Name::Literal(_) => true,
        };
        if name_unchanged && !replaced {
            out.extend_from_slice(original);
        } else {
            let (pattern, prefix) = kind.pattern();
            match (name, forwarded_name) {
                (Name::Literal(s), _) => {
                    put_int(out, pattern, prefix, 0);
                    out.extend_from_slice(&fragment[s.start..s.end]);
                }
                (Name::Index(_), Some(index)) => put_int(out, pattern, prefix, index),
                (Name::Index(_), None) => {
                    put_int(out, pattern, prefix, 0);
                    put_raw(out, &name_bytes);
                }
            }
            if replaced {
                put_raw(out, REPLACEMENT);
            } else {
                out.extend_from_slice(&fragment[value.start..value.end]);
            }
        }
        if kind == Kind::Incremental {
            let entry = Entry {
                name: name_bytes,
                value: value_bytes.unwrap_or_default(),
                replaced,
            };
            self.diverged |= replaced;
            self.insert(entry);
        }
        Ok(())
    }

    /// Where the entry at the client's `index` is in h2's table, if h2
    /// still holds it.
    fn h2_index(&self, index: usize) -> Option<usize> {
        let age = (index - STATIC_LEN - 1) as u64;
        let number = self.inserted.checked_sub(age + 1)?;
        let h2_age = self.h2_newest.checked_sub(number)?;
        (!self.h2.is_empty() && h2_age < self.h2.len() as u64)
            .then(|| STATIC_LEN + 1 + h2_age as usize)
    }

    /// Inserts `entry` into the client's table and its copy into h2's,
    /// evicting the oldest entries as RFC 7541 §4.4 says.
    fn insert(&mut self, entry: Entry) {
        let number = self.inserted;
        self.inserted += 1;
        let forwarded = entry.forwarded_size();
        let size = entry.size();
        if size > self.max_size {
            self.client.clear();
            self.client_size = 0;
        } else {
            self.client_size += size;
            self.client.push_front(entry);
        }
        if forwarded > self.max_size {
            self.h2.clear();
            self.h2_size = 0;
        } else {
            self.h2_size += forwarded;
            self.h2.push_front(forwarded);
            self.h2_newest = number;
        }
        self.evict();
    }

    fn evict(&mut self) {
        while self.client_size > self.max_size {
            let entry = self.client.pop_back().expect("a non-empty table");
            self.client_size -= entry.size();
        }
        while self.h2_size > self.max_size {
            self.h2_size -= self.h2.pop_back().expect("a non-empty table");
        }
    }
}

/// Reads one representation at `pos`, moving `pos` past it.
fn parse(buf: &[u8], pos: &mut usize) -> Result<Rep, Stop> {
    let first = *buf.get(*pos).ok_or(Stop::NeedMore)?;
    if first & 0x80 != 0 {
        return Ok(Rep::Indexed(int(buf, pos, 7)?));
    }
    if first & 0xE0 == 0x20 {
        return Ok(Rep::SizeUpdate(int(buf, pos, 5)?));
    }
    let kind = if first & 0xC0 == 0x40 {
        Kind::Incremental
    } else if first & 0xF0 == 0x10 {
        Kind::NeverIndexed
    } else {
        Kind::WithoutIndexing
    };
    let index = int(buf, pos, kind.pattern().1)?;
    let name = if index == 0 {
        Name::Literal(string(buf, pos)?)
    } else {
        Name::Index(index)
    };
    let value = string(buf, pos)?;
    Ok(Rep::Literal { kind, name, value })
}

/// Reads an integer with a `prefix`-bit prefix (RFC 7541 §5.1), refusing
/// more than five octets as h2 does.
fn int(buf: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, Stop> {
    const MAX_OCTETS: usize = 5;
    let mask = (1u8 << prefix) - 1;
    let first = *buf.get(*pos).ok_or(Stop::NeedMore)?;
    *pos += 1;
    let mut value = usize::from(first & mask);
    if value < usize::from(mask) {
        return Ok(value);
    }
    let mut octets = 1;
    let mut shift = 0;
    loop {
        let byte = *buf.get(*pos).ok_or(Stop::NeedMore)?;
        *pos += 1;
        octets += 1;
        value += usize::from(byte & 0x7F) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        if octets == MAX_OCTETS {
            return Err(Stop::Malformed);
        }
    }
}

/// Reads a string literal (RFC 7541 §5.2) without decoding it.
fn string(buf: &[u8], pos: &mut usize) -> Result<Str, Stop> {
    let start = *pos;
    let huffman = *buf.get(start).ok_or(Stop::NeedMore)? & 0x80 != 0;
    let len = int(buf, pos, 7)?;
    let data = *pos;
    let end = data.checked_add(len).ok_or(Stop::Malformed)?;
    if end > buf.len() {
        return Err(Stop::NeedMore);
    }
    *pos = end;
    Ok(Str {
        start,
        data,
        end,
        huffman,
    })
}

/// The octets a string literal stands for.
fn decode(buf: &[u8], s: Str) -> Result<Bytes, Malformed> {
    let octets = &buf[s.data..s.end];
    if !s.huffman {
        return Ok(Bytes::copy_from_slice(octets));
    }
    let mut decoded = Vec::with_capacity(octets.len() * 8 / 5);
    httlib_huffman::decode(octets, &mut decoded, httlib_huffman::DecoderSpeed::FourBits)
        .map_err(|_| Malformed)?;
    Ok(decoded.into())
}

/// Writes an integer with a `prefix`-bit prefix after the bits `pattern`.
pub(super) fn put_int(out: &mut BytesMut, pattern: u8, prefix: u8, value: usize) {
    let mask = (1u8 << prefix) - 1;
    if value < usize::from(mask) {
        out.put_u8(pattern | value as u8);
        return;
    }
    out.put_u8(pattern | mask);
    let mut rest = value - usize::from(mask);
    while rest >= 0x80 {
        out.put_u8((rest & 0x7F) as u8 | 0x80);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

/// Writes `octets` as a string literal without Huffman coding.
fn put_raw(out: &mut BytesMut, octets: &[u8]) {
    put_int(out, 0x00, 7, octets.len());
    out.extend_from_slice(octets);
}
