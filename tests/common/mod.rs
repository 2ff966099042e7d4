//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod hub_server;

use std::path::PathBuf;

/// `$PROMPTMNER_SHARED`, or `None` after printing why the calling test skips.
pub fn shared() -> Option<PathBuf> {
    match std::env::var_os("PROMPTMNER_SHARED") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            eprintln!(
                "skipped: PROMPTMNER_SHARED is not set (point it at ../shared to run this test)"
            );
            None
        }
    }
}

/// The real Twitter-2015 text under `$PROMPTMNER_SHARED/data/twitter2015`.
pub fn twitter2015() -> Option<PathBuf> {
    let dir = shared()?.join("data/twitter2015");
    assert!(
        dir.is_dir(),
        "PROMPTMNER_SHARED is set but {} is missing",
        dir.display()
    );
    Some(dir)
}

/// The home folder the tests' commands see: under the build's temporary folder, so
/// that no cache, run or model store of a test lands in the user's own home.
pub fn test_home() -> PathBuf {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// The promptmner binary built for these tests, with its home, caches, runs and model
/// store in [`test_home`] (a test may still point one of them elsewhere).
pub fn promptmner() -> std::process::Command {
    let home = test_home();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_promptmner"));
    command
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("PROMPTMNER_CACHE", home.join(".cache/promptmner"))
        .env("PROMPTMNER_RUNS", home.join("runs"));
    command
}

/// `promptmner runs --runs ROOT ARGS...` from the repository root; its stdout, after
/// checking that it succeeded.
pub fn runs(root: &std::path::Path, args: &[&str]) -> String {
    let out = promptmner()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("runs")
        .arg("--runs")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Largest absolute element-wise difference of two tensors of one shape.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The staged path for one tweet, as the workbench runs it: its text stage as a batch
/// of one, scored with every detail (similarities and clue attention).
pub fn score_one<S: AsRef<str>>(
    model: &promptmner::model::PromptMner,
    words: &[S],
    image: &promptmner::model::ImageState,
    bank: &promptmner::model::prompts::PromptBank,
) -> promptmner::model::Prediction {
    let pieces = model.tokenize(words).unwrap();
    let states = model.encode_word_states(&[&pieces]).unwrap();
    let batch = model.text_batch(&[&states[0]], &[&pieces]).unwrap();
    model
        .score_batch(
            &batch,
            &[image.embedding()],
            bank,
            promptmner::model::Detail::Clues,
        )
        .unwrap()
        .remove(0)
}

/// The prompt bank of a vocabulary through a fresh prompt cache (one-shot use).
pub fn bank(
    model: &promptmner::model::PromptMner,
    vocabulary: &promptmner::prompts::Vocabulary,
    n_continuous: usize,
) -> promptmner::model::prompts::PromptBank {
    promptmner::stages::PromptCache::default()
        .bank(
            model,
            vocabulary,
            n_continuous,
            &promptmner::stages::StageCounters::default(),
        )
        .unwrap()
}

/// Builds a document holding `table` with pdflatex, or (without pdflatex, outside CI)
/// says why it skips.
pub fn compiles_as_latex(table: &str) {
    if std::process::Command::new("pdflatex")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "pdflatex is missing on CI (.ci/install-test-deps installs it)"
        );
        eprintln!(
            "skipped compiling the LaTeX table: no pdflatex (.ci/install-test-deps installs it)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let document = format!(
        "\\documentclass{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\n{table}\\end{{document}}\n"
    );
    std::fs::write(dir.path().join("table.tex"), document).unwrap();
    let built = std::process::Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error", "table.tex"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        built.status.success() && dir.path().join("table.pdf").is_file(),
        "{table}\n{}",
        String::from_utf8_lossy(&built.stdout)
    );
}
