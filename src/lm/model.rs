//! The one definition of a language model in the core: its hyper-parameters
//! and their rules ([`LmConfig`]), the names and shapes of its tensors (the
//! Python module's `state_dict`), and its weights, owned ([`LmParams`], what
//! training updates) or borrowed ([`LmWeights`], what generation and scoring
//! read). Checkpoints, the trainer, generation and scoring all take these.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::adaptive::{AdaptiveConfig, AdaptiveHead, DEFAULT_DIV_VALUE};
use super::cross_entropy::PackedHead;
use crate::dtype::is_param_dtype;
use crate::error::{Error, Result};
use crate::pyfmt::py_float;
use crate::rnn::config::ParamSpec;
use crate::rnn::{Mode, RnnConfig};

/// The language model's hyper-parameters: `LanguageModel.config` as JSON.
///
/// In JSON the head is three flat fields, `"head"` (`"full"` or
/// `"adaptive"`), `"cutoffs"` and `"div_value"`, written only for an
/// adaptive head: a full-head config is the JSON it always was, and one
/// without them (every checkpoint written before) has the full head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "stored::Config", into = "stored::Config")]
pub struct LmConfig {
    pub embed_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    /// `"lstm"`, `"gru"`, `"rnn_tanh"` or `"rnn_relu"` (see [`CELLS`]).
    pub cell: Mode,
    /// Dropout on the embeddings, before the head and (with several layers)
    /// between the recurrent layers.
    pub dropout: f64,
    /// The head's matrix is the embedding's; with `embed_size !=
    /// hidden_size` a bias-free `projection` `[E, H]` maps the stack's
    /// output to the embedding's width first (see [`LmConfig::projected`]).
    pub tie_weights: bool,
    pub head: HeadConfig,
}

/// The output layer: a linear map to the whole vocabulary's logits (torch's
/// `nn.Linear`), or an adaptive softmax (`nn.AdaptiveLogSoftmaxWithLoss`).
#[derive(Clone, Debug, PartialEq)]
pub enum HeadConfig {
    Full,
    Adaptive(AdaptiveConfig),
}

impl HeadConfig {
    /// The head `LanguageModel(head=..., cutoffs=..., div_value=...)` asks
    /// for: `'full'` or `'adaptive'`; the cutoffs (already resolved, see
    /// [`AdaptiveConfig::resolve_cutoffs`]) and a div_value other than the
    /// default belong to the adaptive head only.
    pub fn new(head: &str, cutoffs: Option<Vec<i64>>, div_value: Option<f64>) -> Result<Self> {
        match head {
            "full" => {
                if cutoffs.is_some() {
                    return Err(Error::value(
                        "cutoffs are for head='adaptive', but head is 'full'",
                    ));
                }
                if let Some(d) = div_value.filter(|&d| d != DEFAULT_DIV_VALUE) {
                    return Err(Error::value(format!(
                        "div_value={} is for head='adaptive', but head is 'full'",
                        py_float(d)
                    )));
                }
                Ok(HeadConfig::Full)
            }
            "adaptive" => {
                let cutoffs =
                    cutoffs.ok_or_else(|| Error::value("head='adaptive' needs its cutoffs"))?;
                Ok(HeadConfig::Adaptive(AdaptiveConfig::new(
                    cutoffs,
                    div_value.unwrap_or(DEFAULT_DIV_VALUE),
                )?))
            }
            other => Err(Error::value(format!(
                "head must be 'full' or 'adaptive', got '{other}'"
            ))),
        }
    }

    /// Its name, as [`HeadConfig::new`] takes it.
    pub fn name(&self) -> &'static str {
        match self {
            HeadConfig::Full => "full",
            HeadConfig::Adaptive(_) => "adaptive",
        }
    }

    /// How many tensors it has.
    fn num_tensors(&self) -> usize {
        match self {
            HeadConfig::Full => 2,
            HeadConfig::Adaptive(a) => a.num_tensors(),
        }
    }
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

    /// Checks the rules a config must keep (see [`LmConfig::rnn_config`]),
    /// all but the head's against the vocabulary size, which
    /// [`LmConfig::param_specs`] checks.
    pub fn validate(&self) -> Result<()> {
        self.rnn_config()?;
        match &self.head {
            HeadConfig::Full => Ok(()),
            HeadConfig::Adaptive(a) => {
                a.validate()?;
                // The projections' widths, before torch's module is built with them.
                for i in 0..a.cutoffs.len() {
                    a.projection_size(self.hidden_size, i)?;
                }
                Ok(())
            }
        }
    }

    pub fn from_json(json: &str) -> Result<LmConfig> {
        let cfg: LmConfig = serde_json::from_str(json)
            .map_err(|e| Error::value(format!("invalid model config: {e}")))?;
        cfg.validate()?;
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
        if self.tie_weights && self.head != HeadConfig::Full {
            return Err(Error::value(
                "tie_weights needs head='full': the adaptive head has no (vocabulary, \
                 hidden_size) matrix to share with the embedding",
            ));
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

    /// Whether the model has a `projection` between the stack and the head:
    /// tied weights of different widths, as AWD-LSTM ties a 400-wide
    /// embedding to a 1150-wide stack (there through a last layer of
    /// embedding width; here through a linear map, so every layer keeps one
    /// width and every cell can do it).
    pub fn projected(&self) -> bool {
        self.tie_weights && self.embed_size != self.hidden_size
    }

    /// The width the head reads: the embedding's when tied, else the stack's.
    pub fn head_input_size(&self) -> i64 {
        if self.tie_weights {
            self.embed_size
        } else {
            self.hidden_size
        }
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
            .and_then(|n| {
                n.checked_add(1 + usize::from(self.projected()) + self.head.num_tensors())
            })
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
    /// `embedding.weight`), as torch's `state_dict` lists it, after
    /// `projection.weight` `[E, H]` when [`LmConfig::projected`]. An adaptive
    /// head's are torch's module's, under `head.` (`head.head.weight`,
    /// `head.tail.{i}.0.weight`, `head.tail.{i}.1.weight`), and its cutoffs
    /// are checked against `vocab_size` here.
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
        if self.projected() {
            specs.push(spec(
                "projection.weight",
                vec![self.embed_size, self.hidden_size],
            ));
        }
        match &self.head {
            HeadConfig::Full => {
                specs.push(spec(
                    "head.weight",
                    vec![vocab_size, self.head_input_size()],
                ));
                specs.push(spec("head.bias", vec![vocab_size]));
            }
            HeadConfig::Adaptive(a) => {
                specs.extend(
                    a.param_specs(self.hidden_size, vocab_size)?
                        .into_iter()
                        .map(|p| spec(&format!("head.{}", p.name), p.shape)),
                );
            }
        }
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
    head: HeadParams,
}

/// The head's tensors (shared handles, as the rest of [`LmParams`]).
pub enum HeadParams {
    /// `head.weight` `[V, E or H]` (the embedding's tensor when tied),
    /// `head.bias` `[V]`, and the `projection.weight` `[E, H]` applied
    /// before them when the config is [`LmConfig::projected`].
    Linear {
        weight: Tensor,
        bias: Tensor,
        projection: Option<Tensor>,
    },
    Adaptive(AdaptiveHead),
}

impl HeadParams {
    /// The tensors in `state_dict` order (the projection first).
    pub fn tensors(&self) -> Vec<&Tensor> {
        match self {
            HeadParams::Linear {
                weight,
                bias,
                projection,
            } => projection.iter().chain([weight, bias]).collect(),
            HeadParams::Adaptive(a) => a.tensors(),
        }
    }

    /// The same head, borrowed.
    pub fn weights(&self) -> HeadWeights<'_> {
        match self {
            HeadParams::Linear {
                weight,
                bias,
                projection,
            } => HeadWeights::Linear {
                weight,
                bias: Some(bias),
                projection: projection.as_ref(),
            },
            HeadParams::Adaptive(a) => HeadWeights::Adaptive(a),
        }
    }

    /// The same head on fresh autograd leaves (training's), except a linear
    /// weight tied to the embedding, which is `tied`, the embedding's own leaf.
    pub fn leaves(
        &self,
        leaf: impl Fn(&Tensor) -> Result<Tensor>,
        tied: Option<&Tensor>,
    ) -> Result<HeadParams> {
        Ok(match self {
            HeadParams::Linear {
                weight,
                bias,
                projection,
            } => HeadParams::Linear {
                weight: match tied {
                    Some(t) => t.shallow_clone(),
                    None => leaf(weight)?,
                },
                bias: leaf(bias)?,
                projection: projection.as_ref().map(&leaf).transpose()?,
            },
            HeadParams::Adaptive(a) => HeadParams::Adaptive(a.try_map(leaf)?),
        })
    }
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
        let embedding = part("embedding.weight")?;
        let head = match &config.head {
            HeadConfig::Full => {
                let (weight, bias) = (part("head.weight")?, part("head.bias")?);
                if config.tie_weights && embedding.data_ptr() != weight.data_ptr() {
                    return Err(Error::shape(
                        "tie_weights is set but head.weight and embedding.weight are different \
                         tensors",
                    ));
                }
                let projection = match config.projected() {
                    true => Some(part("projection.weight")?),
                    false => None,
                };
                HeadParams::Linear {
                    weight,
                    bias,
                    projection,
                }
            }
            HeadConfig::Adaptive(a) => {
                let tensors = ordered
                    .iter()
                    .filter(|(name, _)| name.starts_with("head."))
                    .map(|(_, t)| t.shallow_clone())
                    .collect();
                HeadParams::Adaptive(AdaptiveHead::new(a, vocab_size, tensors)?)
            }
        };
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
            head,
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

    pub fn head(&self) -> &HeadParams {
        &self.head
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
            head: self.head.weights(),
        }
    }

    /// The distinct parameter tensors, named, in the order of
    /// `train::StepOutput::grads`: the embedding, the stack, the head's
    /// tensors (a linear weight tied to the embedding left out).
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
    pub head: HeadWeights<'a>,
}

/// The head, borrowed.
#[derive(Clone, Copy)]
pub enum HeadWeights<'a> {
    /// `weight` `[V, K]`, `bias` `[V]`, and `projection` `[K, H]` from the
    /// stack's output to the `K` columns of `weight` (tied weights of
    /// different widths; without it `K = H`).
    Linear {
        weight: &'a Tensor,
        bias: Option<&'a Tensor>,
        projection: Option<&'a Tensor>,
    },
    Adaptive(&'a AdaptiveHead),
}

impl<'a> HeadWeights<'a> {
    /// The tensors, named as in the model's `state_dict`.
    pub fn named(&self) -> Vec<(String, &'a Tensor)> {
        match *self {
            HeadWeights::Linear {
                weight,
                bias,
                projection,
            } => projection
                .map(|p| ("projection.weight", p))
                .into_iter()
                .chain(std::iter::once(("head.weight", weight)))
                .chain(bias.map(|b| ("head.bias", b)))
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
            HeadWeights::Adaptive(a) => a.names().into_iter().zip(a.tensors()).collect(),
        }
    }

    /// The stack's outputs `x` `[..., H]` as the head's own product reads
    /// them: through the projection when there is one (recorded by autograd
    /// like any op), else `x` itself.
    pub fn project(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match *self {
            HeadWeights::Linear {
                projection: Some(p),
                ..
            } => x.f_linear::<&Tensor>(p, None)?,
            _ => x.shallow_clone(),
        })
    }

    /// A linear head packed for the fused kernels, for passes of `rows` rows
    /// in all over weights that hold still meanwhile (a whole `score` or
    /// evaluation); `None` where that does not pay, or for an adaptive head.
    pub fn packed(&self, rows: i64) -> Result<Option<PackedHead>> {
        match *self {
            HeadWeights::Linear { weight, bias, .. } => PackedHead::new(weight, bias, rows),
            HeadWeights::Adaptive(_) => Ok(None),
        }
    }

    /// [`HeadWeights::project`] of `x` `[..., H]`, flattened to the head's
    /// rows `[N, W]`: what the fused heads take.
    pub fn rows(&self, x: &Tensor) -> Result<Tensor> {
        let projected = self.project(x)?;
        let width = projected.size().last().copied().unwrap_or(0);
        Ok(projected.f_reshape([-1, width])?)
    }
}

impl<'a> LmWeights<'a> {
    /// The linear head's weight and bias, for the paths that run only that
    /// head (the fused kernels); an error for an adaptive one.
    pub fn linear_head(&self) -> Result<(&'a Tensor, Option<&'a Tensor>)> {
        match self.head {
            HeadWeights::Linear {
                weight,
                bias,
                projection: None,
            } => Ok((weight, bias)),
            HeadWeights::Linear { .. } => Err(Error::value(
                "this path runs a linear head without a projection, and the model has one",
            )),
            HeadWeights::Adaptive(_) => Err(Error::value(
                "this path runs a linear head only, and the model's head is adaptive",
            )),
        }
    }
}

/// The config as JSON stores it: flat, the head's fields only for an
/// adaptive head (so a full-head config reads and writes the bytes it
/// always had).
mod stored {
    use serde::{Deserialize, Serialize};

    use super::{cell_name, AdaptiveConfig, HeadConfig, LmConfig, Mode};
    use crate::error::Error;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        embed_size: i64,
        hidden_size: i64,
        num_layers: i64,
        #[serde(with = "cell_name")]
        cell: Mode,
        dropout: f64,
        tie_weights: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cutoffs: Option<Vec<i64>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        div_value: Option<f64>,
    }

    impl TryFrom<Config> for LmConfig {
        type Error = Error;

        fn try_from(c: Config) -> Result<LmConfig, Error> {
            let head = c.head.as_deref().unwrap_or("full");
            Ok(LmConfig {
                embed_size: c.embed_size,
                hidden_size: c.hidden_size,
                num_layers: c.num_layers,
                cell: c.cell,
                dropout: c.dropout,
                tie_weights: c.tie_weights,
                head: HeadConfig::new(head, c.cutoffs, c.div_value)?,
            })
        }
    }

    impl From<LmConfig> for Config {
        fn from(c: LmConfig) -> Config {
            let (head, cutoffs, div_value) = match c.head {
                HeadConfig::Full => (None, None, None),
                HeadConfig::Adaptive(AdaptiveConfig { cutoffs, div_value }) => {
                    (Some("adaptive".to_string()), Some(cutoffs), Some(div_value))
                }
            };
            Config {
                embed_size: c.embed_size,
                hidden_size: c.hidden_size,
                num_layers: c.num_layers,
                cell: c.cell,
                dropout: c.dropout,
                tie_weights: c.tie_weights,
                head,
                cutoffs,
                div_value,
            }
        }
    }
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
            assert_eq!(cfg.head, HeadConfig::Full);
            assert_eq!(cfg.to_json(), json);
            assert_eq!(LmConfig::parse_cell(name).unwrap(), mode);
            let torch_name = json.replace(name, mode.name());
            let err = LmConfig::from_json(&torch_name).unwrap_err();
            assert!(matches!(err, Error::Value(_)));
            assert!(err.to_string().contains("cell must be one of"), "{err}");
        }
    }

    /// The head's fields: written for an adaptive head only, read back to the
    /// same config; a full head's JSON has none (every checkpoint written
    /// before them reads as it did), and the rules hold on reading.
    #[test]
    fn the_head_in_json() {
        let old = r#"{"embed_size":4,"hidden_size":8,"num_layers":1,"cell":"gru","dropout":0.0,"tie_weights":false}"#;
        let mut cfg = LmConfig::from_json(old).unwrap();
        assert_eq!(cfg.head, HeadConfig::Full);
        assert_eq!(cfg.to_json(), old);
        cfg.head = HeadConfig::Adaptive(AdaptiveConfig::new(vec![2, 5], 2.0).unwrap());
        let json = cfg.to_json();
        assert_eq!(
            json,
            old.replace(
                "false}",
                r#"false,"head":"adaptive","cutoffs":[2,5],"div_value":2.0}"#
            )
        );
        assert_eq!(LmConfig::from_json(&json).unwrap(), cfg);
        let specs = cfg.param_specs(9).unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names[names.len() - 5..],
            [
                "head.head.weight",
                "head.tail.0.0.weight",
                "head.tail.0.1.weight",
                "head.tail.1.0.weight",
                "head.tail.1.1.weight"
            ]
        );
        let shapes: Vec<_> = specs[specs.len() - 5..]
            .iter()
            .map(|s| s.shape.clone())
            .collect();
        assert_eq!(
            shapes,
            [vec![4, 8], vec![4, 8], vec![3, 4], vec![2, 8], vec![4, 2]]
        );
        assert_eq!(cfg.num_tensors().unwrap(), specs.len());
        assert!(cfg.param_specs(5).is_err(), "cutoff 5 needs 6 tokens");
        for (bad, why) in [
            (json.replace("[2,5]", "[5,2]"), "cutoffs should be"),
            (
                json.replace(r#""adaptive""#, r#""Adaptive""#),
                "head must be",
            ),
            (json.replace(r#","cutoffs":[2,5]"#, ""), "needs its cutoffs"),
            (
                old.replace("false}", r#"false,"cutoffs":[2]}"#),
                "cutoffs are for",
            ),
            (
                json.replace(r#""tie_weights":false"#, r#""tie_weights":true"#),
                "tie_weights needs head='full'",
            ),
        ] {
            let err = LmConfig::from_json(&bad).unwrap_err();
            assert!(
                matches!(err, Error::Value(_)) && err.to_string().contains(why),
                "{bad}: {err}"
            );
        }
    }

    /// Tied weights of different widths put `projection.weight` `[E, H]`
    /// between the stack and the head, whose matrix is then `[V, E]`; of
    /// equal widths (and untied) the tensors are the ones they always were.
    #[test]
    fn tied_weights_of_different_widths_are_projected() {
        let json = |e: i64, tie: bool| {
            format!(
                r#"{{"embed_size":{e},"hidden_size":8,"num_layers":1,"cell":"gru","dropout":0.0,"tie_weights":{tie}}}"#
            )
        };
        let tail = |cfg: &LmConfig| {
            let specs = cfg.param_specs(9).unwrap();
            assert_eq!(cfg.num_tensors().unwrap(), specs.len());
            specs[1 + 4..]
                .iter()
                .map(|s| (s.name.clone(), s.shape.clone()))
                .collect::<Vec<_>>()
        };
        let projected = LmConfig::from_json(&json(4, true)).unwrap();
        assert!(projected.projected());
        assert_eq!(projected.to_json(), json(4, true));
        assert_eq!(
            tail(&projected),
            [
                ("projection.weight".to_string(), vec![4, 8]),
                ("head.weight".to_string(), vec![9, 4]),
                ("head.bias".to_string(), vec![9]),
            ]
        );
        for (e, tie) in [(8, true), (4, false)] {
            let cfg = LmConfig::from_json(&json(e, tie)).unwrap();
            assert!(!cfg.projected());
            assert_eq!(
                tail(&cfg),
                [
                    ("head.weight".to_string(), vec![9, 8]),
                    ("head.bias".to_string(), vec![9]),
                ]
            );
        }
    }
}
