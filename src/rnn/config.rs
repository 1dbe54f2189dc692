//! Hyper-parameters of a recurrent stack and of a cell, and torch.nn's
//! parameter layout of both.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::error::{Error, Result};

/// The recurrence a network is built from (torch's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    RnnTanh,
    RnnRelu,
    Lstm,
    Gru,
}

/// Every mode by its torch.nn.RNNBase name, in the order torch's error lists them.
const MODE_NAMES: [(&str, Mode); 4] = [
    ("LSTM", Mode::Lstm),
    ("GRU", Mode::Gru),
    ("RNN_TANH", Mode::RnnTanh),
    ("RNN_RELU", Mode::RnnRelu),
];

impl Mode {
    /// Number of gate blocks stacked in `weight_ih` / `weight_hh`.
    pub fn gates(self) -> i64 {
        match self {
            Mode::RnnTanh | Mode::RnnRelu => 1,
            Mode::Lstm => 4,
            Mode::Gru => 3,
        }
    }

    /// torch.nn's class name for this mode, used in error messages.
    pub fn class_name(self) -> &'static str {
        match self {
            Mode::RnnTanh | Mode::RnnRelu => "RNN",
            Mode::Lstm => "LSTM",
            Mode::Gru => "GRU",
        }
    }

    /// torch.nn's class name for one step of this mode (`RNNCell`, ...).
    pub fn cell_class_name(self) -> &'static str {
        match self {
            Mode::RnnTanh | Mode::RnnRelu => "RNNCell",
            Mode::Lstm => "LSTMCell",
            Mode::Gru => "GRUCell",
        }
    }

    /// torch.nn.RNNBase's `mode`, spelled exactly as torch spells it
    /// (`'LSTM'`, `'GRU'`, `'RNN_TANH'`, `'RNN_RELU'`), with its `ValueError`.
    /// Other spellings belong to the callers that take them: `nonlinearity`
    /// to `RNN` and `RNNCell`, the language model's lower-case cell names to
    /// `LmConfig::parse_cell`.
    pub fn parse(name: &str) -> Result<Self> {
        MODE_NAMES
            .into_iter()
            .find_map(|(n, mode)| (n == name).then_some(mode))
            .ok_or_else(|| {
                Error::value(format!(
                    "Unrecognized RNN mode: {name} (expected one of 'LSTM', 'GRU', 'RNN_TANH', \
                     'RNN_RELU')"
                ))
            })
    }

    /// The name [`Mode::parse`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::RnnTanh => "RNN_TANH",
            Mode::RnnRelu => "RNN_RELU",
            Mode::Lstm => "LSTM",
            Mode::Gru => "GRU",
        }
    }

    /// The rows of `weight_ih` and `weight_hh`: `gates * hidden_size`, or
    /// torch's `TypeError` (its sizes are C `long long`s) when that overflows.
    fn gate_size(self, hidden_size: i64, owner: &str, param: &str) -> Result<i64> {
        let gates = self.gates();
        gates.checked_mul(hidden_size).ok_or_else(|| {
            Error::Type(format!(
                "{owner}: {param} would have {gates} * hidden_size = {gates} * {hidden_size} \
                 rows, which overflows a 64-bit size (torch: Overflow when unpacking long long)"
            ))
        })
    }
}

/// The gate parameters of one layer and direction of a stack, or of a cell,
/// in torch's order: `weight_ih`, `weight_hh`, then the biases.
fn gate_params(
    gate_size: i64,
    input_size: i64,
    hidden_size: i64,
    bias: bool,
) -> Vec<(&'static str, Vec<i64>)> {
    let mut params = vec![
        ("weight_ih", vec![gate_size, input_size]),
        ("weight_hh", vec![gate_size, hidden_size]),
    ];
    if bias {
        params.push(("bias_ih", vec![gate_size]));
        params.push(("bias_hh", vec![gate_size]));
    }
    params
}

/// Everything that fixes the shape of a recurrent stack, as torch.nn.RNNBase takes it.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnConfig {
    pub mode: Mode,
    pub input_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub bias: bool,
    pub batch_first: bool,
    pub dropout: f64,
    pub bidirectional: bool,
    pub proj_size: i64,
}

/// What a rough estimate of an empty `torch.nn.Parameter` costs in host
/// memory (its tensor, storage and Python objects: about 620 bytes measured
/// with torch 2.13), rounded down: a bound, not a budget.
const TENSOR_HOST_BYTES: u64 = 512;

/// This machine's physical memory in bytes (`u64::MAX` when unknown).
fn host_memory() -> u64 {
    // SAFETY: sysconf only reads system constants.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(page)) {
        (Ok(p), Ok(s)) if p > 0 && s > 0 => p.saturating_mul(s),
        _ => u64::MAX,
    }
}

/// The parameters of a stack in all (see [`RnnConfig::sizes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSizes {
    pub tensors: u64,
    pub elements: i64,
}

/// One parameter of the stack: torch's name and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<i64>,
}

impl RnnConfig {
    /// Validates the arguments the way torch.nn.RNNBase.__init__ does (same
    /// exception class, `ValueError`, and the same wording).
    pub fn new(mode: Mode, input_size: i64, hidden_size: i64, num_layers: i64) -> Result<Self> {
        let cfg = RnnConfig {
            mode,
            input_size,
            hidden_size,
            num_layers,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: 0,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// torch.nn.RNNBase's value rules, in its order and with its exact messages
    /// (the type checks before them are the Python layer's).
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(Error::value(
                "dropout should be a number in range [0, 1] representing the probability of an \
                 element being zeroed",
            ));
        }
        for (name, value) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if value <= 0 {
                return Err(Error::value(format!("{name} must be greater than zero")));
            }
        }
        if self.proj_size < 0 {
            return Err(Error::value(
                "proj_size should be a positive integer or zero to disable projections",
            ));
        }
        if self.proj_size >= self.hidden_size {
            return Err(Error::value("proj_size has to be smaller than hidden_size"));
        }
        if self.proj_size > 0 && self.mode != Mode::Lstm {
            return Err(Error::value(
                "proj_size argument is only supported for LSTM, not RNN or GRU",
            ));
        }
        self.sizes().map(|_| ())
    }

    /// The parameters' count and elements in all, computed with checked
    /// arithmetic before anything is allocated: a size past `i64` is torch's
    /// `TypeError` (its size arguments are C `long long`s), a tensor with
    /// more elements than that torch's `RuntimeError` ("Storage size
    /// calculation overflowed"), and more tensors than this machine's memory
    /// could hold the Python objects of (a billion layers) a `RuntimeError`
    /// too, where torch.nn would loop until the memory runs out.
    pub fn sizes(&self) -> Result<ParamSizes> {
        let name = self.mode.class_name();
        let gate_size = self
            .mode
            .gate_size(self.hidden_size, name, "weight_ih_l0")?;
        let dirs = self.num_directions();
        let real_h = self.real_hidden_size();
        let deeper_input = real_h.checked_mul(dirs).ok_or_else(|| {
            Error::Type(format!(
                "{name}: weight_ih_l1 would have {dirs} * {real_h} columns, which overflows a \
                 64-bit size (torch: Overflow when unpacking long long)"
            ))
        })?;
        let numel = |param: &str, shape: &[i64]| -> Result<i64> {
            shape
                .iter()
                .try_fold(1i64, |n, &d| n.checked_mul(d))
                .ok_or_else(|| {
                    Error::shape(format!(
                        "Storage size calculation overflowed with sizes={shape:?} ({name} \
                         parameter {param})"
                    ))
                })
        };
        let overflow = || {
            Error::shape(format!(
                "{name}: its parameters would have more elements in all than a 64-bit count \
                 can hold"
            ))
        };
        // Layers past the first are alike: count the first and one other.
        let mut per_layer = [0i64; 2];
        let layers = [(self.input_size, "_l0"), (deeper_input, "_l1")];
        for (count, (input, suffix)) in per_layer.iter_mut().zip(layers) {
            let mut shapes = gate_params(gate_size, input, real_h, self.bias);
            if self.proj_size > 0 {
                shapes.push(("weight_hr", vec![self.proj_size, self.hidden_size]));
            }
            for (param, shape) in shapes {
                let n = numel(&format!("{param}{suffix}"), &shape)?;
                *count = count.checked_add(n).ok_or_else(overflow)?;
            }
            *count = count.checked_mul(dirs).ok_or_else(overflow)?;
        }
        let [first, other] = per_layer;
        let elements = (self.num_layers - 1)
            .checked_mul(other)
            .and_then(|n| n.checked_add(first))
            .ok_or_else(overflow)?;
        let tensors = u64::try_from(self.num_layers)
            .ok()
            .and_then(|l| l.checked_mul(dirs as u64))
            .and_then(|n| n.checked_mul(self.params_per_direction() as u64))
            .ok_or_else(overflow)?;
        let host = host_memory();
        if tensors.saturating_mul(TENSOR_HOST_BYTES) > host {
            return Err(Error::shape(format!(
                "{name}: num_layers={} means {tensors} parameter tensors, whose Python objects \
                 alone (about {TENSOR_HOST_BYTES} bytes each) need more than this machine's \
                 {host} bytes of memory",
                self.num_layers
            )));
        }
        Ok(ParamSizes { tensors, elements })
    }

    /// Whether the parameters, at `element_size` bytes each, fit in this
    /// machine's memory: a `RuntimeError` before the first is created rather
    /// than the process killed when the memory runs out while they are
    /// initialized. For parameters in host memory only (the CPU); elsewhere
    /// the device's allocator refuses what it cannot hold.
    pub fn check_host_allocation(&self, element_size: usize) -> Result<()> {
        let sizes = self.sizes()?;
        let bytes = (sizes.elements as u64).checked_mul(element_size as u64);
        let host = host_memory();
        match bytes {
            Some(b) if b <= host => Ok(()),
            _ => Err(Error::shape(format!(
                "{}: can't allocate memory: its {} parameters need {} elements of {element_size} \
                 bytes{}, more than this machine's {host} bytes of memory",
                self.mode.class_name(),
                sizes.tensors,
                sizes.elements,
                bytes.map_or(String::new(), |b| format!(" ({b} bytes)")),
            ))),
        }
    }

    pub fn num_directions(&self) -> i64 {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of the hidden state `h` (the projection size when projecting).
    pub fn real_hidden_size(&self) -> i64 {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// Tensors per layer and direction in the flat weight list.
    pub fn params_per_direction(&self) -> usize {
        2 + if self.bias { 2 } else { 0 } + usize::from(self.proj_size > 0)
    }

    /// The parameters in exactly torch's `_flat_weights_names` order, so state
    /// dicts round-trip with torch.nn and the flat list lines up with ours.
    ///
    /// The sizes are [`RnnConfig::validate`]d not to overflow; on a config
    /// that was not, they saturate (a shape torch refuses) and never wrap.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let gate_size = self.mode.gates().saturating_mul(self.hidden_size);
        let real_h = self.real_hidden_size();
        let mut specs = Vec::new();
        for layer in 0..self.num_layers {
            for dir in 0..self.num_directions() {
                let suffix = if dir == 1 { "_reverse" } else { "" };
                let layer_input = if layer == 0 {
                    self.input_size
                } else {
                    real_h.saturating_mul(self.num_directions())
                };
                let mut params = gate_params(gate_size, layer_input, real_h, self.bias);
                if self.proj_size > 0 {
                    params.push(("weight_hr", vec![self.proj_size, self.hidden_size]));
                }
                specs.extend(params.into_iter().map(|(kind, shape)| ParamSpec {
                    name: format!("{kind}_l{layer}{suffix}"),
                    shape,
                }));
            }
        }
        specs
    }

    /// torch's `extra_repr`: positional sizes, then only the options that differ
    /// from their defaults.
    pub fn extra_repr(&self) -> String {
        let mut s = format!("{}, {}", self.input_size, self.hidden_size);
        if self.proj_size != 0 {
            s += &format!(", proj_size={}", self.proj_size);
        }
        if self.num_layers != 1 {
            s += &format!(", num_layers={}", self.num_layers);
        }
        if !self.bias {
            s += ", bias=False";
        }
        if self.batch_first {
            s += ", batch_first=True";
        }
        if self.dropout != 0.0 {
            s += &format!(", dropout={}", self.dropout);
        }
        if self.bidirectional {
            s += ", bidirectional=True";
        }
        s
    }
}

/// Everything that fixes the parameters of a cell, as torch.nn.RNNCellBase
/// takes it. A cell's nonlinearity is no part of it: torch reads `RNNCell`'s
/// at every step, and both share one layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellConfig {
    pub mode: Mode,
    pub input_size: i64,
    pub hidden_size: i64,
    pub bias: bool,
}

impl CellConfig {
    /// torch's cells check no value themselves: what they refuse is what
    /// `torch.empty` refuses while creating their parameters (a size of 0 is
    /// taken). Those rules, with its classes and words, parameter by
    /// parameter in the order torch creates them: a gate count past a 64-bit
    /// size is its `TypeError`, a negative dimension and a storage size past
    /// 64 bits its `RuntimeError`s.
    pub fn new(mode: Mode, input_size: i64, hidden_size: i64, bias: bool) -> Result<Self> {
        let cfg = CellConfig {
            mode,
            input_size,
            hidden_size,
            bias,
        };
        mode.gate_size(hidden_size, mode.cell_class_name(), "weight_ih")?;
        for spec in cfg.param_specs() {
            let shape = &spec.shape;
            if let Some(d) = shape.iter().find(|&&d| d < 0) {
                return Err(Error::shape(format!(
                    "Trying to create tensor with negative dimension {d}: {shape:?}"
                )));
            }
            if shape
                .iter()
                .try_fold(1i64, |n, &d| n.checked_mul(d))
                .is_none()
            {
                return Err(Error::shape(format!(
                    "Storage size calculation overflowed with sizes={shape:?}"
                )));
            }
        }
        Ok(cfg)
    }

    /// `weight_ih`, `weight_hh` and, with a bias, `bias_ih`, `bias_hh`, with
    /// torch's shapes. On a config not made by [`CellConfig::new`] the gate
    /// rows saturate (a shape torch refuses) and never wrap.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let gate_size = self.mode.gates().saturating_mul(self.hidden_size);
        gate_params(gate_size, self.input_size, self.hidden_size, self.bias)
            .into_iter()
            .map(|(name, shape)| ParamSpec {
                name: name.to_string(),
                shape,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_torch_order() {
        let mut cfg = RnnConfig::new(Mode::Lstm, 3, 5, 2).unwrap();
        cfg.bidirectional = true;
        cfg.proj_size = 2;
        let names: Vec<_> = cfg.param_specs().into_iter().map(|p| p.name).collect();
        assert_eq!(
            &names[..5],
            [
                "weight_ih_l0",
                "weight_hh_l0",
                "bias_ih_l0",
                "bias_hh_l0",
                "weight_hr_l0"
            ]
        );
        assert_eq!(names[5], "weight_ih_l0_reverse");
        assert_eq!(names.len(), 20);
        let specs = cfg.param_specs();
        // Layer 1 reads both directions' projected outputs.
        assert_eq!(specs[10].shape, vec![20, 4]);
        assert_eq!(specs[11].shape, vec![20, 2]);
    }

    /// Sizes whose products overflow are refused with torch's classes, not
    /// wrapped into small (or empty) shapes; a billion layers are refused
    /// before any spec is built.
    #[test]
    fn sizes_never_wrap() {
        let cfg = |input, hidden, layers| RnnConfig::new(Mode::Lstm, input, hidden, layers);
        assert!(matches!(cfg(4, 1 << 62, 1), Err(Error::Type(_))));
        assert!(matches!(cfg(4, 1 << 61, 1), Err(Error::Type(_))));
        let err = cfg(1 << 62, 1, 1).unwrap_err();
        assert!(matches!(err, Error::Shape(_)), "{err}");
        assert!(err
            .to_string()
            .contains("Storage size calculation overflowed"));
        assert!(matches!(cfg(4, 4, 1_000_000_000), Err(Error::Shape(_))));
        assert!(matches!(cfg(4, 4, i64::MAX), Err(Error::Shape(_))));
        // weight_hh_l0 [2^42, 2^40]: more elements than an i64 counts.
        assert!(matches!(cfg(4, 1 << 40, 1), Err(Error::Shape(_))));
        let ok = cfg(4, 1 << 20, 1).unwrap();
        assert_eq!(ok.param_specs()[0].shape, vec![4 << 20, 4]);
        assert!(ok.check_host_allocation(4).is_err());
        let small = cfg(3, 5, 2).unwrap();
        let sizes = small.sizes().unwrap();
        let specs = small.param_specs();
        assert_eq!(sizes.tensors, specs.len() as u64);
        let total: i64 = specs.iter().map(|p| p.shape.iter().product::<i64>()).sum();
        assert_eq!(sizes.elements, total);
        assert!(small.check_host_allocation(8).is_ok());
    }

    #[test]
    fn rejects_what_torch_rejects() {
        assert!(RnnConfig::new(Mode::Gru, 3, 0, 1).is_err());
        assert!(RnnConfig::new(Mode::Gru, 3, 4, 0).is_err());
        let mut cfg = RnnConfig::new(Mode::Gru, 3, 4, 1).unwrap();
        cfg.proj_size = 2;
        assert!(matches!(cfg.validate(), Err(Error::Value(_))));
        cfg.proj_size = 0;
        cfg.dropout = 1.5;
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn modes_have_torchs_names_only() {
        for mode in [Mode::RnnTanh, Mode::RnnRelu, Mode::Lstm, Mode::Gru] {
            assert_eq!(Mode::parse(mode.name()).unwrap(), mode);
        }
        for name in ["lstm", "Lstm", "rnn_tanh", "tanh", "relu", "RNN", ""] {
            let err = Mode::parse(name).unwrap_err();
            assert!(matches!(err, Error::Value(_)), "{name}");
            assert!(err
                .to_string()
                .starts_with(&format!("Unrecognized RNN mode: {name} (expected")));
        }
    }

    #[test]
    fn cell_specs_are_torchs() {
        let cfg = CellConfig::new(Mode::Lstm, 3, 5, true).unwrap();
        let specs: Vec<_> = cfg
            .param_specs()
            .into_iter()
            .map(|p| (p.name, p.shape))
            .collect();
        assert_eq!(
            specs,
            [
                ("weight_ih".to_string(), vec![20, 3]),
                ("weight_hh".to_string(), vec![20, 5]),
                ("bias_ih".to_string(), vec![20]),
                ("bias_hh".to_string(), vec![20]),
            ]
        );
        let plain = CellConfig::new(Mode::Gru, 0, 0, false).unwrap();
        let shapes: Vec<_> = plain.param_specs().into_iter().map(|p| p.shape).collect();
        assert_eq!(shapes, [vec![0, 0], vec![0, 0]]);
        // The first negative dimension of the first parameter torch would create.
        let err = CellConfig::new(Mode::Lstm, -1, -1, true).unwrap_err();
        assert!(matches!(err, Error::Shape(_)));
        assert_eq!(
            err.to_string(),
            "Trying to create tensor with negative dimension -4: [-4, -1]"
        );
        assert!(matches!(
            CellConfig::new(Mode::Lstm, 4, 1 << 62, true),
            Err(Error::Type(_))
        ));
        let err = CellConfig::new(Mode::RnnTanh, 4, 1 << 62, true).unwrap_err();
        assert!(matches!(err, Error::Shape(_)));
        assert_eq!(
            err.to_string(),
            "Storage size calculation overflowed with sizes=[4611686018427387904, 4]"
        );
    }
}
