//! Asking a model: the probability of each token in its context, whole
//! sentences, KenLM's evaluation figures, and the distribution of the next
//! token.
//!
//! A [`State`] holds the ids of the n-grams that end at the last word, one
//! per order up to N-1 (KenLM's `State`). Scoring word `w` probes
//! `(context id, w)` order by order upwards until an n-gram is missing: the
//! longest one found gives the probability, the context orders above it add
//! their backoff weights (log10 p(w | c) = log10 p(w | longest match) +
//! sum of log10 b over the longer contexts), and the n-grams found are the
//! next state. Every n-gram's prefix and suffix is an n-gram too (fitted
//! models have them; an ARPA file's gaps are filled with blanks when read),
//! so the first missing order ends the search.

use std::sync::OnceLock;

use super::words::{Piece, Words, BOS_WORD, EOS_WORD, POLL_EVERY, UNK_WORD};
use super::{NGramModel, MAX_ORDER};
use crate::error::{Error, Result};

/// What is scored: text (its lines, tokenized by the vocabulary) or the
/// words of one line.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Text(&'a str),
    Words(&'a [u32]),
}

impl Input<'_> {
    /// Gives `emit` each word and each line end (see [`Words::text_words`]).
    pub fn pieces(
        &self,
        words: &Words,
        interrupted: &mut dyn FnMut() -> bool,
        mut emit: impl FnMut(Piece) -> Result<()>,
    ) -> Result<()> {
        match *self {
            Input::Text(text) => words.text_words(text, interrupted, emit),
            Input::Words(ws) => {
                for chunk in ws.chunks(POLL_EVERY) {
                    for &w in chunk {
                        emit(Piece::Word(w))?;
                    }
                    if interrupted() {
                        return Err(Error::Interrupted);
                    }
                }
                emit(Piece::LineEnd { newline: false })
            }
        }
    }

    /// How many lines it holds.
    pub fn lines(&self) -> u64 {
        match *self {
            Input::Text(text) => text.split_terminator('\n').count() as u64,
            Input::Words(_) => 1,
        }
    }
}

/// What the model knows of the words before the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    len: u8,
    /// `ids[k]`: the id in order k+1 of the last k+1 words.
    ids: [u32; MAX_ORDER - 1],
}

impl State {
    /// No context at all (KenLM's `NullContextState`).
    pub const NULL: State = State {
        len: 0,
        ids: [0; MAX_ORDER - 1],
    };

    /// How many words of context it holds.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One token's score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// log10 p(token | context).
    pub log10: f64,
    /// The order of the n-gram that gave the probability (1 for a unigram).
    pub order: u8,
    /// Whether the token is `<unk>`.
    pub oov: bool,
}

/// KenLM's corpus figures (its `query` program's summary).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Tokens scored, each `</s>` and each `<unk>` included.
    pub tokens: u64,
    /// Tokens that were `<unk>`.
    pub oovs: u64,
    /// Sentences (lines) scored.
    pub sentences: u64,
    /// The total log10 probability.
    pub log10_prob: f64,
    /// The part of it that the `<unk>` tokens contributed.
    pub log10_prob_oovs: f64,
}

impl Evaluation {
    /// The total natural-log probability.
    pub fn log_prob(&self) -> f64 {
        self.log10_prob * std::f64::consts::LN_10
    }

    /// `10^(-log10_prob / tokens)`.
    pub fn perplexity_including_oovs(&self) -> f64 {
        10f64.powf(-self.log10_prob / self.tokens as f64)
    }

    /// `10^(-(log10_prob - log10_prob_oovs) / (tokens - oovs))`.
    pub fn perplexity_excluding_oovs(&self) -> f64 {
        10f64.powf(-(self.log10_prob - self.log10_prob_oovs) / (self.tokens - self.oovs) as f64)
    }

    /// `-log2 P / tokens`.
    pub fn bits_per_token(&self) -> f64 {
        -self.log10_prob * std::f64::consts::LOG2_10 / self.tokens as f64
    }

    fn add(&mut self, s: &Scored) {
        self.tokens += 1;
        self.log10_prob += s.log10;
        if s.oov {
            self.oovs += 1;
            self.log10_prob_oovs += s.log10;
        }
    }
}

/// Each context's explicit continuations, for whole distributions: for
/// order n >= 2, the n-grams grouped by context (CSR), with their words and
/// probabilities (not log); and the unigram probabilities.
pub(super) struct Children {
    unigram: Vec<f64>,
    /// `start[n - 2][c]..start[n - 2][c + 1]`: the slice of context `c`'s
    /// continuations (order n) in `word[n - 2]` and `prob[n - 2]`.
    start: Vec<Vec<u32>>,
    word: Vec<Vec<u32>>,
    /// NaN for blanks (no probability of their own).
    prob: Vec<Vec<f64>>,
}

impl NGramModel {
    /// The state before a sentence's first word: `<s>` with `bos`, else no context.
    pub fn begin(&self, bos: bool) -> State {
        if bos && self.order() > 1 {
            let mut s = State::NULL;
            s.len = 1;
            s.ids[0] = BOS_WORD;
            s
        } else {
            State::NULL
        }
    }

    /// The score of word `w` after `state`, and the state after it.
    #[inline]
    pub fn step(&self, state: &State, w: u32) -> (Scored, State) {
        let order = self.order();
        let held = state.len();
        // found[n - 1]: the id of the n-gram of order n ending at w; probing
        // upwards until one is missing.
        let mut found = [0u32; MAX_ORDER];
        found[0] = w;
        let mut longest = 1usize;
        for n in 2..=(held + 1).min(order) {
            match self.tables[n - 1].get(state.ids[n - 2], w) {
                Some(id) => {
                    found[n - 1] = id;
                    longest = n;
                }
                None => break,
            }
        }
        // The longest with a probability of its own (blanks have none); one
        // read unless an ARPA file had gaps.
        let mut best_n = longest;
        let mut best = f64::NAN;
        while best_n >= 1 {
            best = self.prob[best_n - 1]
                .get(found[best_n - 1] as usize)
                .copied()
                .unwrap_or(f64::NAN);
            if !best.is_nan() || best_n == 1 {
                break;
            }
            best_n -= 1;
        }
        let mut log10 = best;
        for k in best_n..=held {
            log10 += self.backoff[k - 1]
                .get(state.ids[k - 1] as usize)
                .copied()
                .unwrap_or(0.0);
        }
        let mut next = State::NULL;
        if order > 1 {
            next.len = longest.min(order - 1) as u8;
            next.ids[..next.len as usize].copy_from_slice(&found[..next.len as usize]);
        }
        let scored = Scored {
            log10,
            order: best_n as u8,
            oov: w == UNK_WORD,
        };
        (scored, next)
    }

    /// The state after reading `words` from `start` (a `</s>` starts a new
    /// sentence: the state after it is `<s>`'s).
    pub fn advance(&self, start: State, words: &[u32]) -> State {
        words.iter().fold(start, |s, &w| self.next_state(&s, w))
    }

    /// The score of `w` after `state`, which moves past it: after `</s>` a
    /// new sentence begins (`<s>` with `bos`), as [`NGramModel::next_state`].
    #[inline]
    fn scored_step(&self, state: &mut State, w: u32, bos: bool) -> Scored {
        let (s, next) = self.step(state, w);
        *state = if w == EOS_WORD { self.begin(bos) } else { next };
        s
    }

    /// The state after `w`.
    pub fn next_state(&self, state: &State, w: u32) -> State {
        if w == EOS_WORD {
            self.begin(true)
        } else {
            self.step(state, w).1
        }
    }

    /// log10 p of each word of a stream that is read after a line break:
    /// `<s>` begins the context, and after each `</s>` it begins again.
    pub fn stream_scores(
        &self,
        words: &[u32],
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(words.len());
        let mut state = self.begin(true);
        for chunk in words.chunks(POLL_EVERY) {
            for &w in chunk {
                out.push(self.scored_step(&mut state, w, true).log10);
            }
            if interrupted() {
                return Err(Error::Interrupted);
            }
        }
        Ok(out)
    }

    /// The words of `text` read as one stream: its tokens, `</s>` for each `"\n"`.
    pub fn stream_words(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 2 + 1);
        self.words.text_words(text, &mut || false, |piece| {
            match piece {
                Piece::Word(w) => out.push(w),
                Piece::LineEnd { newline: true } => out.push(EOS_WORD),
                Piece::LineEnd { newline: false } => {}
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// log10 p of each token of `text` read as one stream after a line break
    /// (one score per vocabulary token; `"\n"` is `</s>`, scored, and the next
    /// line begins with `<s>`; no `</s>` is added after a last line without `"\n"`).
    pub fn text_stream_scores(
        &self,
        text: &str,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(text.len() / 2 + 1);
        let mut state = self.begin(true);
        self.words.text_words(text, interrupted, |piece| {
            let w = match piece {
                Piece::Word(w) => w,
                Piece::LineEnd { newline: true } => EOS_WORD,
                Piece::LineEnd { newline: false } => return Ok(()),
            };
            out.push(self.scored_step(&mut state, w, true).log10);
            Ok(())
        })?;
        Ok(out)
    }

    /// Scores `input` as sentences, KenLM's way: each line (and each part of
    /// one that a literal `<eos>` ends) begins with `<s>` when `bos` and ends
    /// with `</s>` when `eos`; `each` gets every token's score.
    fn sentences(
        &self,
        input: Input<'_>,
        bos: bool,
        eos: bool,
        interrupted: &mut dyn FnMut() -> bool,
        mut each: impl FnMut(&Scored),
    ) -> Result<()> {
        let mut state = self.begin(bos);
        let mut last_eos = false;
        let mut line_words = 0usize;
        input.pieces(&self.words, interrupted, |piece| {
            match piece {
                Piece::Word(w) => {
                    each(&self.scored_step(&mut state, w, bos));
                    last_eos = w == EOS_WORD;
                    line_words += 1;
                }
                Piece::LineEnd { .. } => {
                    if eos && !(line_words > 0 && last_eos) {
                        each(&self.step(&state, EOS_WORD).0);
                    }
                    state = self.begin(bos);
                    line_words = 0;
                    last_eos = false;
                }
            }
            Ok(())
        })
    }

    /// The total log10 probability of the sentences of `input` (see
    /// [`NGramModel::full_scores`] for what a sentence is).
    pub fn score(
        &self,
        input: Input<'_>,
        bos: bool,
        eos: bool,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<f64> {
        let mut total = 0.0;
        self.sentences(input, bos, eos, interrupted, |s| total += s.log10)?;
        Ok(total)
    }

    /// Adds the sentences of `input` to `acc` (KenLM's `query` figures).
    pub fn evaluate(
        &self,
        input: Input<'_>,
        bos: bool,
        eos: bool,
        acc: &mut Evaluation,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        self.sentences(input, bos, eos, interrupted, |s| acc.add(s))?;
        acc.sentences += input.lines();
        Ok(())
    }

    /// Every token of the sentences of `input` with its score. Each line is a
    /// sentence, begun by `<s>` when `bos` and ended by a `</s>` token when
    /// `eos`; a literal `<eos>` ends one too. Text tokens are spelled as the
    /// vocabulary splits the text (lower-cased when it is; an unknown token
    /// as written), ids as the model's words; a sentence end is `</s>`.
    pub fn full_scores(
        &self,
        input: Input<'_>,
        bos: bool,
        eos: bool,
    ) -> Result<Vec<(String, Scored)>> {
        let mut lines: Vec<Vec<(String, u32)>> = Vec::new();
        match input {
            Input::Text(text) => {
                for line in text.split_terminator('\n') {
                    lines.push(self.words.line_tokens(line)?);
                }
            }
            Input::Words(ws) => lines.push(
                ws.iter()
                    .map(|&w| {
                        (
                            self.words
                                .words()
                                .get(w as usize)
                                .cloned()
                                .unwrap_or_default(),
                            w,
                        )
                    })
                    .collect(),
            ),
        }
        let mut out = Vec::new();
        for line in lines {
            let mut state = self.begin(bos);
            let mut last_eos = false;
            for (tok, w) in line {
                let s = self.scored_step(&mut state, w, bos);
                last_eos = w == EOS_WORD;
                let tok = if last_eos { "</s>".to_string() } else { tok };
                out.push((tok, s));
            }
            if eos && !last_eos {
                out.push(("</s>".to_string(), self.step(&state, EOS_WORD).0));
            }
        }
        Ok(out)
    }

    fn children(&self) -> &Children {
        self.children.get_or_init(|| self.build_children())
    }

    fn build_children(&self) -> Children {
        let mut unigram: Vec<f64> = self.prob[0].iter().map(|&p| 10f64.powf(p)).collect();
        if let Some(p) = unigram.get_mut(BOS_WORD as usize) {
            *p = 0.0;
        }
        let (mut start, mut word, mut prob) = (Vec::new(), Vec::new(), Vec::new());
        for n in 2..=self.order() {
            let t = &self.tables[n - 1];
            let contexts = self.tables[n - 2].len();
            let mut s = vec![0u32; contexts + 1];
            for id in 0..t.len() as u32 {
                if let Some(x) = s.get_mut(t.context(id) as usize + 1) {
                    *x += 1;
                }
            }
            for c in 0..contexts {
                s[c + 1] += s[c];
            }
            let mut fill = s.clone();
            let mut w = vec![0u32; t.len()];
            let mut p = vec![0f64; t.len()];
            for id in 0..t.len() as u32 {
                let c = t.context(id) as usize;
                if let Some(at) = fill.get_mut(c) {
                    let i = *at as usize;
                    *at += 1;
                    w[i] = t.word(id);
                    p[i] = 10f64.powf(self.prob[n - 1][id as usize]);
                }
            }
            start.push(s);
            word.push(w);
            prob.push(p);
        }
        Children {
            unigram,
            start,
            word,
            prob,
        }
    }

    /// p(w | state) of every word `w` (indexed by word id; `<s>` has 0):
    /// the unigram distribution, then for each longer context held, its
    /// backoff weight times the shorter context's distribution wherever it
    /// has no n-gram of its own.
    pub fn distribution(&self, state: &State) -> Vec<f64> {
        let ch = self.children();
        let mut d = ch.unigram.clone();
        for k in 1..=state.len().min(self.order() - 1) {
            let c = state.ids[k - 1] as usize;
            let b = self.backoff[k - 1].get(c).copied().unwrap_or(0.0);
            if b != 0.0 {
                let scale = 10f64.powf(b);
                d.iter_mut().for_each(|x| *x *= scale);
            }
            let (lo, hi) = match (ch.start[k - 1].get(c), ch.start[k - 1].get(c + 1)) {
                (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
                _ => continue,
            };
            for (&w, &p) in ch.word[k - 1][lo..hi].iter().zip(&ch.prob[k - 1][lo..hi]) {
                if let Some(x) = d.get_mut(w as usize).filter(|_| !p.is_nan()) {
                    *x = p;
                }
            }
        }
        d
    }

    /// Builds the distribution index now rather than at the first
    /// [`NGramModel::distribution`].
    pub fn prepare_distributions(&self) {
        let _ = self.children();
    }
}

/// A lazily built [`Children`] slot.
pub(super) type ChildrenCell = OnceLock<Children>;
