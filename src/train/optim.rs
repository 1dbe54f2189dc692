//! Optimizers with torch.optim's exact update rules, and gradient clipping as
//! `torch.nn.utils.clip_grad_norm_`.
//!
//! Parameters are updated in place, under no_grad, so the tensors shared with
//! the Python module (its `nn.Parameter`s) see every step.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::adam_one_pass;
use crate::error::{Error, Result};

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `torch.optim.SGD` (dampening 0, nesterov off).
    Sgd,
    /// `torch.optim.Adam` (L2 penalty added to the gradient).
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay).
    AdamW,
    /// Non-monotonically triggered averaged SGD (AWD-LSTM): plain SGD until
    /// the trainer starts averaging, then `torch.optim.ASGD(t0=0, lambd=0)`.
    #[serde(rename = "nt_asgd")]
    NtAsgd,
}

impl Method {
    pub fn parse(name: &str) -> Result<Method> {
        match name.to_ascii_lowercase().as_str() {
            "sgd" => Ok(Method::Sgd),
            "adam" => Ok(Method::Adam),
            "adamw" => Ok(Method::AdamW),
            "nt_asgd" => Ok(Method::NtAsgd),
            _ => Err(Error::value(format!(
                "unknown optimizer '{name}': expected 'sgd', 'adam', 'adamw' or 'nt_asgd'"
            ))),
        }
    }
}

/// Hyper-parameters, as the torch.optim constructors take them.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimConfig {
    pub method: Method,
    pub lr: f64,
    pub weight_decay: f64,
    /// SGD only.
    pub momentum: f64,
    pub betas: (f64, f64),
    pub eps: f64,
}

fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}

fn default_eps() -> f64 {
    1e-8
}

impl OptimConfig {
    pub fn new(method: Method, lr: f64) -> OptimConfig {
        OptimConfig {
            method,
            lr,
            weight_decay: 0.0,
            momentum: 0.0,
            betas: default_betas(),
            eps: default_eps(),
        }
    }

    /// Whether a step takes sparse gradients (updating their rows only):
    /// plain SGD, as torch.optim.SGD without momentum or weight decay.
    pub fn takes_sparse(&self) -> bool {
        matches!(self.method, Method::Sgd | Method::NtAsgd)
            && self.momentum == 0.0
            && self.weight_decay == 0.0
    }

    /// The checks torch.optim's constructors make, with their wording; and,
    /// stricter than torch, finite values (an infinite learning rate, decay or
    /// momentum makes every weight non-finite at the first step).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            let why = if v.is_infinite() {
                " (it must be a finite number)"
            } else {
                ""
            };
            Err(Error::value(format!(
                "Invalid {what}: {}{why}",
                super::py_float(v)
            )))
        };
        if invalid(self.lr) {
            return bad("learning rate", self.lr);
        }
        if invalid(self.weight_decay) {
            return bad("weight_decay value", self.weight_decay);
        }
        if invalid(self.momentum) {
            return bad("momentum value", self.momentum);
        }
        if self.momentum != 0.0 && self.method == Method::NtAsgd {
            return Err(Error::value(
                "nt_asgd is plain SGD, then averaged SGD: it takes no momentum",
            ));
        }
        if self.momentum != 0.0 && self.method != Method::Sgd {
            return Err(Error::value(format!(
                "momentum is an SGD option; {:?} takes betas",
                self.method
            )));
        }
        if invalid(self.eps) {
            return bad("epsilon value", self.eps);
        }
        if !(0.0..1.0).contains(&self.betas.0) {
            return bad("beta parameter at index 0", self.betas.0);
        }
        if !(0.0..1.0).contains(&self.betas.1) {
            return bad("beta parameter at index 1", self.betas.1);
        }
        Ok(())
    }
}

/// Negative, NaN or infinite.
fn invalid(v: f64) -> bool {
    !(v.is_finite() && v >= 0.0)
}

/// Per-parameter state, named as in torch.optim's `state_dict`.
#[derive(Default)]
struct Slot {
    momentum_buffer: Option<Tensor>,
    exp_avg: Option<Tensor>,
    exp_avg_sq: Option<Tensor>,
    /// ASGD's running average of the parameter.
    ax: Option<Tensor>,
}

/// ASGD's scalars, as `torch.optim.ASGD` keeps them per parameter (here
/// shared: every parameter steps together). Its step uses the `eta` the step
/// before computed from the learning rate then, as torch's does.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Averaging {
    /// ASGD steps taken since averaging started.
    pub step: i64,
    pub eta: f64,
    pub mu: f64,
}

/// An optimizer over a fixed list of parameters.
pub struct Optimizer {
    cfg: OptimConfig,
    /// Steps taken (torch keeps one per parameter; here every parameter steps together).
    steps: i64,
    slots: Vec<Slot>,
    /// NT-ASGD once triggered: averaging.
    averaging: Option<Averaging>,
}

impl Optimizer {
    pub fn new(cfg: OptimConfig, num_params: usize) -> Result<Optimizer> {
        cfg.validate()?;
        Ok(Optimizer {
            cfg,
            steps: 0,
            slots: (0..num_params).map(|_| Slot::default()).collect(),
            averaging: None,
        })
    }

    /// NT-ASGD's switch: from the next step on, SGD steps are averaged (a
    /// fresh `torch.optim.ASGD(params, lr, t0=0, lambd=0, weight_decay)`).
    /// Other methods refuse.
    pub fn start_averaging(&mut self) -> Result<()> {
        if self.cfg.method != Method::NtAsgd {
            return Err(Error::value(format!(
                "only nt_asgd averages, not {:?}",
                self.cfg.method
            )));
        }
        if self.averaging.is_none() {
            self.averaging = Some(Averaging {
                step: 0,
                eta: self.cfg.lr,
                mu: 1.0,
            });
            for s in &mut self.slots {
                s.ax = None;
            }
        }
        Ok(())
    }

    pub fn averaging(&self) -> Option<Averaging> {
        self.averaging
    }

    /// The averaged parameters (one per parameter, in order), once averaging
    /// has taken a step.
    pub fn averages(&self) -> Option<Vec<Tensor>> {
        self.averaging?;
        self.slots
            .iter()
            .map(|s| s.ax.as_ref().map(Tensor::shallow_clone))
            .collect()
    }

    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }

    /// Changes the learning rate from the next step on (as writing
    /// `param_group["lr"]` does in torch).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if invalid(lr) {
            return Err(Error::value(format!(
                "Invalid learning rate: {}",
                super::py_float(lr)
            )));
        }
        self.cfg.lr = lr;
        Ok(())
    }

    pub fn steps(&self) -> i64 {
        self.steps
    }

    /// One update of every parameter from its gradient, in place.
    pub fn step(&mut self, params: &[Tensor], grads: &[Tensor]) -> Result<()> {
        if params.len() != self.slots.len() || grads.len() != self.slots.len() {
            return Err(Error::shape(format!(
                "the optimizer holds {} parameters, got {} parameters and {} gradients",
                self.slots.len(),
                params.len(),
                grads.len()
            )));
        }
        // Everything checked before anything changes: libtorch's errors in
        // the ops below (those taking a scalar) would panic inside tch.
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            if p.size() != g.size() {
                return Err(Error::shape(format!(
                    "parameter {i}: a gradient of shape {:?} for a parameter of shape {:?}",
                    g.size(),
                    p.size()
                )));
            }
            let (pk, gk) = (p.f_kind()?, g.f_kind()?);
            if pk != gk {
                return Err(Error::shape(format!(
                    "parameter {i}: a gradient of dtype {} for a parameter of dtype {}; \
                     the gradient must match the parameter's dtype",
                    crate::dtype::bare_dtype_name(gk),
                    crate::dtype::bare_dtype_name(pk)
                )));
            }
            if !matches!(pk, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
                return Err(Error::Type(format!(
                    "parameter {i}: the optimizer updates floating-point tensors, got {pk:?}"
                )));
            }
            if p.device() != g.device() {
                return Err(Error::shape(format!(
                    "parameter {i}: a gradient on {:?} for a parameter on {:?}",
                    g.device(),
                    p.device()
                )));
            }
            if g.is_sparse() && !self.cfg.takes_sparse() {
                return Err(Error::value(format!(
                    "parameter {i}: a sparse gradient, which only SGD and NT-ASGD without \
                     momentum or weight decay take (the optimizer is {:?})",
                    self.cfg.method
                )));
            }
        }
        for (slot, p) in self.slots.iter().zip(params) {
            for t in [
                &slot.momentum_buffer,
                &slot.exp_avg,
                &slot.exp_avg_sq,
                &slot.ax,
            ]
            .into_iter()
            .flatten()
            {
                if t.size() != p.size() || t.f_kind()? != p.f_kind()? || t.device() != p.device() {
                    return Err(Error::shape(
                        "the optimizer's state does not match its parameters (were they replaced?)",
                    ));
                }
            }
        }
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        let cfg = self.cfg.clone();
        if let Some(a) = &mut self.averaging {
            a.step += 1;
            for ((p, g), slot) in params.iter().zip(grads).zip(&mut self.slots) {
                asgd(&cfg, a, &mut p.shallow_clone(), g, slot)?;
            }
            // torch's next eta and mu (lambd = 0, t0 = 0).
            a.eta = cfg.lr;
            a.mu = 1.0 / (a.step as f64).max(1.0);
            return Ok(());
        }
        for ((p, g), slot) in params.iter().zip(grads).zip(&mut self.slots) {
            let mut p = p.shallow_clone();
            match cfg.method {
                Method::Sgd | Method::NtAsgd => sgd(&cfg, &mut p, g, slot)?,
                Method::Adam | Method::AdamW => adam(&cfg, self.steps, &mut p, g, slot)?,
            }
        }
        Ok(())
    }

    /// The state tensors as `(kind, index, tensor)`: kind is `momentum_buffer`,
    /// `exp_avg`, `exp_avg_sq` or `ax`, index the parameter's position.
    pub fn state(&self) -> Vec<(&'static str, usize, Tensor)> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            for (kind, t) in [
                ("momentum_buffer", &s.momentum_buffer),
                ("exp_avg", &s.exp_avg),
                ("exp_avg_sq", &s.exp_avg_sq),
                ("ax", &s.ax),
            ] {
                if let Some(t) = t {
                    out.push((kind, i, t.shallow_clone()));
                }
            }
        }
        out
    }

    /// Restores what [`Optimizer::state`] returned, after `steps` steps
    /// (and with NT-ASGD's `averaging` scalars). Each tensor must match its
    /// parameter's shape, dtype and device.
    pub fn load_state(
        &mut self,
        steps: i64,
        averaging: Option<Averaging>,
        state: Vec<(String, usize, Tensor)>,
        params: &[Tensor],
    ) -> Result<()> {
        if let Some(a) = averaging {
            let sane = a.step >= 0 && a.step <= steps && a.eta.is_finite() && a.eta >= 0.0;
            if self.cfg.method != Method::NtAsgd || !sane || !(a.mu > 0.0 && a.mu <= 1.0) {
                return Err(Error::value(format!(
                    "invalid averaging state {a:?} for {:?} after {steps} steps",
                    self.cfg.method
                )));
            }
        }
        if steps < 0 {
            return Err(Error::value(format!(
                "the optimizer's step count must be >= 0, got {steps}"
            )));
        }
        let mut slots: Vec<Slot> = (0..self.slots.len()).map(|_| Slot::default()).collect();
        for (kind, i, t) in state {
            let p = params
                .get(i)
                .ok_or_else(|| Error::value(format!("optimizer state for parameter {i}")))?;
            if t.size() != p.size() || t.f_kind()? != p.f_kind()? {
                return Err(Error::value(format!(
                    "optimizer {kind} of parameter {i} has shape {:?} and dtype {:?}, \
                     the parameter {:?} and {:?}",
                    t.size(),
                    t.f_kind()?,
                    p.size(),
                    p.f_kind()?
                )));
            }
            let t = t.f_to_device(p.device())?;
            let slot = slots
                .get_mut(i)
                .ok_or_else(|| Error::value(format!("optimizer state for parameter {i}")))?;
            match kind.as_str() {
                "momentum_buffer" => slot.momentum_buffer = Some(t),
                "exp_avg" => slot.exp_avg = Some(t),
                "exp_avg_sq" => slot.exp_avg_sq = Some(t),
                "ax" => slot.ax = Some(t),
                other => return Err(Error::value(format!("unknown optimizer state '{other}'"))),
            }
        }
        let want_adam = matches!(self.cfg.method, Method::Adam | Method::AdamW) && steps > 0;
        let want_momentum = self.cfg.method == Method::Sgd && self.cfg.momentum != 0.0 && steps > 0;
        for (i, s) in slots.iter().enumerate() {
            if want_adam && (s.exp_avg.is_none() || s.exp_avg_sq.is_none()) {
                return Err(Error::value(format!("missing Adam state of parameter {i}")));
            }
            if want_momentum && s.momentum_buffer.is_none() {
                return Err(Error::value(format!(
                    "missing momentum buffer of parameter {i}"
                )));
            }
        }
        let want_ax = averaging.is_some_and(|a| a.step > 0);
        if slots.iter().any(|s| s.ax.is_some() != want_ax) {
            return Err(Error::value(
                "the averaged parameters do not match the averaging state",
            ));
        }
        self.slots = slots;
        self.steps = steps;
        self.averaging = averaging;
        Ok(())
    }
}

/// torch.optim.SGD, single-tensor path.
fn sgd(cfg: &OptimConfig, p: &mut Tensor, g: &Tensor, slot: &mut Slot) -> Result<()> {
    let mut d = if cfg.weight_decay != 0.0 {
        g.f_add(&p.f_mul_scalar(cfg.weight_decay)?)?
    } else {
        g.shallow_clone()
    };
    if cfg.momentum != 0.0 {
        let buf = match slot.momentum_buffer.take() {
            None => {
                let mut b = d.f_empty_like()?;
                b.f_copy_(&d)?;
                b
            }
            Some(mut b) => {
                // dampening 0: buf = momentum * buf + grad
                _ = b.f_mul_scalar_(cfg.momentum)?;
                _ = b.f_add_(&d)?;
                b
            }
        };
        d = buf.shallow_clone();
        slot.momentum_buffer = Some(buf);
    }
    step_along(p, &d, cfg.lr)
}

/// `p -= lr * d` in one pass over `p` (torch's `p.add_(d, alpha=-lr)`,
/// which tch does not bind): `addcmul_` with a 0-dim `-lr` computes
/// `p + d * -lr`, the same rounding as `p - d * lr`, without a `d * lr`
/// temporary the size of the weights and a second pass over it.
/// A sparse `d` (the embedding's rows) updates only its rows, as torch's
/// SGD does with a sparse gradient.
fn step_along(p: &mut Tensor, d: &Tensor, lr: f64) -> Result<()> {
    if d.is_sparse() {
        _ = p.f_add_(&d.f_mul_scalar(-lr)?)?;
        return Ok(());
    }
    let neg_lr = Tensor::f_scalar_tensor(-lr, (p.f_kind()?, p.device()))?;
    _ = p.f_addcmul_(d, &neg_lr)?;
    Ok(())
}

/// torch.optim.ASGD with `lambd = 0`, `t0 = 0`, single-tensor path: an SGD
/// step of size `eta`, then the running average `ax`.
fn asgd(
    cfg: &OptimConfig,
    a: &Averaging,
    p: &mut Tensor,
    g: &Tensor,
    slot: &mut Slot,
) -> Result<()> {
    let d = if cfg.weight_decay != 0.0 {
        g.f_add(&p.f_mul_scalar(cfg.weight_decay)?)?
    } else {
        g.shallow_clone()
    };
    step_along(p, &d, a.eta)?;
    match slot.ax.as_mut() {
        Some(ax) if a.mu != 1.0 => {
            _ = ax.f_add_(&p.f_sub(ax)?.f_mul_scalar(a.mu)?)?;
        }
        Some(ax) => {
            ax.f_copy_(p)?;
        }
        None => {
            let mut ax = p.f_empty_like()?;
            ax.f_copy_(p)?;
            slot.ax = Some(ax);
        }
    }
    Ok(())
}

/// torch.optim.Adam / AdamW, single-tensor path.
fn adam(cfg: &OptimConfig, step: i64, p: &mut Tensor, g: &Tensor, slot: &mut Slot) -> Result<()> {
    let (beta1, beta2) = cfg.betas;
    let m = match slot.exp_avg.take() {
        Some(m) => m,
        None => p.f_zeros_like()?,
    };
    let v = match slot.exp_avg_sq.take() {
        Some(v) => v,
        None => p.f_zeros_like()?,
    };
    let bias_correction1 = 1.0 - beta1.powf(step as f64);
    let bias_correction2 = 1.0 - beta2.powf(step as f64);
    let adamw = cfg.method == Method::AdamW;
    let coefs = adam_one_pass::Coefs {
        beta1,
        beta2,
        eps: cfg.eps,
        l2: if adamw { 0.0 } else { cfg.weight_decay },
        decay: if adamw {
            1.0 - cfg.lr * cfg.weight_decay
        } else {
            1.0
        },
        step_size: cfg.lr / bias_correction1,
        bc2_sqrt: bias_correction2.sqrt(),
    };
    if adam_one_pass::applies(p, g, &m, &v) {
        adam_one_pass::step(p, g, &m, &v, &coefs)?;
    } else {
        adam_ops(p, g, &m, &v, &coefs)?;
    }
    slot.exp_avg = Some(m);
    slot.exp_avg_sq = Some(v);
    Ok(())
}

/// [`adam`] op by op, for any device and dtype.
fn adam_ops(
    p: &mut Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    c: &adam_one_pass::Coefs,
) -> Result<()> {
    let (mut m, mut v) = (m.shallow_clone(), v.shallow_clone());
    if c.decay != 1.0 {
        _ = p.f_mul_scalar_(c.decay)?;
    }
    let g = if c.l2 != 0.0 {
        g.f_add(&p.f_mul_scalar(c.l2)?)?
    } else {
        g.shallow_clone()
    };
    _ = m.f_lerp_(&g, 1.0 - c.beta1)?;
    _ = v.f_mul_scalar_(c.beta2)?;
    _ = v.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - c.beta2)?)?;
    let denom = v.f_sqrt()?.f_div_scalar(c.bc2_sqrt)?.f_add_scalar(c.eps)?;
    _ = p.f_sub_(&m.f_div(&denom)?.f_mul_scalar(c.step_size)?)?;
    Ok(())
}

/// Scales the gradients in place so their global L2 norm is at most
/// `max_norm`, exactly as `torch.nn.utils.clip_grad_norm_`: the factor is
/// `max_norm / (norm + 1e-6)`, clamped to 1. Returns the norm before clipping
/// (which may be infinite or NaN; the grads are then scaled as torch would).
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let total = grad_norm_tensor(grads)?;
    let Some(total) = total else {
        return Ok(0.0);
    };
    let coef = total
        .f_add_scalar(1e-6)?
        .f_reciprocal()?
        .f_mul_scalar(max_norm)?
        .f_clamp_max(1.0)?;
    for g in grads {
        let mut g = g.shallow_clone();
        _ = g.f_mul_(&coef.f_to_device(g.device())?)?;
    }
    Ok(total.f_double_value(&[])?)
}

/// The global L2 norm of the gradients, as torch computes it (a norm of norms).
pub fn grad_norm(grads: &[Tensor]) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    match grad_norm_tensor(grads)? {
        Some(t) => Ok(t.f_double_value(&[])?),
        None => Ok(0.0),
    }
}

fn grad_norm_tensor(grads: &[Tensor]) -> Result<Option<Tensor>> {
    if grads.is_empty() {
        return Ok(None);
    }
    let device = grads[0].device();
    let norms = grads
        .iter()
        .map(|g| g.f_norm()?.f_to_device(device))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
    debug_assert!(matches!(
        total.kind(),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    ));
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_without_momentum_is_p_minus_lr_g() {
        let p = Tensor::from_slice(&[1.0f64, 2.0, 3.0]);
        let g = Tensor::from_slice(&[0.5f64, -1.0, 2.0]);
        let mut opt = Optimizer::new(OptimConfig::new(Method::Sgd, 0.1), 1).unwrap();
        opt.step(&[p.shallow_clone()], &[g]).unwrap();
        let want = Tensor::from_slice(&[0.95f64, 2.1, 2.8]);
        assert!(p.allclose(&want, 1e-15, 1e-15, false));
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let g = Tensor::from_slice(&[3.0f64, 4.0]);
        let n = clip_grad_norm(&[g.shallow_clone()], 1.0).unwrap();
        assert_eq!(n, 5.0);
        let norm = g.norm().double_value(&[]);
        assert!((norm - 5.0 / (5.0 + 1e-6)).abs() < 1e-12);
        // Below the threshold nothing changes.
        let h = Tensor::from_slice(&[0.3f64, 0.4]);
        clip_grad_norm(&[h.shallow_clone()], 1.0).unwrap();
        assert!(h.equal(&Tensor::from_slice(&[0.3f64, 0.4])));
    }

    /// The one-pass update and the op-by-op path agree, for Adam and AdamW with
    /// weight decay, in both precisions, over several steps.
    #[test]
    fn one_pass_adam_equals_the_op_path() {
        for kind in [Kind::Float, Kind::Double] {
            for adamw in [false, true] {
                tch::manual_seed(1);
                let p0 = Tensor::randn([257], (kind, tch::Device::Cpu));
                let (pa, mut pb) = (p0.copy(), p0.copy());
                let (ma, va) = (p0.zeros_like(), p0.zeros_like());
                let (mb, vb) = (p0.zeros_like(), p0.zeros_like());
                for step in 1..=4 {
                    let g = Tensor::randn([257], (kind, tch::Device::Cpu));
                    let c = adam_one_pass::Coefs {
                        beta1: 0.9,
                        beta2: 0.99,
                        eps: 1e-8,
                        l2: if adamw { 0.0 } else { 0.1 },
                        decay: if adamw { 1.0 - 0.01 * 0.1 } else { 1.0 },
                        step_size: 0.01 / (1.0 - 0.9f64.powi(step)),
                        bc2_sqrt: (1.0 - 0.99f64.powi(step)).sqrt(),
                    };
                    assert!(adam_one_pass::applies(&pa, &g, &ma, &va));
                    adam_one_pass::step(&pa, &g, &ma, &va, &c).unwrap();
                    adam_ops(&mut pb, &g, &mb, &vb, &c).unwrap();
                }
                let tol = if kind == Kind::Float { 1e-6 } else { 1e-14 };
                for (a, b) in [(&pa, &pb), (&ma, &mb), (&va, &vb)] {
                    assert!(a.allclose(b, tol, tol, false), "{kind:?} adamw={adamw}");
                }
                assert!(!pa.allclose(&p0, 1e-4, 1e-4, false));
            }
        }
    }

    #[test]
    fn a_gradient_of_another_dtype_is_an_error_before_any_change() {
        let p = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu));
        let mut opt = Optimizer::new(OptimConfig::new(Method::Adam, 0.1), 1).unwrap();
        let g = Tensor::ones([3], (Kind::Double, tch::Device::Cpu));
        let err = opt.step(&[p.shallow_clone()], &[g]).unwrap_err();
        assert!(err.to_string().contains("float64"), "{err}");
        assert_eq!(opt.steps(), 0);
        assert!(p.equal(&p.zeros_like()));
        assert!(opt.load_state(-1, None, vec![], &[p]).is_err());
    }

    #[test]
    fn rejects_what_torch_rejects() {
        assert!(Optimizer::new(OptimConfig::new(Method::Adam, -1.0), 1).is_err());
        let mut c = OptimConfig::new(Method::Adam, 1.0);
        c.betas = (1.0, 0.9);
        assert!(Optimizer::new(c, 1).is_err());
        // Stricter than torch: a learning rate that spoils every weight at once.
        let e = Optimizer::new(OptimConfig::new(Method::Sgd, f64::INFINITY), 1);
        assert!(
            matches!(e, Err(Error::Value(m)) if m == "Invalid learning rate: inf (it must be a finite number)")
        );
    }
}
