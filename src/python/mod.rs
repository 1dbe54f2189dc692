//! The pyo3 glue (cargo feature `python`): converts arguments, releases the
//! GIL around long work and maps errors. No algorithm lives here.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod checkpoint;
mod cpu;
mod cross_entropy;
mod dropout;
mod errors;
mod gil;
mod guard;
mod history;
mod lm;
mod model;
mod ngram;
mod rnn;
mod sampler;
mod score;
mod train;
mod train_options;
mod vectors;
mod vocab;

use pyo3::prelude::*;

/// The libtorch version this extension was compiled against (tch 0.26).
const TORCH_VERSION: &str = "2.13.0";

#[pymodule]
fn _rustrnn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("TORCH_VERSION", TORCH_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<rnn::PyRnnSpec>()?;
    m.add_class::<rnn::PyTape>()?;
    m.add_function(wrap_pyfunction!(rnn::cell_forward, m)?)?;
    m.add_function(wrap_pyfunction!(rnn::cell_param_specs, m)?)?;
    m.add_function(wrap_pyfunction!(rnn::get_rnn_engine, m)?)?;
    m.add_function(wrap_pyfunction!(rnn::set_rnn_engine, m)?)?;
    m.add_function(wrap_pyfunction!(lm::generate, m)?)?;
    m.add_function(wrap_pyfunction!(lm::beam_search, m)?)?;
    m.add_function(wrap_pyfunction!(score::score_lines, m)?)?;
    m.add_function(wrap_pyfunction!(guard::_guard_selftest, m)?)?;
    checkpoint::register(m)?;
    model::register(m)?;
    cpu::register(m)?;
    dropout::register(m)?;
    cross_entropy::register(m)?;
    history::register(m)?;
    ngram::register(m)?;
    sampler::register(m)?;
    train::register(m)?;
    vectors::register(m)?;
    vocab::register(m)?;
    Ok(())
}
