//! Counting n-grams as the text streams by.
//!
//! Each sentence is `<s> w1 .. wm </s>`; every n-gram of order 1 to N that
//! ends at a word of it is counted (those that begin at `<s>` included; `<s>`
//! itself is never counted as a unigram, since it is never predicted). The
//! n-grams ending at the previous word are kept as ids, so the n-gram of
//! order n ending at the next word is one probe, `(id of the (n-1)-gram
//! ending before it, word)`, and a new n-gram records its suffix (the
//! (n-1)-gram ending at the same word) for the estimation. Memory is the
//! distinct n-grams; the text goes by line by line.

use super::table::Table;
use super::words::{Piece, Words, BOS_WORD, EOS_WORD, POLL_EVERY};
use super::MAX_ORDER;
use crate::error::{Error, Result};

/// Raw counts of every n-gram of orders 1 to N.
pub struct Counts {
    pub words: Words,
    /// `tables[n - 1]`: the n-grams of order n.
    pub tables: Vec<Table>,
    /// `counts[n - 1][id]`: how often n-gram `id` of order n occurred.
    pub counts: Vec<Vec<u64>>,
    /// `suffix[n - 1][id]` (n >= 2): the id of its last n-1 words in order n-1.
    pub suffix: Vec<Vec<u32>>,
    /// Sentences counted.
    pub sentences: u64,
}

/// Counts the n-grams of the sentences fed to it.
pub struct Counter {
    words: Words,
    tally: Tally,
}

/// The counts so far and the sentence being read.
struct Tally {
    order: usize,
    tables: Vec<Table>,
    counts: Vec<Vec<u64>>,
    suffix: Vec<Vec<u32>>,
    sentences: u64,
    /// The ids of the n-grams of orders 1..=hist_len ending at the last word.
    hist: [u32; MAX_ORDER],
    hist_len: usize,
    /// Inside a sentence (its `<s>` read).
    open: bool,
    /// Words read since the last line end, and whether the last was `</s>`.
    line_words: usize,
    last_eos: bool,
    since_poll: usize,
}

impl Counter {
    pub fn new(words: Words, order: usize) -> Result<Counter> {
        super::check_order(order)?;
        let tables = (0..order)
            .map(|n| {
                if n == 0 {
                    Table::unigrams(words.len())
                } else {
                    Table::new()
                }
            })
            .collect();
        let mut counts = vec![Vec::new(); order];
        counts[0] = vec![0; words.len()];
        Ok(Counter {
            words,
            tally: Tally {
                order,
                tables,
                counts,
                suffix: vec![Vec::new(); order],
                sentences: 0,
                hist: [0; MAX_ORDER],
                hist_len: 0,
                open: false,
                line_words: 0,
                last_eos: false,
                since_poll: 0,
            },
        })
    }

    /// Counts the lines of `text` (see [`Words::text_words`]): each is a sentence.
    pub fn add_text(&mut self, text: &str, interrupted: &mut dyn FnMut() -> bool) -> Result<()> {
        let tally = &mut self.tally;
        self.words
            .text_words(text, interrupted, |piece| match piece {
                Piece::Word(w) => tally.push(w),
                Piece::LineEnd { .. } => tally.line_end(),
            })
    }

    /// Counts a stream of vocabulary ids: the ids of `<eos>` (and at char
    /// level of `"\n"`) end sentences, and so does the end of `ids`.
    pub fn add_ids(&mut self, ids: &[i64], interrupted: &mut dyn FnMut() -> bool) -> Result<()> {
        let tally = &mut self.tally;
        for chunk in ids.chunks(POLL_EVERY) {
            for &id in chunk {
                tally.push(self.words.word_of(id)?)?;
            }
            tally.since_poll += chunk.len();
            tally.poll(interrupted)?;
        }
        if tally.open {
            tally.push(EOS_WORD)?;
        }
        tally.line_words = 0;
        Ok(())
    }

    /// The counts, every sentence closed.
    pub fn finish(self) -> Result<Counts> {
        let Counter { words, mut tally } = self;
        if tally.open {
            tally.push(EOS_WORD)?;
        }
        for t in &mut tally.tables {
            t.shrink_to_fit();
        }
        Ok(Counts {
            words,
            tables: tally.tables,
            counts: tally.counts,
            suffix: tally.suffix,
            sentences: tally.sentences,
        })
    }
}

impl Tally {
    /// Counts the n-grams ending at `w`; `</s>` closes the sentence.
    #[inline]
    fn push(&mut self, w: u32) -> Result<()> {
        if !self.open {
            self.hist[0] = BOS_WORD;
            self.hist_len = 1;
            self.open = true;
        }
        let mut cur = [0u32; MAX_ORDER];
        cur[0] = w;
        if let Some(k) = self.counts[0].get_mut(w as usize) {
            *k += 1;
        }
        // The longest n-gram ending at w: the context held, plus w.
        let top = (self.hist_len + 1).min(self.order);
        for n in 2..=top {
            let (id, new) = self.tables[n - 1].intern(self.hist[n - 2], w)?;
            if new {
                self.counts[n - 1].push(0);
                self.suffix[n - 1].push(cur[n - 2]);
            }
            if let Some(k) = self.counts[n - 1].get_mut(id as usize) {
                *k += 1;
            }
            cur[n - 1] = id;
        }
        // The next word's contexts: orders 1..=N-1 at most.
        self.hist_len = top.min(self.order - 1).max(1);
        self.hist[..self.hist_len].copy_from_slice(&cur[..self.hist_len]);
        self.line_words += 1;
        self.last_eos = w == EOS_WORD;
        if self.last_eos {
            self.open = false;
            self.sentences += 1;
        }
        self.since_poll += 1;
        Ok(())
    }

    /// The end of a line: closes the sentence with `</s>` unless the line's
    /// last token already was `</s>` (an empty line is the sentence `<s> </s>`).
    fn line_end(&mut self) -> Result<()> {
        if !(self.line_words > 0 && self.last_eos) {
            self.push(EOS_WORD)?;
        }
        self.line_words = 0;
        self.last_eos = false;
        Ok(())
    }

    fn poll(&mut self, interrupted: &mut dyn FnMut() -> bool) -> Result<()> {
        if self.since_poll >= POLL_EVERY {
            self.since_poll = 0;
            if interrupted() {
                return Err(Error::Interrupted);
            }
        }
        Ok(())
    }
}
