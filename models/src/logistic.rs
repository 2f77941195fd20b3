//! A standardized logistic model trained with candle, calibrated with Platt
//! scaling on a held-out set.
//!
//! Why logistic: the inputs are already the engineered signals (pumping
//! counters, route health), the weights explain each decision (a fraud reason
//! is a feature's weight times its standardized value), and inference is one
//! batched matrix product. Training is full-batch AdamW from zero weights, so
//! the same data gives the same model.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::ModelError;

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 400,
            learning_rate: 0.05,
            weight_decay: 1e-4,
        }
    }
}

/// How a feature may move a model's output: its weight's sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Increasing,
    Decreasing,
    Free,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
    /// Platt scaling of the raw logit: p = σ(a·z + b).
    pub platt: (f32, f32),
}

impl Logistic {
    /// Fits on `x` (rows of equal length) and 0/1 labels `y`.
    pub fn train(x: &[Vec<f32>], y: &[f32], config: &TrainConfig) -> Result<Logistic, ModelError> {
        Self::train_monotone(x, y, config, &[])
    }

    /// [`Self::train`] with each column's weight kept to the sign `directions`
    /// gives it (projected after each step; columns past its end are free).
    /// What a feature can mean is domain knowledge the data of one history
    /// may contradict by accident: more requests from one IP never make a
    /// request safer, even if in the training history the busiest IPs were a
    /// carrier's NAT and the attacks rotated addresses. A model that learned
    /// the accident would wave the next attack — a single bot — through.
    pub fn train_monotone(
        x: &[Vec<f32>],
        y: &[f32],
        config: &TrainConfig,
        directions: &[Direction],
    ) -> Result<Logistic, ModelError> {
        let n = x.len();
        let d = x.first().map_or(0, Vec::len);
        if n == 0 || d == 0 || y.len() != n {
            return Err(ModelError::NoData);
        }
        let (mean, std) = moments(x, d);
        let flat: Vec<f32> = x
            .iter()
            .flat_map(|row| standardize(row, &mean, &std))
            .collect();
        let dev = Device::Cpu;
        let xs = Tensor::from_vec(flat, (n, d), &dev)?;
        let ys = Tensor::from_vec(y.to_vec(), (n, 1), &dev)?;
        let w = Var::zeros((d, 1), DType::F32, &dev)?;
        let b = Var::zeros((1, 1), DType::F32, &dev)?;
        let mut opt = AdamW::new(
            vec![w.clone(), b.clone()],
            ParamsAdamW {
                lr: config.learning_rate,
                weight_decay: config.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let bound = |f: fn(Direction) -> f32| -> candle_core::Result<Tensor> {
            let v: Vec<f32> = (0..d)
                .map(|i| f(directions.get(i).copied().unwrap_or(Direction::Free)))
                .collect();
            Tensor::from_vec(v, (d, 1), &dev)
        };
        let floor = bound(|d| match d {
            Direction::Increasing => 0.0,
            _ => f32::NEG_INFINITY,
        })?;
        let ceiling = bound(|d| match d {
            Direction::Decreasing => 0.0,
            _ => f32::INFINITY,
        })?;
        let constrained = directions.iter().any(|d| *d != Direction::Free);
        for _ in 0..config.epochs {
            let logits = xs.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            let loss = stable_bce(&logits, &ys)?;
            opt.backward_step(&loss)?;
            if constrained {
                w.set(&w.as_tensor().maximum(&floor)?.minimum(&ceiling)?)?;
            }
        }
        let weights = w.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let bias = b.as_tensor().flatten_all()?.to_vec1::<f32>()?[0];
        Ok(Logistic {
            mean,
            std,
            weights,
            bias,
            platt: (1.0, 0.0),
        })
    }

    /// The uncalibrated logit of each row, as one batched product. Rows may
    /// be owned or borrowed (`&[f32]`: one request's row, without a copy).
    pub fn logits<R: AsRef<[f32]>>(&self, rows: &[R]) -> Result<Vec<f32>, ModelError> {
        let d = self.weights.len();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = rows.iter().map(AsRef::as_ref).find(|r| r.len() != d) {
            return Err(ModelError::Width {
                expected: d,
                found: bad.len(),
            });
        }
        if rows.len() <= SMALL_BATCH {
            // A request's few rows: building tensors costs more than the
            // products (about 10× faster per request: bench/run.sh scoring).
            return Ok(rows
                .iter()
                .map(|r| {
                    standardize(r.as_ref(), &self.mean, &self.std)
                        .zip(&self.weights)
                        .map(|(x, w)| x * w)
                        .sum::<f32>()
                        + self.bias
                })
                .collect());
        }
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|r| standardize(r.as_ref(), &self.mean, &self.std))
            .collect();
        let dev = Device::Cpu;
        let xs = Tensor::from_vec(flat, (rows.len(), d), &dev)?;
        let w = Tensor::from_vec(self.weights.clone(), (d, 1), &dev)?;
        let z = (xs.matmul(&w)? + f64::from(self.bias))?;
        Ok(z.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Calibrated logits: [`Self::predict`] before the sigmoid.
    pub fn calibrated_logits<R: AsRef<[f32]>>(&self, rows: &[R]) -> Result<Vec<f32>, ModelError> {
        let (a, b) = self.platt;
        Ok(self.logits(rows)?.into_iter().map(|z| a * z + b).collect())
    }

    /// Calibrated probabilities.
    pub fn predict<R: AsRef<[f32]>>(&self, rows: &[R]) -> Result<Vec<f32>, ModelError> {
        Ok(self
            .calibrated_logits(rows)?
            .into_iter()
            .map(sigmoid)
            .collect())
    }

    /// Fits the Platt scaling on held-out rows (Newton's method on two
    /// parameters, with the usual label smoothing).
    pub fn calibrate(&mut self, rows: &[Vec<f32>], y: &[f32]) -> Result<(), ModelError> {
        let z = self.logits(rows)?;
        self.platt = platt(&z, y);
        Ok(())
    }

    /// Each feature's contribution to one row's logit (weight × standardized value).
    pub fn contributions(&self, row: &[f32]) -> Vec<f32> {
        standardize(row, &self.mean, &self.std)
            .zip(&self.weights)
            .map(|(x, w)| x * w)
            .collect()
    }

    /// The tensors to save, by name.
    pub fn tensors(&self, prefix: &str) -> Result<HashMap<String, Tensor>, ModelError> {
        let dev = Device::Cpu;
        let d = self.weights.len();
        let mut out = HashMap::new();
        out.insert(
            format!("{prefix}.mean"),
            Tensor::from_vec(self.mean.clone(), d, &dev)?,
        );
        out.insert(
            format!("{prefix}.std"),
            Tensor::from_vec(self.std.clone(), d, &dev)?,
        );
        out.insert(
            format!("{prefix}.weight"),
            Tensor::from_vec(self.weights.clone(), d, &dev)?,
        );
        out.insert(
            format!("{prefix}.bias_platt"),
            Tensor::from_vec(vec![self.bias, self.platt.0, self.platt.1], 3, &dev)?,
        );
        Ok(out)
    }

    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
    ) -> Result<Logistic, ModelError> {
        let get = |name: &str| -> Result<Vec<f32>, ModelError> {
            let key = format!("{prefix}.{name}");
            tensors
                .get(&key)
                .ok_or(ModelError::MissingTensor(key))?
                .to_vec1::<f32>()
                .map_err(ModelError::from)
        };
        let (mean, std, weights, extra) = (
            get("mean")?,
            get("std")?,
            get("weight")?,
            get("bias_platt")?,
        );
        if mean.len() != weights.len() || std.len() != weights.len() || extra.len() != 3 {
            return Err(ModelError::Corrupt("tensor shapes disagree".into()));
        }
        Ok(Logistic {
            mean,
            std,
            weights,
            bias: extra[0],
            platt: (extra[1], extra[2]),
        })
    }
}

/// Mean binary cross-entropy from logits, as softplus(z) − y·z with
/// softplus(z) = max(z, 0) + ln(1 + e^−|z|): finite for any logit. (candle's
/// `binary_cross_entropy_with_logit` takes the log of a saturated sigmoid and
/// turns a separable class — pumping often is — into NaN.)
fn stable_bce(z: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    (softplus - (y * z)?)?.mean_all()
}

pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn moments(x: &[Vec<f32>], d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = x.len() as f64;
    let mut mean = vec![0f64; d];
    for row in x {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; d];
    for row in x {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(*v) - m).powi(2);
        }
    }
    let std = var
        .iter()
        .map(|s| {
            let sd = (s / n).sqrt();
            // A constant column stays 0 after standardizing.
            if sd > 1e-9 { sd as f32 } else { 1.0 }
        })
        .collect();
    (mean.iter().map(|m| *m as f32).collect(), std)
}

/// Up to this many rows are scored without candle (one request's rows).
const SMALL_BATCH: usize = 16;

fn standardize<'a>(
    row: &'a [f32],
    mean: &'a [f32],
    std: &'a [f32],
) -> impl Iterator<Item = f32> + 'a {
    row.iter().zip(mean).zip(std).map(|((v, m), s)| (v - m) / s)
}

/// Platt's method: fit σ(a·z + b) to labels, with smoothed targets.
fn platt(z: &[f32], y: &[f32]) -> (f32, f32) {
    let inputs: Vec<Vec<f64>> = z.iter().map(|z| vec![f64::from(*z)]).collect();
    match fit_small(&inputs, &smoothed_targets(y), &[1.0, 0.0]) {
        Some(w) => (w[0] as f32, w[1] as f32),
        None => (1.0, 0.0),
    }
}

/// Targets (n₊+1)/(n₊+2) and 1/(n₋+2) instead of 1 and 0 (Platt's smoothing),
/// so a separable set does not send the fit to infinity.
fn smoothed_targets(y: &[f32]) -> Vec<f64> {
    let positives = y.iter().filter(|v| **v > 0.5).count() as f64;
    let negatives = y.len() as f64 - positives;
    let hi = (positives + 1.0) / (positives + 2.0);
    let lo = 1.0 / (negatives + 2.0);
    y.iter().map(|v| if *v > 0.5 { hi } else { lo }).collect()
}

/// A logistic fit of a few inputs plus a bias (the last weight): Newton steps
/// from `start`, each halved until the loss goes down (plain Newton can
/// oscillate on a nearly separable set); `None` if it does not stay finite.
fn fit_small(inputs: &[Vec<f64>], targets: &[f64], start: &[f64]) -> Option<Vec<f64>> {
    let k = start.len();
    let dot = |x: &[f64], w: &[f64]| -> f64 {
        x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + w[k - 1]
    };
    let loss = |w: &[f64]| -> f64 {
        inputs
            .iter()
            .zip(targets)
            .map(|(x, t)| {
                let z = dot(x, w);
                // softplus(z) − t·z, finite for any z.
                z.max(0.0) + (-z.abs()).exp().ln_1p() - t * z
            })
            .sum()
    };
    let mut w = start.to_vec();
    let mut current = loss(&w);
    for _ in 0..50 {
        let mut grad = vec![0.0; k];
        // A small ridge on the Hessian's diagonal keeps it invertible.
        let mut hess = vec![vec![0.0; k]; k];
        (0..k).for_each(|i| hess[i][i] = 1e-6 * inputs.len() as f64);
        for (x, t) in inputs.iter().zip(targets) {
            let p = 1.0 / (1.0 + (-dot(x, &w)).exp());
            let row: Vec<f64> = x.iter().copied().chain([1.0]).collect();
            for i in 0..k {
                grad[i] += (p - t) * row[i];
                for j in 0..k {
                    hess[i][j] += p * (1.0 - p) * row[i] * row[j];
                }
            }
        }
        let step = solve(hess, grad)?;
        let mut scale = 1.0;
        let improved = loop {
            let next: Vec<f64> = w.iter().zip(&step).map(|(w, s)| w - scale * s).collect();
            let l = loss(&next);
            if l.is_finite() && l <= current {
                break Some((next, l));
            }
            scale *= 0.5;
            if scale < 1e-6 {
                break None;
            }
        };
        let Some((next, l)) = improved else { break };
        let moved = w
            .iter()
            .zip(&next)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        (w, current) = (next, l);
        if moved < 1e-9 {
            break;
        }
    }
    w.iter().all(|x| x.is_finite()).then_some(w)
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

/// How the two halves of the success model combine: P(approved | first
/// attempt via a route) = σ(α·logit P(delivered) + β·logit P(approved |
/// delivered) + γ), fitted on held-out verifications. The approval may still
/// come from a retry after an undelivered first attempt, and the two parts
/// were trained on different rows: the fit accounts for both. α stays
/// positive, so routes rank by their delivery whatever the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stack {
    pub delivery: f32,
    pub approval: f32,
    pub bias: f32,
}

impl Default for Stack {
    /// The plain product's neighbourhood: both logits at face value.
    fn default() -> Self {
        Stack {
            delivery: 1.0,
            approval: 1.0,
            bias: 0.0,
        }
    }
}

/// The smallest weight the delivery logit keeps in the stack.
const MIN_DELIVERY_WEIGHT: f64 = 0.05;

impl Stack {
    /// Fits on held-out rows: each row's two logits and whether it was approved.
    pub fn fit(delivery: &[f32], approval: &[f32], y: &[f32]) -> Stack {
        let inputs: Vec<Vec<f64>> = delivery
            .iter()
            .zip(approval)
            .map(|(d, a)| vec![f64::from(*d), f64::from(*a)])
            .collect();
        match fit_small(&inputs, &smoothed_targets(y), &[1.0, 1.0, 0.0]) {
            Some(w) => Stack {
                delivery: w[0].max(MIN_DELIVERY_WEIGHT) as f32,
                approval: w[1] as f32,
                bias: w[2] as f32,
            },
            None => Stack::default(),
        }
    }

    /// P(success) from the two logits.
    pub fn combine(&self, delivery_logit: f32, approval_logit: f32) -> f32 {
        sigmoid(self.delivery * delivery_logit + self.approval * approval_logit + self.bias)
    }

    pub fn tensors(&self, name: &str) -> Result<HashMap<String, Tensor>, ModelError> {
        let values = vec![self.delivery, self.approval, self.bias];
        Ok(HashMap::from([(
            name.to_string(),
            Tensor::from_vec(values, 3, &Device::Cpu)?,
        )]))
    }

    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        name: &str,
    ) -> Result<Stack, ModelError> {
        let v = tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?
            .to_vec1::<f32>()?;
        match v[..] {
            [delivery, approval, bias] => Ok(Stack {
                delivery,
                approval,
                bias,
            }),
            _ => Err(ModelError::Corrupt(format!(
                "{name} has {} values, not 3",
                v.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_recovers_the_weights_that_made_the_labels() {
        // Labels drawn from σ(1.5·d + 0.5·a − 1) on a grid of logits.
        let (mut d, mut a, mut y) = (Vec::new(), Vec::new(), Vec::new());
        let mut state = 1u64;
        for i in 0..20_000 {
            let (zd, za) = ((i % 41) as f32 / 10.0 - 2.0, (i % 37) as f32 / 6.0 - 3.0);
            let p = sigmoid(1.5 * zd + 0.5 * za - 1.0);
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            d.push(zd);
            a.push(za);
            y.push(f32::from(u8::from(u < p)));
        }
        let s = Stack::fit(&d, &a, &y);
        assert!((s.delivery - 1.5).abs() < 0.1, "{s:?}");
        assert!((s.approval - 0.5).abs() < 0.05, "{s:?}");
        assert!((s.bias + 1.0).abs() < 0.1, "{s:?}");
    }
}
