//! Training, evaluation and the committed demo checkpoint.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::Device;
use common::promptmner;
use promptmner::data::images::{ClipPreprocess, ImageResolver};
use promptmner::model::clip::ClipBackbone;
use promptmner::progress::NoProgress;
use promptmner::stages::image_cache::image_states;
use promptmner::train::clip_pretrain::zero_shot_accuracy;
use promptmner::train::{Checkpoint, Metrics, evaluate};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn metrics(dir: &Path) -> Metrics {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn the_committed_demo_checkpoint_reaches_its_recorded_f1() {
    let dir = root().join("checkpoints/demo");
    let recorded = metrics(&dir)
        .test
        .expect("the demo checkpoint records its test scores");
    assert!(recorded.f1 >= 90.0, "{}", recorded.f1);
    let checkpoint = Checkpoint::load(&dir, &Device::Cpu).unwrap();
    let tweets = promptmner::data::read_conll(&promptmner::data::split_path(
        &root().join("data/demo"),
        "test",
    ))
    .unwrap();
    let resolver = ImageResolver::for_dataset(&root().join("data/demo"), None);
    let images = image_states(
        &checkpoint.model,
        &tweets,
        &resolver,
        None,
        64,
        &NoProgress,
        &promptmner::stages::StageCounters::default(),
    )
    .unwrap();
    let n = checkpoint.config.model.continuous_prompts;
    let (scores, _) = evaluate(
        &checkpoint.model,
        &tweets,
        &images,
        &checkpoint.vocabulary,
        n,
        64,
        &NoProgress,
    )
    .unwrap();
    assert!(
        scores.f1 >= recorded.f1 - 1e-6,
        "{} < recorded {}",
        scores.f1,
        recorded.f1
    );
}

#[test]
fn the_committed_demo_clip_types_scenes_zero_shot() {
    let dir = root().join("checkpoints/demo/clip");
    let clip = ClipBackbone::load(&dir, &Device::Cpu).unwrap();
    let vocabulary = promptmner::prompts::demo::vocabulary().unwrap();
    let pre = ClipPreprocess::for_image_size(clip.model.config.vision_config.image_size as u32);
    let (accuracy, images) = zero_shot_accuracy(
        &clip.model,
        &clip.tokenizer,
        &root().join("data/demo"),
        &vocabulary,
        &pre,
        &Device::Cpu,
    )
    .unwrap();
    assert!(images > 250);
    assert!(accuracy >= 90.0, "zero-shot scene accuracy {accuracy}");
}

/// A quick training configuration on the demo, writing into `dir`.
fn quick_config(dir: &Path) -> PathBuf {
    let config = dir.join("quick.toml");
    let data = root().join("data/demo");
    let clip = root().join("checkpoints/demo/clip");
    std::fs::write(
        &config,
        format!(
            r#"data = "{}"
prompts = "{}"
epochs = 3
batch_size = 4
eval_batch_size = 64
seed = 7
log_every = 1
max_train_examples = 400
[backbones]
text = "tiny"
clip = "{}"
[model]
fusion_heads = 4
continuous_prompts = 2
span_hidden = 32
"#,
            data.display(),
            root().join("prompts/demo.toml").display(),
            clip.display()
        ),
    )
    .unwrap();
    config
}

/// `promptmner train --config CONFIG --out OUT EXTRA...` with its cache in `cache`.
fn train_command(config: &Path, out: &Path, cache: &Path, extra: &[&str]) -> std::process::Command {
    let mut command = promptmner();
    command
        .args(["train", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("PROMPTMNER_CACHE", cache);
    command
}

fn train(config: &Path, out: &Path, cache: &Path, extra: &[&str]) -> std::process::Child {
    train_command(config, out, cache, extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = quick_config(dir.path());

    let whole = dir.path().join("whole");
    assert!(
        train(&config, &whole, &cache, &[])
            .wait()
            .unwrap()
            .success()
    );

    let killed = dir.path().join("killed");
    let mut child = train(&config, &killed, &cache, &[]);
    let start = Instant::now();
    loop {
        let mid_epoch_two = events(&killed)
            .iter()
            .any(|e| e["event"] == "step" && e["epoch"] == 2);
        if mid_epoch_two {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = metrics(&killed);
    assert_eq!(before.epochs.len(), 1, "killed during epoch 2");

    // Without --resume the directory is refused; with it the run completes.
    let refused = train(&config, &killed, &cache, &[])
        .wait_with_output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        train(&config, &killed, &cache, &["--resume"])
            .wait()
            .unwrap()
            .success()
    );

    let (a, b) = (metrics(&whole), metrics(&killed));
    assert_eq!(a.epochs.len(), 3);
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!(x.dev, y.dev, "epoch {}", x.epoch);
        assert!(
            (x.train_loss - y.train_loss).abs() < 1e-9,
            "epoch {}",
            x.epoch
        );
    }
    assert_eq!(a.best_epoch, b.best_epoch);
    assert_eq!(a.test, b.test);
    let kinds: Vec<String> = events(&killed)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"resumed".to_string()) && kinds.last().unwrap() == "finished");
    // The checkpoint layout.
    for file in [
        "config.toml",
        "model.safetensors",
        "prompts.toml",
        "metrics.json",
        "train.log",
        "events.jsonl",
    ] {
        assert!(killed.join(file).is_file(), "{file}");
    }

    // A resume that would change the run is refused, naming the key.
    let changed = stderr_of(train_piped(
        &config,
        &killed,
        &cache,
        &["--resume", "--set", "epochs=5"],
    ));
    assert!(
        changed.contains("--resume would change the run") && changed.contains("epochs: 3 → 5"),
        "{changed}"
    );
    // A truncated optimizer state names its file.
    let optimizer = killed.join("state/optimizer.safetensors");
    let bytes = std::fs::read(&optimizer).unwrap();
    std::fs::write(&optimizer, &bytes[..bytes.len() / 2]).unwrap();
    let damaged = stderr_of(train_piped(&config, &killed, &cache, &["--resume"]));
    assert!(
        damaged.contains(&optimizer.display().to_string()) && damaged.contains("damaged"),
        "{damaged}"
    );
}

/// Waits until the run in `dir` has logged a step of `epoch` past `step` (its global
/// step count), or fails if `child` ends first.
fn wait_for_step(dir: &Path, child: &mut std::process::Child, epoch: u64, step: u64) {
    let start = Instant::now();
    while !events(dir)
        .iter()
        .any(|e| e["event"] == "step" && e["epoch"] == epoch && e["step"].as_u64() > Some(step))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be stopped"
        );
        assert!(start.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every figure of two runs' metrics but the timings, which no two runs share.
fn results(m: &Metrics) -> String {
    let epochs: Vec<String> = m
        .epochs
        .iter()
        .map(|e| format!("{} {:?} {:?}", e.epoch, e.train_loss, e.dev))
        .collect();
    format!("{epochs:?} best {:?} test {:?}", m.best_epoch, m.test)
}

#[test]
fn a_run_stopped_by_signals_mid_epoch_resumes_to_identical_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = quick_config(dir.path());
    let whole = dir.path().join("whole");
    assert!(
        train(&config, &whole, &cache, &[])
            .wait()
            .unwrap()
            .success()
    );

    // Slurm's warning before the time limit (SIGUSR1) in epoch 1, then a kill's
    // SIGTERM in epoch 2, each resumed with --auto-resume as a requeued job is.
    let stopped = dir.path().join("stopped");
    let mut child = train(&config, &stopped, &cache, &["--auto-resume"]);
    for (signal, epoch, step) in [(libc::SIGUSR1, 1, 37), (libc::SIGTERM, 2, 163)] {
        wait_for_step(&stopped, &mut child, epoch, step);
        // SAFETY: kill(2) with a pid and a signal number has no memory effects.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(promptmner::train::EXIT_INTERRUPTED),
            "{signal}"
        );
        let last = events(&stopped).last().cloned().unwrap();
        assert_eq!(last["event"], "interrupted", "{last}");
        assert_eq!(last["epoch"], epoch, "{last}");
        assert!(stopped.join("state/position.json").is_file());
        child = train(&config, &stopped, &cache, &["--auto-resume"]);
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(results(&metrics(&whole)), results(&metrics(&stopped)));
    let kinds: Vec<String> = events(&stopped)
        .iter()
        .filter(|e| e["event"] != "step" && e["event"] != "epoch")
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "interrupted",
            "resumed",
            "interrupted",
            "resumed",
            "finished"
        ]
    );
    // One state set is left, behind the `state` link.
    let sets = std::fs::read_dir(&stopped)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("state-")
        })
        .count();
    assert_eq!(sets, 1);
}

fn train_piped(config: &Path, out: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    train_command(config, out, cache, extra).output().unwrap()
}

/// The stderr of a command that must fail.
fn stderr_of(out: std::process::Output) -> String {
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn eval_writes_predictions_that_score_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("pred.txt");
    let data = root().join("data/demo");
    let out = promptmner()
        .args(["eval", "--checkpoint"])
        .arg(root().join("checkpoints/demo"))
        .arg("--data")
        .arg(&data)
        .args(["--split", "test", "--json", "--out"])
        .arg(&pred)
        .env("PROMPTMNER_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(eval["ambiguous"]["micro"]["f1"].as_f64().unwrap() > 0.0);
    let out = promptmner()
        .args(["score", "--json", "--gold"])
        .arg(data.join("test.txt"))
        .arg("--pred")
        .arg(&pred)
        .output()
        .unwrap();
    let scored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["micro"], scored["micro"]);
    assert_eq!(eval["per_type"], scored["per_type"]);
}

#[test]
fn pretrain_clip_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clip");
    let status = promptmner()
        .args(["pretrain-clip", "--data"])
        .arg(root().join("data/demo"))
        .arg("--out")
        .arg(&out)
        .args(["--epochs", "2", "--prompts"])
        .arg(root().join("prompts/demo.toml"))
        .status()
        .unwrap();
    assert!(status.success());
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pretrain.json")).unwrap()).unwrap();
    let losses = report["epoch_losses"].as_array().unwrap();
    assert!(losses[1].as_f64().unwrap() < losses[0].as_f64().unwrap());
    ClipBackbone::load(&out, &Device::Cpu).unwrap();
}
