//! From counts to probabilities: interpolated (modified) Kneser-Ney and add-k.
//!
//! Notation (Chen & Goodman 1998, section 3): for an n-gram `g = c w` with
//! context `c`, `a(g)` is its count as the smoothing sees it, `u(w | c)` its
//! discounted share and `gamma(c)` the mass its context leaves to the
//! order below:
//!
//! ```text
//! p(w | c) = u(w | c) + gamma(c) * p(w | c')      (c' = c less its first word)
//! p(w)     = u(w)     + gamma()  / |V|            (|V| = every word but <s>)
//! ```
//!
//! * **Kneser-Ney** (as KenLM's lmplz): `a` is the raw count at the highest
//!   order and for n-grams that begin with `<s>`, else the number of distinct
//!   words seen before `g` (its continuation count). With `t_k` the number of
//!   n-grams of an order with `a = k`, modified Kneser-Ney discounts
//!   `D_k = k - (k+1) Y t_(k+1) / t_k`, `Y = t_1 / (t_1 + 2 t_2)`, for
//!   `k = 1, 2, 3+`; `u = (a - D_a) / sum_x a(c x)` and
//!   `gamma(c) = (D_1 N_1(c) + D_2 N_2(c) + D_3 N_3+(c)) / sum_x a(c x)`,
//!   `N_k(c)` the extensions of `c` with `a = k` (3 or more for `N_3+`).
//!   Plain Kneser-Ney has one discount per order, `D = Y`. Where a `t_k` is
//!   zero or a discount falls outside `[0, k]` (tiny or artificial data),
//!   the order's discounts are KenLM's `--discount_fallback` values 0.5, 1,
//!   1.5 (0.5 for plain Kneser-Ney).
//! * **add-k**: raw counts; `p(w | c) = (a(c w) + k |V| p(w | c')) / (sum_x
//!   a(c x) + k |V|)`, so `gamma(c) = k |V| / (sum_x a(c x) + k |V|)`. At the
//!   unigram level this is add-k (Lidstone) smoothing, `(a(w) + k) / (T + k
//!   |V|)`; above it the k pseudo-counts of each word are shared out by the
//!   order below instead of evenly, which is what makes the model a backoff
//!   model an ARPA file can hold (and not 1/|V| for every unseen context).
//!
//! Every distribution sums to 1: the discounted mass of a context is exactly
//! what `gamma` hands down, and the unigrams end in the uniform distribution.

use super::count::Counts;
use super::words::BOS_WORD;
use crate::error::Result;

/// How counts become probabilities.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// Interpolated modified Kneser-Ney: three discounts per order.
    ModifiedKneserNey,
    /// Interpolated Kneser-Ney: one discount per order.
    KneserNey,
    /// Add-k, interpolated with the order below (see the module docs); `k > 0`.
    AddK(f64),
}

impl Smoothing {
    pub fn name(self) -> &'static str {
        match self {
            Smoothing::ModifiedKneserNey => "modified_kneser_ney",
            Smoothing::KneserNey => "kneser_ney",
            Smoothing::AddK(_) => "add_k",
        }
    }
}

/// KenLM's `--discount_fallback` discounts for D1, D2, D3+.
pub const FALLBACK: [f64; 3] = [0.5, 1.0, 1.5];

/// The log10 probabilities and backoffs of a fitted model.
pub struct Estimate {
    /// `prob[n - 1][id]`: log10 p of n-gram `id` of order n (`<s>`: -99).
    pub prob: Vec<Vec<f64>>,
    /// `backoff[n - 1][id]` (orders 1..N-1): log10 gamma of the context `id`.
    pub backoff: Vec<Vec<f64>>,
    /// The discounts (D1, D2, D3+) used at each order; empty for add-k.
    pub discounts: Vec<[f64; 3]>,
}

/// The discounts (D1, D2, D3+) of one order from its counts of counts
/// `t[k]`, k = 1..=4.
pub fn discounts(smoothing: Smoothing, t: &[u64; 5]) -> [f64; 3] {
    let f = |k: usize| t[k] as f64;
    match smoothing {
        Smoothing::AddK(_) => [0.0; 3],
        Smoothing::KneserNey => {
            if t[1] == 0 || t[2] == 0 {
                return [FALLBACK[0]; 3];
            }
            let y = f(1) / (f(1) + 2.0 * f(2));
            [y; 3]
        }
        Smoothing::ModifiedKneserNey => {
            if t[1..=4].contains(&0) {
                return FALLBACK;
            }
            let y = f(1) / (f(1) + 2.0 * f(2));
            let mut d = [0.0; 3];
            for k in 1..=3 {
                d[k - 1] = k as f64 - (k + 1) as f64 * y * f(k + 1) / f(k);
                if !(0.0..=k as f64).contains(&d[k - 1]) {
                    return FALLBACK;
                }
            }
            d
        }
    }
}

/// Estimates every order's probabilities from `counts` (whose tables the
/// model then keeps).
pub fn estimate(counts: &Counts, smoothing: Smoothing) -> Result<Estimate> {
    let order = counts.tables.len();
    let tables = &counts.tables;
    let vocab_size = (counts.words.len() - 1) as f64; // every word but <s>
    let kneser_ney;
    let adjusted: &[Vec<u64>] = match smoothing {
        Smoothing::AddK(_) => &counts.counts,
        _ => {
            kneser_ney = adjusted_counts(counts);
            &kneser_ney
        }
    };

    let mut prob: Vec<Vec<f64>> = Vec::with_capacity(order);
    let mut backoff: Vec<Vec<f64>> = Vec::with_capacity(order.saturating_sub(1));
    let mut discounts_used = Vec::new();
    // p (not log) of the order below, for the interpolation.
    let mut lower: Vec<f64> = Vec::new();
    for n in 1..=order {
        let table = &tables[n - 1];
        let a = &adjusted[n - 1];
        let contexts = if n == 1 { 1 } else { tables[n - 2].len() };
        let skip = |id: usize| n == 1 && id == BOS_WORD as usize;

        // Counts of counts, the discounts, then each context's sums.
        let mut t = [0u64; 5];
        for (id, &k) in a.iter().enumerate() {
            if !skip(id) && (1..=4).contains(&k) {
                t[k as usize] += 1;
            }
        }
        let d = discounts(smoothing, &t);
        if !matches!(smoothing, Smoothing::AddK(_)) {
            discounts_used.push(d);
        }
        let discount = |k: u64| match k {
            0 => 0.0,
            1 => d[0],
            2 => d[1],
            _ => d[2],
        };
        let mut denom = vec![0u64; contexts];
        let mut left = vec![0f64; contexts]; // the discounted mass, sum D(a)
        for (id, &k) in a.iter().enumerate() {
            if skip(id) || k == 0 {
                continue;
            }
            let c = table.context(id as u32) as usize;
            if let (Some(s), Some(m)) = (denom.get_mut(c), left.get_mut(c)) {
                *s += k;
                *m += discount(k);
            }
        }
        let gamma: Vec<f64> = match smoothing {
            Smoothing::AddK(k) => denom
                .iter()
                .map(|&s| k * vocab_size / (s as f64 + k * vocab_size))
                .collect(),
            _ => denom
                .iter()
                .zip(&left)
                .map(|(&s, &m)| if s == 0 { 1.0 } else { m / s as f64 })
                .collect(),
        };

        let mut p = vec![0f64; table.len()];
        for (id, slot) in p.iter_mut().enumerate() {
            if skip(id) {
                continue;
            }
            let k = a.get(id).copied().unwrap_or(0);
            let c = table.context(id as u32) as usize;
            let below = if n == 1 {
                1.0 / vocab_size
            } else {
                let s = counts.suffix[n - 1].get(id).copied().unwrap_or(0) as usize;
                lower.get(s).copied().unwrap_or(0.0)
            };
            let (s, g) = (
                denom.get(c).copied().unwrap_or(0),
                gamma.get(c).copied().unwrap_or(1.0),
            );
            *slot = match smoothing {
                Smoothing::AddK(kk) => {
                    (k as f64 + kk * vocab_size * below) / (s as f64 + kk * vocab_size)
                }
                _ if s == 0 => below,
                _ => (k as f64 - discount(k)) / s as f64 + g * below,
            };
        }
        if n >= 2 {
            backoff.push(gamma.iter().map(|g| g.log10()).collect());
        }
        prob.push(
            p.iter()
                .enumerate()
                .map(|(id, &x)| if skip(id) { -99.0 } else { x.log10() })
                .collect(),
        );
        lower = p;
    }
    Ok(Estimate {
        prob,
        backoff,
        discounts: discounts_used,
    })
}

/// Kneser-Ney's counts: raw at the highest order and for n-grams that begin
/// with `<s>`; else the number of distinct words seen before the n-gram.
fn adjusted_counts(counts: &Counts) -> Vec<Vec<u64>> {
    let order = counts.tables.len();
    let mut adjusted = vec![Vec::new(); order];
    adjusted[order - 1] = counts.counts[order - 1].clone();
    // Whether each n-gram of order n begins with <s>, from its context's.
    let mut bos: Vec<bool> = (0..counts.tables[0].len())
        .map(|w| w == BOS_WORD as usize)
        .collect();
    let mut bos_by_order = vec![Vec::new(); order];
    for n in 2..=order {
        let t = &counts.tables[n - 1];
        let next: Vec<bool> = (0..t.len() as u32)
            .map(|id| bos.get(t.context(id) as usize).copied().unwrap_or(false))
            .collect();
        bos_by_order[n - 2] = std::mem::replace(&mut bos, next);
    }
    bos_by_order[order - 1] = bos;
    for n in (1..order).rev() {
        let mut a = vec![0u64; counts.tables[n - 1].len()];
        for &s in &counts.suffix[n] {
            if let Some(x) = a.get_mut(s as usize) {
                *x += 1;
            }
        }
        for (id, x) in a.iter_mut().enumerate() {
            if bos_by_order[n - 1].get(id).copied().unwrap_or(false) {
                *x = counts.counts[n - 1].get(id).copied().unwrap_or(0);
            }
        }
        adjusted[n - 1] = a;
    }
    adjusted
}
