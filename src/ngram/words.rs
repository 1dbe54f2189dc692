//! The model's words and how text becomes them.
//!
//! An n-gram model predicts ARPA *words*: `<unk>` (id 0), `<s>` (1), `</s>`
//! (2), then one word per other vocabulary token. The [`Vocab`] tokenizes;
//! its tokens map onto words as follows:
//!
//! * the special `<unk>` is the word `<unk>` (KenLM's spelling too);
//! * the special `<eos>` is `</s>`: at word level the Vocab emits it for each
//!   `"\n"`, so a line break ends a sentence; at char level the character
//!   `"\n"` is `</s>` as well (and `<eos>`, which char-level text never
//!   produces);
//! * `<s>` has no token: it only begins each sentence's context and is never
//!   predicted;
//! * every other token (other specials included) is a word of its own.
//!
//! In an ARPA file a word cannot hold whitespace, so each whitespace
//! character of a word (the space of a char-level model) is written
//! `<U+0020>` (at least four upper-case hex digits) and read back when the
//! file says it was written by rustrnn.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::vocab::{quote, Level, Vocab, EOS, UNK};

/// The word id of `<unk>`.
pub const UNK_WORD: u32 = 0;
/// The word id of `<s>`.
pub const BOS_WORD: u32 = 1;
/// The word id of `</s>`.
pub const EOS_WORD: u32 = 2;
/// `<unk>`, `<s>`, `</s>`: the first three words of every model.
pub const SPECIAL_WORDS: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// Tokens processed between two polls of the interrupt hook.
pub(crate) const POLL_EVERY: usize = 1 << 16;
/// Bytes of text encoded at a time (cut after a line break).
const CHUNK_BYTES: usize = 1 << 16;

/// The end of the first chunk of `text`: just after the last `"\n"` of its
/// first `size` bytes, else after the first `"\n"`, else the whole text.
fn chunk_end(text: &str, size: usize) -> usize {
    let b = text.as_bytes();
    if b.len() <= size {
        return b.len();
    }
    let (head, tail) = b.split_at(size); // size < b.len(), checked above
    match head.iter().rposition(|&c| c == b'\n') {
        Some(i) => i + 1,
        None => tail
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |i| size + i + 1),
    }
}

/// The words of a model and the vocabulary that reads text into them.
#[derive(Clone, Debug)]
pub struct Words {
    vocab: Vocab,
    /// Every word, by id.
    words: Vec<String>,
    /// The word of each vocabulary id.
    from_vocab: Vec<u32>,
    /// The vocabulary id of each word (`<s>` has none: -1).
    to_vocab: Vec<i64>,
    /// The id the vocabulary encodes `"\n"` as: `<eos>` at word level, the
    /// character at char level when the vocabulary has it.
    line_break: Option<i64>,
}

impl Words {
    /// The words of `vocab`, which must have the specials `<unk>` and `<eos>`
    /// and no token spelled `<s>` or `</s>`.
    pub fn new(vocab: Vocab) -> Result<Words> {
        let (unk, eos) = match (vocab.unk_id(), vocab.eos_id()) {
            (Some(u), Some(e)) => (u, e),
            _ => {
                return Err(Error::value(format!(
                    "an n-gram model needs the specials {UNK} (what unknown tokens become) and \
                     {EOS} (the line end, ARPA's </s>) in its vocabulary; this one has [{}]",
                    vocab
                        .specials()
                        .iter()
                        .map(|s| quote(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        let newline = match vocab.level() {
            Level::Char => vocab.tokens().iter().position(|t| t == "\n"),
            Level::Word => None,
        };
        let mut words: Vec<String> = SPECIAL_WORDS.iter().map(|s| s.to_string()).collect();
        let mut to_vocab = vec![unk, -1, newline.map_or(eos, |i| i as i64)];
        let mut from_vocab = Vec::with_capacity(vocab.len());
        for (id, tok) in vocab.tokens().iter().enumerate() {
            let id = id as i64;
            let word = if id == unk {
                UNK_WORD
            } else if id == eos || Some(id as usize) == newline {
                EOS_WORD
            } else if tok == SPECIAL_WORDS[1] || tok == SPECIAL_WORDS[2] {
                return Err(Error::value(format!(
                    "the vocabulary's token {} (id {id}) is spelled like ARPA's {tok}, which an \
                     n-gram model reserves for sentence boundaries",
                    quote(tok)
                )));
            } else {
                let w = u32::try_from(words.len())
                    .map_err(|_| Error::value("the vocabulary has too many tokens"))?;
                words.push(tok.clone());
                to_vocab.push(id);
                w
            };
            from_vocab.push(word);
        }
        let line_break = match vocab.level() {
            Level::Char => newline.map(|i| i as i64),
            Level::Word => Some(eos),
        };
        Ok(Words {
            vocab,
            words,
            from_vocab,
            to_vocab,
            line_break,
        })
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Every word by id: `<unk>`, `<s>`, `</s>`, then the other tokens.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The vocabulary id a word is written as (`</s>` as `"\n"` at char level
    /// when the vocabulary has it, else as `<eos>`); None for `<s>`.
    pub fn vocab_id(&self, word: u32) -> Option<i64> {
        self.to_vocab
            .get(word as usize)
            .copied()
            .filter(|&id| id >= 0)
    }

    /// The word of a vocabulary id; an `Index` error outside the vocabulary.
    pub fn word_of(&self, id: i64) -> Result<u32> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.from_vocab.get(i))
            .copied()
            .ok_or_else(|| {
                Error::Index(format!(
                    "id {id} is out of range for a vocabulary of size {}",
                    self.vocab.len()
                ))
            })
    }

    /// The words of `ids` (vocabulary ids), in order.
    pub fn map_ids(&self, ids: &[i64]) -> Result<Vec<u32>> {
        ids.iter().map(|&id| self.word_of(id)).collect()
    }

    /// Reads `text` line by line: gives `emit` the word of each token of a
    /// line (as the vocabulary tokenizes it), then [`Piece::LineEnd`]. A last
    /// line without `"\n"` is a line; an empty last piece is not. A literal
    /// `<eos>` in word-level text is a line break, as `Vocab.decode` writes it.
    pub fn text_words(
        &self,
        text: &str,
        interrupted: &mut dyn FnMut() -> bool,
        mut emit: impl FnMut(Piece) -> Result<()>,
    ) -> Result<()> {
        let mut rest = text;
        let mut since_poll = 0usize;
        while !rest.is_empty() {
            // Whole lines at a time: one encode call per chunk when the
            // vocabulary marks line breaks with a token, else per line.
            let (chunk, next) = rest.split_at(match self.line_break {
                Some(_) => chunk_end(rest, CHUNK_BYTES),
                None => rest.find('\n').map_or(rest.len(), |i| i + 1),
            });
            let body = chunk.strip_suffix('\n').unwrap_or(chunk);
            let ids = self.vocab.encode_ids(match self.line_break {
                Some(_) => chunk,
                None => body,
            })?;
            for id in ids {
                if Some(id) == self.line_break {
                    emit(Piece::LineEnd { newline: true })?;
                } else {
                    emit(Piece::Word(self.word_of(id)?))?;
                }
            }
            match (self.line_break, chunk.ends_with('\n')) {
                (None, newline) => emit(Piece::LineEnd { newline })?,
                (Some(_), false) => emit(Piece::LineEnd { newline: false })?,
                (Some(_), true) => {}
            }
            since_poll += chunk.len();
            if since_poll >= CHUNK_BYTES {
                since_poll = 0;
                if interrupted() {
                    return Err(Error::Interrupted);
                }
            }
            rest = next;
        }
        Ok(())
    }

    /// The tokens of one line as text (as the vocabulary splits it,
    /// lower-cased when it is) with their words.
    pub fn line_tokens(&self, line: &str) -> Result<Vec<(String, u32)>> {
        self.vocab
            .tokenize(line)
            .into_iter()
            .map(|tok| {
                let word = self.word_of(self.vocab.id(&tok)?)?;
                Ok((tok, word))
            })
            .collect()
    }
}

/// What [`Words::text_words`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// The word of a token.
    Word(u32),
    /// The end of a line, and whether a `"\n"` ended it (not so the last line
    /// of a text that does not end with one).
    LineEnd { newline: bool },
}

/// `word` as an ARPA file holds it: each whitespace character as `<U+XXXX>`.
pub fn escape(word: &str) -> std::borrow::Cow<'_, str> {
    if !word.contains(char::is_whitespace) {
        return std::borrow::Cow::Borrowed(word);
    }
    let mut out = String::with_capacity(word.len() + 8);
    for c in word.chars() {
        if c.is_whitespace() {
            let _ = write!(out, "<U+{:04X}>", c as u32);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The inverse of [`escape`]: each `<U+XXXX>` (4 to 6 hex digits naming a
/// character) becomes that character; anything else stays as written.
pub fn unescape(word: &str) -> std::borrow::Cow<'_, str> {
    if !word.contains("<U+") {
        return std::borrow::Cow::Borrowed(word);
    }
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(at) = rest.find("<U+") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 3..];
        let decoded = tail.find('>').and_then(|end| {
            let hex = &tail[..end];
            let ok = (4..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit());
            let c = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
            ok.then_some(()).and(c).map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push_str("<U+");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}
