//! The one definition of a language model in the core: its hyper-parameters
//! and their rules ([`LmConfig`]), the names and shapes of its tensors (the
//! Python module's `state_dict`), and its weights, owned ([`LmParams`], what
//! training updates) or borrowed ([`LmWeights`], what generation and scoring
//! read). Checkpoints, the trainer, generation and scoring all take these.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::dtype::is_param_dtype;
use crate::error::{Error, Result};
use crate::rnn::config::ParamSpec;
use crate::rnn::{Mode, RnnConfig};

/// The language model's hyper-parameters: `LanguageModel.config` as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmConfig {
    pub embed_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    /// `"lstm"`, `"gru"`, `"rnn_tanh"` or `"rnn_relu"` (see [`CELLS`]).
    #[serde(with = "cell_name")]
    pub cell: Mode,
    /// Dropout on the embeddings, before the head and (with several layers)
    /// between the recurrent layers.
    pub dropout: f64,
    pub tie_weights: bool,
}

/// The cells a language model may have, in the order its errors list them.
pub const CELLS: [Mode; 4] = [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu];

impl LmConfig {
    /// A config's `cell`: one of [`CELLS`]' names, exactly (`'lstm'`,
    /// `'gru'`, `'rnn_tanh'`, `'rnn_relu'`).
    pub fn parse_cell(name: &str) -> Result<Mode> {
        CELLS
            .into_iter()
            .find(|&m| LmConfig::cell_name(m) == name)
            .ok_or_else(|| {
                Error::value(format!(
                    "cell must be one of ('lstm', 'gru', 'rnn_tanh', 'rnn_relu'), got '{name}'"
                ))
            })
    }

    /// The name [`LmConfig::parse_cell`] takes for `mode`: the language
    /// model's own lower-case spelling (`LanguageModel(cell=...)`, `--cell`
    /// and every checkpoint's stored config), not torch's `mode` names.
    pub fn cell_name(mode: Mode) -> &'static str {
        match mode {
            Mode::Lstm => "lstm",
            Mode::Gru => "gru",
            Mode::RnnTanh => "rnn_tanh",
            Mode::RnnRelu => "rnn_relu",
        }
    }

    /// Checks the rules a config must keep (see [`LmConfig::rnn_config`]).
    pub fn validate(&self) -> Result<()> {
        self.rnn_config().map(|_| ())
    }

    pub fn from_json(json: &str) -> Result<LmConfig> {
        let cfg: LmConfig = serde_json::from_str(json)
            .map_err(|e| Error::value(format!("invalid model config: {e}")))?;
        cfg.rnn_config()?;
        Ok(cfg)
    }

    #[allow(
        clippy::expect_used,
        reason = "plain strings and numbers always serialize"
    )]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config serializes")
    }

    /// The recurrent stack's configuration, as `LanguageModel` builds it
    /// (dropout between layers only when there are several).
    pub fn rnn_config(&self) -> Result<RnnConfig> {
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(Error::value(format!(
                "dropout must be in [0, 1], got {}",
                self.dropout
            )));
        }
        if self.tie_weights && self.hidden_size != self.embed_size {
            return Err(Error::value(format!(
                "tie_weights needs hidden_size == embed_size, got hidden_size={} and embed_size={}",
                self.hidden_size, self.embed_size
            )));
        }
        let mut cfg = RnnConfig::new(
            self.cell,
            self.embed_size,
            self.hidden_size,
            self.num_layers,
        )?;
        cfg.dropout = if self.num_layers > 1 {
            self.dropout
        } else {
            0.0
        };
        Ok(cfg)
    }

    /// How many tensors the model's `state_dict` has (see [`LmConfig::param_specs`]),
    /// computed without listing them, so a header claiming a billion layers
    /// costs nothing before it is compared with what a file really holds.
    pub fn num_tensors(&self) -> Result<usize> {
        let rnn = self.rnn_config()?;
        usize::try_from(rnn.num_layers)
            .ok()
            .and_then(|l| l.checked_mul(usize::try_from(rnn.num_directions()).ok()?))
            .and_then(|n| n.checked_mul(rnn.params_per_direction()))
            .and_then(|n| n.checked_add(3))
            .ok_or_else(|| {
                Error::value(format!(
                    "num_layers={} gives more tensors than can be counted",
                    self.num_layers
                ))
            })
    }

    /// [`LmConfig::param_specs`] for tensors that exist: `have` is how many
    /// the caller holds (all of them, or with `extra` more besides), compared
    /// with [`LmConfig::num_tensors`] before any spec is built.
    pub fn param_specs_for(
        &self,
        vocab_size: i64,
        have: usize,
        extra: bool,
    ) -> Result<Vec<ParamSpec>> {
        let need = self.num_tensors()?;
        if need > have || (!extra && need != have) {
            return Err(Error::value(format!(
                "the config (num_layers={}) needs {need} model tensors, but there are {have}",
                self.num_layers
            )));
        }
        self.param_specs(vocab_size)
    }

    /// Every tensor of the model's `state_dict`, in its order, with its shape.
    /// With tied weights `head.weight` is listed too (the same tensor as
    /// `embedding.weight`), as torch's `state_dict` lists it.
    pub fn param_specs(&self, vocab_size: i64) -> Result<Vec<ParamSpec>> {
        let rnn = self.rnn_config()?;
        let spec = |name: &str, shape: Vec<i64>| ParamSpec {
            name: name.to_string(),
            shape,
        };
        let mut specs = vec![spec("embedding.weight", vec![vocab_size, self.embed_size])];
        specs.extend(rnn.param_specs().into_iter().map(|p| ParamSpec {
            name: format!("rnn.{}", p.name),
            shape: p.shape,
        }));
        specs.push(spec("head.weight", vec![vocab_size, self.hidden_size]));
        specs.push(spec("head.bias", vec![vocab_size]));
        Ok(specs)
    }
}

/// The parameters of a language model, shared with the Python module (same
/// storage): updating them in place updates the module.
pub struct LmParams {
    pub config: LmConfig,
    pub rnn: RnnConfig,
    /// Every tensor, in [`LmConfig::param_specs`]' order (the `state_dict`'s);
    /// with tied weights `head.weight` is the embedding's tensor.
    named: Vec<(String, Tensor)>,
    /// Shared handles to the parts, found by name.
    embedding: Tensor,
    stack: Vec<Tensor>,
    head_weight: Tensor,
    head_bias: Tensor,
}

impl LmParams {
    /// Takes the module's tensors by name (any order) and checks them against
    /// `config`: every name present once and no other, the shapes (the
    /// vocabulary size is `embedding.weight`'s rows), one floating dtype, one
    /// device, and tied matrices that really are one tensor.
    pub fn new(config: LmConfig, named: Vec<(String, Tensor)>) -> Result<Self> {
        let rnn = config.rnn_config()?;
        let vocab_size = named
            .iter()
            .find(|(name, _)| name == "embedding.weight")
            .and_then(|(_, t)| t.size().first().copied())
            .ok_or_else(|| Error::shape("the model has no 'embedding.weight' of rank >= 1"))?;
        // Tensors that do not fit the config are torch's load_state_dict
        // mistake (a RuntimeError), not a bad argument value.
        let specs = config
            .param_specs_for(vocab_size, named.len(), false)
            .map_err(|e| match e {
                Error::Value(m) => Error::Shape(m),
                e => e,
            })?;
        let mut by_name: HashMap<String, Tensor> = HashMap::with_capacity(named.len());
        for (name, t) in named {
            if by_name.insert(name.clone(), t).is_some() {
                return Err(Error::shape(format!("tensor '{name}' is given twice")));
            }
        }
        let mut ordered = Vec::with_capacity(specs.len());
        for spec in &specs {
            let t = by_name.remove(&spec.name).ok_or_else(|| {
                Error::shape(format!(
                    "missing tensor '{}' of shape {:?}",
                    spec.name, spec.shape
                ))
            })?;
            if t.size() != spec.shape {
                return Err(Error::shape(format!(
                    "expected '{}' of shape {:?}, got shape {:?}",
                    spec.name,
                    spec.shape,
                    t.size()
                )));
            }
            ordered.push((spec.name.clone(), t));
        }
        if let Some(name) = by_name.keys().next() {
            return Err(Error::shape(format!("unexpected tensor '{name}'")));
        }
        let (first_name, first) = ordered
            .first()
            .ok_or_else(|| Error::value("the model has no tensors"))?;
        let (kind, device) = (first.f_kind()?, first.device());
        if !matches!(device, tch::Device::Cpu | tch::Device::Cuda(_)) {
            return Err(Error::value(format!(
                "training needs the model on a CPU or CUDA device, got {device:?}"
            )));
        }
        if !is_param_dtype(kind) {
            return Err(Error::value(format!(
                "the parameters must be floating point, got {kind:?}"
            )));
        }
        for (name, t) in &ordered {
            if t.f_kind()? != kind || t.device() != device {
                return Err(Error::value(format!(
                    "all parameters must share one dtype and device; '{name}' is {:?} on {:?}, \
                     '{first_name}' {kind:?} on {device:?}",
                    t.f_kind()?,
                    t.device(),
                )));
            }
        }
        let part = |name: &str| -> Result<Tensor> {
            ordered
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| Error::value(format!("missing tensor '{name}'")))
        };
        let (embedding, head_weight, head_bias) = (
            part("embedding.weight")?,
            part("head.weight")?,
            part("head.bias")?,
        );
        if config.tie_weights && embedding.data_ptr() != head_weight.data_ptr() {
            return Err(Error::shape(
                "tie_weights is set but head.weight and embedding.weight are different tensors",
            ));
        }
        let stack = ordered
            .iter()
            .filter(|(name, _)| name.starts_with("rnn."))
            .map(|(_, t)| t.shallow_clone())
            .collect();
        Ok(LmParams {
            config,
            rnn,
            named: ordered,
            embedding,
            stack,
            head_weight,
            head_bias,
        })
    }

    /// Every tensor, named, in `state_dict` order.
    pub fn named(&self) -> &[(String, Tensor)] {
        &self.named
    }

    /// The tensors by name, detached from autograd (what a file stores).
    pub fn named_detached(&self) -> Result<Vec<(String, Tensor)>> {
        self.named
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.f_detach()?)))
            .collect()
    }

    pub fn embedding(&self) -> &Tensor {
        &self.embedding
    }

    /// The recurrent stack's tensors, in torch's flat order.
    pub fn stack(&self) -> &[Tensor] {
        &self.stack
    }

    pub fn head_weight(&self) -> &Tensor {
        &self.head_weight
    }

    pub fn head_bias(&self) -> &Tensor {
        &self.head_bias
    }

    /// `V`: the embedding's rows (checked in [`LmParams::new`] to be the head's).
    pub fn vocab_size(&self) -> i64 {
        self.embedding.size().first().copied().unwrap_or(0)
    }

    /// The weights as generation and scoring read them.
    pub fn weights(&self) -> LmWeights<'_> {
        LmWeights {
            embedding: &self.embedding,
            stack: &self.stack,
            head_weight: &self.head_weight,
            head_bias: Some(&self.head_bias),
        }
    }

    /// The distinct parameter tensors, named, in the order of
    /// `train::StepOutput::grads`: the embedding, the stack, the head's weight
    /// (unless tied to the embedding) and bias.
    pub fn distinct(&self) -> Vec<(String, Tensor)> {
        self.named
            .iter()
            .filter(|(name, _)| !(self.config.tie_weights && name == "head.weight"))
            .map(|(name, t)| (name.clone(), t.shallow_clone()))
            .collect()
    }
}

/// The parameters of a language model, borrowed from the Python module.
pub struct LmWeights<'a> {
    /// `[V, E]`.
    pub embedding: &'a Tensor,
    /// The stack's parameters in torch's flat order.
    pub stack: &'a [Tensor],
    /// `[V, H]`.
    pub head_weight: &'a Tensor,
    pub head_bias: Option<&'a Tensor>,
}

/// The config's `cell` in JSON as [`LmConfig::cell_name`] spells it, the
/// way checkpoints have always stored it.
mod cell_name {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use super::{LmConfig, Mode};

    pub fn serialize<S: Serializer>(mode: &Mode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(LmConfig::cell_name(*mode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        let name = String::deserialize(d)?;
        LmConfig::parse_cell(&name).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checkpoints store the cell by the config's lower-case name: those
    /// written before read back, and a config writes the same JSON again;
    /// torch's `mode` names are no config's.
    #[test]
    fn stored_cell_names_round_trip() {
        for mode in CELLS {
            let name = LmConfig::cell_name(mode);
            let json = format!(
                r#"{{"embed_size":4,"hidden_size":4,"num_layers":1,"cell":"{name}","dropout":0.0,"tie_weights":false}}"#
            );
            let cfg = LmConfig::from_json(&json).unwrap();
            assert_eq!(cfg.cell, mode);
            assert_eq!(cfg.to_json(), json);
            assert_eq!(LmConfig::parse_cell(name).unwrap(), mode);
            let torch_name = json.replace(name, mode.name());
            let err = LmConfig::from_json(&torch_name).unwrap_err();
            assert!(matches!(err, Error::Value(_)));
            assert!(err.to_string().contains("cell must be one of"), "{err}");
        }
    }
}
