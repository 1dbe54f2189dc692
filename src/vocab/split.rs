//! Tokenization: where the tokens of a text begin and end. At char level a
//! token is a `char` and needs no code of its own; at word level it is the
//! [`WordSplitter`], with the character classes and ASCII tables it reads.
//!
//! Separate from the vocabulary because it never sees an id: building
//! (counting), `tokenize` and `encode` all split text the same way here, by
//! the rules the module docs state.

// Values from Python and from vocabulary files reach this module: no index or
// slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use super::EOS;

/// The word-level tokenizer (see [`Vocab::tokenize`](super::Vocab::tokenize)).
pub(super) struct WordSplitter<'s> {
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
    pub(super) fn new(specials: &'s [String]) -> Self {
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
    pub(super) fn split<'t>(&self, text: &'t str, mut emit: impl FnMut(&'t str)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::BuildOptions;

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
}
