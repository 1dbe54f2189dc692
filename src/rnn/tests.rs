//! The stack's hand-written backward against libtorch's autograd through the
//! autograd-recorded cells, the oneDNN LSTM path against the composed one, and
//! the engine chooser's record followed by the backward.

use tch::{Kind, Tensor};

use super::cell::{self, CellWeights};
use super::config::{Mode, RnnConfig};
use super::direction::{DirBackward, DirWeights};
use super::engine::{self, Engine, Preference};
use super::stack;
use super::steps::Steps;
use super::{composed, saved};

fn config(mode: Mode, layers: i64, bidirectional: bool, bias: bool, proj: i64) -> RnnConfig {
    let mut cfg = RnnConfig::new(mode, 3, 5, layers).unwrap();
    cfg.bidirectional = bidirectional;
    cfg.bias = bias;
    cfg.proj_size = proj;
    cfg
}

fn weights(cfg: &RnnConfig, kind: Kind) -> Vec<Tensor> {
    cfg.param_specs()
        .iter()
        .map(|p| {
            (Tensor::rand(p.shape.as_slice(), (kind, tch::Device::Cpu)) - 0.5)
                .set_requires_grad(true)
        })
        .collect()
}

/// The same network written with the autograd-recorded cells, step by step.
fn reference(
    cfg: &RnnConfig,
    w: &[Tensor],
    x: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    let per = cfg.params_per_direction();
    let dirs = cfg.num_directions();
    let len = x.size()[0];
    let mut input = x.shallow_clone();
    let (mut hs, mut cs) = (Vec::new(), Vec::new());
    for layer in 0..cfg.num_layers {
        let mut outs = Vec::new();
        for dir in 0..dirs {
            let idx = layer * dirs + dir;
            let chunk = &w[idx as usize * per..(idx as usize + 1) * per];
            let cw = CellWeights::from_slice(&chunk[..if cfg.bias { 4 } else { 2 }]).unwrap();
            let (mut h, mut c) = (h0.get(idx), c0.get(idx));
            let mut seq: Vec<Option<Tensor>> = (0..len).map(|_| None).collect();
            let order: Vec<i64> = if dir == 1 {
                (0..len).rev().collect()
            } else {
                (0..len).collect()
            };
            for t in order {
                let xt = input.get(t);
                h = match cfg.mode {
                    Mode::Lstm => {
                        let (h2, c2) = cell::lstm_cell(&xt, &h, &c, &cw).unwrap();
                        c = c2;
                        if cfg.proj_size > 0 {
                            h2.mm(&chunk[per - 1].tr())
                        } else {
                            h2
                        }
                    }
                    Mode::Gru => cell::gru_cell(&xt, &h, &cw).unwrap(),
                    m => cell::rnn_cell(&xt, &h, &cw, m == Mode::RnnRelu).unwrap(),
                };
                seq[t as usize] = Some(h.shallow_clone());
            }
            outs.push(Tensor::stack(
                &seq.into_iter().map(Option::unwrap).collect::<Vec<_>>(),
                0,
            ));
            hs.push(h);
            cs.push(c);
        }
        input = Tensor::cat(&outs, 2);
    }
    (input, Tensor::stack(&hs, 0), Tensor::stack(&cs, 0))
}

fn check(cfg: RnnConfig, kind: Kind, tol: f64) {
    check_with(Preference::Auto, cfg, kind, tol)
}

fn check_with(pref: Preference, cfg: RnnConfig, kind: Kind, tol: f64) {
    tch::manual_seed(0);
    let w = weights(&cfg, kind);
    let opts = (kind, tch::Device::Cpu);
    let rows = cfg.num_layers * cfg.num_directions();
    let x = Tensor::randn([4, 2, 3], opts).set_requires_grad(true);
    let h0 = Tensor::randn([rows, 2, cfg.real_hidden_size()], opts).set_requires_grad(true);
    let c0 = Tensor::randn([rows, 2, cfg.hidden_size], opts).set_requires_grad(true);
    let lstm = cfg.mode == Mode::Lstm;
    let out = stack::forward_with(
        pref,
        &cfg,
        &x,
        None,
        Some(&h0),
        lstm.then_some(&c0),
        &w,
        true,
        true,
    )
    .unwrap();
    let tape = out.tape.as_ref().unwrap();
    assert_eq!(tape.ran_libtorch(), pref == Preference::Libtorch);
    let (r_out, r_h, r_c) = reference(&cfg, &w, &x, &h0, &c0);
    assert!(
        out.output.allclose(&r_out, tol, tol, false),
        "output differs for {cfg:?}"
    );
    assert!(
        out.h_n.allclose(&r_h, tol, tol, false),
        "h_n differs for {cfg:?}"
    );
    // Distinct weights on every output element, so no gradient term cancels.
    let g_out = Tensor::randn(r_out.size().as_slice(), opts);
    let g_h = Tensor::randn(r_h.size().as_slice(), opts);
    let g_c = Tensor::randn(r_c.size().as_slice(), opts);
    let mut loss = (&r_out * &g_out).sum(kind) + (&r_h * &g_h).sum(kind);
    if lstm {
        assert!(out.c_n.as_ref().unwrap().allclose(&r_c, tol, tol, false));
        loss += (&r_c * &g_c).sum(kind);
    }
    let mut inputs = vec![&x, &h0];
    if lstm {
        inputs.push(&c0);
    }
    inputs.extend(w.iter());
    let reference_grads = Tensor::run_backward(&[loss], &inputs, false, false);
    let ours = stack::backward(
        out.tape.as_ref().unwrap(),
        &g_out,
        &g_h,
        lstm.then_some(&g_c),
        true,
    )
    .unwrap();
    let mut got = vec![ours.input.unwrap(), ours.hx];
    if lstm {
        got.push(ours.cx.unwrap());
    }
    got.extend(ours.weights);
    for (k, (a, b)) in got.iter().zip(&reference_grads).enumerate() {
        assert!(
            a.allclose(b, tol, tol, false),
            "gradient {k} differs for {cfg:?}"
        );
    }
}

#[test]
fn composed_backward_matches_autograd_float64() {
    for mode in [Mode::RnnTanh, Mode::RnnRelu, Mode::Lstm, Mode::Gru] {
        for (bidirectional, bias) in [(false, true), (true, true), (true, false)] {
            check(config(mode, 2, bidirectional, bias, 0), Kind::Double, 1e-10);
        }
    }
    check(config(Mode::Lstm, 2, true, true, 2), Kind::Double, 1e-10);
}

/// The libtorch engine (libtorch's own recurrent ops under its autograd, what
/// runs on CUDA) against the cells: its weight order, state layout and
/// gradient order.
#[test]
fn libtorch_engine_matches_autograd() {
    for mode in [Mode::RnnTanh, Mode::RnnRelu, Mode::Lstm, Mode::Gru] {
        for (bidirectional, bias) in [(false, true), (true, true), (true, false)] {
            let cfg = config(mode, 2, bidirectional, bias, 0);
            check_with(Preference::Libtorch, cfg.clone(), Kind::Double, 1e-10);
            check_with(Preference::Libtorch, cfg, Kind::Float, 1e-5);
        }
    }
    let proj = config(Mode::Lstm, 2, true, true, 2);
    check_with(Preference::Libtorch, proj, Kind::Double, 1e-10);
}

#[test]
fn preference_round_trips_its_names() {
    for p in Preference::ALL {
        assert_eq!(Preference::parse(p.name()).unwrap(), p);
    }
    assert!(Preference::parse("cudnn").is_err());
}

#[test]
fn onednn_lstm_matches_autograd_float32() {
    for (bidirectional, bias) in [(false, true), (true, true), (false, false)] {
        check(
            config(Mode::Lstm, 2, bidirectional, bias, 0),
            Kind::Float,
            1e-5,
        );
    }
}

/// The generation stepper (oneDNN products from 16 rows on, MKL below) against
/// the stack run one timestep at a time (float32; weights in U(-0.5, 0.5) make
/// pre-activations of a few units, so rounding differences reach ~1e-5).
#[test]
fn stepper_matches_the_stack() {
    use super::token::{TokenState, TokenStepper};
    for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh] {
        for batch in [1, 32] {
            tch::manual_seed(1);
            let mut cfg = RnnConfig::new(mode, 64, 256, 2).unwrap();
            cfg.bias = true;
            let w = weights(&cfg, Kind::Float);
            let w: Vec<Tensor> = w.iter().map(|t| t.detach()).collect();
            let stepper = TokenStepper::new(&cfg, &w).unwrap();
            let opts = (Kind::Float, tch::Device::Cpu);
            let mut state = TokenState {
                h: (0..2).map(|_| Tensor::zeros([batch, 256], opts)).collect(),
                c: if mode == Mode::Lstm {
                    (0..2).map(|_| Tensor::zeros([batch, 256], opts)).collect()
                } else {
                    Vec::new()
                },
            };
            let (mut h, mut c) = (None::<Tensor>, None::<Tensor>);
            for _ in 0..3 {
                let x = Tensor::randn([batch, 64], opts);
                let ours = stepper.step(&x, &mut state).unwrap();
                let out = stack::forward(
                    &cfg,
                    &x.unsqueeze(0),
                    None,
                    h.as_ref(),
                    c.as_ref(),
                    &w,
                    false,
                    false,
                )
                .unwrap();
                let reference = out.output.squeeze_dim(0);
                assert!(
                    ours.allclose(&reference, 1e-4, 1e-4, false),
                    "{mode:?} batch {batch}: max diff {}",
                    (&ours - &reference).abs().max()
                );
                h = Some(out.h_n);
                c = out.c_n;
            }
        }
    }
}

/// The chooser's rules: oneDNN for a padded float32 CPU LSTM of several
/// steps, our kernels for every other float32 CPU case without projections,
/// libtorch ops for the rest.
#[test]
fn engine_choice_follows_the_rules() {
    let padded = Steps::uniform(4, 2);
    let packed = Steps::packed(&[2, 2, 1, 1], 6).unwrap();
    let lstm_padded = if tch::utils::has_mkldnn() {
        Engine::OneDnn
    } else {
        Engine::Fused
    };
    let cases = [
        (Mode::Lstm, Kind::Float, 0, &padded, lstm_padded),
        (
            Mode::Lstm,
            Kind::Float,
            0,
            &Steps::uniform(1, 2),
            Engine::Fused,
        ),
        (Mode::Lstm, Kind::Float, 0, &packed, Engine::Fused),
        (Mode::Gru, Kind::Float, 0, &padded, Engine::Fused),
        (Mode::Gru, Kind::Float, 0, &packed, Engine::Fused),
        (Mode::RnnTanh, Kind::Float, 0, &padded, Engine::Fused),
        (Mode::RnnRelu, Kind::Float, 0, &packed, Engine::Fused),
        (Mode::Lstm, Kind::Double, 0, &padded, Engine::Composed),
        (Mode::Gru, Kind::Double, 0, &packed, Engine::Composed),
        (Mode::RnnTanh, Kind::Double, 0, &padded, Engine::Composed),
        (Mode::Lstm, Kind::Float, 2, &padded, Engine::Composed),
        (Mode::Lstm, Kind::Float, 2, &packed, Engine::Composed),
    ];
    for (mode, kind, proj, steps, want) in cases {
        let cfg = config(mode, 1, false, true, proj);
        let w = weights(&cfg, kind);
        let dw = DirWeights::from_slice(&w, cfg.bias, proj > 0);
        let x = Tensor::zeros([steps.rows() as i64, 3], (kind, tch::Device::Cpu));
        assert_eq!(
            Engine::choose(mode, &dw, &x, steps),
            want,
            "{mode:?} {kind:?} proj {proj} uniform {}",
            steps.is_uniform()
        );
    }
}

/// What the stack's tape records is what the chooser decided, for every
/// layer and direction.
#[test]
fn tape_records_the_engine() {
    let lstm = if tch::utils::has_mkldnn() {
        Engine::OneDnn
    } else {
        Engine::Fused
    };
    for (mode, kind, want) in [
        (Mode::Gru, Kind::Float, Engine::Fused),
        (Mode::RnnTanh, Kind::Float, Engine::Fused),
        (Mode::Lstm, Kind::Float, lstm),
        (Mode::Gru, Kind::Double, Engine::Composed),
    ] {
        let cfg = config(mode, 2, true, true, 0);
        let w = weights(&cfg, kind);
        let opts = (kind, tch::Device::Cpu);
        let x = Tensor::randn([4, 2, 3], opts);
        let out = stack::forward(&cfg, &x, None, None, None, &w, true, true).unwrap();
        let engines = out.tape.unwrap().engines();
        assert_eq!(engines, vec![vec![Some(want); 2]; 2], "{mode:?} {kind:?}");
    }
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}: shapes differ");
    assert!(
        a.allclose(b, 1e-5, 1e-5, false),
        "{what}: max diff {}",
        (a - b).abs().max().double_value(&[])
    );
}

fn assert_same_backward(a: DirBackward, b: DirBackward, what: &str) {
    assert_close(&a.dx.unwrap(), &b.dx.unwrap(), &format!("{what} dx"));
    assert_close(&a.dh0, &b.dh0, &format!("{what} dh0"));
    assert_eq!(a.dc0.is_some(), b.dc0.is_some(), "{what}: dc0");
    if let (Some(x), Some(y)) = (&a.dc0, &b.dc0) {
        assert_close(x, y, &format!("{what} dc0"));
    }
    let (ga, gb) = (a.grads.into_vec(), b.grads.into_vec());
    assert_eq!(ga.len(), gb.len(), "{what}: parameter gradients");
    for (k, (x, y)) in ga.iter().zip(&gb).enumerate() {
        assert_close(x, y, &format!("{what} parameter gradient {k}"));
    }
}

/// A float32 direction records the fused engine, and the backward that
/// follows the record agrees with the composed engine's forward and backward
/// over the same input, padded and packed, in both directions.
#[test]
fn fused_record_backward_matches_composed() {
    let _guard = tch::no_grad_guard();
    let packed = Steps::packed(&[3, 3, 2, 1], 9).unwrap();
    let padded = Steps::uniform(4, 3);
    for mode in [Mode::Gru, Mode::RnnTanh, Mode::RnnRelu, Mode::Lstm] {
        for (steps, reverse) in [(&padded, false), (&packed, true), (&packed, false)] {
            if mode == Mode::Lstm && steps.is_uniform() {
                continue; // oneDNN's, checked against autograd above
            }
            tch::manual_seed(2);
            let cfg = config(mode, 1, false, true, 0);
            let w: Vec<Tensor> = weights(&cfg, Kind::Float)
                .iter()
                .map(Tensor::detach)
                .collect();
            let dw = DirWeights::from_slice(&w, true, false);
            let opts = (Kind::Float, tch::Device::Cpu);
            let (rows, batch) = (steps.rows() as i64, steps.batch() as i64);
            let x = Tensor::randn([rows, 3], opts);
            let h0 = Tensor::randn([batch, 5], opts);
            let c0 = Tensor::randn([batch, 5], opts);
            let c0 = (mode == Mode::Lstm).then_some(&c0);
            let what = format!("{mode:?} uniform {} reverse {reverse}", steps.is_uniform());

            let ours = engine::forward(mode, &dw, &x, steps, &h0, c0, reverse, true).unwrap();
            assert_eq!(ours.saved.engine(), Some(Engine::Fused), "{what}");
            let theirs = composed::forward(mode, &dw, &x, steps, &h0, c0, reverse).unwrap();
            assert!(
                matches!(
                    (mode, &theirs.saved),
                    (Mode::Lstm, saved::Activations::Lstm(_))
                        | (Mode::Gru, saved::Activations::Gru(_))
                        | (Mode::RnnTanh | Mode::RnnRelu, saved::Activations::Simple(_))
                ),
                "{what}: composed activations of another cell"
            );
            assert_close(&ours.out, &theirs.out, &format!("{what} out"));
            assert_close(&ours.h_n, &theirs.h_n, &format!("{what} h_n"));

            let d_out = Tensor::randn([rows, 5], opts);
            let dh_n = Tensor::randn([batch, 5], opts);
            let dc_n = Tensor::randn([batch, 5], opts);
            let dc_n = (mode == Mode::Lstm).then_some(&dc_n);
            let a = engine::backward(&dw, &ours.saved, &d_out, &dh_n, dc_n, true).unwrap();
            let b = composed::backward(&dw, &theirs.saved, &d_out, &dh_n, dc_n, true).unwrap();
            assert_same_backward(a, b, &what);
        }
    }
}
