//! Vocabulary: token <-> id maps at character or word level.
//!
//! * **Char level**: a token is one Unicode scalar value (a Rust `char`);
//!   `"\n"` is an ordinary character.
//! * **Word level**: see [`Vocab::tokenize`]. Words are maximal runs of
//!   alphanumeric characters and `_` (combining marks stay with the character
//!   they follow); every other non-whitespace character is a token of its own;
//!   each `"\n"` yields an `<eos>` token when `<eos>` is a special; a special
//!   written literally in the text (`<unk>` in WikiText) is one token.
//!
//! Ids are deterministic: the specials first, in the given order, then the
//! other tokens by frequency descending, ties broken by the token (code-point
//! order, as Python sorts `str`).
//!
//! The file format is versioned JSON, see [`Vocab::to_json`].

// Values from Python and from vocabulary files reach this module: no index or
// slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The `"format"` tag of a vocabulary file.
pub const FORMAT: &str = "rustrnn.vocab";
/// The file format version this code writes and reads.
pub const VERSION: u64 = 1;
/// The special that unknown tokens map to, when present.
pub const UNK: &str = "<unk>";
/// The special that marks a line end at word level, when present.
pub const EOS: &str = "<eos>";

/// Whether a token is a character or a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Char,
    Word,
}

impl Level {
    pub fn parse(s: &str) -> Result<Level> {
        match s {
            "char" => Ok(Level::Char),
            "word" => Ok(Level::Word),
            _ => Err(Error::value(format!(
                "level must be 'char' or 'word', got {}",
                quote(s)
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Char => "char",
            Level::Word => "word",
        }
    }
}

/// The knobs of [`Vocab::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Tokens seen fewer times are dropped (at least 1).
    pub min_freq: usize,
    /// The largest size of the vocabulary, specials included.
    pub max_size: Option<usize>,
    /// Lower-case the text (as Python's `str.lower`) before counting and encoding.
    pub lower: bool,
    /// Tokens given the first ids, in this order.
    pub specials: Vec<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            min_freq: 1,
            max_size: None,
            lower: false,
            specials: vec![UNK.to_string(), EOS.to_string()],
        }
    }
}

/// A token <-> id map. Plain data: `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Vocab {
    level: Level,
    lower: bool,
    n_specials: usize,
    /// Every token, in id order; the specials first.
    tokens: Vec<String>,
    /// The id of every token longer than 15 bytes.
    ids: Map<String, i64>,
    /// The id of every token of up to 15 bytes, keyed by [`pack`]: the
    /// lookup of nearly every word follows no pointer and calls no memcmp,
    /// and building it copies no string.
    short: Map<u128, i64>,
    /// The id of each single-character token.
    chars: CharTable,
    unk: Option<i64>,
    eos: Option<i64>,
}

impl PartialEq for Vocab {
    fn eq(&self, other: &Self) -> bool {
        self.level == other.level
            && self.lower == other.lower
            && self.n_specials == other.n_specials
            && self.tokens == other.tokens
    }
}

impl Eq for Vocab {}

impl Vocab {
    /// Counts the tokens of `text` and numbers them (see the module docs).
    pub fn build(text: &str, level: Level, opts: &BuildOptions) -> Result<Vocab> {
        check_specials(&opts.specials)?;
        if opts.min_freq < 1 {
            return Err(Error::value(format!(
                "min_freq must be at least 1, got {}",
                opts.min_freq
            )));
        }
        let n_specials = opts.specials.len();
        let room = match opts.max_size {
            Some(m) if m < n_specials => {
                return Err(Error::value(format!(
                    "max_size={m} leaves no room for the {n_specials} specials [{}]",
                    quote_all(&opts.specials)
                )))
            }
            Some(m) => m - n_specials,
            None => usize::MAX,
        };
        let lowered;
        let text = if opts.lower {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };

        let mut counted: Vec<(String, usize)> = match level {
            Level::Char => count_chars(text)
                .into_iter()
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
            Level::Word => {
                let words = WordSplitter::new(&opts.specials);
                let mut counts: Map<&str, usize> = Map::default();
                words.split(text, |tok| *counts.entry(tok).or_insert(0) += 1);
                counts
                    .into_iter()
                    .map(|(t, n)| (t.to_string(), n))
                    .collect()
            }
        };
        counted.retain(|(t, n)| *n >= opts.min_freq && !opts.specials.contains(t));
        counted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counted.truncate(room);

        let mut tokens = opts.specials.clone();
        tokens.extend(counted.into_iter().map(|(t, _)| t));
        Vocab::from_parts(level, opts.lower, n_specials, tokens)
    }

    /// Assembles a vocabulary from its tokens in id order, the first
    /// `n_specials` of them being the specials. Checks what a file could get
    /// wrong: duplicates, empty tokens, multi-character tokens at char level
    /// and tokens with whitespace at word level (the specials excepted).
    pub fn from_parts(
        level: Level,
        lower: bool,
        n_specials: usize,
        tokens: Vec<String>,
    ) -> Result<Vocab> {
        let specials = tokens.get(..n_specials).ok_or_else(|| {
            Error::value(format!(
                "{n_specials} specials but only {} tokens",
                tokens.len()
            ))
        })?;
        check_specials(specials)?;
        let mut ids = Map::default();
        let mut short = Map::with_capacity_and_hasher(tokens.len(), Default::default());
        for (id, tok) in tokens.iter().enumerate() {
            if id >= n_specials {
                let ok = match level {
                    Level::Char => tok.chars().count() == 1,
                    Level::Word => !tok.is_empty() && !tok.contains(char::is_whitespace),
                };
                if !ok {
                    let want = match level {
                        Level::Char => "a single character",
                        Level::Word => "a non-empty word without whitespace",
                    };
                    return Err(Error::value(format!(
                        "token {id} ({}) is not {want}, as a {}-level token must be",
                        quote(tok),
                        level.name()
                    )));
                }
            }
            // A token's length decides its map, so a duplicate meets its
            // first occurrence in the same one.
            let first = match pack(tok) {
                Some(key) => short.insert(key, id as i64),
                None => ids.insert(tok.clone(), id as i64),
            };
            if let Some(first) = first {
                return Err(Error::value(format!(
                    "duplicate token {} at ids {first} and {id}",
                    quote(tok)
                )));
            }
        }
        let chars = CharTable::new(&tokens);
        let special = |name: &str| specials.iter().position(|t| t == name).map(|i| i as i64);
        let (unk, eos) = (special(UNK), special(EOS));
        Ok(Vocab {
            level,
            lower,
            n_specials,
            tokens,
            ids,
            short,
            chars,
            unk,
            eos,
        })
    }

    pub fn level(&self) -> Level {
        self.level
    }

    pub fn lower(&self) -> bool {
        self.lower
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Every token in id order, the specials first.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn specials(&self) -> &[String] {
        // from_parts checked n_specials <= len(): the fallback never applies.
        self.tokens.get(..self.n_specials).unwrap_or_default()
    }

    /// The id of `<unk>`, if it is a special.
    pub fn unk_id(&self) -> Option<i64> {
        self.unk
    }

    /// The id of `<eos>`, if it is a special.
    pub fn eos_id(&self) -> Option<i64> {
        self.eos
    }

    /// Whether `token` is in the vocabulary, exactly as written (no lower-casing).
    pub fn contains(&self, token: &str) -> bool {
        self.lookup(token).is_some()
    }

    /// The id of `token` exactly as written (no lower-casing); an unknown
    /// token maps to `<unk>` when it is a special, else is a `Key` error.
    pub fn id(&self, token: &str) -> Result<i64> {
        self.lookup(token)
            .or(self.unk)
            .ok_or_else(|| unknown(token))
    }

    /// The token of `id`; an `Index` error outside `0..len()`.
    pub fn token(&self, id: i64) -> Result<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.tokens.get(i))
            .map(String::as_str)
            .ok_or_else(|| self.bad_id(id))
    }

    /// The tokens of `text` (lower-cased first when the vocabulary is), before
    /// any lookup: characters at char level; at word level words, single
    /// punctuation characters, literal specials and an `<eos>` for each `"\n"`
    /// (when `<eos>` is a special).
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let text = self.normalize(text);
        match self.level {
            Level::Char => text.chars().map(String::from).collect(),
            Level::Word => {
                let mut out = Vec::new();
                WordSplitter::new(self.specials()).split(&text, |t| out.push(t.to_string()));
                out
            }
        }
    }

    /// The ids of `text`'s tokens. Unknown tokens map to `<unk>` when it is a
    /// special, else are a `Key` error naming the token.
    pub fn encode_ids(&self, text: &str) -> Result<Vec<i64>> {
        let text = self.normalize(text);
        match self.level {
            Level::Char => {
                let mut out = vec![0; text.chars().count()];
                self.encode_chars(&text, &mut out)?;
                Ok(out)
            }
            Level::Word => self.encode_words(&text),
        }
    }

    /// [`Vocab::encode_ids`] as a 1-D int64 tensor on the CPU.
    pub fn encode(&self, text: &str) -> Result<Tensor> {
        let text = self.normalize(text);
        match self.level {
            Level::Char => {
                // Written in place: a 10 MB text makes an 80 MB tensor, and a
                // second buffer plus a copy would double the time.
                let mut out = IdTensor::new(text.chars().count())?;
                self.encode_chars(&text, out.as_mut_slice())?;
                Ok(out.0)
            }
            Level::Word => {
                let ids = self.encode_words(&text)?;
                let mut out = IdTensor::new(ids.len())?;
                out.as_mut_slice().copy_from_slice(&ids);
                Ok(out.0)
            }
        }
    }

    /// Char level: the id of each character of `text` into `out` (as long as
    /// `text` has characters).
    fn encode_chars(&self, text: &str, out: &mut [i64]) -> Result<()> {
        for (slot, c) in out.iter_mut().zip(text.chars()) {
            *slot = match self.chars.get(c).or(self.unk) {
                Some(id) => id,
                None => return Err(unknown(c.encode_utf8(&mut [0; 4]))),
            };
        }
        Ok(())
    }

    /// Word level: the ids of `text`'s tokens.
    fn encode_words(&self, text: &str) -> Result<Vec<i64>> {
        // Room for one token per two bytes: no regrowth on real text (the
        // pages of unused room are never touched).
        let mut out = Vec::with_capacity(text.len() / 2 + 1);
        let mut missing = None;
        WordSplitter::new(self.specials()).split(text, |tok| match self.lookup(tok).or(self.unk) {
            Some(id) => out.push(id),
            None => {
                missing.get_or_insert_with(|| tok.to_string());
            }
        });
        match missing {
            Some(tok) => Err(unknown(&tok)),
            None => Ok(out),
        }
    }

    /// The id of `token`, if it is in the vocabulary.
    #[inline(always)]
    fn lookup(&self, token: &str) -> Option<i64> {
        if let &[b] = token.as_bytes() {
            return self.chars.get(b as char);
        }
        match pack(token) {
            Some(key) => self.short.get(&key).copied(),
            None => self.ids.get(token).copied(),
        }
    }

    /// The text of `ids`. Char level concatenates the tokens. Word level joins
    /// them with one space, except that `<eos>` becomes `"\n"` with no space
    /// on either side, so `decode(encode(t))` gives back `t` with each line's
    /// tokens separated by single spaces. Other specials are written as
    /// themselves. An id outside `0..len()` is an `Index` error.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let mut out = String::with_capacity(ids.len() * 2);
        let mut at_line_start = true;
        for &id in ids {
            let tok = self.token(id)?;
            match self.level {
                Level::Char => out.push_str(tok),
                Level::Word if Some(id) == self.eos => {
                    out.push('\n');
                    at_line_start = true;
                }
                Level::Word => {
                    if !at_line_start {
                        out.push(' ');
                    }
                    out.push_str(tok);
                    at_line_start = false;
                }
            }
        }
        Ok(out)
    }

    /// [`Vocab::decode`] of an integer tensor of any shape, flattened.
    pub fn decode_tensor(&self, ids: &Tensor) -> Result<String> {
        self.decode(&tensor_ids(ids)?)
    }

    /// One-hot rows of `ids` (an integer tensor of any shape): float32
    /// `(*, len())` on the device of `ids`. An id outside `0..len()` is an
    /// `Index` error naming it.
    pub fn one_hot(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = integer_ids(ids)?;
        let n = self.len() as i64;
        if ids.numel() > 0 {
            let bad = ids.f_lt(0)?.f_logical_or(&ids.f_ge(n)?)?;
            if bad.f_any()?.f_int64_value(&[])? != 0 {
                let first = ids.f_masked_select(&bad)?.f_get(0)?.f_int64_value(&[])?;
                return Err(self.bad_id(first));
            }
        }
        Ok(ids.f_one_hot(n)?.f_to_kind(Kind::Float)?)
    }

    /// The versioned JSON document of this vocabulary:
    /// `{"format": "rustrnn.vocab", "version": 1, "level": "char"|"word",
    /// "lower": bool, "specials": [...], "tokens": [... in id order, specials first]}`.
    pub fn to_json(&self) -> String {
        let file = VocabFile {
            format: FORMAT.to_string(),
            version: VERSION,
            level: self.level,
            lower: self.lower,
            specials: self.specials().to_vec(),
            tokens: self.tokens.clone(),
        };
        #[allow(clippy::expect_used, reason = "strings and numbers always serialize")]
        let mut s = serde_json::to_string_pretty(&file).expect("a vocabulary serializes");
        s.push('\n');
        s
    }

    /// Reads [`Vocab::to_json`]'s document; a foreign or corrupt one is a
    /// `Value` error saying what is wrong.
    pub fn from_json(json: &[u8]) -> Result<Vocab> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::value(
                "empty: no JSON document, not a rustrnn vocabulary",
            ));
        }
        if let Err(e) = std::str::from_utf8(json) {
            return Err(Error::value(format!(
                "not UTF-8 text (invalid byte at offset {}), not a rustrnn vocabulary",
                e.valid_up_to()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| Error::value(format!("invalid JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| {
            Error::value("not a rustrnn vocabulary: the document is not a JSON object")
        })?;
        match obj.get("format") {
            Some(serde_json::Value::String(f)) if f == FORMAT => {}
            Some(other) => {
                return Err(Error::value(format!(
                    "not a rustrnn vocabulary: \"format\" is {other}, expected \"{FORMAT}\""
                )))
            }
            None => {
                return Err(Error::value(format!(
                    "not a rustrnn vocabulary: no \"format\": \"{FORMAT}\" field"
                )))
            }
        }
        match obj.get("version") {
            Some(v) if v.as_u64() == Some(VERSION) => {}
            Some(v) => {
                return Err(Error::value(format!(
                    "unsupported vocabulary version {v} (this rustrnn reads version {VERSION})"
                )))
            }
            None => return Err(Error::value("missing field `version`")),
        }
        let file: VocabFile =
            serde_json::from_value(value).map_err(|e| Error::value(e.to_string()))?;
        let n = file.specials.len();
        if !file.tokens.starts_with(&file.specials) {
            return Err(Error::value(format!(
                "\"tokens\" must start with the specials [{}]",
                quote_all(&file.specials)
            )));
        }
        Vocab::from_parts(file.level, file.lower, n, file.tokens)
    }

    /// Writes [`Vocab::to_json`] to `path` atomically: a temporary file in the
    /// same directory, flushed and fsynced, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write(path, |f| f.write_all(self.to_json().as_bytes()))
    }

    /// Reads a file written by [`Vocab::save`]. A missing or unreadable file is
    /// an `Io` error, a foreign or corrupt one a `Format` error; both name it.
    pub fn load(path: &Path) -> Result<Vocab> {
        let bytes = crate::fs::read_regular(path)?;
        Vocab::from_json(&bytes).map_err(|e| match e {
            Error::Value(msg) => Error::format(path, msg),
            other => other,
        })
    }

    fn normalize<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if self.lower {
            std::borrow::Cow::Owned(text.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(text)
        }
    }

    fn bad_id(&self, id: i64) -> Error {
        Error::Index(format!(
            "id {id} is out of range for a vocabulary of size {}",
            self.len()
        ))
    }
}

/// `token`'s bytes and length in one integer, for tokens up to 15 bytes.
///
/// Built from two overlapping loads rather than a copy into a buffer: reading
/// the buffer back right after a byte-wise copy stalls on store forwarding,
/// which made this the most expensive step of a word-level encode.
#[inline(always)]
fn pack(token: &str) -> Option<u128> {
    let b = token.as_bytes();
    let n = b.len();
    // The first and the last 2, 4 or 8 bytes. Each arm below reads at most
    // n bytes, so the `None` fallbacks never apply (and compile away).
    let first8 = || b.first_chunk().map_or(0, |c| u64::from_le_bytes(*c));
    let last8 = || b.last_chunk().map_or(0, |c| u64::from_le_bytes(*c));
    let first4 = || u64::from(b.first_chunk().map_or(0, |c| u32::from_le_bytes(*c)));
    let last4 = || u64::from(b.last_chunk().map_or(0, |c| u32::from_le_bytes(*c)));
    let first2 = || u64::from(b.first_chunk().map_or(0, |c| u16::from_le_bytes(*c)));
    let last2 = || u64::from(b.last_chunk().map_or(0, |c| u16::from_le_bytes(*c)));
    // The first and the last bytes, overlapping in the middle (equal bytes OR
    // to themselves); `hi` holds bytes 8.. when there are more than 8.
    let (lo, hi) = match n {
        0 => (0, 0),
        1 => (b.first().map_or(0, |&x| u64::from(x)), 0),
        2..=3 => (first2() | last2() << ((n - 2) * 8), 0),
        4..=7 => (first4() | last4() << ((n - 4) * 8), 0),
        8 => (first8(), 0),
        9..=15 => (first8(), last8() >> ((16 - n) * 8)),
        _ => return None,
    };
    Some(u128::from(lo) | u128::from(hi) << 64 | (n as u128) << 120)
}

/// The character `token` consists of, if it is one.
fn single_char(token: &str) -> Option<char> {
    let mut cs = token.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// A fresh 1-D int64 CPU tensor to fill. `Tensor::from_slice` zero-fills
/// first (torch::zeros, which also wakes libtorch's OpenMP pool) and copies
/// after; for tens of megabytes of ids that doubles the time of an encode.
struct IdTensor(Tensor);

impl IdTensor {
    fn new(n: usize) -> Result<IdTensor> {
        Ok(IdTensor(Tensor::f_empty(
            [n as i64],
            (Kind::Int64, Device::Cpu),
        )?))
    }

    fn as_mut_slice(&mut self) -> &mut [i64] {
        let n = self.0.numel();
        if n == 0 {
            return &mut [];
        }
        // SAFETY: the tensor was made by `new`: contiguous, on the CPU, int64,
        // `n` elements, and referenced by nothing but `self`, which the
        // returned slice borrows mutably.
        unsafe { std::slice::from_raw_parts_mut(self.0.data_ptr() as *mut i64, n) }
    }
}

fn unknown(token: &str) -> Error {
    Error::Key(format!(
        "token {} is not in the vocabulary, which has no '{UNK}'",
        quote(token)
    ))
}

fn quote_all(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| quote(t))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `s` quoted as Python's `repr` would for plain text: single quotes, unless
/// that would need escapes (then Rust's double-quoted debug form).
pub fn quote(s: &str) -> String {
    if s.contains(|c: char| c == '\'' || c == '\\' || c.is_control()) {
        format!("{s:?}")
    } else {
        format!("'{s}'")
    }
}

fn check_specials(specials: &[String]) -> Result<()> {
    for (i, s) in specials.iter().enumerate() {
        if s.is_empty() {
            return Err(Error::value("a special token must not be empty"));
        }
        if specials.iter().take(i).any(|t| t == s) {
            return Err(Error::value(format!(
                "special token {} is given twice",
                quote(s)
            )));
        }
    }
    Ok(())
}

/// The ids of an integer tensor, flattened, on the CPU.
fn tensor_ids(ids: &Tensor) -> Result<Vec<i64>> {
    let flat = integer_ids(ids)?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?
        .f_reshape([-1])?;
    Ok(Vec::<i64>::try_from(&flat)?)
}

/// `ids` as int64, refusing floating-point and boolean tensors (`Type` error,
/// naming the dtype as torch does). The unsigned types tch has no `Kind` for
/// (`torch.uint16`, `uint32`, `uint64`: c10 codes 27 to 29) are integers too;
/// a uint64 id past `i64::MAX` becomes negative, and so out of range.
fn integer_ids(ids: &Tensor) -> Result<Tensor> {
    match ids.f_kind() {
        Ok(Kind::Int64) => Ok(ids.shallow_clone()),
        Ok(Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int)
        | Err(tch::TchError::UnknownKind(27..=29)) => Ok(ids.f_to_kind(Kind::Int64)?),
        Ok(k) => Err(Error::Type(format!(
            "ids must be an integer tensor, got dtype {}",
            crate::dtype::dtype_name(k)
        ))),
        Err(tch::TchError::UnknownKind(code)) => Err(Error::Type(format!(
            "ids must be an integer tensor, got dtype {}",
            crate::dtype::dtype_code_name(code)
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Char-level token counts, with an array for ASCII (most text).
fn count_chars(text: &str) -> Vec<(char, usize)> {
    let mut ascii = [0usize; 128];
    let mut other: Map<char, usize> = Map::default();
    for c in text.chars() {
        // In range exactly when `c` is ASCII.
        match ascii.get_mut(c as usize) {
            Some(n) => *n += 1,
            None => *other.entry(c).or_insert(0) += 1,
        }
    }
    let ascii = (0u8..)
        .zip(ascii)
        .filter(|&(_, n)| n > 0)
        .map(|(b, n)| (char::from(b), n));
    ascii.chain(other).collect()
}

/// The id of each single-character token: a dense table for the Basic
/// Multilingual Plane (up to the largest code point present), a map beyond.
#[derive(Clone, Debug, Default)]
struct CharTable {
    dense: Vec<i64>,
    rest: Map<char, i64>,
}

impl CharTable {
    const DENSE_LIMIT: u32 = 0x1_0000;

    fn new(tokens: &[String]) -> CharTable {
        let single = |t: &String| single_char(t);
        let dense_len = tokens
            .iter()
            .filter_map(single)
            .map(|c| c as u32 + 1)
            .filter(|&n| n <= Self::DENSE_LIMIT)
            .max()
            .unwrap_or(0);
        let mut table = CharTable {
            dense: vec![-1; dense_len as usize],
            rest: Map::default(),
        };
        for (id, tok) in tokens.iter().enumerate() {
            if let Some(c) = single(tok) {
                // `dense` covers every single character below DENSE_LIMIT.
                if let Some(slot) = table.dense.get_mut(c as usize) {
                    *slot = id as i64;
                } else {
                    table.rest.insert(c, id as i64);
                }
            }
        }
        table
    }

    #[inline]
    fn get(&self, c: char) -> Option<i64> {
        match self.dense.get(c as usize) {
            Some(&id) if id >= 0 => Some(id),
            Some(_) => None,
            None => self.rest.get(&c).copied(),
        }
    }
}

/// The word-level tokenizer (see [`Vocab::tokenize`]).
struct WordSplitter<'s> {
    /// Specials that can be written in text (no whitespace), longest first.
    literal: Vec<&'s str>,
    /// Whether an ASCII character starts one of `literal` (only there is a
    /// match tried)...
    literal_ascii: [bool; 128],
    /// ... and the other characters that do.
    literal_other: Vec<char>,
    /// Whether each `"\n"` yields `<eos>`.
    eos: bool,
}

/// The token being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    None,
    Word,
    Punct,
}

/// What a character is to the word-level tokenizer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Space,
    Word,
    /// Punctuation, symbols, emoji: a token of its own.
    Other,
    /// Belongs to the token before it (see [`is_mark`]).
    Mark,
}

/// Whether each byte is an ASCII word character.
// why: evaluated at compile time, where an index out of range fails the build.
#[allow(clippy::indexing_slicing)]
static ASCII_WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 128 {
        t[b] = (b as u8).is_ascii_alphanumeric() || b == b'_' as usize;
        b += 1;
    }
    t
};

/// Whether the byte `b` is an ASCII word character.
#[inline(always)]
fn ascii_word(b: u8) -> bool {
    // A u8 is always below 256: the fallback compiles away.
    ASCII_WORD.get(usize::from(b)).copied().unwrap_or(false)
}

/// The class of each ASCII character (`char::is_whitespace` counts U+000B).
// why: evaluated at compile time, where an index out of range fails the build.
#[allow(clippy::indexing_slicing)]
static ASCII_CLASS: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut b = 0;
    while b < 128 {
        if ASCII_WORD[b] {
            t[b] = Class::Word;
        } else if matches!(b as u8, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
            t[b] = Class::Space;
        }
        b += 1;
    }
    t
};

impl Class {
    #[inline(always)]
    fn of(c: char) -> Class {
        // In the table exactly when `c` is ASCII.
        if let Some(&class) = ASCII_CLASS.get(c as usize) {
            class
        } else if c.is_whitespace() {
            Class::Space
        } else if is_mark(c) {
            Class::Mark
        } else if is_word(c) {
            Class::Word
        } else {
            Class::Other
        }
    }
}

impl<'s> WordSplitter<'s> {
    fn new(specials: &'s [String]) -> Self {
        let mut literal: Vec<&str> = specials
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
            .collect();
        literal.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut literal_ascii = [false; 128];
        let mut literal_other = Vec::new();
        for c in literal.iter().filter_map(|s| s.chars().next()) {
            match literal_ascii.get_mut(c as usize) {
                Some(starts) => *starts = true,
                None => literal_other.push(c),
            }
        }
        WordSplitter {
            literal,
            literal_ascii,
            literal_other,
            eos: specials.iter().any(|s| s == EOS),
        }
    }

    /// Calls `emit` with each token of `text`, in order.
    fn split<'t>(&self, text: &'t str, mut emit: impl FnMut(&'t str)) {
        let bytes = text.as_bytes();
        let (mut i, mut start) = (0, 0);
        let mut run = Run::None;
        let mut join_next = false;
        let mut prev_word = false;
        while let Some(&byte) = bytes.get(i) {
            let at = i;
            let c = if byte.is_ascii() {
                byte as char
            } else {
                text[i..].chars().next().unwrap_or_default()
            };
            i += c.len_utf8();
            let class = Class::of(c);
            if join_next && run != Run::None && class != Class::Space {
                // The character after a zero-width joiner stays in its token.
                join_next = c == ZWJ;
                continue;
            }
            join_next = false;
            match class {
                Class::Space => {
                    if run != Run::None {
                        emit(&text[start..at]);
                        run = Run::None;
                    }
                    if c == '\n' && self.eos {
                        emit(EOS);
                    }
                    prev_word = false;
                }
                Class::Mark => {
                    if run == Run::None {
                        start = at;
                        run = Run::Punct;
                    }
                    join_next = c == ZWJ;
                }
                Class::Word | Class::Other => {
                    if self.may_start_literal(c) {
                        if let Some(s) = self.literal_at(text, at, prev_word) {
                            if run != Run::None {
                                emit(&text[start..at]);
                                run = Run::None;
                            }
                            emit(&text[at..at + s.len()]);
                            i = at + s.len();
                            prev_word = s.chars().next_back().is_some_and(is_word);
                            continue;
                        }
                    }
                    let word = class == Class::Word;
                    if !(word && run == Run::Word) {
                        if run != Run::None {
                            emit(&text[start..at]);
                        }
                        start = at;
                        run = if word { Run::Word } else { Run::Punct };
                    }
                    prev_word = word;
                    if word {
                        // Fast path through the rest of an ASCII word; no
                        // special can match inside a word.
                        while bytes.get(i).copied().is_some_and(ascii_word) {
                            i += 1;
                        }
                    }
                }
            }
        }
        if run != Run::None {
            emit(&text[start..]);
        }
    }

    #[inline]
    fn may_start_literal(&self, c: char) -> bool {
        match self.literal_ascii.get(c as usize) {
            Some(&starts) => starts,
            None => self.literal_other.contains(&c),
        }
    }

    /// The literal special starting at byte `i`, unless it would split a word
    /// (so a special `PAD` does not match inside `PADDING`).
    fn literal_at(&self, text: &str, i: usize, prev_word: bool) -> Option<&'s str> {
        let rest = &text[i..];
        self.literal.iter().copied().find(|s| {
            rest.starts_with(s)
                && !(prev_word && s.starts_with(is_word))
                && !(s.ends_with(is_word) && rest[s.len()..].starts_with(is_word))
        })
    }
}

/// The maps' hasher: foldhash (the crate hashbrown itself defaults to), in
/// its quality variant, seeded at random once per process. The fast variant's
/// hashes of the packed (u128) short tokens filled only ~93% of the buckets
/// random hashes fill for some seeds (the test below failed one run in a
/// few); the quality variant's final avalanche costs a multiply per hash.
///
/// Why not FxHash, used here before: its one multiply per word leaves the
/// low bits, from which hashbrown picks a bucket, depending on the low bits
/// of the key alone, so tokens sharing a prefix or a length ("w0".."w1999999",
/// 7-digit numbers) crowded into a few buckets and loading two million of
/// them took 48 s. foldhash folds a full 64x64->128-bit product, mixing every
/// key bit into every hash bit, at about FxHash's speed on short keys.
///
/// Why not SipHash (std's default): vocabulary files can come from
/// elsewhere, and SipHash is the choice against an adversary who can craft
/// keys for a known function; here the random per-process seed already
/// keeps collisions from being computed in advance (foldhash is "minimally
/// DoS-resistant"), a file is loaded once rather than probed interactively,
/// and SipHash would cost a word-level encode, which hashes every token of
/// the text, several times its lookups.
type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

const ZWJ: char = '\u{200D}';

/// A word character: alphanumeric (Unicode) or `_`, as Python's `\w`.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A character that belongs to the token before it: combining diacritical
/// marks, variation selectors, emoji modifiers and tags, the zero-width joiner.
fn is_mark(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF
        | 0xFE00..=0xFE0F | 0xFE20..=0xFE2F | 0x200D | 0x1F3FB..=0x1F3FF
        | 0xE0020..=0xE007F | 0xE0100..=0xE01EF)
}

#[derive(Serialize, Deserialize)]
struct VocabFile {
    format: String,
    version: u64,
    level: Level,
    lower: bool,
    specials: Vec<String>,
    tokens: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn words(text: &str) -> Vec<String> {
        let specials = BuildOptions::default().specials;
        let mut out = Vec::new();
        WordSplitter::new(&specials).split(text, |t| out.push(t.to_string()));
        out
    }

    #[test]
    fn word_tokenizer_splits_punctuation_and_marks_line_ends() {
        assert_eq!(
            words("Hello, world! It's 3.14\nbye_now...\n"),
            [
                "Hello", ",", "world", "!", "It", "'", "s", "3", ".", "14", "<eos>", "bye_now",
                ".", ".", ".", "<eos>"
            ]
        );
        assert_eq!(words("a\r\n\nb"), ["a", "<eos>", "<eos>", "b"]);
        assert_eq!(words("  \t "), Vec::<String>::new());
        assert_eq!(
            words("héllo wörld — 日本語 🙂"),
            ["héllo", "wörld", "—", "日本語", "🙂"]
        );
    }

    #[test]
    fn word_tokenizer_keeps_marks_and_literal_specials() {
        // e + combining acute stays one word; a thumbs-up with skin tone is one token.
        assert_eq!(words("cafe\u{301}! 👍🏽x"), ["cafe\u{301}", "!", "👍🏽", "x"]);
        assert_eq!(words("a <unk> b<eos>c"), ["a", "<unk>", "b", "<eos>", "c"]);
        let specials = vec!["PAD".to_string()];
        let mut out = Vec::new();
        WordSplitter::new(&specials).split("PAD PADDING xPAD (PAD)\n", |t| out.push(t));
        assert_eq!(out, ["PAD", "PADDING", "xPAD", "(", "PAD", ")"]);
    }

    #[test]
    fn ids_are_specials_then_frequency_then_token() {
        let v = Vocab::build("bbb aa c a\n", Level::Char, &BuildOptions::default()).unwrap();
        // counts: ' ' 3, 'a' 3, 'b' 3, 'c' 1, '\n' 1
        assert_eq!(v.tokens(), ["<unk>", "<eos>", " ", "a", "b", "\n", "c"]);
        assert_eq!((v.unk_id(), v.eos_id()), (Some(0), Some(1)));

        let opts = BuildOptions {
            min_freq: 2,
            ..Default::default()
        };
        let v = Vocab::build("b a b a c\nc d", Level::Word, &opts).unwrap();
        assert_eq!(v.tokens(), ["<unk>", "<eos>", "a", "b", "c"]);

        let opts = BuildOptions {
            max_size: Some(3),
            specials: vec![],
            ..Default::default()
        };
        let v = Vocab::build("b a b a c c c", Level::Word, &opts).unwrap();
        assert_eq!(v.tokens(), ["c", "a", "b"]);
        assert_eq!(v.unk_id(), None);
        assert!(matches!(v.encode_ids("a z"), Err(Error::Key(_))));

        let opts = BuildOptions {
            lower: true,
            ..Default::default()
        };
        let v = Vocab::build("The the THE", Level::Word, &opts).unwrap();
        assert_eq!(v.tokens(), ["<unk>", "<eos>", "the"]);
        assert_eq!(v.encode_ids("tHe x").unwrap(), [2, 0]);
    }

    #[test]
    fn build_rejects_bad_options() {
        let bad = |opts: BuildOptions| Vocab::build("x", Level::Char, &opts).is_err();
        assert!(bad(BuildOptions {
            min_freq: 0,
            ..Default::default()
        }));
        assert!(bad(BuildOptions {
            max_size: Some(1),
            ..Default::default()
        }));
        assert!(bad(BuildOptions {
            specials: vec!["a".into(), "a".into()],
            ..Default::default()
        }));
        assert!(bad(BuildOptions {
            specials: vec![String::new()],
            ..Default::default()
        }));
        assert!(Level::parse("byte").is_err());
    }

    #[test]
    fn encode_decode_round_trip() {
        let text = "héllo wörld — 日本語 🙂\nline two\n";
        let v = Vocab::build(text, Level::Char, &BuildOptions::default()).unwrap();
        let ids = v.encode_ids(text).unwrap();
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(v.decode(&ids).unwrap(), text);

        let v = Vocab::build(text, Level::Word, &BuildOptions::default()).unwrap();
        let ids = v.encode_ids(text).unwrap();
        assert_eq!(v.decode(&ids).unwrap(), text);
        assert_eq!(v.decode(&ids[..ids.len() - 1]).unwrap(), text.trim_end());
        assert!(matches!(v.decode(&[-1]), Err(Error::Index(_))));
        assert!(matches!(v.token(v.len() as i64), Err(Error::Index(_))));
    }

    #[test]
    fn pack_is_the_bytes_and_the_length() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "é日🙂xyz",
        ];
        for w in words.iter().chain(&["abcdefghijklmno"]) {
            let mut buf = [0u8; 16];
            buf[..w.len()].copy_from_slice(w.as_bytes());
            buf[15] = w.len() as u8;
            assert_eq!(pack(w), Some(u128::from_le_bytes(buf)), "{w}");
        }
        assert_eq!(pack("abcdefghijklmnop"), None);
    }

    #[test]
    fn lookup_of_short_long_and_single_character_tokens() {
        // 1-byte, multi-byte single characters, 15 and 16 bytes, long words.
        let text = "a é 日 🙂 fifteen_bytes_x sixteen_bytes_xx \
                    a_much_longer_word_than_sixteen_bytes ab";
        let v = Vocab::build(text, Level::Word, &BuildOptions::default()).unwrap();
        for tok in text.split_whitespace() {
            let id = v.id(tok).unwrap();
            assert_eq!(v.token(id).unwrap(), tok);
            assert!(v.contains(tok));
        }
        let ids = v.encode_ids(text).unwrap();
        assert_eq!(
            v.decode(&ids).unwrap(),
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        // Prefixes and extensions of known tokens are unknown.
        for tok in [
            "fifteen_bytes_",
            "fifteen_bytes_xx",
            "sixteen_bytes_x",
            "a_much_longer",
        ] {
            assert!(!v.contains(tok), "{tok}");
            assert_eq!(v.encode_ids(tok).unwrap(), [0]);
        }
        assert!(!v.contains("<unk>x") && v.contains("<unk>") && v.id("<eos>").unwrap() == 1);
    }

    #[test]
    fn one_hot_matches_torch() {
        let v = Vocab::build("abcab", Level::Char, &BuildOptions::default()).unwrap();
        let ids = Tensor::from_slice(&[2i64, 3, 4, 0]).reshape([2, 2]);
        let oh = v.one_hot(&ids).unwrap();
        assert_eq!(oh.size(), [2, 2, 5]);
        assert_eq!(oh.kind(), Kind::Float);
        assert!(oh.equal(&ids.one_hot(5).to_kind(Kind::Float)));
        assert!(
            matches!(v.one_hot(&Tensor::from_slice(&[1i64, 5])), Err(Error::Index(m)) if m.contains("id 5"))
        );
        assert!(matches!(
            v.one_hot(&Tensor::from_slice(&[1.0f32])),
            Err(Error::Type(_))
        ));
    }

    #[test]
    fn json_round_trip_and_corruption() {
        let opts = BuildOptions {
            lower: true,
            ..Default::default()
        };
        let v = Vocab::build("Some words, some more.\n", Level::Word, &opts).unwrap();
        let json = v.to_json();
        let back = Vocab::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            back.encode_ids("some more").unwrap(),
            v.encode_ids("some more").unwrap()
        );

        let bad = |s: &str| match Vocab::from_json(s.as_bytes()) {
            Err(Error::Value(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        assert!(bad("").contains("empty"));
        assert!(bad("{").contains("invalid JSON"));
        assert!(bad("[1]").contains("not a rustrnn vocabulary"));
        assert!(bad(r#"{"format": "other"}"#).contains("not a rustrnn vocabulary"));
        assert!(bad(r#"{"format": "rustrnn.vocab", "version": 2}"#).contains("version 2"));
        let head = r#""format": "rustrnn.vocab", "version": 1, "level": "char", "lower": false"#;
        assert!(bad(&format!("{{{head}, \"specials\": []}}")).contains("tokens"));
        assert!(bad(&format!(
            "{{{head}, \"specials\": [], \"tokens\": [\"a\", \"a\"]}}"
        ))
        .contains("duplicate"));
        assert!(bad(&format!(
            "{{{head}, \"specials\": [], \"tokens\": [\"ab\"]}}"
        ))
        .contains("single character"));
        assert!(bad(&format!(
            "{{{head}, \"specials\": [\"<unk>\"], \"tokens\": [\"a\"]}}"
        ))
        .contains("start with the specials"));
    }

    #[test]
    fn save_is_atomic_and_load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rustrnn-vocab-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.json");
        let v = Vocab::build("abc", Level::Char, &BuildOptions::default()).unwrap();
        v.save(&path).unwrap();
        assert_eq!(Vocab::load(&path).unwrap(), v);
        let entries: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file is left behind");

        let target_dir = dir.join("is_a_dir");
        fs::create_dir_all(&target_dir).unwrap();
        assert!(matches!(v.save(&target_dir), Err(Error::Io { .. })));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);

        fs::write(&path, "{").unwrap();
        let err = Vocab::load(&path).unwrap_err();
        assert!(matches!(err, Error::Format { .. }) && err.to_string().contains("v.json"));
        let err = Vocab::load(&dir.join("missing.json")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("missing.json"));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The hashes of structured tokens ("w0".."w99999", as Strings for the
    /// `ids` map and packed for the `short` one) spread over the bits
    /// hashbrown uses: the low 17 (the bucket of a table of 2^17) fill as
    /// many buckets as random hashes would, with no bucket crowded, and the
    /// top 7 (its control tag) are near uniform. FxHash failed this: its low
    /// bits depend on the low bits of the key only.
    #[test]
    fn structured_tokens_hash_uniformly() {
        use std::hash::BuildHasher;
        let build = <Map<String, i64> as Default>::default().hasher().clone();
        let n = 100_000usize;
        let tokens: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
        let strings: Vec<u64> = tokens.iter().map(|t| build.hash_one(t)).collect();
        let packed: Vec<u64> = tokens
            .iter()
            .map(|t| build.hash_one(pack(t).unwrap()))
            .collect();
        for (what, hashes) in [("String", strings), ("packed", packed)] {
            let buckets = 1usize << 17;
            let mut load = vec![0u32; buckets];
            let mut tags = [0u32; 128];
            for h in &hashes {
                load[(*h as usize) & (buckets - 1)] += 1;
                tags[(h >> 57) as usize] += 1;
            }
            // Random hashes fill 1 - e^-λ of the buckets (λ = n / buckets,
            // 53% here, sd ~0.2%) and leave none above ~10.
            let lambda = n as f64 / buckets as f64;
            let want = buckets as f64 * (1.0 - (-lambda).exp());
            let used = load.iter().filter(|&&c| c > 0).count() as f64;
            let worst = load.iter().max().copied().unwrap_or(0);
            assert!(
                used > 0.97 * want,
                "{what}: {used} buckets used, random: {want:.0}"
            );
            assert!(worst <= 12, "{what}: a bucket holds {worst} tokens");
            // 127 degrees of freedom: P(chi2 > 230) is about 1e-7.
            let e = n as f64 / 128.0;
            let chi2: f64 = tags.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
            assert!(chi2 < 230.0, "{what}: tag chi-square {chi2}");
        }
    }
}
