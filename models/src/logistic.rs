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
        for _ in 0..config.epochs {
            let logits = xs.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            let loss = stable_bce(&logits, &ys)?;
            opt.backward_step(&loss)?;
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

    /// The uncalibrated logit of each row, as one batched product.
    pub fn logits(&self, rows: &[Vec<f32>]) -> Result<Vec<f32>, ModelError> {
        let d = self.weights.len();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = rows.iter().find(|r| r.len() != d) {
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
                    standardize(r, &self.mean, &self.std)
                        .zip(&self.weights)
                        .map(|(x, w)| x * w)
                        .sum::<f32>()
                        + self.bias
                })
                .collect());
        }
        let flat: Vec<f32> = rows
            .iter()
            .flat_map(|r| standardize(r, &self.mean, &self.std))
            .collect();
        let dev = Device::Cpu;
        let xs = Tensor::from_vec(flat, (rows.len(), d), &dev)?;
        let w = Tensor::from_vec(self.weights.clone(), (d, 1), &dev)?;
        let z = (xs.matmul(&w)? + f64::from(self.bias))?;
        Ok(z.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Calibrated probabilities.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<f32>, ModelError> {
        let (a, b) = self.platt;
        Ok(self
            .logits(rows)?
            .into_iter()
            .map(|z| sigmoid(a * z + b))
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

/// Platt's method: fit σ(a·z + b) to labels, with targets smoothed to
/// (n₊+1)/(n₊+2) and 1/(n₋+2) so a separable holdout does not blow up.
fn platt(z: &[f32], y: &[f32]) -> (f32, f32) {
    let positives = y.iter().filter(|v| **v > 0.5).count() as f64;
    let negatives = y.len() as f64 - positives;
    let hi = (positives + 1.0) / (positives + 2.0);
    let lo = 1.0 / (negatives + 2.0);
    let t: Vec<f64> = y.iter().map(|v| if *v > 0.5 { hi } else { lo }).collect();
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..100 {
        // Damped Newton (a ridge on the Hessian's diagonal), steps capped: a
        // nearly separable holdout would otherwise send the step to infinity.
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-3, 0.0, 1e-3);
        for (zi, ti) in z.iter().zip(&t) {
            let zi = f64::from(*zi);
            let p = 1.0 / (1.0 + (-(a * zi + b)).exp());
            let r = p - ti;
            let w = p * (1.0 - p);
            ga += r * zi;
            gb += r;
            haa += w * zi * zi;
            hab += w * zi;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let da = ((hbb * ga - hab * gb) / det).clamp(-5.0, 5.0);
        let db = ((haa * gb - hab * ga) / det).clamp(-5.0, 5.0);
        a -= da;
        b -= db;
        if da.abs() < 1e-9 && db.abs() < 1e-9 {
            break;
        }
    }
    if a.is_finite() && b.is_finite() {
        (a as f32, b as f32)
    } else {
        (1.0, 0.0)
    }
}
