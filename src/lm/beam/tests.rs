//! The fused beam search (float32) against the libtorch-op path on the same
//! model in float64, whose candidates are then never near enough to a tie
//! for float32's rounding to reorder them: the same hypotheses, in the same
//! order, with log-probabilities equal to float32's accuracy.

use tch::{Device, Kind, Tensor};

use super::{beam_search, BeamOptions, Hypothesis};
use crate::error::Error;
use crate::lm::{fused, GenerateOptions, HeadWeights, LmWeights, Stop};
use crate::rnn::{Mode, RnnConfig};

struct Model {
    cfg: RnnConfig,
    stack: Vec<Tensor>,
    embedding: Tensor,
    head_w: Tensor,
    head_b: Tensor,
}

impl Model {
    /// Pseudo-random float32 weights from `seed` (not from torch's generator,
    /// which tests running in parallel share); the float64 twin is cast from
    /// them.
    fn new(mode: Mode, vocab: i64, seed: i64) -> Self {
        let (embed, hidden) = (7, 40);
        let cfg = RnnConfig::new(mode, embed, hidden, 2).unwrap();
        let mut drawn = 0;
        // Uniform in [-0.8, 0.8): wide enough that the distributions are not flat.
        let mut rand = |shape: &[i64]| {
            let n: i64 = shape.iter().product();
            let i = Tensor::arange(n, (Kind::Double, Device::Cpu)) + drawn;
            drawn += n;
            let hash = ((i * 12.9898 + seed as f64 * 78.233).sin() * 43758.5453).frac();
            ((hash.abs() - 0.5) * 1.6)
                .reshape(shape)
                .to_kind(Kind::Float)
        };
        let stack = cfg.param_specs().iter().map(|p| rand(&p.shape)).collect();
        Model {
            stack,
            embedding: rand(&[vocab, embed]),
            head_w: rand(&[vocab, hidden]) * 3,
            head_b: rand(&[vocab]),
            cfg,
        }
    }

    fn to_kind(&self, kind: Kind) -> Self {
        Model {
            cfg: self.cfg.clone(),
            stack: self.stack.iter().map(|t| t.to_kind(kind)).collect(),
            embedding: self.embedding.to_kind(kind),
            head_w: self.head_w.to_kind(kind),
            head_b: self.head_b.to_kind(kind),
        }
    }

    fn weights(&self) -> LmWeights<'_> {
        LmWeights {
            embedding: &self.embedding,
            stack: &self.stack,
            head: HeadWeights::Linear {
                weight: &self.head_w,
                bias: Some(&self.head_b),
                projection: None,
            },
        }
    }

    fn search(
        &self,
        max_tokens: i64,
        stops: &[i64],
        opts: &BeamOptions,
    ) -> crate::error::Result<Vec<Hypothesis>> {
        let gen = GenerateOptions {
            max_tokens,
            num_samples: 1,
            stop: Stop::new(stops.to_vec(), Vec::new(), None).unwrap(),
        };
        let prompt = Tensor::from_slice(&[1i64, 4, 2]);
        beam_search(&self.cfg, &self.weights(), &prompt, &gen, opts, || false)
    }
}

fn assert_same(fused: &[Hypothesis], reference: &[Hypothesis], what: &str) {
    let ids = |h: &[Hypothesis]| h.iter().map(|h| h.ids.clone()).collect::<Vec<_>>();
    assert_eq!(ids(fused), ids(reference), "{what}");
    for (f, r) in fused.iter().zip(reference) {
        assert!(
            (f.log_prob - r.log_prob).abs() < 1e-4 && (f.score - r.score).abs() < 1e-4,
            "{what}: {f:?} vs {r:?}"
        );
    }
}

#[test]
fn fused_beam_search_matches_the_libtorch_path() {
    let mut ended_by_stop = 0;
    for (seed, mode) in [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu]
        .into_iter()
        .enumerate()
    {
        let single = Model::new(mode, 30, seed as i64);
        let double = single.to_kind(Kind::Double);
        assert!(fused::supports(&single.cfg, &single.weights()));
        assert!(!fused::supports(&double.cfg, &double.weights()));
        for stops in [vec![], vec![3i64, 7]] {
            for length_penalty in [0.0, 1.0, 2.0] {
                for early_stopping in [false, true] {
                    let opts = BeamOptions {
                        num_beams: 4,
                        length_penalty,
                        early_stopping,
                        num_return: 3,
                    };
                    let what = format!("{mode:?} stops {stops:?} {opts:?}");
                    let fused = single.search(12, &stops, &opts).unwrap();
                    let reference = double.search(12, &stops, &opts).unwrap();
                    assert_eq!(reference.len(), 3, "{what}");
                    assert_same(&fused, &reference, &what);
                    ended_by_stop += reference
                        .iter()
                        .filter(|h| h.ids.last().is_some_and(|t| stops.contains(t)))
                        .count();
                }
            }
        }
    }
    assert!(ended_by_stop > 0, "no hypothesis ended at a stop id");
}

/// One beam, more beams than the vocabulary can branch into (every
/// continuation of 3 tokens kept), nothing to generate, and a stop id that
/// is every step's best token.
#[test]
fn fused_beam_search_matches_the_libtorch_path_at_the_edges() {
    let single = Model::new(Mode::Lstm, 5, 7);
    let double = single.to_kind(Kind::Double);
    let cases = [(1, 1, 10, vec![]), (200, 100, 3, vec![]), (3, 2, 0, vec![])];
    for (num_beams, num_return, max_tokens, stops) in cases {
        let opts = BeamOptions {
            num_beams,
            length_penalty: 1.0,
            early_stopping: false,
            num_return,
        };
        let what = format!("{opts:?} max_tokens {max_tokens}");
        let fused = single.search(max_tokens, &stops, &opts).unwrap();
        let reference = double.search(max_tokens, &stops, &opts).unwrap();
        assert_same(&fused, &reference, &what);
    }
    let opts = BeamOptions {
        num_beams: 3,
        length_penalty: 1.0,
        early_stopping: false,
        num_return: 3,
    };
    // A head that draws fewer tokens than the embedding has (the prompt
    // holds token 4, which only the embedding knows).
    let mut narrow = single.to_kind(Kind::Float);
    narrow.head_w = single.head_w.narrow(0, 0, 4);
    narrow.head_b = single.head_b.narrow(0, 0, 4);
    assert_same(
        &narrow.search(6, &[], &opts).unwrap(),
        &narrow.to_kind(Kind::Double).search(6, &[], &opts).unwrap(),
        "narrow head",
    );
    let first = double.search(1, &[], &opts).unwrap()[0].ids[0];
    let fused = single.search(8, &[first], &opts).unwrap();
    assert_same(&fused, &double.search(8, &[first], &opts).unwrap(), "stop");
    assert!(fused.iter().any(|h| h.ids == [first]));
}

/// Logits that are not finite end the search in both paths alike, and an
/// interrupt ends it with `Interrupted`.
#[test]
fn fused_beam_search_stops_as_the_libtorch_path_does() {
    let opts = BeamOptions {
        num_beams: 4,
        length_penalty: 1.0,
        early_stopping: false,
        num_return: 2,
    };
    let model = Model::new(Mode::Gru, 30, 3);
    let mut results = Vec::new();
    for kind in [Kind::Float, Kind::Double] {
        let mut m = model.to_kind(kind);
        m.head_w = m.head_w.copy(); // to_kind(Float) of a float32 tensor is that tensor
        let _ = m.head_w.get(5).fill_(f64::NAN);
        results.push(m.search(6, &[], &opts).unwrap());
        m.head_w = model.head_w.to_kind(kind);
        let calls = std::cell::Cell::new(0);
        let gen = GenerateOptions {
            max_tokens: 20,
            num_samples: 1,
            stop: Stop::none(),
        };
        let prompt = Tensor::from_slice(&[1i64]);
        let err = beam_search(&m.cfg, &m.weights(), &prompt, &gen, &opts, || {
            calls.set(calls.get() + 1);
            calls.get() > 3
        });
        assert!(matches!(err, Err(Error::Interrupted)), "{kind:?}");
        assert_eq!(calls.get(), 4, "{kind:?}");
    }
    assert_same(&results[0], &results[1], "nan logits");
}
