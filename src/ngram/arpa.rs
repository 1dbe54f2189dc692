//! ARPA files: the text format of backoff n-gram models that SRILM, KenLM,
//! IRSTLM and others read and write.
//!
//! ```text
//! \data\
//! ngram 1=<count>
//! ngram 2=<count>
//!
//! \1-grams:
//! <log10 p>\t<word>\t<log10 backoff>
//!
//! \2-grams:
//! <log10 p>\t<word> <word>[\t<log10 backoff>]
//!
//! \end\
//! ```
//!
//! Written: a `# rustrnn.ngram level=... lower=...` comment first (which
//! KenLM skips; it lets [`load_arpa`] read the model back with its
//! tokenization), the probabilities in float64's shortest exact form, a
//! backoff only where it is not 0, `<s>` with probability -99 (it is never
//! predicted). Read: anything before `\data\`, fields split by spaces or
//! tabs, CRLF line ends, any n-grams the file lacks but needs as a prefix or
//! suffix of others (pruned models) added as blanks with backoff 0. Every
//! mistake is a `Format` error naming the file and the line.

// Values from ARPA files reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use super::table::Table;
use super::words::{escape, unescape, Words, BOS_WORD, EOS_WORD, SPECIAL_WORDS, UNK_WORD};
use super::{NGramModel, MAX_ORDER};
use crate::error::{Error, Result};
use crate::vocab::{quote, Level, Vocab, EOS, UNK};

/// The comment that marks a file rustrnn wrote.
const MAGIC: &str = "# rustrnn.ngram";
/// The log10 probability written for `<s>`.
pub const BOS_LOG10: f64 = -99.0;
/// The log10 probability given to `<unk>` (and `</s>`) when a file lacks
/// them, as KenLM does.
pub const MISSING_LOG10: f64 = -100.0;
/// Lines read between two polls of the interrupt hook.
const POLL_LINES: usize = 1 << 16;

/// How to read the text of a model loaded from a file; None takes what the
/// file's rustrnn comment says, else word level without lower-casing.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    pub level: Option<Level>,
    pub lower: Option<bool>,
}

impl NGramModel {
    /// Writes the model as an ARPA file, atomically (see [`crate::atomic`]).
    pub fn save_arpa(&self, path: &Path, interrupted: &mut dyn FnMut() -> bool) -> Result<()> {
        let mut stopped = false;
        let result = crate::atomic::write(path, |f| {
            let mut out = BufWriter::with_capacity(1 << 20, f);
            self.write_arpa(&mut out, &mut || {
                stopped = stopped || interrupted();
                stopped
            })?;
            out.flush()
        });
        if stopped {
            return Err(Error::Interrupted);
        }
        result
    }

    /// Writes the model in ARPA format to `out`.
    pub fn write_arpa(
        &self,
        out: &mut dyn Write,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> io::Result<()> {
        let vocab = self.vocab();
        writeln!(
            out,
            "{MAGIC} level={} lower={}",
            vocab.level().name(),
            vocab.lower()
        )?;
        if let Some(s) = self.smoothing {
            match s {
                super::Smoothing::AddK(k) => writeln!(out, "# smoothing={} k={k}", s.name())?,
                _ => writeln!(out, "# smoothing={}", s.name())?,
            }
        }
        for (n, d) in self.discounts.iter().enumerate() {
            writeln!(
                out,
                "# discounts order={} D1={} D2={} D3+={}",
                n + 1,
                d[0],
                d[1],
                d[2]
            )?;
        }
        writeln!(out, "\n\\data\\")?;
        for (n, c) in self.counts().iter().enumerate() {
            writeln!(out, "ngram {}={c}", n + 1)?;
        }
        let words: Vec<std::borrow::Cow<'_, str>> =
            self.words.words().iter().map(|w| escape(w)).collect();
        let mut ids = [0u32; MAX_ORDER];
        let mut lines = 0usize;
        for (n, (table, prob)) in (1..).zip(self.tables.iter().zip(&self.prob)) {
            writeln!(out, "\n\\{n}-grams:")?;
            // None at the highest order, which has no backoffs.
            let backoff = self.backoff.get(n - 1);
            for (id, &p) in (0..table.len() as u32).zip(prob) {
                if p.is_nan() {
                    continue;
                }
                // The words, last first, following the contexts down.
                let mut at = id;
                for (slot, t) in ids.iter_mut().zip(&self.tables).take(n).rev() {
                    *slot = t.word(at);
                    at = t.context(at);
                }
                let p = if n == 1 && id == BOS_WORD {
                    BOS_LOG10
                } else {
                    p
                };
                write!(out, "{p}\t")?;
                for (k, w) in ids.iter().take(n).enumerate() {
                    if k > 0 {
                        out.write_all(b" ")?;
                    }
                    out.write_all(words.get(*w as usize).map_or("<unk>", |w| w).as_bytes())?;
                }
                let b = backoff
                    .and_then(|b| b.get(id as usize))
                    .copied()
                    .unwrap_or(0.0);
                if b != 0.0 {
                    write!(out, "\t{b}")?;
                }
                out.write_all(b"\n")?;
                lines += 1;
                if lines.is_multiple_of(POLL_LINES) && interrupted() {
                    return Err(io::Error::other("interrupted"));
                }
            }
        }
        writeln!(out, "\n\\end\\")
    }
}

/// Reads an ARPA file (rustrnn's or another toolkit's).
pub fn load_arpa(
    path: &Path,
    opts: LoadOptions,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<NGramModel> {
    let file = crate::fs::open_regular(path).map_err(|e| Error::io(path, e))?;
    let mut reader = Reader {
        path,
        lines: BufReader::with_capacity(1 << 20, file),
        buf: Vec::new(),
        line: String::new(),
        number: 0,
        interrupted,
    };
    read(&mut reader, opts)
}

struct Reader<'a> {
    path: &'a Path,
    lines: BufReader<File>,
    buf: Vec<u8>,
    line: String,
    number: usize,
    interrupted: &'a mut dyn FnMut() -> bool,
}

impl Reader<'_> {
    /// The next line (without its line end) or None at the end of the file.
    fn next(&mut self) -> Result<Option<&str>> {
        self.buf.clear();
        let n = self
            .lines
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| Error::io(self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.number.is_multiple_of(POLL_LINES) && (self.interrupted)() {
            return Err(Error::Interrupted);
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        self.line.clear();
        match std::str::from_utf8(&self.buf) {
            Ok(s) => self.line.push_str(s),
            Err(e) => return Err(self.error(format!("not UTF-8 text ({e})"))),
        }
        Ok(Some(self.line.as_str()))
    }

    /// The next line that is not blank, or None at the end of the file.
    fn next_nonblank(&mut self) -> Result<Option<String>> {
        loop {
            match self.next()? {
                None => return Ok(None),
                Some(l) if l.trim().is_empty() => continue,
                Some(l) => return Ok(Some(l.to_string())),
            }
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::format(self.path, format!("line {}: {message}", self.number))
    }

    fn eof_error(&self, message: impl std::fmt::Display) -> Error {
        Error::format(
            self.path,
            format!("line {}: {message} (the file ends here)", self.number),
        )
    }
}

/// What the file's own rustrnn comment says.
#[derive(Default)]
struct Written {
    by_rustrnn: bool,
    level: Option<Level>,
    lower: Option<bool>,
}

fn read_comment(line: &str, w: &mut Written) {
    let Some(rest) = line.strip_prefix(MAGIC) else {
        return;
    };
    w.by_rustrnn = true;
    for field in rest.split_whitespace() {
        match field.split_once('=') {
            Some(("level", v)) => w.level = Level::parse(v).ok(),
            Some(("lower", v)) => w.lower = v.parse().ok(),
            _ => {}
        }
    }
}

/// The n-grams read so far: `tables`, `prob` and `backoff` as in
/// [`NGramModel`] (`backoff` one order shorter).
struct Builder {
    tables: Vec<Table>,
    prob: Vec<Vec<f64>>,
    backoff: Vec<Vec<f64>>,
}

/// The error for an n-gram the builder lacks storage for, which [`read`]
/// never asks about: it reads orders 1 to the declared order, and numbers
/// n-grams with their table.
fn no_slot(n: usize, id: u32) -> Error {
    Error::value(format!(
        "internal: the ARPA reader has no slot for {n}-gram {id}"
    ))
}

/// The n-gram `words` as its context (all but the last word), its last
/// word, and its suffix (all but the first word); None if it is empty.
fn split_gram(words: &[u32]) -> Option<(&[u32], u32, &[u32])> {
    let (&last, context) = words.split_last()?;
    let (_, suffix) = words.split_first()?;
    Some((context, last, suffix))
}

impl Builder {
    /// Appends a blank n-gram of order `n`: no probability, backoff 0.
    fn push_blank(&mut self, n: usize) -> Result<()> {
        let prob = self.prob.get_mut(n - 1).ok_or_else(|| no_slot(n, 0))?;
        prob.push(f64::NAN);
        // The highest order has no backoffs.
        if let Some(backoff) = self.backoff.get_mut(n - 1) {
            backoff.push(0.0);
        }
        Ok(())
    }

    /// The id of `(context, word)` among the n-grams of order `n` (2 or
    /// more), added as a blank if it is new; and whether it was.
    fn intern(&mut self, n: usize, context: u32, word: u32) -> Result<(u32, bool)> {
        let table = self.tables.get_mut(n - 1).ok_or_else(|| no_slot(n, 0))?;
        let (id, new) = table.intern(context, word)?;
        if new {
            self.push_blank(n)?;
        }
        Ok((id, new))
    }

    /// The log10 probability of n-gram `id` of order `n`, and its backoff
    /// weight (None at the highest order).
    fn values(&mut self, n: usize, id: u32) -> Result<(&mut f64, Option<&mut f64>)> {
        let i = id as usize;
        let prob = self
            .prob
            .get_mut(n - 1)
            .and_then(|p| p.get_mut(i))
            .ok_or_else(|| no_slot(n, id))?;
        // The highest order has no backoffs.
        let backoff = self
            .backoff
            .get_mut(n - 1)
            .map(|b| b.get_mut(i).ok_or_else(|| no_slot(n, id)))
            .transpose()?;
        Ok((prob, backoff))
    }

    /// The id of the n-gram `words` (order `words.len()`, at least 2 here),
    /// adding it and any of its prefixes and suffixes that are missing as
    /// blanks.
    fn ensure(&mut self, words: &[u32]) -> Result<u32> {
        let Some((context_words, last, suffix)) = split_gram(words) else {
            return Ok(0);
        };
        if context_words.is_empty() {
            return Ok(last);
        }
        let n = words.len();
        let context = self.ensure(context_words)?;
        if let Some(id) = self.tables.get(n - 1).and_then(|t| t.get(context, last)) {
            return Ok(id);
        }
        self.ensure(suffix)?;
        Ok(self.intern(n, context, last)?.0)
    }

    /// The id of the n-gram `words` (order 2 or more), added with any of
    /// its prefixes and suffixes that are missing (those as blanks); and
    /// whether it is new (it is not if it was a blank).
    fn add(&mut self, words: &[u32]) -> Result<(u32, bool)> {
        let (context_words, last, suffix) = split_gram(words).ok_or_else(|| no_slot(0, 0))?;
        let context = match self.find(context_words) {
            Some(c) => c,
            None => self.ensure(context_words)?,
        };
        if self.find(suffix).is_none() {
            self.ensure(suffix)?;
        }
        self.intern(words.len(), context, last)
    }

    /// The id of `words` if it and every prefix are present.
    fn find(&self, words: &[u32]) -> Option<u32> {
        let (&first, rest) = words.split_first()?;
        let mut tables = self.tables.iter().skip(1);
        rest.iter()
            .try_fold(first, |id, &w| tables.next()?.get(id, w))
    }
}

fn parse_float(field: &str) -> Option<f64> {
    field
        .parse::<f64>()
        .ok()
        .filter(|x| !x.is_nan() && *x != f64::INFINITY)
}

fn read(r: &mut Reader<'_>, opts: LoadOptions) -> Result<NGramModel> {
    // Anything up to \data\; rustrnn's comment among it.
    let mut written = Written::default();
    loop {
        let Some(line) = r.next()? else {
            return Err(r.eof_error("no \\data\\ line: this is not an ARPA file"));
        };
        let line = line.trim();
        if line == "\\data\\" {
            break;
        }
        let line = line.to_string();
        read_comment(&line, &mut written);
    }

    // ngram n=count lines.
    let mut declared: Vec<(u64, usize)> = Vec::new();
    let first_header = loop {
        let Some(line) = r.next_nonblank()? else {
            return Err(r.eof_error("the \\data\\ section has no n-gram sections after it"));
        };
        let line = line.trim();
        if line.starts_with('\\') {
            break line.to_string();
        }
        let parsed = line
            .strip_prefix("ngram")
            .and_then(|s| s.split_once('='))
            .and_then(|(n, c)| {
                Some((
                    n.trim().parse::<usize>().ok()?,
                    c.trim().parse::<u64>().ok()?,
                ))
            });
        match parsed {
            Some((n, c)) if n == declared.len() + 1 => declared.push((c, r.number)),
            Some((n, _)) => {
                return Err(r.error(format!(
                    "expected the count of the {}-grams, got the {n}-grams' ({})",
                    declared.len() + 1,
                    quote(line)
                )))
            }
            None => {
                return Err(r.error(format!(
                    "expected 'ngram N=COUNT' in the \\data\\ section, got {}",
                    quote(line)
                )))
            }
        }
    };
    let order = declared.len();
    if order == 0 {
        return Err(r.error("the \\data\\ section declares no n-grams"));
    }
    if order > MAX_ORDER {
        return Err(Error::format(
            r.path,
            format!("the model has order {order}; rustrnn reads orders 1 to {MAX_ORDER}"),
        ));
    }

    let mut ids: HashMap<String, u32> = SPECIAL_WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let mut words: Vec<String> = SPECIAL_WORDS.iter().map(|s| s.to_string()).collect();
    let mut word_lines: Vec<usize> = vec![0; 3];
    let mut seen = [false; 3];
    let mut b = Builder {
        tables: Vec::with_capacity(order),
        prob: vec![Vec::new(); order],
        backoff: vec![Vec::new(); order.saturating_sub(1)],
    };
    let mut header = first_header;
    for (n, &(want, count_line)) in (1..).zip(&declared) {
        if header != format!("\\{n}-grams:") {
            return Err(r.error(format!(
                "expected the header \\{n}-grams:, got {}",
                quote(&header)
            )));
        }
        if n == 1 {
            // The specials' 1-grams, blank unless the file lists them.
            for _ in SPECIAL_WORDS {
                b.push_blank(1)?;
            }
        } else if let Some(table) = b.tables.get_mut(n - 1) {
            table.reserve(usize::try_from(want).unwrap_or(0));
        }
        let mut got = 0u64;
        let mut gram = vec![0u32; n];
        let next_header = loop {
            let line = match r.next()? {
                None => break None,
                Some(l) if l.trim().is_empty() => break r.next_nonblank()?,
                Some(l) if l.trim_start().starts_with('\\') => break Some(l.trim().to_string()),
                Some(l) => l.to_string(),
            };
            let mut fields = line.split([' ', '\t']).filter(|s| !s.is_empty());
            let prob_field = fields.next().unwrap_or("");
            let rest: Vec<&str> = fields.collect();
            let (gram_words, backoff_field) = match rest.split_at_checked(n) {
                Some((gram_words, [])) => (gram_words, None),
                Some((gram_words, &[f])) => (gram_words, Some(f)),
                _ => {
                    return Err(r.error(format!(
                        "a {n}-gram line holds a log10 probability, {n} word{} and {}, got {}",
                        if n == 1 { "" } else { "s" },
                        if n < order {
                            "an optional backoff weight"
                        } else {
                            "no backoff weight (the highest order has none)"
                        },
                        quote(&line)
                    )))
                }
            };
            let prob = parse_float(prob_field).ok_or_else(|| {
                r.error(format!(
                    "cannot read the log10 probability {}",
                    quote(prob_field)
                ))
            })?;
            let backoff = match backoff_field {
                None => 0.0,
                Some(_) if n == order => {
                    return Err(r.error(format!(
                        "a backoff weight on a {n}-gram, of the highest order: {}",
                        quote(&line)
                    )))
                }
                Some(f) => parse_float(f).ok_or_else(|| {
                    r.error(format!("cannot read the backoff weight {}", quote(f)))
                })?,
            };
            for (slot, w) in gram.iter_mut().zip(gram_words) {
                let w = if written.by_rustrnn {
                    unescape(w)
                } else {
                    (*w).into()
                };
                *slot = if n == 1 {
                    match ids.get(w.as_ref()) {
                        // Known already: a special (ids 0 to 2) on its first line, else a repeat.
                        Some(&id) => {
                            match (seen.get_mut(id as usize), word_lines.get_mut(id as usize)) {
                                (Some(seen), Some(line)) if !*seen => {
                                    *seen = true;
                                    *line = r.number;
                                    id
                                }
                                _ => {
                                    return Err(r.error(format!(
                                        "the 1-gram {} is listed twice",
                                        quote(&w)
                                    )))
                                }
                            }
                        }
                        None => {
                            let id = u32::try_from(words.len())
                                .map_err(|_| r.error("too many 1-grams"))?;
                            ids.insert(w.to_string(), id);
                            words.push(w.to_string());
                            word_lines.push(r.number);
                            b.push_blank(1)?;
                            id
                        }
                    }
                } else {
                    *ids.get(w.as_ref()).ok_or_else(|| {
                        r.error(format!("the word {} is not among the 1-grams", quote(&w)))
                    })?
                };
            }
            let id = match *gram.as_slice() {
                [word] => word,
                _ => {
                    let (id, new) = b.add(&gram)?;
                    if !new && !b.values(n, id)?.0.is_nan() {
                        return Err(r.error(format!(
                            "the {n}-gram {} is listed twice",
                            quote(&gram_words.join(" "))
                        )));
                    }
                    id
                }
            };
            let (prob_slot, backoff_slot) = b.values(n, id)?;
            *prob_slot = prob;
            if let Some(backoff_slot) = backoff_slot {
                *backoff_slot = backoff;
            }
            got += 1;
        };
        if got != want {
            return Err(r.error(format!(
                "the \\{n}-grams: section lists {got} n-grams, but line {count_line} declares {want}"
            )));
        }
        if n == 1 {
            // The specials a file may lack, as KenLM fills them in.
            for (id, p) in [
                (UNK_WORD, MISSING_LOG10),
                (BOS_WORD, BOS_LOG10),
                (EOS_WORD, MISSING_LOG10),
            ] {
                if seen.get(id as usize) == Some(&false) {
                    *b.values(1, id)?.0 = p;
                }
            }
            b.tables.push(Table::unigrams(words.len()));
            for _ in 1..order {
                b.tables.push(Table::new());
            }
        }
        header = match next_header {
            Some(h) => h,
            None => {
                return Err(r.eof_error(format!("no \\end\\ line after the \\{n}-grams: section")))
            }
        };
    }
    if header != "\\end\\" {
        return Err(r.error(format!(
            "expected \\end\\ after the \\{order}-grams: section, got {}",
            quote(&header)
        )));
    }
    for t in &mut b.tables {
        t.shrink_to_fit();
    }

    let level = opts.level.or(written.level).unwrap_or(Level::Word);
    let lower = opts.lower.or(written.lower).unwrap_or(false);
    let vocab = model_vocab(r.path, level, lower, &words, &word_lines)?;
    let model_words = Words::new(vocab).map_err(|e| Error::format(r.path, e.to_string()))?;
    if model_words.words().len() != words.len() {
        return Err(Error::format(
            r.path,
            "the 1-grams do not make a vocabulary",
        ));
    }
    Ok(NGramModel {
        words: model_words,
        tables: b.tables,
        prob: b.prob,
        backoff: b.backoff,
        smoothing: None,
        discounts: Vec::new(),
        children: Default::default(),
    })
}

/// The vocabulary of a model read from a file: the specials `<unk>` and
/// `<eos>`, at char level `"\n"` (both are `</s>`), then the 1-grams in file
/// order.
fn model_vocab(
    path: &Path,
    level: Level,
    lower: bool,
    words: &[String],
    lines: &[usize],
) -> Result<Vocab> {
    let mut tokens = vec![UNK.to_string(), EOS.to_string()];
    if level == Level::Char {
        tokens.push("\n".to_string());
    }
    for (w, line) in words.iter().zip(lines).skip(3) {
        let ok = match level {
            Level::Char => w.chars().count() == 1 && w != "\n",
            Level::Word => w != EOS && w != "\n",
        };
        if !ok {
            let why = match level {
                Level::Char => {
                    "is not a single character, as the words of a char-level model must be \
                                (load it with level='word')"
                }
                Level::Word => {
                    "is the vocabulary's line-end special, which is </s> in an ARPA file"
                }
            };
            return Err(Error::format(
                path,
                format!("line {line}: the 1-gram {} {why}", quote(w)),
            ));
        }
        tokens.push(w.clone());
    }
    Vocab::from_parts(level, lower, 2, tokens).map_err(|e| Error::format(path, e.to_string()))
}
