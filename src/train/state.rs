//! The resumable state of a run: weights, optimiser, metrics and, when a signal stopped
//! the run inside an epoch, where in the epoch it stopped. The set is written into a
//! fresh folder `state-N` which the link `state` is then switched to by one rename, so
//! a process killed at any moment leaves the previous complete set or the new one,
//! never files of two different steps.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::run::RunDir;

/// Where in an epoch a run stopped: what the rest of the epoch needs to go on exactly
/// as it would have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpochPosition {
    pub epoch: usize,
    /// Batches of the epoch already trained.
    pub batches: usize,
    /// The epoch's training loss so far: its sum and count.
    pub loss_sum: f64,
    pub loss_count: usize,
    /// The dropout generator's position (ChaCha8's word position; a string because
    /// JSON numbers do not hold a u128).
    pub dropout_word: String,
    /// Seconds the epoch has trained so far.
    pub seconds: f64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// The number of a `state-N` folder name.
fn folder_number(name: &str) -> Option<u64> {
    name.strip_prefix("state-")?.parse().ok()
}

/// Writes a new state set through `write` (given the fresh folder) and switches the
/// `state` link to it; removes the sets it replaces.
pub(crate) fn save(
    run: &RunDir,
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let link = run.state_dir();
    let numbers = || {
        std::fs::read_dir(&run.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| folder_number(&e.ok()?.file_name().to_string_lossy()))
    };
    let name = format!("state-{}", numbers().max().map_or(0, |n| n + 1));
    let fresh = run.dir.join(&name);
    std::fs::create_dir(&fresh).map_err(io(&fresh))?;
    write(&fresh)?;
    // A state folder of an older layout (a plain directory) steps aside once.
    let metadata = std::fs::symlink_metadata(&link);
    if metadata.is_ok_and(|m| m.is_dir()) {
        let aside = run
            .dir
            .join(format!("state-{}", numbers().max().unwrap_or(0) + 1));
        std::fs::rename(&link, &aside).map_err(io(&link))?;
    }
    let staged = run.dir.join("state.link");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(&name, &staged).map_err(io(&staged))?;
    std::fs::rename(&staged, &link).map_err(io(&link))?;
    for old in numbers().filter(|&n| format!("state-{n}") != name) {
        let path: PathBuf = run.dir.join(format!("state-{old}"));
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!("cannot remove the old state {}: {e}", path.display());
        }
    }
    Ok(())
}

/// Where the saved state stopped inside an epoch; None when it is an epoch's end.
pub(crate) fn position(run: &RunDir) -> Result<Option<EpochPosition>, TrainError> {
    let path = run.state_position();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TrainError::BadState {
            path,
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_marker(value: &str) -> impl FnOnce(&Path) -> Result<(), TrainError> + '_ {
        move |dir| {
            std::fs::write(dir.join(RunDir::STATE_METRICS), value).map_err(io(dir))?;
            Ok(())
        }
    }

    #[test]
    fn each_save_switches_the_link_and_leaves_one_set() {
        let scratch = tempfile::tempdir().unwrap();
        let run = RunDir::new(scratch.path());
        // An older run's plain state folder is replaced too.
        std::fs::create_dir(run.state_dir()).unwrap();
        std::fs::write(run.state_metrics(), "old layout").unwrap();
        for value in ["first", "second", "third"] {
            save(&run, write_marker(value)).unwrap();
            assert_eq!(std::fs::read_to_string(run.state_metrics()).unwrap(), value);
        }
        let mut names: Vec<String> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names[0], "state");
        assert!(names[1].starts_with("state-"), "{names:?}");
    }

    #[test]
    fn a_save_that_fails_midway_leaves_the_previous_set() {
        let scratch = tempfile::tempdir().unwrap();
        let run = RunDir::new(scratch.path());
        save(&run, write_marker("kept")).unwrap();
        let failed = save(&run, |dir| {
            std::fs::write(dir.join(RunDir::STATE_METRICS), "half").map_err(io(dir))?;
            Err(TrainError::Empty(dir.to_path_buf()))
        });
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read_to_string(run.state_metrics()).unwrap(),
            "kept"
        );
        // The next save goes on past the abandoned folder.
        save(&run, write_marker("next")).unwrap();
        assert_eq!(
            std::fs::read_to_string(run.state_metrics()).unwrap(),
            "next"
        );
    }
}
