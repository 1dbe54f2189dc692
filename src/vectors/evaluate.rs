//! The two standard benchmarks of word vectors, scored as gensim scores them
//! (`KeyedVectors.evaluate_word_pairs` and `evaluate_word_analogies`):
//!
//! * word pairs with a human similarity score (WordSim-353, SimLex-999),
//!   one `a<TAB>b<TAB>score` per line, `#` comments: the Pearson and
//!   Spearman correlations of the vectors' cosines with the scores;
//! * analogies in `questions-words.txt`'s format (`: section` lines, then
//!   `a b c d` meaning a : b :: c : d): the share of questions whose best
//!   3CosAdd answer to b - a + c is d.
//!
//! Only the first `restrict_vocab` keys take part, and with
//! `case_insensitive` keys and questions are compared upper-cased (a key
//! that several keys fold to means the first of them).

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;
use std::path::Path;

use super::query::Neighbours;
use super::stats::{pearson, spearman, Correlation};
use super::{Term, WordVectors};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug)]
pub struct EvalOptions {
    pub restrict_vocab: usize,
    pub case_insensitive: bool,
    /// Count a question with a key outside the vectors as wrong (a pair: as
    /// similarity 0) instead of leaving it out.
    pub dummy4unknown: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            restrict_vocab: 300_000,
            case_insensitive: true,
            dummy4unknown: false,
        }
    }
}

/// What the word-pair benchmark found.
#[derive(Clone, Debug)]
pub struct PairScores {
    pub pearson: Correlation,
    pub spearman: Correlation,
    /// Pairs with a word outside the vectors, in percent (of all pairs read,
    /// or with `dummy4unknown` of the pairs scored).
    pub oov_ratio: f64,
}

/// One section of the analogy benchmark: its questions answered right and
/// wrong, each as the four words read (upper-cased when case-insensitive).
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub name: String,
    pub correct: Vec<[String; 4]>,
    pub incorrect: Vec<[String; 4]>,
}

impl Section {
    /// correct / (correct + incorrect), 0 for an empty section.
    pub fn accuracy(&self) -> f64 {
        let n = self.correct.len() + self.incorrect.len();
        if n == 0 {
            0.0
        } else {
            self.correct.len() as f64 / n as f64
        }
    }
}

/// What the analogy benchmark found: the sections in file order, then one
/// named "Total accuracy" over all of them.
#[derive(Clone, Debug)]
pub struct AnalogyScores {
    pub accuracy: f64,
    pub sections: Vec<Section>,
    /// Questions with a word outside the vectors, in percent.
    pub oov_ratio: f64,
}

/// The keys that take part, by the spelling questions are compared in.
struct Allowed {
    rows: HashMap<String, usize>,
    fold: bool,
}

impl Allowed {
    fn new(wv: &WordVectors, opts: &EvalOptions) -> Allowed {
        let keys = wv.keys();
        let keys = keys
            .get(..opts.restrict_vocab.min(keys.len()))
            .unwrap_or(keys);
        let mut rows = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let k = if opts.case_insensitive {
                k.to_uppercase()
            } else {
                k.clone()
            };
            rows.entry(k).or_insert(i);
        }
        Allowed {
            rows,
            fold: opts.case_insensitive,
        }
    }

    fn spelled(&self, w: &str) -> String {
        if self.fold {
            w.to_uppercase()
        } else {
            w.to_string()
        }
    }

    fn row(&self, w: &str) -> Option<usize> {
        self.rows.get(w).copied()
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = crate::fs::read_regular(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let line = e
            .as_bytes()
            .get(..e.utf8_error().valid_up_to())
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        Error::format(path, format!("line {} is not valid UTF-8", line + 1))
    })
}

/// The word-pair benchmark over the file at `path`, fields split by
/// `delimiter`.
pub fn word_pairs(
    wv: &WordVectors,
    path: &Path,
    delimiter: &str,
    opts: &EvalOptions,
) -> Result<PairScores> {
    if delimiter.is_empty() {
        return Err(Error::value("the delimiter must not be empty"));
    }
    let text = read_text(path)?;
    let allowed = Allowed::new(wv, opts);
    let (mut gold, mut model) = (Vec::new(), Vec::new());
    let mut oov = 0usize;
    for line in text.split_inclusive('\n') {
        let line = universal_newline(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(delimiter).collect();
        let [a, b, score] = fields.as_slice() else {
            continue;
        };
        let Ok(score) = score.trim().parse::<f64>() else {
            continue;
        };
        let (a, b) = (allowed.spelled(a), allowed.spelled(b));
        match (allowed.row(&a), allowed.row(&b)) {
            (Some(i), Some(j)) => {
                gold.push(score);
                model.push(wv.row_similarity(i, j)?);
            }
            _ => {
                oov += 1;
                if opts.dummy4unknown {
                    gold.push(score);
                    model.push(0.0);
                }
            }
        }
    }
    if gold.is_empty() {
        return Err(Error::format(
            path,
            "no valid similarity judgements found: either invalid format or all are \
             out-of-vocabulary",
        ));
    }
    let seen = if opts.dummy4unknown {
        gold.len()
    } else {
        gold.len() + oov
    };
    Ok(PairScores {
        pearson: pearson(&gold, &model),
        spearman: spearman(&gold, &model),
        oov_ratio: oov as f64 / seen as f64 * 100.0,
    })
}

/// The analogy benchmark over the file at `path`.
pub fn word_analogies(wv: &WordVectors, path: &Path, opts: &EvalOptions) -> Result<AnalogyScores> {
    let text = read_text(path)?;
    let allowed = Allowed::new(wv, opts);
    let range = wv.search_range(0, None, Some(opts.restrict_vocab));
    let mut sections: Vec<Section> = Vec::new();
    let (mut questions, mut oov) = (0usize, 0usize);
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        if let Some(name) = line.strip_prefix(": ") {
            let name = name.trim_start_matches([':', ' ']).trim();
            sections.push(Section {
                name: name.to_string(),
                ..Section::default()
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(Error::format(
                path,
                format!(
                    "missing section header (\": name\") before line {}",
                    line_no + 1
                ),
            ));
        };
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| allowed.spelled(w))
            .collect();
        let Ok(q) = <[String; 4]>::try_from(words) else {
            continue;
        };
        questions += 1;
        let rows: Vec<Option<usize>> = q.iter().map(|w| allowed.row(w)).collect();
        let [Some(a), Some(b), Some(c), Some(_)] = rows.as_slice() else {
            oov += 1;
            if opts.dummy4unknown {
                section.incorrect.push(q);
            }
            continue;
        };
        let terms = [
            (Term::Row(*b), 1.0),
            (Term::Row(*c), 1.0),
            (Term::Row(*a), -1.0),
        ];
        let Neighbours::Top(best) = wv.most_similar(&terms, Some(5), range.clone())? else {
            continue;
        };
        let ignore = q.get(..3).unwrap_or_default();
        let mut predicted = None;
        for (key, _) in &best {
            let p = allowed.spelled(key);
            let stop = allowed.row(&p).is_some() && !ignore.contains(&p);
            predicted = Some(p);
            if stop {
                break;
            }
        }
        if predicted.as_deref() == q.get(3).map(String::as_str) {
            section.correct.push(q);
        } else {
            section.incorrect.push(q);
        }
    }
    if questions == 0 {
        return Err(Error::format(
            path,
            "no analogy questions (\"a b c d\" lines) found",
        ));
    }
    let total = Section {
        name: "Total accuracy".to_string(),
        correct: sections.iter().flat_map(|s| s.correct.clone()).collect(),
        incorrect: sections.iter().flat_map(|s| s.incorrect.clone()).collect(),
    };
    let accuracy = total.accuracy();
    sections.push(total);
    Ok(AnalogyScores {
        accuracy,
        sections,
        oov_ratio: oov as f64 / questions as f64 * 100.0,
    })
}

/// A line as Python's text mode reads it: `\r\n` becomes `\n`.
fn universal_newline(line: &str) -> String {
    match line.strip_suffix("\r\n") {
        Some(l) => format!("{l}\n"),
        None => line.to_string(),
    }
}
