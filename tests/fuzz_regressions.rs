//! Replays the fuzz corpus kept in the repository (`fuzz/corpus/<target>`) and every case
//! the fuzzers found (`fuzz/regressions/<target>`) through the fuzz targets' own checks,
//! so that `cargo test` catches a regression without nightly or cargo-fuzz. Inputs named
//! `valid-*` must also be accepted.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn cases(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz.join(kind).join(target)).ok())
        .flatten()
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let files = cases(target);
    assert!(!files.is_empty(), "no corpus for the {target} target");
    for file in files {
        let data = std::fs::read(&file).expect("a corpus file");
        // A panic names the file it came from.
        let accepted = std::panic::catch_unwind(|| check(&data))
            .unwrap_or_else(|_| panic!("{}: the {target} check panicked", file.display()));
        let name = file.file_name().expect("a file name").to_string_lossy();
        if name.starts_with("valid-") {
            assert!(accepted, "{}: a valid seed was refused", file.display());
        }
    }
}

#[test]
fn dataset_cases() {
    replay("dataset", checks::dataset);
}

#[test]
fn vocabulary_cases() {
    replay("vocabulary", checks::vocabulary);
}

#[test]
fn config_cases() {
    replay("config", checks::config);
}

#[test]
fn checkpoint_cases() {
    replay("checkpoint", checks::checkpoint);
}

#[test]
fn registry_cases() {
    replay("registry", checks::registry);
}

#[test]
fn image_cases() {
    replay("image", checks::image);
}

/// The checkpoint seed built now loads; `PROMPTMNER_WRITE_FUZZ_SEEDS=1` also writes it as
/// `fuzz/corpus/checkpoint/valid-tiny` (after a change to the model's weights).
#[test]
fn a_freshly_built_checkpoint_seed_loads() {
    let seed = checks::checkpoint_seed();
    assert!(checks::checkpoint(&seed));
    let [_, weights] = checks::parts::<2>(&seed);
    let mut truncated = seed[..seed.len() - weights.len() / 2].to_vec();
    assert!(
        !checks::checkpoint(&truncated),
        "half a weights file was accepted"
    );
    truncated.truncate(seed.len() - weights.len());
    assert!(
        !checks::checkpoint(&truncated),
        "no weights file was accepted"
    );
    if std::env::var_os("PROMPTMNER_WRITE_FUZZ_SEEDS").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/checkpoint/valid-tiny");
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("the corpus folder");
        std::fs::write(&path, &seed).expect("the seed");
    }
}
