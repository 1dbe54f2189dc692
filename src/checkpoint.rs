//! The checkpoint file: one `.safetensors` file per model, no pickle.
//!
//! The tensors are stored under exactly the names of the Python module's
//! `state_dict` (`embedding.weight`, `rnn.weight_ih_l0`, ..., `head.weight`,
//! `head.bias`), so `safetensors.torch.load_file(path)` loads a model file into
//! a plain-torch model built from `nn.Embedding`, `nn.LSTM` and `nn.Linear`
//! (`nn.AdaptiveLogSoftmaxWithLoss` for an adaptive head: `head.head.weight`,
//! `head.tail.0.0.weight`, ...).
//! Everything else lives as strings in the safetensors `__metadata__` header:
//!
//! | key        | value                                                            |
//! |------------|------------------------------------------------------------------|
//! | `format`   | `"rustrnn.checkpoint"`                                           |
//! | `version`  | `"1"`                                                            |
//! | `kind`     | `"model"`, or `"training"` for a training checkpoint             |
//! | `dtype`    | the parameters' dtype (`"float32"`, `"float64"`, ...)             |
//! | `config`   | JSON of [`LmConfig`] (`LanguageModel.config`)                    |
//! | `vocab`    | the vocabulary's own versioned JSON document                     |
//! | `training` | training checkpoints only: the trainer's JSON state              |
//!
//! A training checkpoint adds tensors whose names start with `optimizer.`,
//! `rng.` or `state.`; the trainer (`crate::train`) gives them meaning.
//!
//! Writes are atomic (a temporary file in the same directory, fsynced, then
//! renamed), and reads validate everything before anything is used: a file that
//! is empty, truncated, foreign, or whose tensors do not match its own config
//! is a `Format` error (Python `ValueError`) naming the file and the problem.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};
use tch::{Device, Kind, Tensor};

use crate::dtype::{bare_dtype_name, parse_param_dtype};
use crate::error::{Error, Result};
use crate::lm::LmConfig;
use crate::rnn::config::ParamSpec;
use crate::vocab::Vocab;

pub const FORMAT: &str = "rustrnn.checkpoint";
pub const VERSION: u64 = 1;

/// Name prefixes a training checkpoint may add to the model's tensors.
pub const TRAINING_PREFIXES: [&str; 3] = ["optimizer.", "rng.", "state."];

/// Whether a file holds a model only or a training run's state as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Model,
    Training,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Model => "model",
            FileKind::Training => "training",
        }
    }
}

/// The contents of a checkpoint file.
pub struct Checkpoint {
    pub kind: FileKind,
    pub config: LmConfig,
    pub vocab: Vocab,
    /// The model's tensors, in `state_dict` order (see [`LmConfig::param_specs`]).
    pub params: Vec<(String, Tensor)>,
    /// Training checkpoints: the tensors named `optimizer.*`, `rng.*`, `state.*`.
    pub extra: BTreeMap<String, Tensor>,
    /// Training checkpoints: the trainer's JSON state.
    pub training: Option<String>,
}

impl Checkpoint {
    /// A model file's contents: the config, the vocabulary and the tensors by
    /// name (in `state_dict` order).
    pub fn model(config: LmConfig, vocab: Vocab, params: Vec<(String, Tensor)>) -> Checkpoint {
        Checkpoint {
            kind: FileKind::Model,
            config,
            vocab,
            params,
            extra: BTreeMap::new(),
            training: None,
        }
    }

    /// The dtype of the model's tensors (that of `embedding.weight`).
    pub fn dtype(&self) -> Result<Kind> {
        let (_, first) = self
            .params
            .first()
            .ok_or_else(|| Error::value("a checkpoint needs the model's tensors"))?;
        Ok(first.f_kind()?)
    }

    /// Writes the file atomically: a temporary file in `path`'s directory is
    /// written, flushed and fsynced, then renamed over `path`, so a failed or
    /// interrupted write leaves any previous file at `path` intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::atomic::write(path, |f| f.write_all(&bytes))
    }

    /// The file's bytes (see the module documentation for the layout).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let dtype = self.dtype()?;
        if parse_param_dtype(bare_dtype_name(dtype)).is_none() {
            return Err(Error::value(format!(
                "model parameters must be floating point, got {dtype:?}"
            )));
        }
        let specs =
            self.config
                .param_specs_for(self.vocab.len() as i64, self.params.len(), false)?;
        check_params(&specs, &self.params, dtype, self.config.tie_weights)?;
        if self.kind == FileKind::Model && !self.extra.is_empty() {
            return Err(Error::value(
                "a model checkpoint holds only the model's tensors",
            ));
        }
        for name in self.extra.keys() {
            check_extra_name(name)?;
        }
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("version".to_string(), VERSION.to_string());
        meta.insert("kind".to_string(), self.kind.name().to_string());
        meta.insert("dtype".to_string(), bare_dtype_name(dtype).to_string());
        meta.insert("config".to_string(), self.config.to_json());
        meta.insert("vocab".to_string(), self.vocab.to_json());
        if let Some(t) = &self.training {
            meta.insert("training".to_string(), t.clone());
        }
        let mut views = Vec::with_capacity(self.params.len() + self.extra.len());
        for (name, t) in self
            .params
            .iter()
            .map(|(n, t)| (n.as_str(), t))
            .chain(self.extra.iter().map(|(n, t)| (n.as_str(), t)))
        {
            views.push((name.to_string(), Bytes::of(t)?));
        }
        safetensors::tensor::serialize(views, &Some(meta))
            .map_err(|e| Error::value(format!("cannot serialize the checkpoint: {e:?}")))
    }

    /// Reads and validates a file written by [`Checkpoint::save`]. A missing or
    /// unreadable file is an `Io` error; anything wrong with its contents is a
    /// `Format` error naming the file and the problem.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = crate::fs::read_regular(path)?;
        Checkpoint::from_bytes(&bytes).map_err(|e| match e {
            Error::Value(msg) | Error::Shape(msg) => Error::format(path, msg),
            Error::Torch(e) => Error::format(path, e.to_string()),
            other => other,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        if bytes.is_empty() {
            return Err(Error::value("empty file, not a rustrnn checkpoint"));
        }
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(describe)?;
        let st = SafeTensors::deserialize(bytes).map_err(describe)?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(Error::value(format!(
                    "not a rustrnn checkpoint: its \"format\" is {f:?}, expected \"{FORMAT}\""
                )))
            }
            None => {
                return Err(Error::value(format!(
                    "not a rustrnn checkpoint: a safetensors file without \"format\": \
                     \"{FORMAT}\" in its metadata"
                )))
            }
        }
        let field = |key: &str| {
            meta.get(key)
                .ok_or_else(|| Error::value(format!("the metadata has no \"{key}\" field")))
        };
        let version = field("version")?;
        if version.parse::<u64>().ok() != Some(VERSION) {
            return Err(Error::value(format!(
                "unsupported checkpoint version {version:?} (this rustrnn reads version {VERSION})"
            )));
        }
        let kind = match field("kind")?.as_str() {
            "model" => FileKind::Model,
            "training" => FileKind::Training,
            other => {
                return Err(Error::value(format!(
                    "unknown checkpoint kind {other:?}, expected \"model\" or \"training\""
                )))
            }
        };
        let dtype_name = field("dtype")?;
        let dtype = parse_param_dtype(dtype_name).ok_or_else(|| {
            Error::value(format!(
                "unsupported dtype {dtype_name:?} (expected float16, bfloat16, float32 or float64)"
            ))
        })?;
        let config = LmConfig::from_json(field("config")?)?;
        let vocab = Vocab::from_json(field("vocab")?.as_bytes())
            .map_err(|e| Error::value(format!("invalid vocabulary: {e}")))?;
        let training = meta.get("training").cloned();
        if (kind == FileKind::Training) != training.is_some() {
            return Err(Error::value(
                "a training checkpoint, and only one, has a \"training\" field",
            ));
        }

        // What the header promises is bounded by what the file holds: the
        // tensor count first, then every shape and dtype before any tensor is made.
        let vocab_size =
            i64::try_from(vocab.len()).map_err(|_| Error::value("the vocabulary is too large"))?;
        let need = config.num_tensors()?;
        if need > st.len() {
            return Err(first_missing(&config, vocab_size, &st, need));
        }
        let specs = config.param_specs(vocab_size)?;
        let by_name: HashMap<&str, &ParamSpec> =
            specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let want_dtype = Dtype::try_from(dtype)?;
        let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
        for (name, view) in st.tensors() {
            match by_name.get(name.as_str()) {
                Some(spec) => {
                    let fits = view.shape().len() == spec.shape.len()
                        && view
                            .shape()
                            .iter()
                            .zip(&spec.shape)
                            .all(|(&have, &want)| i64::try_from(have).ok() == Some(want));
                    if !fits {
                        return Err(Error::value(format!(
                            "tensor '{name}' has shape {:?}, but the config needs {:?}",
                            view.shape(),
                            spec.shape
                        )));
                    }
                    if view.dtype() != want_dtype {
                        return Err(Error::value(format!(
                            "tensor '{name}' has dtype {}, but the model's dtype is {}",
                            safetensors_dtype_name(view.dtype()),
                            bare_dtype_name(dtype)
                        )));
                    }
                }
                None if kind == FileKind::Model => {
                    return Err(Error::value(format!(
                        "unexpected tensor '{name}': not a parameter of this model"
                    )));
                }
                None => check_extra_name(&name)?,
            }
            let t = Tensor::try_from(view)
                .map_err(|e| Error::value(format!("tensor '{name}': {e}")))?;
            tensors.insert(name, t);
        }
        let mut params = Vec::with_capacity(specs.len());
        for spec in &specs {
            let t = tensors
                .remove(&spec.name)
                .ok_or_else(|| Error::value(format!("missing tensor '{}'", spec.name)))?;
            params.push((spec.name.clone(), t));
        }
        check_params(&specs, &params, dtype, config.tie_weights)?;
        Ok(Checkpoint {
            kind,
            config,
            vocab,
            params,
            extra: tensors,
            training,
        })
    }

    /// A tensor of a training checkpoint.
    pub fn extra(&self, name: &str) -> Result<&Tensor> {
        self.extra
            .get(name)
            .ok_or_else(|| Error::value(format!("missing tensor '{name}'")))
    }
}

/// A file holding fewer tensors than its config needs: the first one missing,
/// found among specs of at most one layer more than the file could hold (the
/// prefix of the full list), so a header claiming a billion layers costs no
/// more than the file's own tensors.
fn first_missing(config: &LmConfig, vocab_size: i64, st: &SafeTensors<'_>, need: usize) -> Error {
    let have = st.len();
    let names: std::collections::HashSet<&str> =
        st.names().into_iter().map(|n| n.as_str()).collect();
    let generic = || {
        Error::value(format!(
            "the config (num_layers={}) needs {need} model tensors, but the file holds {have}",
            config.num_layers
        ))
    };
    let Ok(rnn) = config.rnn_config() else {
        return generic();
    };
    let per_layer = rnn.params_per_direction() * usize::try_from(rnn.num_directions()).unwrap_or(1);
    let cap = i64::try_from(have / per_layer.max(1) + 1).unwrap_or(i64::MAX);
    let capped = LmConfig {
        num_layers: config.num_layers.min(cap),
        ..config.clone()
    };
    let Ok(specs) = capped.param_specs(vocab_size) else {
        return generic();
    };
    // In state_dict order: a missing layer's tensor is named before the head's.
    match specs.iter().find(|s| !names.contains(s.name.as_str())) {
        Some(s) => Error::value(format!(
            "missing tensor '{}' (the config, with num_layers={}, needs {need} model tensors; \
             the file holds {have} tensors in all)",
            s.name, config.num_layers
        )),
        None => generic(),
    }
}

/// torch's name of a safetensors dtype.
fn safetensors_dtype_name(d: Dtype) -> String {
    match d {
        Dtype::F16 => "float16".to_string(),
        Dtype::BF16 => "bfloat16".to_string(),
        Dtype::F32 => "float32".to_string(),
        Dtype::F64 => "float64".to_string(),
        Dtype::I64 => "int64".to_string(),
        Dtype::U8 => "uint8".to_string(),
        other => format!("{other:?}"),
    }
}

fn check_extra_name(name: &str) -> Result<()> {
    if TRAINING_PREFIXES.iter().any(|p| name.starts_with(p)) {
        Ok(())
    } else {
        Err(Error::value(format!(
            "unexpected tensor '{name}': neither a parameter of this model nor training state"
        )))
    }
}

/// The model's tensors against the config: names in order, shapes, one dtype,
/// and the tied matrices equal.
fn check_params(
    specs: &[ParamSpec],
    params: &[(String, Tensor)],
    dtype: Kind,
    tied: bool,
) -> Result<()> {
    if params.len() != specs.len() {
        return Err(Error::value(format!(
            "expected {} model tensors, got {}",
            specs.len(),
            params.len()
        )));
    }
    for (spec, (name, t)) in specs.iter().zip(params) {
        if *name != spec.name {
            return Err(Error::value(format!(
                "expected tensor '{}', got '{name}'",
                spec.name
            )));
        }
        if t.size() != spec.shape {
            return Err(Error::value(format!(
                "tensor '{name}' has shape {:?}, but the config needs {:?}",
                t.size(),
                spec.shape
            )));
        }
        let k = t.f_kind()?;
        if k != dtype {
            return Err(Error::value(format!(
                "tensor '{name}' has dtype {}, but the model's dtype is {}",
                bare_dtype_name(k),
                bare_dtype_name(dtype)
            )));
        }
    }
    if tied {
        let find = |n: &str| params.iter().find(|(name, _)| name == n).map(|(_, t)| t);
        if let (Some(e), Some(h)) = (find("embedding.weight"), find("head.weight")) {
            if !e.f_equal(&h.f_to_device(e.device())?)? {
                return Err(Error::value(
                    "tie_weights is set but 'head.weight' differs from 'embedding.weight'",
                ));
            }
        }
    }
    Ok(())
}

fn describe(e: SafeTensorError) -> Error {
    Error::value(match e {
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => {
            "truncated file or not a safetensors file (its header length does not fit the file)"
                .to_string()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "truncated file: the tensor data does not match the header (an interrupted write?)"
                .to_string()
        }
        SafeTensorError::HeaderTooLarge => {
            "not a safetensors file (its first 8 bytes are not a plausible header length)"
                .to_string()
        }
        SafeTensorError::InvalidHeader
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization => {
            "not a safetensors file (its header is not a JSON object)".to_string()
        }
        other => format!("corrupt safetensors file ({other:?})"),
    })
}

/// A tensor's bytes in the safetensors layout (C order, little-endian).
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Bytes {
    fn of(t: &Tensor) -> Result<Bytes> {
        let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let kind = t.f_kind()?;
        let dtype = Dtype::try_from(kind)?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)?;
        Ok(Bytes {
            dtype,
            shape: t.size().iter().map(|&d| d as usize).collect(),
            data,
        })
    }
}

impl View for Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rnn::Mode;
    use crate::vocab::{BuildOptions, Level};
    use std::fs;

    fn tiny(tie: bool) -> Checkpoint {
        let vocab = Vocab::build(
            "abcab",
            Level::Char,
            &BuildOptions {
                min_freq: 1,
                max_size: None,
                lower: false,
                specials: vec![],
            },
        )
        .unwrap();
        let config = LmConfig {
            embed_size: 4,
            hidden_size: 4,
            num_layers: 2,
            cell: Mode::Gru,
            dropout: 0.1,
            tie_weights: tie,
            head: crate::lm::HeadConfig::Full,
        };
        let specs = config.param_specs(vocab.len() as i64).unwrap();
        let emb = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        let params = specs
            .iter()
            .map(|s| {
                let t = if tie && (s.name == "head.weight" || s.name == "embedding.weight") {
                    emb.shallow_clone()
                } else {
                    Tensor::randn(s.shape.as_slice(), (Kind::Float, Device::Cpu))
                };
                (s.name.clone(), t)
            })
            .collect();
        Checkpoint::model(config, vocab, params)
    }

    fn value_err(r: Result<Checkpoint>) -> String {
        match r {
            Err(Error::Value(m)) => m,
            Err(e) => panic!("expected a Value error, got {e:?}"),
            Ok(_) => panic!("expected a Value error, got a checkpoint"),
        }
    }

    #[test]
    fn round_trip_is_exact() {
        for tie in [false, true] {
            let c = tiny(tie);
            let back = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap();
            assert_eq!(back.config, c.config);
            assert_eq!(back.vocab, c.vocab);
            assert_eq!(back.kind, FileKind::Model);
            for ((n1, t1), (n2, t2)) in c.params.iter().zip(&back.params) {
                assert_eq!(n1, n2);
                assert!(t1.equal(t2), "{n1}");
            }
        }
    }

    /// A full-head config is stored as it was before heads had fields (so
    /// the file's bytes are too); an adaptive head's tensors and fields read
    /// back exactly, and a file lacking one of them is refused by name.
    #[test]
    fn heads_in_files() {
        let c = tiny(false);
        let bytes = c.to_bytes().unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            header.metadata().as_ref().unwrap()["config"],
            r#"{"embed_size":4,"hidden_size":4,"num_layers":2,"cell":"gru","dropout":0.1,"tie_weights":false}"#
        );

        let mut config = c.config.clone();
        config.head = crate::lm::HeadConfig::Adaptive(
            crate::lm::adaptive::AdaptiveConfig::new(vec![1, 2], 2.0).unwrap(),
        );
        let params: Vec<(String, Tensor)> = config
            .param_specs(3)
            .unwrap()
            .into_iter()
            .map(|s| {
                let t = Tensor::randn(s.shape.as_slice(), (Kind::Float, Device::Cpu));
                (s.name, t)
            })
            .collect();
        assert_eq!(params.last().unwrap().0, "head.tail.1.1.weight");
        let a = Checkpoint::model(config.clone(), c.vocab.clone(), params);
        let bytes = a.to_bytes().unwrap();
        let back = Checkpoint::from_bytes(&bytes).unwrap();
        assert_eq!(back.config, config);
        for ((n1, t1), (n2, t2)) in a.params.iter().zip(&back.params) {
            assert_eq!(n1, n2);
            assert!(t1.equal(t2), "{n1}");
        }
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let views: Vec<(String, Bytes)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != "head.tail.0.1.weight")
            .map(|(n, v)| (n, Bytes::of(&Tensor::try_from(v).unwrap()).unwrap()))
            .collect();
        let short = safetensors::tensor::serialize(views, header.metadata()).unwrap();
        let m = value_err(Checkpoint::from_bytes(&short));
        assert!(m.contains("missing tensor 'head.tail.0.1.weight'"), "{m}");
    }

    #[test]
    fn rejects_what_is_not_ours() {
        let c = tiny(false);
        let bytes = c.to_bytes().unwrap();
        assert!(value_err(Checkpoint::from_bytes(&[])).contains("empty"));
        assert!(value_err(Checkpoint::from_bytes(&bytes[..bytes.len() - 3])).contains("truncated"));
        assert!(
            value_err(Checkpoint::from_bytes(b"hello world, not a file")).contains("safetensors")
        );
        // A valid safetensors file without our format key.
        let foreign = safetensors::tensor::serialize(
            vec![(
                "x".to_string(),
                Bytes::of(&Tensor::ones([2], (Kind::Float, Device::Cpu))).unwrap(),
            )],
            &None,
        )
        .unwrap();
        assert!(value_err(Checkpoint::from_bytes(&foreign)).contains("not a rustrnn checkpoint"));
    }

    #[test]
    fn rejects_tensors_that_do_not_fit_the_config() {
        let mut c = tiny(false);
        c.params[1].1 = Tensor::zeros([1, 1], (Kind::Float, Device::Cpu));
        assert!(matches!(c.to_bytes(), Err(Error::Value(m)) if m.contains("shape")));
        let mut c = tiny(false);
        c.params[2].1 = c.params[2].1.to_kind(Kind::Double);
        assert!(matches!(c.to_bytes(), Err(Error::Value(m)) if m.contains("dtype")));
        let mut c = tiny(true);
        c.params.last_mut().unwrap().1 = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        c.params
            .iter_mut()
            .find(|(n, _)| n == "head.weight")
            .unwrap()
            .1 = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        assert!(matches!(c.to_bytes(), Err(Error::Value(m)) if m.contains("tie_weights")));
    }

    #[test]
    fn a_header_claiming_a_billion_layers_is_bounded_by_the_file() {
        let mut c = tiny(false);
        c.config.num_layers = 100_000;
        assert_eq!(c.config.num_tensors().unwrap(), 400_003);
        let mut good = tiny(false);
        good.config.num_layers = 2;
        let bytes = good.to_bytes().unwrap();
        // Rewrite the config in the header to claim a billion layers.
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        meta.insert("config".to_string(), c.config.to_json());
        let views: Vec<(String, Bytes)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                let t = Tensor::try_from(v).unwrap();
                (n, Bytes::of(&t).unwrap())
            })
            .collect();
        let bad = safetensors::tensor::serialize(views, &Some(meta)).unwrap();
        let m = value_err(Checkpoint::from_bytes(&bad));
        assert!(m.contains("missing tensor 'rnn.weight_ih_l2'"), "{m}");
        assert!(m.contains("num_layers=100000,"), "{m}");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = std::env::temp_dir().join(format!("rustrnn-ckpt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.safetensors");
        let c = tiny(false);
        c.save(&path).unwrap();
        let bytes = c.to_bytes().unwrap();
        let err = crate::atomic::write(&path, |f| {
            f.write_all(&bytes[..bytes.len() / 2])?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(matches!(err, Err(Error::Io { .. })));
        let back = Checkpoint::load(&path).unwrap();
        assert!(back.params[0].1.equal(&c.params[0].1));
        let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "the temporary file must be removed");
        fs::remove_dir_all(&dir).unwrap();
    }
}
