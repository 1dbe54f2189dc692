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
//!
//! The code is split by idea: `split` (how text is split into tokens), `map`
//! (the hash maps, packed short-token keys and character table behind every
//! lookup) and `file` (the JSON file format).

// Values from Python and from vocabulary files reach this module: no index or
// slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod file;
mod map;
mod split;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

pub use file::{FORMAT, VERSION};
use map::{pack, CharTable, Map};
use split::WordSplitter;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
