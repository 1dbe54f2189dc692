//! Hyper-parameters of a recurrent stack and torch.nn's parameter layout.

use crate::error::{Error, Result};

/// The recurrence a network is built from (torch's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    RnnTanh,
    RnnRelu,
    Lstm,
    Gru,
}

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

    /// Parses the names torch uses (`RNN_TANH`, `LSTM`, ...) and the lower-case
    /// forms used on the command line (`rnn_tanh`, `lstm`, ...).
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "rnn_tanh" | "tanh" => Ok(Mode::RnnTanh),
            "rnn_relu" | "relu" => Ok(Mode::RnnRelu),
            "lstm" => Ok(Mode::Lstm),
            "gru" => Ok(Mode::Gru),
            _ => Err(Error::value(format!(
                "unknown recurrent mode '{name}': expected one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru'"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::RnnTanh => "rnn_tanh",
            Mode::RnnRelu => "rnn_relu",
            Mode::Lstm => "lstm",
            Mode::Gru => "gru",
        }
    }
}

/// Everything that fixes the shape of a recurrent stack, as torch.nn.RNNBase takes it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
        Ok(())
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
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let gate_size = self.mode.gates() * self.hidden_size;
        let real_h = self.real_hidden_size();
        let mut specs = Vec::new();
        for layer in 0..self.num_layers {
            for dir in 0..self.num_directions() {
                let suffix = if dir == 1 { "_reverse" } else { "" };
                let layer_input = if layer == 0 {
                    self.input_size
                } else {
                    real_h * self.num_directions()
                };
                let mut push = |kind: &str, shape: Vec<i64>| {
                    specs.push(ParamSpec {
                        name: format!("{kind}_l{layer}{suffix}"),
                        shape,
                    })
                };
                push("weight_ih", vec![gate_size, layer_input]);
                push("weight_hh", vec![gate_size, real_h]);
                if self.bias {
                    push("bias_ih", vec![gate_size]);
                    push("bias_hh", vec![gate_size]);
                }
                if self.proj_size > 0 {
                    push("weight_hr", vec![self.proj_size, self.hidden_size]);
                }
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
}
