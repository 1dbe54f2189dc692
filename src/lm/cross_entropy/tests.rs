//! The chunked head against the libtorch-op composition it replaces,
//! `cross_entropy(linear(x, w, b), y)` differentiated by autograd.

use tch::{Device, Kind, Reduction as TorchReduction, Tensor};

use super::pass::chunk_rows;
use super::{LinearCrossEntropy, Needs, PackedHead, Reduction, IGNORE_INDEX};
use crate::error::Error;

struct Case {
    x: Tensor,
    w: Tensor,
    b: Tensor,
    y: Tensor,
}

fn case(n: i64, h: i64, v: i64, kind: Kind) -> Case {
    let opts = (kind, Device::Cpu);
    Case {
        x: Tensor::randn([n, h], opts),
        w: Tensor::randn([v, h], opts) * 0.3,
        b: Tensor::randn([v], opts) * 0.3,
        y: Tensor::randint(v, [n], (Kind::Int64, Device::Cpu)),
    }
}

fn torch_reduction(r: Reduction) -> TorchReduction {
    match r {
        Reduction::None => TorchReduction::None,
        Reduction::Mean => TorchReduction::Mean,
        Reduction::Sum => TorchReduction::Sum,
    }
}

/// The reference loss and gradients `(loss, d_x, d_w, d_b)`, of
/// `sum(loss * g)` for a per-row loss.
fn reference(c: &Case, bias: bool, r: Reduction, g: Option<&Tensor>) -> Vec<Tensor> {
    let leaf = |t: &Tensor| t.detach().set_requires_grad(true);
    let (x, w, b) = (leaf(&c.x), leaf(&c.w), leaf(&c.b));
    let loss = x
        .linear(&w, bias.then_some(&b))
        .cross_entropy_loss::<Tensor>(&c.y, None, torch_reduction(r), IGNORE_INDEX, 0.0);
    let total = match g {
        Some(g) => (&loss * g).sum(None),
        None => loss.shallow_clone(),
    };
    let inputs: Vec<&Tensor> = if bias { vec![&x, &w, &b] } else { vec![&x, &w] };
    let mut out = vec![loss.detach()];
    out.extend(Tensor::run_backward(&[total], &inputs, false, false));
    out
}

fn close(got: &Tensor, want: &Tensor, tol: f64, what: &str) {
    assert_eq!(got.size(), want.size(), "{what}");
    let err = (got - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]).max(1.0);
    assert!(err <= tol * scale, "{what}: error {err:e} against {scale}");
}

fn check_grads(c: &Case, bias: bool, reduction: Reduction, tol: f64, chunk: Option<i64>) {
    let head = LinearCrossEntropy {
        chunk_rows: chunk,
        ..LinearCrossEntropy::new(&c.x, &c.w, bias.then_some(&c.b), &c.y)
    };
    let want = reference(c, bias, reduction, None);
    let (loss, g) = head.loss_and_grads(reduction, Needs::ALL).unwrap();
    close(&loss, &want[0], tol, "loss");
    close(&g.input.unwrap(), &want[1], tol, "d_x");
    close(&g.weight.unwrap(), &want[2], tol, "d_w");
    match bias {
        true => close(&g.bias.unwrap(), &want[3], tol, "d_b"),
        false => assert!(g.bias.is_none()),
    }
    close(&head.loss(reduction).unwrap(), &want[0], tol, "loss alone");
}

#[test]
fn float64_matches_autograd_at_chunk_edges() {
    let rows = 16;
    for v in [7, 3000] {
        for n in [1, rows - 1, rows, rows + 1, 3 * rows + 5] {
            let c = case(n, 9, v, Kind::Double);
            for reduction in [Reduction::Mean, Reduction::Sum] {
                for bias in [true, false] {
                    check_grads(&c, bias, reduction, 1e-10, Some(rows));
                }
            }
        }
    }
}

#[test]
fn the_chosen_chunk_at_a_large_vocabulary() {
    // Past 2^23 / 512 classes the chunk is cut by the vocabulary.
    let v = 40_000;
    let rows = chunk_rows(i64::MAX, v);
    assert!(rows * v <= 1 << 23 && rows < 512);
    let c = case(rows + 1, 5, v, Kind::Double);
    check_grads(&c, true, Reduction::Mean, 1e-10, None);
}

#[test]
fn chunk_rows_bounds() {
    for v in [1, 7, 10_000, 33_278, 1 << 20, i64::MAX] {
        for n in [0, 1, 100, 1 << 40] {
            let rows = chunk_rows(n, v);
            assert!(rows >= 1 && rows <= n.max(1), "{n} rows of {v}: {rows}");
        }
    }
    let bad = case(3, 2, 4, Kind::Float);
    let head = LinearCrossEntropy {
        chunk_rows: Some(0),
        ..LinearCrossEntropy::new(&bad.x, &bad.w, None, &bad.y)
    };
    assert!(matches!(head.log_probs(), Err(Error::Value(_))));
}

#[test]
fn float32_matches_autograd() {
    let c = case(2 * 128 + 3, 33, 3000, Kind::Float);
    check_grads(&c, true, Reduction::Mean, 1e-5, Some(128));
    check_grads(&c, false, Reduction::Sum, 1e-5, None);
}

#[test]
fn per_row_losses_and_their_backward() {
    let mut c = case(150, 6, 11, Kind::Double);
    c.y =
        c.y.index_fill(0, &Tensor::from_slice(&[0i64, 70, 149]), IGNORE_INDEX);
    let g = Tensor::randn([150], (Kind::Double, Device::Cpu));
    let head = LinearCrossEntropy {
        chunk_rows: Some(32),
        ..LinearCrossEntropy::new(&c.x, &c.w, Some(&c.b), &c.y)
    };
    let want = reference(&c, true, Reduction::None, Some(&g));
    close(
        &head.loss(Reduction::None).unwrap(),
        &want[0],
        1e-10,
        "losses",
    );
    let got = head.backward(&g, Needs::ALL).unwrap();
    close(&got.input.unwrap(), &want[1], 1e-10, "d_x");
    close(&got.weight.unwrap(), &want[2], 1e-10, "d_w");
    close(&got.bias.unwrap(), &want[3], 1e-10, "d_b");
    // The mean divides by the rows not ignored, as torch's.
    check_grads(&c, true, Reduction::Mean, 1e-10, Some(32));
}

/// Float32 rows enough for the packed head (`packed::MIN_ROWS`; on AVX-512
/// CPUs the product runs on the fused tile, elsewhere on `addmm`), with and
/// without a bias, a vocabulary ending mid-block, chunks ending mid-tile, and
/// an ignored row: log-probabilities and the losses without gradients equal
/// the float64 composition.
#[test]
fn float32_without_gradients_at_many_rows() {
    let c = case(super::packed::MIN_ROWS + 77, 19, 150, Kind::Float);
    let y =
        c.y.index_fill(0, &Tensor::from_slice(&[5i64]), IGNORE_INDEX);
    let double = |t: &Tensor| t.to_kind(Kind::Double);
    for bias in [true, false] {
        let b = bias.then_some(&c.b);
        let logits = double(&c.x).linear(&double(&c.w), b.map(double).as_ref());
        let want = logits
            .log_softmax(1, Kind::Double)
            .gather(1, &y.clamp_min(0).unsqueeze(1), false)
            .squeeze_dim(1)
            .index_fill(0, &Tensor::from_slice(&[5i64]), 0.0);
        let head = LinearCrossEntropy {
            chunk_rows: Some(203),
            ..LinearCrossEntropy::new(&c.x, &c.w, b, &y)
        };
        close(&double(&head.log_probs().unwrap()), &want, 1e-5, "log p");
        let loss = head.loss(Reduction::Sum).unwrap();
        close(&double(&loss), &want.sum(Kind::Double).neg(), 1e-5, "sum");
    }
}

/// Gradients at float32 rows enough for the packed head (on AVX-512 CPUs
/// the forward product runs on the fused tile into a buffer wider than the
/// vocabulary, whose columns past it the backward products must not read):
/// a vocabulary ending mid-block, chunks ending mid-tile, with and without
/// a bias, against autograd.
#[test]
fn float32_gradients_at_many_rows() {
    let c = case(super::packed::MIN_ROWS + 77, 19, 150, Kind::Float);
    for chunk in [Some(203), None] {
        check_grads(&c, true, Reduction::Mean, 1e-5, chunk);
        check_grads(&c, false, Reduction::Sum, 1e-5, chunk);
    }
}

/// A head packed once by the caller serves passes of any size (here fewer
/// rows than a pass would pack for) with the pass's own results; one packed
/// for another weight's sizes is refused.
#[test]
fn a_head_packed_by_the_caller() {
    let c = case(40, 19, 150, Kind::Float);
    let Some(packed) = PackedHead::new(&c.w, Some(&c.b), super::packed::MIN_ROWS).unwrap() else {
        eprintln!("skipped: no packed head on this CPU");
        return;
    };
    let head = LinearCrossEntropy::new(&c.x, &c.w, Some(&c.b), &c.y);
    let want = head.log_probs().unwrap();
    let given = LinearCrossEntropy {
        packed: Some(&packed),
        ..LinearCrossEntropy::new(&c.x, &c.w, Some(&c.b), &c.y)
    };
    close(&given.log_probs().unwrap(), &want, 1e-5, "log p");
    let other = case(40, 19, 151, Kind::Float);
    let wrong = LinearCrossEntropy {
        packed: Some(&packed),
        ..LinearCrossEntropy::new(&other.x, &other.w, Some(&other.b), &other.y)
    };
    assert!(matches!(wrong.log_probs(), Err(Error::Shape(_))));
}

#[test]
fn log_probs_are_log_softmax_at_the_target() {
    let c = case(300, 5, 13, Kind::Double);
    let want =
        c.x.linear(&c.w, Some(&c.b))
            .log_softmax(1, Kind::Double)
            .gather(1, &c.y.unsqueeze(1), false)
            .squeeze_dim(1);
    let head = LinearCrossEntropy {
        chunk_rows: Some(64),
        ..LinearCrossEntropy::new(&c.x, &c.w, Some(&c.b), &c.y)
    };
    let got = head.log_probs().unwrap();
    close(&got, &want, 1e-12, "log p");
}

#[test]
fn only_the_gradients_asked_for() {
    let c = case(10, 4, 6, Kind::Double);
    let head = LinearCrossEntropy::new(&c.x, &c.w, Some(&c.b), &c.y);
    let needs = Needs {
        input: false,
        weight: true,
        bias: false,
    };
    let (_, g) = head.loss_and_grads(Reduction::Mean, needs).unwrap();
    assert!(g.input.is_none() && g.weight.is_some() && g.bias.is_none());
}

#[test]
fn no_rows_mean_is_nan_sum_is_zero() {
    let c = case(0, 4, 6, Kind::Float);
    let head = LinearCrossEntropy::new(&c.x, &c.w, Some(&c.b), &c.y);
    let (mean, g) = head.loss_and_grads(Reduction::Mean, Needs::ALL).unwrap();
    assert!(mean.double_value(&[]).is_nan());
    assert_eq!(
        g.weight.unwrap().abs().sum(Kind::Double).double_value(&[]),
        0.0
    );
    assert_eq!(head.loss(Reduction::Sum).unwrap().double_value(&[]), 0.0);
    assert_eq!(head.loss(Reduction::None).unwrap().size(), [0]);
}

#[test]
fn bad_operands_are_torchs_errors() {
    let c = case(3, 4, 5, Kind::Float);
    let y_bad = Tensor::from_slice(&[0i64, 7, 1]);
    let err = LinearCrossEntropy::new(&c.x, &c.w, None, &y_bad)
        .log_probs()
        .unwrap_err();
    assert!(matches!(&err, Error::Index(m) if m == "Target 7 is out of bounds."));
    let short = Tensor::from_slice(&[0i64, 1]);
    let err = LinearCrossEntropy::new(&c.x, &c.w, None, &short)
        .log_probs()
        .unwrap_err();
    assert!(matches!(err, Error::Value(_)));
    let wide = Tensor::zeros([5, 6], (Kind::Float, Device::Cpu));
    let err = LinearCrossEntropy::new(&c.x, &wide, None, &c.y)
        .log_probs()
        .unwrap_err();
    assert!(matches!(&err, Error::Shape(m) if m.contains("(3x4 and 6x5)")));
    let y_float = c.y.to_kind(Kind::Float);
    let err = LinearCrossEntropy::new(&c.x, &c.w, None, &y_float)
        .log_probs()
        .unwrap_err();
    assert!(matches!(&err, Error::Shape(m) if m.contains("torch.float32")));
    let w64 = c.w.to_kind(Kind::Double);
    let err = LinearCrossEntropy::new(&c.x, &w64, None, &c.y)
        .log_probs()
        .unwrap_err();
    assert!(matches!(err, Error::Shape(_)));
    let b_long = Tensor::zeros([6], (Kind::Float, Device::Cpu));
    let err = LinearCrossEntropy::new(&c.x, &c.w, Some(&b_long), &c.y)
        .log_probs()
        .unwrap_err();
    assert!(matches!(err, Error::Shape(_)));
    assert!(matches!(Reduction::parse("avg"), Err(Error::Value(_))));
}
