//! Pearson's and Spearman's correlations with two-sided p-values, as
//! `scipy.stats.pearsonr` and `spearmanr` compute them (what gensim's
//! word-pair evaluation reports).

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use statrs::function::beta::checked_beta_reg;

/// A correlation and its two-sided p-value under the null of none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Correlation {
    pub statistic: f64,
    pub pvalue: f64,
}

/// Pearson's r of `x` and `y` (equal lengths, at least 2); NaN for a
/// constant input, as scipy gives (with its warning).
pub fn pearson(x: &[f64], y: &[f64]) -> Correlation {
    let n = x.len().min(y.len());
    let r = correlation(x, y);
    // scipy: with two points the line fits exactly and says nothing.
    let pvalue = if n == 2 && r.is_finite() {
        1.0
    } else {
        t_test(r, n)
    };
    Correlation {
        statistic: r,
        pvalue,
    }
}

/// Spearman's rho: Pearson's r of the ranks (ties get their mean rank).
pub fn spearman(x: &[f64], y: &[f64]) -> Correlation {
    let r = correlation(&ranks(x), &ranks(y));
    Correlation {
        statistic: r,
        pvalue: t_test(r, x.len().min(y.len())),
    }
}

/// The centred, normalised dot product, clipped to [-1, 1].
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// The two-sided p-value of r over n pairs: Student's t with n - 2 degrees
/// of freedom, which is I_{1-r²}((n-2)/2, 1/2).
fn t_test(r: f64, n: usize) -> f64 {
    if !r.is_finite() || n < 3 {
        return f64::NAN;
    }
    let df = (n - 2) as f64;
    checked_beta_reg(df / 2.0, 0.5, (1.0 - r * r).clamp(0.0, 1.0)).unwrap_or(f64::NAN)
}

/// 1-based ranks, ties sharing the mean of the ranks they span (scipy's
/// `rankdata(method="average")`).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    let at = |i: &usize| v.get(*i).copied().unwrap_or(f64::NAN);
    order.sort_by(|a, b| at(a).total_cmp(&at(b)));
    let mut out = vec![0.0; v.len()];
    let mut start = 0;
    while start < order.len() {
        let value = order.get(start).map(at);
        let mut end = start + 1;
        while end < order.len() && order.get(end).map(at) == value {
            end += 1;
        }
        let mean = (start + end + 1) as f64 / 2.0;
        for i in order.get(start..end).unwrap_or_default() {
            if let Some(slot) = out.get_mut(*i) {
                *slot = mean;
            }
        }
        start = end;
    }
    out
}
