//! The word2vec file formats, as word2vec's C tools, fastText and gensim
//! write and read them:
//!
//! * text: a header line `"<count> <dim>"`, then one line per key,
//!   `key v1 v2 ... vD`, the values separated by single spaces;
//! * binary: the same header, then per key `key ` followed by `dim`
//!   little-endian float32s (and a newline, as word2vec.c writes; readers
//!   skip a newline before a key);
//! * GloVe's text format is the text format without the header line.
//!
//! A file is read as a stream, so memory grows with what the file holds,
//! never with what its header claims. A malformed file is a `Format` error
//! (ValueError) naming the file and the line or key.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::WordVectors;
use crate::error::{Error, Result};
use crate::vocab::quote;

/// How a file is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    pub binary: bool,
    /// Read at most this many vectors (gensim's `limit`).
    pub limit: Option<usize>,
    /// GloVe's text format: no header; the width comes from the first line.
    pub no_header: bool,
}

/// Keys and their vectors as read, duplicates dropped (the first kept).
struct Rows {
    keys: Vec<String>,
    seen: HashSet<String>,
    values: Vec<f32>,
    dim: usize,
}

impl Rows {
    fn push(&mut self, key: String, values: &[f32]) {
        if self.seen.insert(key.clone()) {
            self.keys.push(key);
            self.values.extend_from_slice(values);
        }
    }

    fn into_vectors(self) -> Result<WordVectors> {
        WordVectors::from_rows(self.keys, self.values, self.dim)
    }
}

/// Reads a word2vec (or GloVe) file.
pub fn load(path: &Path, opts: ReadOptions) -> Result<WordVectors> {
    let file = crate::fs::open_regular(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = BufReader::new(file);
    let bad = |msg: String| Error::format(path, msg);
    if opts.no_header && opts.binary {
        return Err(Error::value(
            "no_header is only for the text format (GloVe's); a binary file has a header",
        ));
    }
    let mut line_no = 0usize;
    let mut line = Vec::new();
    let (count, dim) = if opts.no_header {
        (None, None)
    } else {
        line_no += 1;
        read_line(&mut r, &mut line).map_err(|e| Error::io(path, e))?;
        let header = decode(&line, line_no).map_err(bad)?;
        let (count, dim) = parse_header(header.trim()).map_err(bad)?;
        // Every value takes at least two bytes of text ("0 ") or four of
        // binary: a width the file cannot hold is refused before allocating.
        if u64::try_from(dim).map_or(true, |d| d.saturating_mul(2) > size) {
            return Err(bad(format!(
                "line 1: the header's width {dim} is more than the file's {size} bytes can hold"
            )));
        }
        (Some(count), Some(dim))
    };
    let wanted = match (count, opts.limit) {
        (Some(c), Some(l)) => Some(c.min(l)),
        (c, l) => c.or(l),
    };
    let mut rows = Rows {
        keys: Vec::new(),
        seen: HashSet::new(),
        values: Vec::new(),
        dim: dim.unwrap_or(0),
    };
    let mut read = 0usize;
    let mut buf: Vec<f32> = Vec::new();
    let mut bytes = vec![
        0u8;
        if opts.binary {
            rows.dim.saturating_mul(4)
        } else {
            0
        }
    ];
    while wanted.is_none_or(|w| read < w) {
        if opts.binary {
            let key = match read_key(&mut r).map_err(|e| Error::io(path, e))? {
                Some(k) => k,
                None => break,
            };
            let key = String::from_utf8(key)
                .map_err(|_| bad(format!("vector {}: the key is not valid UTF-8", read + 1)))?;
            buf.clear();
            r.read_exact(&mut bytes).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => bad(format!(
                    "unexpected end of file in the vector of key {} (vector {} of {})",
                    quote(&key),
                    read + 1,
                    wanted.unwrap_or(0)
                )),
                _ => Error::io(path, e),
            })?;
            buf.extend(
                bytes
                    .chunks_exact(4)
                    .filter_map(|c| <[u8; 4]>::try_from(c).ok())
                    .map(f32::from_le_bytes),
            );
            rows.push(key, &buf);
        } else {
            line_no += 1;
            if read_line(&mut r, &mut line).map_err(|e| Error::io(path, e))? == 0 {
                break;
            }
            let text = decode(&line, line_no).map_err(bad)?;
            let mut parts = text.trim_end().split(' ');
            let key = parts.next().unwrap_or_default().to_string();
            buf.clear();
            for p in parts {
                let v: f32 = p
                    .parse()
                    .map_err(|_| bad(format!("line {line_no}: {} is not a number", quote(p))))?;
                buf.push(v);
            }
            if dim.is_none() && read == 0 {
                rows.dim = buf.len();
            }
            if buf.len() != rows.dim || rows.dim == 0 {
                return Err(bad(format!(
                    "line {line_no}: expected {} values after the key {}, got {}",
                    rows.dim,
                    quote(&key),
                    buf.len()
                )));
            }
            rows.push(key, &buf);
        }
        read += 1;
    }
    if let Some(w) = wanted.filter(|&w| read < w && count.is_some()) {
        return Err(bad(format!(
            "unexpected end of file: the header promises {w} vectors, the file holds {read}"
        )));
    }
    crate::atomic::remove_stale(path);
    rows.into_vectors()
}

/// Writes `wv` in the word2vec text or binary format, atomically.
pub fn save(wv: &WordVectors, path: &Path, binary: bool, write_header: bool) -> Result<()> {
    if binary && !write_header {
        return Err(Error::value(
            "write_header=False is only for the text format; a binary file needs its header",
        ));
    }
    for key in wv.keys() {
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(Error::value(format!(
                "key {} cannot be written in the word2vec format, whose keys end at a space: \
                 it is empty or holds whitespace",
                quote(key)
            )));
        }
    }
    let (dim, values) = (wv.dim(), wv.data());
    crate::atomic::write(path, |f| {
        let mut w = BufWriter::new(f);
        if write_header {
            writeln!(w, "{} {dim}", wv.len())?;
        }
        let rows = values.chunks_exact(dim.max(1));
        for (key, row) in wv.keys().iter().zip(rows) {
            w.write_all(key.as_bytes())?;
            w.write_all(b" ")?;
            if binary {
                for v in row {
                    w.write_all(&v.to_le_bytes())?;
                }
            } else {
                for (j, v) in row.iter().enumerate() {
                    if j > 0 {
                        w.write_all(b" ")?;
                    }
                    // Debug: the shortest text that reads back as the same
                    // float32, with an exponent for very small or large values.
                    write!(w, "{v:?}")?;
                }
            }
            w.write_all(b"\n")?;
        }
        w.flush()
    })
}

fn parse_header(header: &str) -> std::result::Result<(usize, usize), String> {
    let mut it = header.split_whitespace();
    let parse = |s: Option<&str>| s.and_then(|s| s.parse::<usize>().ok());
    match (parse(it.next()), parse(it.next()), it.next()) {
        (Some(count), Some(dim), None) if dim > 0 => Ok((count, dim)),
        _ => Err(format!(
            "line 1: expected the header \"<count> <dim>\" (dim >= 1), got {}",
            quote(header)
        )),
    }
}

fn decode(line: &[u8], line_no: usize) -> std::result::Result<&str, String> {
    std::str::from_utf8(line).map_err(|_| format!("line {line_no} is not valid UTF-8"))
}

/// One line into `line` (newline included); 0 at the end of the file.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    line.clear();
    r.read_until(b'\n', line)
}

/// A binary file's next key: the bytes up to a space, newlines before it
/// skipped; `None` at the end of the file.
fn read_key(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut key = Vec::new();
    r.read_until(b' ', &mut key)?;
    let ended = key.last() != Some(&b' ');
    if !ended {
        key.pop();
    }
    let start = key.iter().position(|&b| b != b'\n').unwrap_or(key.len());
    let key = key.split_off(start);
    // At the end of the file: nothing left but newlines is the end; a key
    // without its space is a file cut short (which reads as a missing vector).
    Ok(if ended && key.is_empty() {
        None
    } else {
        Some(key)
    })
}
