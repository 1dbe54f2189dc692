//! When a continuation ends: at a stop id, or at the token that completes a
//! stop string in its decoded text (the continuation's, not the prompt's),
//! as Hugging Face's `stop_strings` do. The token that ends it is kept.
//!
//! A string is matched on the text [`Vocab::decode`] gives for the
//! continuation, so it may span tokens or lie inside one ("end" inside the
//! word "bend"). Each row keeps only the tail of its text that a match still
//! needs, so the cost per token does not grow with the continuation.

use crate::error::{Error, Result};
use crate::vocab::{Level, Vocab};

/// The stop rule of one generation.
#[derive(Default)]
pub struct Stop<'a> {
    /// Sorted, without repeats.
    ids: Vec<i64>,
    strings: Vec<String>,
    /// The vocabulary whose decoding the strings are matched on.
    vocab: Option<&'a Vocab>,
    /// Bytes of a row's text kept between tokens: the longest string's less one.
    keep: usize,
}

/// The decoded text a row has generated so far, as far as matching needs it.
#[derive(Clone, Debug)]
pub struct RowText {
    tail: String,
    /// Word level: the next word starts a line (no space before it).
    at_line_start: bool,
}

impl Default for RowText {
    fn default() -> Self {
        RowText {
            tail: String::new(),
            at_line_start: true,
        }
    }
}

impl<'a> Stop<'a> {
    /// No stop: every continuation runs to `max_tokens`.
    pub fn none() -> Self {
        Stop::default()
    }

    /// Stops at any of `ids`, or once the decoded text (by `vocab`) contains
    /// any of `strings`. A string that is spelled as a special token whose
    /// decoded text differs (`<eos>` at word level decodes as a line break)
    /// also stops at that token. An empty string is a `ValueError`, strings
    /// without a vocabulary too.
    pub fn new(ids: Vec<i64>, strings: Vec<String>, vocab: Option<&'a Vocab>) -> Result<Self> {
        let mut ids = ids;
        if strings.iter().any(String::is_empty) {
            return Err(Error::value(
                "a stop string must not be empty (it would end every continuation at once)",
            ));
        }
        if !strings.is_empty() {
            let Some(v) = vocab else {
                return Err(Error::value(
                    "stop strings need the vocabulary to decode with",
                ));
            };
            if v.level() == Level::Word {
                if let Some(eos) = v.eos_id() {
                    let spelled = v.token(eos)?;
                    if strings.iter().any(|s| s == spelled) {
                        ids.push(eos);
                    }
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let keep = strings.iter().map(String::len).max().unwrap_or(1) - 1;
        Ok(Stop {
            ids,
            strings,
            vocab,
            keep,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.strings.is_empty()
    }

    /// Whether any strings are matched (rows then keep their text).
    pub fn has_strings(&self) -> bool {
        !self.strings.is_empty()
    }

    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// Checks the rule against a model of `vocab` input tokens whose head
    /// draws `outputs` tokens: an id outside the vocabulary is an `Index`
    /// error naming its size, and strings need a vocabulary that spells every
    /// token the head can draw.
    pub fn check(&self, vocab: i64, outputs: i64) -> Result<()> {
        if let Some(&bad) = self.ids.iter().find(|&&id| id < 0 || id >= vocab) {
            return Err(Error::Index(format!(
                "stop id {bad} is outside the vocabulary of size {vocab}"
            )));
        }
        if let (false, Some(v)) = (self.strings.is_empty(), self.vocab) {
            if (v.len() as i64) < outputs {
                return Err(Error::shape(format!(
                    "stop strings are matched on decoded text, but the vocabulary has {} tokens \
                     and the model's head draws {outputs}",
                    v.len()
                )));
            }
        }
        Ok(())
    }

    /// Whether `token`, appended to the continuation whose text is `row`,
    /// ends it.
    pub fn hit(&self, row: &mut RowText, token: i64) -> bool {
        if self.ids.binary_search(&token).is_ok() {
            return true;
        }
        let Some(vocab) = self.vocab.filter(|_| !self.strings.is_empty()) else {
            return false;
        };
        // `check` made sure the vocabulary spells every token the head draws.
        let spelled = vocab.token(token).unwrap_or("");
        match vocab.level() {
            Level::Char => row.tail.push_str(spelled),
            Level::Word if Some(token) == vocab.eos_id() => {
                row.tail.push('\n');
                row.at_line_start = true;
            }
            Level::Word => {
                if !row.at_line_start {
                    row.tail.push(' ');
                }
                row.tail.push_str(spelled);
                row.at_line_start = false;
            }
        }
        // No string occurred before this token, so any occurrence is new.
        let hit = self.strings.iter().any(|s| row.tail.contains(s.as_str()));
        if row.tail.len() > self.keep {
            let mut cut = row.tail.len() - self.keep;
            while !row.tail.is_char_boundary(cut) {
                cut -= 1;
            }
            row.tail.drain(..cut);
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::BuildOptions;

    fn vocab(text: &str, level: Level) -> Vocab {
        Vocab::build(text, level, &BuildOptions::default()).unwrap()
    }

    /// The first token (1-based count) at which `stop` ends `ids`, if any.
    fn ends_at(stop: &Stop, ids: &[i64]) -> Option<usize> {
        let mut row = RowText::default();
        ids.iter()
            .position(|&t| stop.hit(&mut row, t))
            .map(|i| i + 1)
    }

    /// Against the definition: the shortest prefix whose `Vocab::decode`
    /// contains a string. Char and word level, strings across tokens and
    /// inside one, multi-byte characters, line breaks.
    #[test]
    fn strings_stop_where_the_decoded_text_first_contains_them() {
        let text = "the bend of the end.\nan émigré ends here\nthe end";
        for level in [Level::Char, Level::Word] {
            let v = vocab(text, level);
            let ids: Vec<i64> = v.encode_ids(text).unwrap();
            for strings in [
                vec!["end"],
                vec!["the end"],
                vec![".\nan"],
                vec!["é e", "gré"],
                vec!["here\nthe"],
                vec!["absent"],
                vec!["n"],
            ] {
                let strings: Vec<String> = strings.into_iter().map(String::from).collect();
                let stop = Stop::new(Vec::new(), strings.clone(), Some(&v)).unwrap();
                let want = (1..=ids.len()).find(|&n| {
                    let decoded = v.decode(&ids[..n]).unwrap();
                    strings.iter().any(|s| decoded.contains(s.as_str()))
                });
                assert_eq!(ends_at(&stop, &ids), want, "{level:?} {strings:?}");
            }
        }
    }

    #[test]
    fn ids_and_special_spellings() {
        let v = vocab("a b\nc d\n", Level::Word);
        let eos = v.eos_id().unwrap();
        let ids = v.encode_ids("a b\nc").unwrap();
        let stop = Stop::new(Vec::new(), vec!["<eos>".into()], Some(&v)).unwrap();
        assert_eq!(ends_at(&stop, &ids), Some(3));
        let stop = Stop::new(vec![eos], Vec::new(), None).unwrap();
        assert_eq!(ends_at(&stop, &ids), Some(3));
        assert!(Stop::new(Vec::new(), vec![String::new()], Some(&v)).is_err());
        assert!(Stop::new(Vec::new(), vec!["x".into()], None).is_err());
        let stop = Stop::new(vec![99], Vec::new(), None).unwrap();
        assert!(matches!(stop.check(10, 10), Err(Error::Index(m)) if m.contains("size 10")));
    }
}
