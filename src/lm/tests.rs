//! The fused float32 generation against the libtorch-op path (float64) for
//! every recurrence, greedy and sampled from the same uniforms.

use tch::{Device, Kind, Tensor};

use super::{
    generate, generate_sampled, GenerateOptions, HeadWeights, LmWeights, Pregenerated, Stop,
};
use crate::rnn::{Mode, RnnConfig};
use crate::sampler::{sample_logits, SampleOptions};

const ROWS: i64 = 5;
const STEPS: i64 = 20;

/// A model's float32 weights and the uniforms, drawn once for both paths:
/// tests run in parallel and share torch's generator, so two draws from one
/// seed need not agree.
struct Drawn {
    cfg: RnnConfig,
    stack: Vec<Tensor>,
    embedding: Tensor,
    head_w: Tensor,
    head_b: Tensor,
    table: Tensor,
}

fn draw(mode: Mode) -> Drawn {
    tch::manual_seed(11);
    let (vocab, embed, hidden) = (30, 7, 40);
    let cfg = RnnConfig::new(mode, embed, hidden, 2).unwrap();
    let rand = |shape: &[i64]| Tensor::rand(shape, (Kind::Float, Device::Cpu)) - 0.5;
    Drawn {
        stack: cfg.param_specs().iter().map(|p| rand(&p.shape)).collect(),
        embedding: rand(&[vocab, embed]),
        head_w: rand(&[vocab, hidden]),
        head_b: rand(&[vocab]),
        table: Tensor::rand([STEPS, ROWS], (Kind::Double, Device::Cpu)),
        cfg,
    }
}

fn run(d: &Drawn, kind: Kind, sample: SampleOptions, fused: bool) -> Vec<i64> {
    let (cfg, rows, steps) = (&d.cfg, ROWS, STEPS);
    let stack: Vec<Tensor> = d.stack.iter().map(|t| t.to_kind(kind)).collect();
    let (embedding, head_w, head_b) = (
        d.embedding.to_kind(kind),
        d.head_w.to_kind(kind),
        d.head_b.to_kind(kind),
    );
    let w = LmWeights {
        embedding: &embedding,
        stack: &stack,
        head: HeadWeights::Linear {
            weight: &head_w,
            bias: Some(&head_b),
            projection: None,
        },
    };
    let prompt = Tensor::from_slice(&[1i64, 4, 2]);
    let opts = GenerateOptions {
        max_tokens: steps,
        num_samples: rows,
        stop: Stop::none(),
    };
    let mut rng = Pregenerated::new(d.table.shallow_clone());
    let out = if fused {
        generate_sampled(cfg, &w, &prompt, &opts, &sample, &mut rng, || false)
    } else {
        generate(
            cfg,
            &w,
            &prompt,
            &opts,
            |l, _| sample_logits(l, &sample, &mut rng),
            || false,
        )
    };
    Vec::<i64>::try_from(out.unwrap().ids.flatten(0, -1)).unwrap()
}

#[test]
fn fused_generation_matches_the_libtorch_path() {
    let greedy = SampleOptions {
        greedy: true,
        ..Default::default()
    };
    let sampled = SampleOptions {
        temperature: 0.9,
        top_k: Some(20),
        top_p: Some(0.95),
        greedy: false,
        ..Default::default()
    };
    for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu] {
        let drawn = draw(mode);
        for sample in [greedy, sampled] {
            let fused = run(&drawn, Kind::Float, sample, true);
            let reference = run(&drawn, Kind::Double, sample, false);
            assert_eq!(fused, reference, "{mode:?} {sample:?}");
        }
    }
}

/// Looking at the stop rule every k tokens (as off the CPU) gives what looking
/// after every token gives: the same ids, the same lengths, with the tokens
/// drawn past the last stop dropped.
#[test]
fn stop_checks_in_blocks_match_checks_every_token() {
    tch::manual_seed(3);
    let cfg = RnnConfig::new(Mode::Gru, 4, 6, 1).unwrap();
    let rand = |shape: &[i64]| Tensor::rand(shape, (Kind::Double, Device::Cpu)) - 0.5;
    let stack: Vec<Tensor> = cfg.param_specs().iter().map(|p| rand(&p.shape)).collect();
    let (embedding, head_w) = (rand(&[30, 4]), rand(&[30, 6]));
    let w = LmWeights {
        embedding: &embedding,
        stack: &stack,
        head: HeadWeights::Linear {
            weight: &head_w,
            bias: None,
            projection: None,
        },
    };
    let prompt = Tensor::from_slice(&[1i64, 2]);
    // Row r draws (7 s + 3 r + 1) mod 30 at step s: the stop ids come at
    // different steps in each row, and never in the last one for stop 29.
    let draw = |_: &Tensor, step: i64| -> crate::error::Result<Tensor> {
        Ok((Tensor::from_slice(&[0i64, 1, 2, 3]) * 3 + 7 * step + 1).remainder(30))
    };
    for (stop_ids, max_tokens) in [(vec![5i64, 11], 40), (vec![29], 9), (vec![8], 40)] {
        let run = |every: usize| {
            let opts = GenerateOptions {
                max_tokens,
                num_samples: 4,
                stop: Stop::new(stop_ids.clone(), Vec::new(), None).unwrap(),
            };
            let g =
                super::generate_checking(&cfg, &w, &prompt, &opts, draw, || false, every).unwrap();
            (
                Vec::<i64>::try_from(g.ids.flatten(0, -1)).unwrap(),
                g.ids.size(),
                g.lengths,
            )
        };
        let each = run(1);
        assert!(each.2.iter().any(|&l| l < max_tokens) || stop_ids == [29]);
        for every in [2, 3, 16, 100] {
            assert_eq!(run(every), each, "stop {stop_ids:?}, every {every}");
        }
    }
}

/// The draw that reads nothing back (what runs off the CPU) against the
/// checking one, on the CPU from the same uniforms: the same tokens; and
/// logits that are not finite are still an error, read at the end.
#[test]
fn deferred_draws_match_checked_draws() {
    tch::manual_seed(5);
    let (vocab, rows, steps) = (40, 3, 12);
    let cfg = RnnConfig::new(Mode::Lstm, 5, 8, 2).unwrap();
    let rand = |shape: &[i64]| Tensor::rand(shape, (Kind::Double, Device::Cpu)) * 2 - 1;
    let stack: Vec<Tensor> = cfg.param_specs().iter().map(|p| rand(&p.shape)).collect();
    let (embedding, head_w, head_b) = (rand(&[vocab, 5]), rand(&[vocab, 8]) * 3, rand(&[vocab]));
    let w = LmWeights {
        embedding: &embedding,
        stack: &stack,
        head: HeadWeights::Linear {
            weight: &head_w,
            bias: Some(&head_b),
            projection: None,
        },
    };
    let prompt = Tensor::from_slice(&[1i64, 4]);
    let opts = GenerateOptions {
        max_tokens: steps,
        num_samples: rows,
        stop: Stop::none(),
    };
    let table = Tensor::rand([steps, rows], (Kind::Double, Device::Cpu));
    let options = [
        SampleOptions::default(),
        SampleOptions {
            temperature: 0.7,
            top_k: Some(9),
            ..Default::default()
        },
        SampleOptions {
            top_p: Some(0.8),
            ..Default::default()
        },
        SampleOptions {
            greedy: true,
            ..Default::default()
        },
    ];
    for sample in options {
        let mut rng = Pregenerated::new(table.shallow_clone());
        let checked = generate(
            &cfg,
            &w,
            &prompt,
            &opts,
            |l, _| crate::sampler::sample_validated(l, &sample, &mut rng),
            || false,
        )
        .unwrap();
        let mut rng = Pregenerated::new(table.shallow_clone());
        let deferred =
            super::generate_deferred(&cfg, &w, &prompt, &opts, &sample, &mut rng, || false)
                .unwrap();
        assert_eq!(
            Vec::<i64>::try_from(checked.ids.flatten(0, -1)).unwrap(),
            Vec::<i64>::try_from(deferred.ids.flatten(0, -1)).unwrap(),
            "{sample:?}"
        );
    }
    let nan_head = head_w.copy();
    let _ = nan_head.get(3).fill_(f64::NAN);
    let w = LmWeights {
        head: HeadWeights::Linear {
            weight: &nan_head,
            bias: Some(&head_b),
            projection: None,
        },
        ..w
    };
    let mut rng = Pregenerated::new(table);
    let sample = SampleOptions::default();
    let err = super::generate_deferred(&cfg, &w, &prompt, &opts, &sample, &mut rng, || false);
    assert!(err.is_err(), "nan logits must be an error");
}

/// The fused loop's draw keeps every token tied with the k-th, as the tensor
/// path and transformers' top-k do.
#[test]
fn row_draw_keeps_ties_at_the_kth() {
    let logits = [3.0f32, 2.0, 2.0, 2.0, 1.0, 0.0, 2.0];
    let mut draw = super::draw::RowDraw::new(SampleOptions {
        top_k: Some(2),
        ..Default::default()
    });
    let mut drawn = std::collections::BTreeSet::new();
    for i in 0..2000 {
        drawn.insert(draw.draw(&logits, f64::from(i) / 2000.0).unwrap());
    }
    assert_eq!(drawn.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 6]);
}
