//! `promptmner bench`: measurements, not tests. `encode` times the towers on the
//! workloads of `../shared/anchors/bench_infer.py` (so the figures compare one to one
//! with PyTorch's); `live` times the engine's edit loop at base size; `agree` compares
//! the engine on a device with the engine on the CPU.

mod agree;
mod live;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::data::{read_conll, split_path};
use crate::model::bert::cpu::EncoderPass;
use crate::model::bert::{BertConfig, BertModel, TextBackbone, WordPieces};
use crate::model::clip::{ClipConfig, ClipModel};
use crate::model::device::Precision;
use crate::model::ops::Mode;
use crate::progress::{Progress, Task};
pub(crate) use agree::{AgreeFigures, agree};
pub(crate) use live::{LiveFigures, LiveSetup, live};

#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    #[error("{path} is missing: the benchmark needs ../shared (set --shared DIR)")]
    MissingShared { path: PathBuf },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Data(#[from] crate::data::conll::ConllError),
    #[error(transparent)]
    Store(#[from] crate::model::store::StoreError),
    #[error("cannot run {command}: {message}")]
    Torch { command: String, message: String },
    #[error("the live benchmark's engine: {0}")]
    Engine(String),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Throughput of the towers, under the keys `bench_infer.py` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EncodeFigures {
    /// What was encoded (PyTorch's figures leave it empty).
    #[serde(default)]
    pub workload: String,
    /// The precision of the products (PyTorch's figures: fp32).
    #[serde(default)]
    pub precision: Precision,
    pub minilm_tweets_per_s: f64,
    pub bert_base_tweets_per_s: f64,
    pub clip_b32_images_per_s: f64,
    pub clip_b32_100_prompts_ms: f64,
    pub clip_b32_1_prompt_ms: f64,
}

/// Median seconds of `reps` runs of `f` after one warm-up run.
fn timed(reps: usize, mut f: impl FnMut() -> Result<(), BenchError>) -> Result<f64, BenchError> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The BERT-base shapes of the anchors (bert-base-cased's vocabulary).
pub(crate) fn bert_base_config(vocab_size: usize) -> BertConfig {
    BertConfig {
        vocab_size,
        hidden_size: 768,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        intermediate_size: 3072,
        hidden_act: crate::model::ops::Activation::Gelu,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
    }
}

/// CLIP ViT-B/32's shapes (HF's `CLIPConfig()` defaults).
pub(crate) fn clip_b32_config() -> ClipConfig {
    serde_json::from_str(r#"{"text_config": {}, "vision_config": {}}"#)
        .unwrap_or_else(|e| unreachable!("the defaults parse: {e}"))
}

/// all-MiniLM-L6-v2's shapes.
fn minilm_config() -> BertConfig {
    BertConfig {
        num_hidden_layers: 6,
        hidden_size: 384,
        num_attention_heads: 12,
        intermediate_size: 1536,
        ..bert_base_config(30522)
    }
}

/// A model with random weights (values do not change the cost) on `device`.
fn random<M>(
    seed: u64,
    device: &Device,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<M>,
) -> Result<M, BenchError> {
    let varmap = VarMap::new();
    let model = build(VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    crate::model::ops::reinitialize(&varmap, "", seed)?;
    Ok(model)
}

/// Length-sorted batches of 32 of a split's word pieces.
fn sorted_batches(mut pieces: Vec<WordPieces>) -> Vec<Vec<WordPieces>> {
    pieces.sort_by_key(|p| p.ids.len());
    pieces.chunks(32).map(<[WordPieces]>::to_vec).collect()
}

/// Tweets per second of the encoder's inference forward over the batches: on the CPU
/// its own pass to the word states (the rows the model reads: first pieces), candle's
/// forward (what a GPU runs) elsewhere.
fn text_rate(
    model: &BertModel,
    batches: &[Vec<WordPieces>],
    reps: usize,
    precision: Precision,
) -> Result<f64, BenchError> {
    let tweets: usize = batches.iter().map(Vec::len).sum();
    let device = model.tensors()?.word.device().clone();
    if !crate::model::bert::cpu::supports(model, &device) {
        let seconds = timed(reps, || {
            for batch in batches {
                let refs: Vec<&WordPieces> = batch.iter().collect();
                let (ids, mask) = crate::model::bert::pad_batch(&refs, &device)?;
                // Reading one value waits for the device to finish the batch.
                model
                    .forward(&ids, &mask, Mode::Eval)?
                    .flatten_all()?
                    .get(0)?
                    .to_scalar::<f32>()?;
            }
            Ok(())
        })?;
        return Ok(tweets as f64 / seconds);
    }
    let tensors = model.tensors()?;
    let bf16 = match precision.effective(&device) {
        Precision::Bf16 => Some(crate::model::bert::cpu::pack_bf16(&tensors)?),
        Precision::Fp32 => None,
    };
    let mut pass = EncoderPass::new(&model.config, false);
    let seconds = timed(reps, || {
        for batch in batches {
            let refs: Vec<&WordPieces> = batch.iter().collect();
            crate::model::bert::cpu::with_host(&tensors, |w| {
                pass.word_states(w, bf16.as_deref(), &refs)
            })?;
        }
        Ok(())
    })?;
    Ok(tweets as f64 / seconds)
}

/// Tweets of `bench encode --quick` (the anchor scripts' `--quick`: the split's first).
pub(crate) const QUICK_TWEETS: usize = 640;

/// `bench encode`: MiniLM (real weights) and bert-base shapes over Twitter-2015 test
/// (its first `tweets` when given), CLIP ViT-B/32 vision (batch 32) and text (100
/// prompts, 1 prompt), with the products in `precision` where it runs (else fp32).
pub(crate) fn encode(
    shared: &Path,
    device: &Device,
    tweets: Option<usize>,
    precision: Precision,
    progress: &dyn Progress,
) -> Result<EncodeFigures, BenchError> {
    let precision = precision.effective(device);
    let minilm_dir = shared.join("models/all-MiniLM-L6-v2");
    let test = split_path(&shared.join("data/twitter2015"), "test");
    let mut task = Task::start(progress, "bench encode", 5);
    let varmap = VarMap::new();
    // Without ../shared (a machine that has only the binary and the demo, as the GPU
    // check's bundle): MiniLM's shapes with random weights over the demo's test split.
    let (minilm, test, workload) = if minilm_dir.is_dir() && test.is_file() {
        let minilm = TextBackbone::load(&minilm_dir, 128, &varmap, "", device)?;
        (
            minilm,
            test,
            "Twitter-2015 test, all-MiniLM-L6-v2".to_string(),
        )
    } else {
        let demo = crate::data::demo::embedded_dir();
        let tokenizer = demo.join("../../checkpoints/demo/text/tokenizer.json");
        for path in [&demo.join("test.txt"), &tokenizer] {
            if !path.is_file() {
                return Err(BenchError::MissingShared { path: path.clone() });
            }
        }
        let config = minilm_config();
        let model = random(2, device, |vb| BertModel::load(vb, &config))?;
        let tokenizer = crate::model::bert::tokenizer::WordPieceTokenizer::load(&tokenizer, 128)?;
        let backbone = TextBackbone { model, tokenizer };
        let label = "demo test, MiniLM shapes with random weights (../shared not found)";
        (backbone, split_path(&demo, "test"), label.to_string())
    };
    let mut split = read_conll(&test)?;
    split.truncate(tweets.unwrap_or(usize::MAX));
    let pieces = split
        .iter()
        .map(|t| minilm.tokenizer.encode_words(&t.words))
        .collect::<Result<Vec<_>, _>>()?;
    let batches = sorted_batches(pieces);
    let minilm_tweets_per_s = text_rate(&minilm.model, &batches, 3, precision)?;
    task.advance(1);

    // bert-base-cased's vocabulary is smaller than MiniLM's: clamp ids as the anchor does.
    let base_config = bert_base_config(28996);
    let clamped: Vec<Vec<WordPieces>> = batches
        .iter()
        .map(|b| {
            b.iter()
                .map(|p| WordPieces {
                    ids: p.ids.iter().map(|&id| id.min(28995)).collect(),
                    first_piece: p.first_piece.clone(),
                    cut_words: p.cut_words,
                })
                .collect()
        })
        .collect();
    let base = random(0, device, |vb| BertModel::load(vb, &base_config))?;
    let bert_base_tweets_per_s = text_rate(&base, &clamped, 1, precision)?;
    drop(base);
    task.advance(1);

    let config = clip_b32_config();
    let mut clip = random(1, device, |vb| ClipModel::load(vb, &config))?;
    clip.set_precision(precision)?;
    let images = Tensor::randn(0f32, 1.0, (32, 3, 224, 224), device)?;
    // Each run ends by reading a value: a GPU's queue is waited for inside the timing.
    let vision = timed(3, || {
        clip.image_embeds(&images, Mode::Eval)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<f32>()?;
        Ok(())
    })?;
    task.advance(1);
    let prompts = |n: usize| -> Result<Tensor, BenchError> {
        let mut ids = Vec::with_capacity(n * 7);
        for i in 0..n {
            ids.push(49406u32);
            ids.extend((0..5).map(|k| 1 + ((i * 7919 + k * 104_729) % 48_999) as u32));
            ids.push(49407);
        }
        Ok(clip
            .text
            .embed_tokens(&Tensor::from_vec(ids, (n, 7), device)?)?)
    };
    let (hundred, one) = (prompts(100)?, prompts(1)?);
    let text100 = timed(5, || {
        clip.text_embeds(&hundred, &[6; 100], Mode::Eval)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<f32>()?;
        Ok(())
    })?;
    task.advance(1);
    let text1 = timed(20, || {
        clip.text_embeds(&one, &[6], Mode::Eval)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<f32>()?;
        Ok(())
    })?;
    task.advance(1);
    Ok(EncodeFigures {
        workload,
        precision,
        minilm_tweets_per_s,
        bert_base_tweets_per_s,
        clip_b32_images_per_s: 32.0 / vision,
        clip_b32_100_prompts_ms: 1000.0 * text100,
        clip_b32_1_prompt_ms: 1000.0 * text1,
    })
}

/// Runs `anchors/bench_infer.py` with `python` and reads the figures it prints.
pub(crate) fn torch_encode(python: &Path, shared: &Path) -> Result<EncodeFigures, BenchError> {
    run_anchor(python, &shared.join("anchors/bench_infer.py"), shared, &[])
}

/// What `anchors/bench_ort.py` measures in the same work as `bench encode`'s text rows:
/// ONNX Runtime's fused fp32 graph and PyTorch's bfloat16 autocast, tweets/s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrtFigures {
    pub ort_minilm_tweets_per_s: f64,
    pub ort_bert_base_tweets_per_s: f64,
    pub torch_bf16_minilm_tweets_per_s: f64,
    pub torch_bf16_bert_base_tweets_per_s: f64,
    /// ORT's dynamic int8 quantisation (changes results; absent where it failed).
    #[serde(default)]
    pub ort_minilm_int8_tweets_per_s: Option<f64>,
}

/// Runs `anchors/bench_ort.py` with `python` (on its first 640 tweets when `quick`) and
/// reads the figures it prints.
pub(crate) fn ort_encode(
    python: &Path,
    shared: &Path,
    quick: bool,
) -> Result<OrtFigures, BenchError> {
    let extra: &[&str] = if quick { &["--quick"] } else { &[] };
    run_anchor(python, &shared.join("anchors/bench_ort.py"), shared, extra)
}

/// Runs an anchor script (`python SCRIPT SHARED EXTRA…`) and reads the one JSON object
/// it prints; a failure names the command and the end of its error output.
fn run_anchor<T: serde::de::DeserializeOwned>(
    python: &Path,
    script: &Path,
    shared: &Path,
    extra: &[&str],
) -> Result<T, BenchError> {
    let command = format!(
        "{} {} {} {}",
        python.display(),
        script.display(),
        shared.display(),
        extra.join(" ")
    );
    let torch_error = |message: String| BenchError::Torch {
        command: command.clone(),
        message,
    };
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(shared)
        .args(extra)
        .output()
        .map_err(|e| torch_error(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(torch_error(format!(
            "exit {}: {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| torch_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for Python: a shell script that answers for the anchor script it is
    /// given (its first argument) as `body` says.
    fn fake_python(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("python");
        crate::util::write_executable(&path, &format!("#!/bin/sh\n{body}\n"));
        path
    }

    #[test]
    fn the_ort_anchor_is_run_with_the_shared_folder_and_its_figures_read() {
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(
            dir.path(),
            r#"case "$1" in */anchors/bench_ort.py) ;; *) exit 3;; esac
test "$2" = "$(dirname "$(dirname "$1")")" || exit 4
echo '{"ort_minilm_tweets_per_s": 178.4, "ort_bert_base_tweets_per_s": 22.0,
 "torch_bf16_minilm_tweets_per_s": 277.4, "torch_bf16_bert_base_tweets_per_s": 40.5,
 "ort_minilm_int8_error": "no quantiser"}'"#,
        );
        let figures = ort_encode(&python, dir.path(), false).unwrap();
        assert_eq!(figures.ort_minilm_tweets_per_s, 178.4);
        assert_eq!(figures.torch_bf16_bert_base_tweets_per_s, 40.5);
        // The int8 row is an extra: absent when its quantisation failed.
        assert_eq!(figures.ort_minilm_int8_tweets_per_s, None);
    }

    #[test]
    fn a_failing_anchor_names_its_command_and_the_end_of_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(
            dir.path(),
            "echo 'Traceback' >&2; echo 'ModuleNotFoundError: onnxruntime' >&2; exit 1",
        );
        let err = ort_encode(&python, dir.path(), false).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("anchors/bench_ort.py"), "{message}");
        assert!(
            message.contains("ModuleNotFoundError: onnxruntime"),
            "{message}"
        );
        // Output that is not the figures is an error too, not zeros.
        let python = fake_python(dir.path(), "echo '{\"ort_minilm_tweets_per_s\": 1}'");
        assert!(ort_encode(&python, dir.path(), false).is_err());
        // --quick is passed on to the script.
        let python = fake_python(
            dir.path(),
            r#"test "$3" = "--quick" || exit 5
echo '{"ort_minilm_tweets_per_s": 1, "ort_bert_base_tweets_per_s": 1,
 "torch_bf16_minilm_tweets_per_s": 1, "torch_bf16_bert_base_tweets_per_s": 1}'"#,
        );
        assert!(ort_encode(&python, dir.path(), false).is_err());
        assert!(ort_encode(&python, dir.path(), true).is_ok());
    }
}
