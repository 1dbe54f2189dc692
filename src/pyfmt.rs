//! Values as Python prints them, for messages about arguments given in Python.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

/// A float as Python prints it (`nan`, `inf`, `0.001`, `1e+300`), for
/// messages about values given in Python.
pub fn py_float(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if v != 0.0 && (v.abs() >= 1e16 || v.abs() < 1e-4) {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => match e.strip_prefix('-') {
                Some(neg) => format!("{m}e-{neg:0>2}"),
                None => format!("{m}e+{e:0>2}"),
            },
            None => s,
        }
    } else {
        format!("{v:?}")
    }
}
