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
        let order = self.order();
        let mut ids = [0u32; MAX_ORDER];
        let mut lines = 0usize;
        for n in 1..=order {
            writeln!(out, "\n\\{n}-grams:")?;
            let table = &self.tables[n - 1];
            for id in 0..table.len() as u32 {
                let p = self.prob[n - 1][id as usize];
                if p.is_nan() {
                    continue;
                }
                // The words, last first, following the contexts down.
                let mut at = id;
                for k in (0..n).rev() {
                    let t = &self.tables[k];
                    ids[k] = t.word(at);
                    at = t.context(at);
                }
                let p = if n == 1 && id == BOS_WORD {
                    BOS_LOG10
                } else {
                    p
                };
                write!(out, "{p}\t")?;
                for (k, w) in ids[..n].iter().enumerate() {
                    if k > 0 {
                        out.write_all(b" ")?;
                    }
                    out.write_all(words.get(*w as usize).map_or("<unk>", |w| w).as_bytes())?;
                }
                let b = if n < order {
                    self.backoff[n - 1][id as usize]
                } else {
                    0.0
                };
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

/// The n-grams read so far.
struct Builder {
    order: usize,
    tables: Vec<Table>,
    prob: Vec<Vec<f64>>,
    backoff: Vec<Vec<f64>>,
}

impl Builder {
    /// The id of the n-gram `words` (order `words.len()`, at least 2 here),
    /// adding it and any of its prefixes and suffixes that are missing as
    /// blanks.
    fn ensure(&mut self, words: &[u32]) -> Result<u32> {
        let n = words.len();
        let Some((&last, head)) = words.split_last() else {
            return Ok(0);
        };
        if n == 1 {
            return Ok(last);
        }
        let context = self.ensure(head)?;
        if let Some(id) = self.tables[n - 1].get(context, last) {
            return Ok(id);
        }
        self.ensure(&words[1..])?;
        let (id, _) = self.tables[n - 1].intern(context, last)?;
        self.prob[n - 1].push(f64::NAN);
        if n < self.order {
            self.backoff[n - 1].push(0.0);
        }
        Ok(id)
    }

    /// The id of `words` if it and every prefix are present.
    fn find(&self, words: &[u32]) -> Option<u32> {
        let (&first, rest) = words.split_first()?;
        let mut id = first;
        for (k, &w) in rest.iter().enumerate() {
            id = self.tables[k + 1].get(id, w)?;
        }
        Some(id)
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
        order,
        tables: Vec::with_capacity(order),
        prob: vec![Vec::new(); order],
        backoff: vec![Vec::new(); order.saturating_sub(1)],
    };
    let mut header = first_header;
    for n in 1..=order {
        if header != format!("\\{n}-grams:") {
            return Err(r.error(format!(
                "expected the header \\{n}-grams:, got {}",
                quote(&header)
            )));
        }
        let (want, count_line) = declared[n - 1];
        if n == 1 {
            b.prob[0] = vec![f64::NAN; 3];
            if order > 1 {
                b.backoff[0] = vec![0.0; 3];
            }
        } else {
            b.tables[n - 1].reserve(usize::try_from(want).unwrap_or(0));
        }
        let mut got = 0u64;
        let mut gram = [0u32; MAX_ORDER];
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
            if rest.len() != n && rest.len() != n + 1 {
                return Err(r.error(format!(
                    "a {n}-gram line holds a log10 probability, {n} word{} and {}, got {}",
                    if n == 1 { "" } else { "s" },
                    if n < order {
                        "an optional backoff weight"
                    } else {
                        "no backoff weight (the highest order has none)"
                    },
                    quote(&line)
                )));
            }
            let prob = parse_float(prob_field).ok_or_else(|| {
                r.error(format!(
                    "cannot read the log10 probability {}",
                    quote(prob_field)
                ))
            })?;
            let backoff = match rest.get(n) {
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
            for (k, w) in rest[..n].iter().enumerate() {
                let w = if written.by_rustrnn {
                    unescape(w)
                } else {
                    (*w).into()
                };
                gram[k] = if n == 1 {
                    match ids.get(w.as_ref()) {
                        Some(&id) if id < 3 && !seen[id as usize] => {
                            seen[id as usize] = true;
                            word_lines[id as usize] = r.number;
                            id
                        }
                        Some(_) => {
                            return Err(r.error(format!("the 1-gram {} is listed twice", quote(&w))))
                        }
                        None => {
                            let id = u32::try_from(words.len())
                                .map_err(|_| r.error("too many 1-grams"))?;
                            ids.insert(w.to_string(), id);
                            words.push(w.to_string());
                            word_lines.push(r.number);
                            b.prob[0].push(f64::NAN);
                            if order > 1 {
                                b.backoff[0].push(0.0);
                            }
                            id
                        }
                    }
                } else {
                    *ids.get(w.as_ref()).ok_or_else(|| {
                        r.error(format!("the word {} is not among the 1-grams", quote(&w)))
                    })?
                };
            }
            let id = if n == 1 {
                gram[0]
            } else {
                let g = &gram[..n];
                let context = match b.find(&g[..n - 1]) {
                    Some(c) => c,
                    None => b.ensure(&g[..n - 1])?,
                };
                if b.find(&g[1..]).is_none() {
                    b.ensure(&g[1..])?;
                }
                let (id, new) = b.tables[n - 1].intern(context, g[n - 1])?;
                if new {
                    b.prob[n - 1].push(f64::NAN);
                    if n < order {
                        b.backoff[n - 1].push(0.0);
                    }
                } else if !b.prob[n - 1][id as usize].is_nan() {
                    return Err(r.error(format!(
                        "the {n}-gram {} is listed twice",
                        quote(&rest[..n].join(" "))
                    )));
                }
                id
            };
            b.prob[n - 1][id as usize] = prob;
            if n < order {
                b.backoff[n - 1][id as usize] = backoff;
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
                if !seen[id as usize] {
                    b.prob[0][id as usize] = p;
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
