//! SIGKILL in the middle of saves: a vocabulary save, a checkpoint's weights save and a
//! run status update always leave the old file or the new one, complete and loadable.
//!
//! The saver is this test binary run again with PROMPTMNER_SAVE_LOOP set: it saves two
//! versions in turn until it is killed, at a different moment each time.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use candle_core::{Device, Tensor};
use promptmner::jobs::registry::{RegisteredRun, RunStatus, State};
use promptmner::prompts::Vocabulary;

const VOCABULARY: &str =
    "template = \"an image of {}\"\ncontinuous = 0\n[PER]\nlabels = [\"person\"]\n";

fn vocabulary(version: usize) -> Vocabulary {
    let mut v = Vocabulary::parse(VOCABULARY, Path::new("v.toml")).unwrap();
    v.continuous = version;
    // The second version is larger, so that a torn write would show.
    for i in 0..version * 200 {
        v.add_word(
            promptmner::data::EntityType::Loc,
            promptmner::prompts::WordList::Related,
            &format!("place{i}"),
        )
        .unwrap();
    }
    v
}

fn weights(version: usize) -> HashMap<String, Tensor> {
    let values = vec![version as f32; 64 * 1024 * (version + 1)];
    let n = values.len();
    HashMap::from([(
        "w".to_string(),
        Tensor::from_vec(values, n, &Device::Cpu).unwrap(),
    )])
}

fn status(version: usize) -> RunStatus {
    let mut status = RunStatus::new(if version == 0 {
        State::Queued
    } else {
        State::Running
    });
    status.message = Some("x".repeat(version * 100_000));
    status
}

/// The child: saves versions 0 and 1 of `what` into `dir` until killed.
fn save_loop(what: &str, dir: &Path) {
    let run = RegisteredRun::new(dir);
    let (vocabularies, tensors, statuses) = (
        [vocabulary(0), vocabulary(1)],
        [weights(0), weights(1)],
        [status(0), status(1)],
    );
    for round in 0.. {
        let version = round % 2;
        match what {
            "vocabulary" => vocabularies[version]
                .save(&dir.join("prompts.toml"))
                .unwrap(),
            "checkpoint" => promptmner::train::save_atomic(&dir.join("model.safetensors"), |p| {
                candle_core::safetensors::save(&tensors[version], p)
            })
            .unwrap(),
            "status" => run.write_status(&statuses[version]).unwrap(),
            other => panic!("unknown save {other}"),
        }
    }
}

/// Loads what the killed saver left; it must be one of the two versions.
fn check(what: &str, dir: &Path) {
    match what {
        "vocabulary" => {
            let v = Vocabulary::load(&dir.join("prompts.toml")).unwrap();
            assert!(v == vocabulary(0) || v == vocabulary(1));
        }
        "checkpoint" => {
            let loaded =
                candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
                    .unwrap();
            let w = loaded["w"].to_vec1::<f32>().unwrap();
            let version = w[0] as usize;
            assert!(
                version <= 1
                    && w.len() == 64 * 1024 * (version + 1)
                    && w.iter().all(|x| *x == w[0])
            );
        }
        "status" => {
            let s = RegisteredRun::new(dir).status().unwrap();
            let version = usize::from(s.state == State::Running);
            assert_eq!(s.message, status(version).message);
        }
        _ => unreachable!(),
    }
}

#[test]
fn a_save_killed_at_any_moment_leaves_the_old_or_the_new_file() {
    if let (Ok(what), Ok(dir)) = (
        std::env::var("PROMPTMNER_SAVE_LOOP"),
        std::env::var("PROMPTMNER_SAVE_DIR"),
    ) {
        save_loop(&what, Path::new(&dir));
        return;
    }
    let me = std::env::current_exe().unwrap();
    for (what, file) in [
        ("vocabulary", "prompts.toml"),
        ("checkpoint", "model.safetensors"),
        ("status", "status.json"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // Once a save has completed, the file must be there after every later kill.
        let mut saved = false;
        for moment in 0..25u64 {
            let mut child = Command::new(&me)
                .args([
                    "--exact",
                    "a_save_killed_at_any_moment_leaves_the_old_or_the_new_file",
                    "--nocapture",
                ])
                .env("PROMPTMNER_SAVE_LOOP", what)
                .env("PROMPTMNER_SAVE_DIR", dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Moments spread over the first ~120 ms of saving (start-up included).
            std::thread::sleep(Duration::from_millis(20 + (moment * 37) % 100));
            child.kill().unwrap();
            child.wait().unwrap();
            // Killed before its first save completed (its temporary file may be there).
            if !dir.path().join(file).exists() {
                assert!(!saved, "{file} vanished after a kill at moment {moment}");
                continue;
            }
            saved = true;
            check(what, dir.path());
        }
        // Leftover temporary files (a kill between create and rename) are hidden and
        // never what a loader opens.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                ["prompts.toml", "model.safetensors", "status.json"].contains(&name.as_str())
                    || name.starts_with('.')
                    || name.ends_with(".tmp"),
                "unexpected file {name}"
            );
        }
    }
}
