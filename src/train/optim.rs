//! AdamW with parameter groups (separate learning rates for the text encoder, the new
//! layers and the continuous prompts), HF's linear warm-up and decay, and global-norm
//! gradient clipping. The update runs as one fused loop per tensor over host memory
//! (candle's tensor-op AdamW builds about ten temporaries per parameter per step), and
//! its moments can be saved so a resumed run continues exactly.

use std::collections::HashMap;
use std::path::Path;

use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Device, InplaceOp1, Layout, Tensor, Var};
use candle_nn::VarMap;
use rayon::prelude::*;

use crate::kernels;
use crate::run::config::OptimConfig;

/// Σ g² in f64, over chunks in parallel; the chunk sums are added in order, so the norm
/// (and so a resumed run) does not depend on how the work was split between threads.
fn squared_norm(g: &[f32]) -> f64 {
    let partial: Vec<f64> = g
        .par_chunks(kernels::CHUNK)
        .map(|c| {
            kernels::simd(
                #[inline(always)]
                || kernels::dot(c, c),
            ) as f64
        })
        .collect();
    partial.iter().sum()
}

/// One tensor's AdamW update, applied in place to the variable's storage.
struct Update<'a> {
    grad: &'a [f32],
    moments: Mutex<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    clip: f32,
    lr: f32,
    decay: f32,
    betas: (f32, f32),
    corrections: (f32, f32),
    eps: f32,
}

impl Update<'_> {
    /// Updates `theta` and the moments in place.
    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    fn apply(&self, theta: &mut [f32]) -> candle_core::Result<()> {
        let mut moments = self
            .moments
            .lock()
            .expect("the moments lock is not poisoned");
        let (m, v) = &mut *moments;
        if theta.len() != self.grad.len() || theta.len() != m.len() {
            candle_core::bail!("AdamW: a gradient or moment does not match its variable");
        }
        let (b1, b2) = self.betas;
        let (bc1, bc2) = self.corrections;
        theta
            .par_chunks_mut(kernels::CHUNK)
            .zip(
                m.par_chunks_mut(kernels::CHUNK)
                    .zip(v.par_chunks_mut(kernels::CHUNK)),
            )
            .zip(self.grad.par_chunks(kernels::CHUNK))
            .for_each(|((t, (m, v)), g)| {
                kernels::simd(
                    #[inline(always)]
                    || {
                        for (((t, m), v), &g) in
                            t.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g)
                        {
                            let g = g * self.clip;
                            *m = b1 * *m + (1.0 - b1) * g;
                            *v = b2 * *v + (1.0 - b2) * g * g;
                            let update = (*m / bc1) / ((*v / bc2).sqrt() + self.eps);
                            *t = *t * self.decay - self.lr * update;
                        }
                    },
                )
            });
        Ok(())
    }
}

impl InplaceOp1 for Update<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("AdamW updates f32 variables");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("AdamW updates contiguous variables");
        };
        self.apply(&mut values[start..end])?;
        Ok(())
    }
}

/// Which learning rate a variable trains with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Text,
    New,
    Prompts,
}

impl Group {
    pub(crate) fn of(name: &str) -> Group {
        if name.starts_with("text.") {
            Group::Text
        } else if name.starts_with("prompts.") {
            Group::Prompts
        } else {
            Group::New
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    group: Group,
    decay: bool,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// The optimiser over every variable of a [`VarMap`].
pub(crate) struct AdamW {
    slots: Vec<Slot>,
    config: OptimConfig,
    pub step: usize,
    pub total_steps: usize,
}

/// What a step did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepReport {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning-rate multiplier of the schedule.
    pub schedule: f64,
}

impl AdamW {
    /// All variables, sorted by name; biases and norm weights get no weight decay (the
    /// HF convention).
    // Each `expect` here states an invariant that holds by construction.
    #[allow(clippy::expect_used)]
    pub(crate) fn new(varmap: &VarMap, config: OptimConfig, total_steps: usize) -> Self {
        let data = varmap
            .data()
            .lock()
            .expect("the varmap lock is not poisoned");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let slots = names
            .into_iter()
            .map(|name| {
                let var = data[name].clone();
                let n = var.elem_count();
                let no_decay =
                    name.ends_with("bias") || name.contains("norm") || name.contains("LayerNorm");
                Slot {
                    name: name.clone(),
                    group: Group::of(name),
                    decay: !no_decay,
                    var,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        Self {
            slots,
            config,
            step: 0,
            total_steps: total_steps.max(1),
        }
    }

    /// HF's `get_linear_schedule_with_warmup` multiplier at the current step.
    pub(crate) fn schedule(&self) -> f64 {
        let warmup = (self.config.warmup * self.total_steps as f64).round() as usize;
        let step = self.step as f64;
        if self.step < warmup {
            step / warmup.max(1) as f64
        } else {
            ((self.total_steps - self.step.min(self.total_steps)) as f64
                / (self.total_steps - warmup).max(1) as f64)
                .max(0.0)
        }
    }

    fn lr(&self, group: Group) -> f64 {
        match group {
            Group::Text => self.config.lr_text,
            Group::New => self.config.lr_new,
            Group::Prompts => self.config.lr_prompts,
        }
    }

    /// Clips the gradients to the global norm and applies one AdamW update. Gradients
    /// come from candle's backward pass or, for variables trained outside its graph
    /// (the text encoder's CPU trainer), from `host`.
    pub(crate) fn step<'a>(
        &mut self,
        grads: &GradStore,
        host: impl Fn(&Tensor) -> Option<&'a [f32]>,
    ) -> candle_core::Result<StepReport> {
        // Host gradients are borrowed; candle's are copied out of their tensors.
        let from_store: Vec<Option<Vec<f32>>> = self
            .slots
            .iter()
            .map(|s| {
                grads
                    .get(s.var.as_tensor())
                    .map(|g| g.flatten_all()?.to_vec1::<f32>())
                    .transpose()
            })
            .collect::<candle_core::Result<_>>()?;
        let slot_grads: Vec<Option<&[f32]>> = self
            .slots
            .iter()
            .zip(&from_store)
            .map(|(s, g)| host(s.var.as_tensor()).or(g.as_deref()))
            .collect();
        let norm = slot_grads
            .iter()
            .flatten()
            .map(|g| squared_norm(g))
            .sum::<f64>()
            .sqrt();
        let clip = if self.config.clip_norm > 0.0 && norm > self.config.clip_norm {
            (self.config.clip_norm / (norm + 1e-6)) as f32
        } else {
            1.0
        };
        let schedule = self.schedule();
        self.step += 1;
        let (b1, b2) = (self.config.beta1, self.config.beta2);
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        for (slot_index, grad) in slot_grads.into_iter().enumerate() {
            let Some(grad) = grad else { continue };
            let lr = self.lr(self.slots[slot_index].group) * schedule;
            let slot = &mut self.slots[slot_index];
            let update = Update {
                grad,
                moments: Mutex::new((&mut slot.m, &mut slot.v)),
                clip,
                lr: lr as f32,
                decay: if slot.decay {
                    (1.0 - lr * self.config.weight_decay) as f32
                } else {
                    1.0
                },
                betas: (b1 as f32, b2 as f32),
                corrections: (bc1 as f32, bc2 as f32),
                eps: self.config.eps as f32,
            };
            if slot.var.device().is_cpu() {
                slot.var.as_tensor().inplace_op1(&update)?;
            } else {
                // Moments live in host memory: round-trip the variable through it.
                let mut theta = slot.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                update.apply(&mut theta)?;
                let shape = slot.var.shape().clone();
                slot.var
                    .set(&Tensor::from_vec(theta, shape, slot.var.device())?)?;
            }
        }
        Ok(StepReport {
            grad_norm: norm,
            schedule,
        })
    }

    /// Saves the moments and the step count (safetensors).
    pub(crate) fn save(&self, file: &Path) -> candle_core::Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for slot in &self.slots {
            tensors.insert(
                format!("m.{}", slot.name),
                Tensor::from_slice(&slot.m, slot.m.len(), &Device::Cpu)?,
            );
            tensors.insert(
                format!("v.{}", slot.name),
                Tensor::from_slice(&slot.v, slot.v.len(), &Device::Cpu)?,
            );
        }
        tensors.insert(
            "step".into(),
            Tensor::new(&[self.step as u32], &Device::Cpu)?,
        );
        candle_core::safetensors::save(&tensors, file)
    }

    /// Restores what [`AdamW::save`] wrote.
    pub(crate) fn load(&mut self, file: &Path) -> candle_core::Result<()> {
        let tensors = candle_core::safetensors::load(file, &Device::Cpu)?;
        let get = |key: &str| {
            tensors.get(key).ok_or_else(|| {
                candle_core::Error::Msg(format!("{} has no tensor '{key}'", file.display()))
            })
        };
        for slot in &mut self.slots {
            slot.m = get(&format!("m.{}", slot.name))?.to_vec1::<f32>()?;
            slot.v = get(&format!("v.{}", slot.name))?.to_vec1::<f32>()?;
        }
        self.step = get("step")?.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::VarBuilder;

    #[test]
    fn the_schedule_warms_up_then_decays_to_zero() {
        let varmap = VarMap::new();
        let mut opt = AdamW::new(
            &varmap,
            OptimConfig {
                warmup: 0.1,
                ..Default::default()
            },
            100,
        );
        let at = |opt: &mut AdamW, step| {
            opt.step = step;
            opt.schedule()
        };
        assert_eq!(at(&mut opt, 0), 0.0);
        assert!((at(&mut opt, 5) - 0.5).abs() < 1e-12);
        assert!((at(&mut opt, 10) - 1.0).abs() < 1e-12);
        assert!((at(&mut opt, 55) - 0.5).abs() < 1e-12);
        assert_eq!(at(&mut opt, 100), 0.0);
    }

    #[test]
    fn adamw_matches_the_reference_update_and_clips() {
        // One step on f(x) = sum(x²)/2 (gradient x) from x = [3, 4]: the global norm is
        // 5, clipped to 1, so g = [0.6, 0.8]; Adam's first step moves each weight by lr.
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let x = vb
            .get_with_hints(2, "head.weight2d", candle_nn::Init::Const(0.0))
            .unwrap();
        varmap.data().lock().unwrap()["head.weight2d"]
            .set(&Tensor::new(&[3f32, 4.], &Device::Cpu).unwrap())
            .unwrap();
        let config = OptimConfig {
            lr_new: 0.1,
            warmup: 0.0,
            weight_decay: 0.0,
            clip_norm: 1.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(&varmap, config, 1_000_000);
        let loss = (x.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let report = opt.step(&loss.backward().unwrap(), |_| None).unwrap();
        assert!((report.grad_norm - 5.0).abs() < 1e-5);
        let after = varmap.data().lock().unwrap()["head.weight2d"]
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            (after[0] - 2.9).abs() < 1e-4 && (after[1] - 3.9).abs() < 1e-4,
            "{after:?}"
        );
    }

    #[test]
    fn state_round_trips() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let x = vb
            .get_with_hints(3, "w", candle_nn::Init::Const(1.0))
            .unwrap();
        let mut opt = AdamW::new(&varmap, OptimConfig::default(), 10);
        opt.step(
            &x.sqr().unwrap().sum_all().unwrap().backward().unwrap(),
            |_| None,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("opt.safetensors");
        opt.save(&file).unwrap();
        let mut again = AdamW::new(&varmap, OptimConfig::default(), 10);
        again.load(&file).unwrap();
        assert_eq!(again.step, 1);
        assert_eq!(again.slots[0].m, opt.slots[0].m);
        assert_eq!(again.slots[0].v, opt.slots[0].v);
    }
}
