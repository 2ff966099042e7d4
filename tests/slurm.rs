//! The Slurm backend against a real single-node Slurm on this machine (.ci/slurm-local
//! starts it): a tiny demo run submitted through the backend finishes, and a name that
//! would run something in a shell stays a name.

mod common;

use std::path::Path;

use common::runs;
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the local Slurm; None (after saying why) where it cannot run outside CI.
fn slurm() -> Option<()> {
    let installed = Command::new("sbatch").arg("--version").output().is_ok();
    let started = installed
        && Command::new(repo().join(".ci/slurm-local"))
            .status()
            .is_ok_and(|s| s.success());
    if started {
        return Some(());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "Slurm is missing or did not start on CI (.ci/install-test-deps, .ci/slurm-local)"
    );
    eprintln!("skipped: no local Slurm (run .ci/install-test-deps and .ci/slurm-local as root)");
    None
}

#[test]
fn a_tiny_demo_run_submitted_to_slurm_finishes() {
    if slurm().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let slurm_config = root.join("slurm.toml");
    std::fs::write(
        &slurm_config,
        "cpus = 1\nmemory = \"1G\"\ntime = \"00:10:00\"\n",
    )
    .unwrap();
    let out = runs(
        &root,
        &[
            "submit",
            "--from",
            "checkpoints/demo",
            "--variant",
            "full",
            "--seeds",
            "1",
            "--backend",
            "slurm",
            "--name",
            "$(touch pwned)\"; touch pwned2 #",
            "--set",
            "epochs=1",
            "--set",
            "max_train_examples=64",
        ],
    );
    let id = out.lines().next().unwrap().to_string();
    let script = std::fs::read_to_string(root.join(&id).join("job.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --mem=1G"), "{script}");
    let start = Instant::now();
    loop {
        let list = runs(&root, &["list"]);
        let line = list
            .lines()
            .find(|l| l.starts_with(&id))
            .unwrap_or_default()
            .to_string();
        if line.contains("finished") {
            break;
        }
        assert!(
            !line.contains("failed") && !line.contains("interrupted"),
            "{line}\n{}",
            runs(&root, &["show", &id])
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "waited 300 s: {line}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let table = runs(&root, &["table"]);
    // The Markdown row of `full`: its cells, trimmed.
    let full: Vec<&str> = table
        .lines()
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&"full"))
        .unwrap_or_default();
    assert_eq!(full.get(1), Some(&"1/1"), "{table}");
    for dir in [repo(), scratch.path(), &root, &root.join(&id)] {
        assert!(!dir.join("pwned").exists() && !dir.join("pwned2").exists());
    }
}
