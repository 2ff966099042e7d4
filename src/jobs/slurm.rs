//! The Slurm backend: one sbatch script per run (resources from the config), status
//! from `squeue` (and the run's events once the job has left the queue), cancel with
//! `scancel`. An `#SBATCH` line is a comment to bash, so quoting protects nothing there:
//! resources are checked against Slurm's notation, the job name is reduced to safe
//! characters, paths are quoted on the command line and refused with control
//! characters; commands get arguments, never a shell line.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::jobs::registry::{RegisteredRun, RegistryError, RunStatus, State, view};
use crate::run::RunDir;

/// Resources asked of Slurm for each run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub gpus: usize,
    pub cpus: usize,
    /// Memory, in Slurm's notation (e.g. 16G).
    pub memory: String,
    /// Time limit, in Slurm's notation (e.g. 04:00:00).
    pub time: String,
    /// Seconds before the time limit at which Slurm warns the job (SIGUSR1): the run
    /// saves its state and requeues itself.
    pub signal_lead: u32,
    /// Tasks of a job array that run at once (`--array=…%K`); 0: as many as Slurm
    /// gives.
    pub array_parallel: usize,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        Self {
            partition: None,
            gpus: 0,
            cpus: 2,
            memory: "8G".into(),
            time: "04:00:00".into(),
            signal_lead: 120,
            array_parallel: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot run {command} (is Slurm installed and on PATH?)")]
    Spawn {
        command: &'static str,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed {
        command: &'static str,
        stderr: String,
    },
    #[error("cannot write {path}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a Slurm config: {message}")]
    Parse {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{field} {value:?} cannot go into a batch script: {rule}; nothing was submitted")]
    Unsafe {
        field: &'static str,
        value: String,
        rule: &'static str,
    },
}

impl SlurmConfig {
    /// Reads a `slurm.toml` and checks every value that goes into a batch script.
    pub fn load(path: &Path) -> Result<Self, SlurmError> {
        let text = crate::util::read_text(path).map_err(|source| SlurmError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| SlurmError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Each resource in Slurm's own notation and nothing else, so that an `#SBATCH`
    /// line (a comment to bash, where quoting means nothing) can hold it as it is.
    pub fn check(&self) -> Result<(), SlurmError> {
        let unsafe_value = |field, value: &str, rule| SlurmError::Unsafe {
            field,
            value: value.to_string(),
            rule,
        };
        let memory = self.memory.trim_end_matches(['K', 'M', 'G', 'T']);
        if memory.is_empty() || !memory.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unsafe_value(
                "memory",
                &self.memory,
                "digits with an optional K, M, G or T (e.g. 16G)",
            ));
        }
        let time_ok = !self.time.is_empty()
            && self
                .time
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b':' || b == b'-');
        if !time_ok {
            return Err(unsafe_value(
                "time",
                &self.time,
                "digits, ':' and '-' (e.g. 04:00:00 or 1-12:00:00)",
            ));
        }
        if let Some(partition) = &self.partition {
            let ok = !partition.is_empty()
                && partition
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b','));
            if !ok {
                return Err(unsafe_value(
                    "partition",
                    partition,
                    "letters, digits, '_', '-', '.' and ','",
                ));
            }
        }
        Ok(())
    }
}

/// A path for the script's command line: quoted for bash, and refused when it holds a
/// character no single line can carry safely.
fn quoted_path(field: &'static str, path: &Path) -> Result<String, SlurmError> {
    let text = path.to_string_lossy();
    if text.chars().any(char::is_control) {
        return Err(SlurmError::Unsafe {
            field,
            value: text.into_owned(),
            rule: "no newline, carriage return, NUL or other control character",
        });
    }
    Ok(shlex::try_quote(&text)
        .map_err(|_| SlurmError::Unsafe {
            field,
            value: text.to_string(),
            rule: "no NUL byte",
        })?
        .into_owned())
}

/// The batch script of one run. Resources go on `#SBATCH` lines only after
/// [`SlurmConfig::check`]; the job name is reduced to a safe character set; the run
/// folder is given to `sbatch --chdir` as an argument, and the paths of the command
/// are quoted and free of control characters.
pub(crate) fn script(
    run: &RunDir,
    name: &str,
    program: &Path,
    config: &SlurmConfig,
) -> Result<String, SlurmError> {
    let mut lines = header(name, config)?;
    // Relative to the job's working directory, the run folder (--chdir).
    lines.push(format!("#SBATCH --output={}", RunDir::OUTPUT_LOG));
    lines.push(String::new());
    lines.extend(trainer_lines(
        &quoted_path("the program path", program)?,
        &quoted_path("the run's config path", &run.train_config())?,
        &quoted_path("the run folder", run.path())?,
        &quoted_path("the run folder", &run.cancel_marker())?,
        &quoted_path("the run folder", &run.job_exit())?,
    ));
    Ok(lines.join("\n") + "\n")
}

/// The `#SBATCH` lines every job gets: name, resources, and the requeue on a saved
/// stop (Slurm's warning `signal_lead` seconds ahead of the time limit to the batch
/// shell; the output appended across attempts).
fn header(name: &str, config: &SlurmConfig) -> Result<Vec<String>, SlurmError> {
    config.check()?;
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name={}", crate::util::safe_stem(name)),
        format!("#SBATCH --cpus-per-task={}", config.cpus),
        format!("#SBATCH --mem={}", config.memory),
        format!("#SBATCH --time={}", config.time),
        "#SBATCH --requeue".to_string(),
        format!("#SBATCH --signal=B:USR1@{}", config.signal_lead),
        "#SBATCH --open-mode=append".to_string(),
    ];
    if let Some(partition) = &config.partition {
        lines.push(format!("#SBATCH --partition={partition}"));
    }
    if config.gpus > 0 {
        lines.push(format!("#SBATCH --gpus={}", config.gpus));
    }
    Ok(lines)
}

/// Runs the trainer in the background so that this shell can pass Slurm's signals on
/// (a trap runs only between commands); when the trainer stops resumable (it saved its
/// state), the job requeues itself unless the run was cancelled. Every attempt runs
/// `--auto-resume`: the first starts, the next ones carry on.
fn trainer_lines(program: &str, config: &str, run: &str, cancel: &str, exit: &str) -> Vec<String> {
    let status = crate::train::EXIT_INTERRUPTED;
    [
        &format!("{program} train --config {config} --out {run} --auto-resume &"),
        "trainer=$!",
        "trap 'kill -USR1 \"$trainer\" 2>/dev/null' USR1",
        "trap 'kill -TERM \"$trainer\" 2>/dev/null' TERM",
        "while :; do",
        "  wait \"$trainer\"; status=$?",
        "  kill -0 \"$trainer\" 2>/dev/null || break",
        "done",
        &format!("echo \"$status\" > {exit}"),
        &format!("if [ \"$status\" -eq {status} ] && [ ! -e {cancel} ]; then"),
        "  scontrol requeue \"$SLURM_JOB_ID\" || true",
        "fi",
        "exit \"$status\"",
    ]
    .iter()
    .map(|line| line.to_string())
    .collect()
}

/// The batch script of a job array: task i trains `runs[i]`, its output in that run's
/// folder. Every path is quoted into a bash array; a task picks its own by index.
pub(crate) fn array_script(
    runs: &[RunDir],
    name: &str,
    program: &Path,
    config: &SlurmConfig,
) -> Result<String, SlurmError> {
    let mut lines = header(name, config)?;
    let limit = match config.array_parallel {
        0 => String::new(),
        k => format!("%{k}"),
    };
    lines.push(format!(
        "#SBATCH --array=0-{}{limit}",
        runs.len().saturating_sub(1)
    ));
    // Each task writes into its run's folder (below), nothing here.
    lines.push("#SBATCH --output=/dev/null".to_string());
    lines.push(String::new());
    let quoted: Vec<String> = runs
        .iter()
        .map(|run| quoted_path("a run folder", run.path()))
        .collect::<Result<_, _>>()?;
    lines.push(format!("runs=({})", quoted.join(" ")));
    lines.push("run=\"${runs[$SLURM_ARRAY_TASK_ID]}\"".to_string());
    lines.push("cd \"$run\" || exit 1".to_string());
    lines.push(format!("exec >>{} 2>&1", RunDir::OUTPUT_LOG));
    lines.extend(trainer_lines(
        &quoted_path("the program path", program)?,
        &format!("\"$run\"/{}", file_name(&RunDir::new("").train_config())),
        "\"$run\"",
        &format!("\"$run\"/{}", file_name(&RunDir::new("").cancel_marker())),
        &format!("\"$run\"/{}", file_name(&RunDir::new("").job_exit())),
    ));
    Ok(lines.join("\n") + "\n")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Submits `runs` as one job array (its script in the runs root, named after the
/// group); each run is queued with its task's id, `JOB_TASK`.
pub(crate) fn submit_array(
    root: &Path,
    runs: &[RegisteredRun],
    name: &str,
    program: &Path,
    config: &SlurmConfig,
) -> Result<String, SlurmError> {
    let dirs: Vec<RunDir> = runs.iter().map(|r| r.files.clone()).collect();
    let text = array_script(&dirs, name, program, config)?;
    let path = root.join(format!("{}.sbatch", crate::util::safe_stem(name)));
    crate::util::write_atomic(&path, text.as_bytes()).map_err(|source| SlurmError::Write {
        path: path.clone(),
        source,
    })?;
    let path_text = path.to_string_lossy();
    let out = run_command("sbatch", &["--parsable", &path_text])?;
    let job = out.split(';').next().unwrap_or_default().to_string();
    for (task, run) in runs.iter().enumerate() {
        let mut status = RunStatus::new(State::Queued);
        status.slurm_job = Some(format!("{job}_{task}"));
        status.message = Some(format!("task {task} of job array {job}"));
        run.write_status(&status)?;
    }
    Ok(job)
}

fn run_command(command: &'static str, args: &[&str]) -> Result<String, SlurmError> {
    let out = Command::new(command)
        .args(args)
        .output()
        .map_err(|source| SlurmError::Spawn { command, source })?;
    if !out.status.success() {
        return Err(SlurmError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes the script and submits it; the run is queued with its Slurm job id.
pub(crate) fn submit(
    run: &RegisteredRun,
    name: &str,
    program: &Path,
    config: &SlurmConfig,
) -> Result<String, SlurmError> {
    let text = script(&run.files, name, program, config)?;
    let path = run.files.batch_script();
    crate::util::write_atomic(&path, text.as_bytes()).map_err(|source| SlurmError::Write {
        path: path.clone(),
        source,
    })?;
    let chdir = format!("--chdir={}", run.dir().to_string_lossy());
    let path_text = path.to_string_lossy();
    let out = run_command("sbatch", &["--parsable", &chdir, &path_text])?;
    // --parsable prints "id" or "id;cluster".
    let job = out.split(';').next().unwrap_or_default().to_string();
    let mut status = RunStatus::new(State::Queued);
    status.slurm_job = Some(job.clone());
    run.write_status(&status)?;
    Ok(job)
}

/// Asks Slurm where the run's job is and records it; once the job has left the queue,
/// its events decide (finished, failed) or it was interrupted.
pub(crate) fn poll(run: &RegisteredRun) -> Result<State, SlurmError> {
    let current = view(run.clone())?;
    let Some(job) = current.status.slurm_job.clone() else {
        return Ok(current.state);
    };
    if current.state.is_final() {
        return Ok(current.state);
    }
    // -r: a pending array task has a line of its own.
    let queue_state =
        run_command("squeue", &["-h", "-r", "-j", &job, "-o", "%T"]).unwrap_or_default();
    let state = match queue_state.as_str() {
        // A job queued again after a saved stop (its own requeue, or `scontrol requeue`).
        "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" => State::Requeued,
        "PENDING" | "CONFIGURING" if current.progress.stopped.is_some() => State::Requeued,
        "PENDING" | "CONFIGURING" => State::Queued,
        "RUNNING" | "COMPLETING" | "SUSPENDED" => State::Running,
        _ if current.progress.finished => State::Finished,
        _ if current.progress.failed.is_some() => State::Failed,
        _ if run.files.cancel_marker().exists() => State::Cancelled,
        _ if failed_exit(run).is_some() => State::Failed,
        _ => State::Interrupted,
    };
    if state != current.status.state {
        let mut status = RunStatus::new(state);
        if state == State::Failed {
            status.exit_code = failed_exit(run);
            status.message = Some(format!(
                "the trainer exited with status {}: see {}",
                status.exit_code.unwrap_or_default(),
                run.files.output_log().display()
            ));
        }
        status.slurm_job = Some(job);
        run.write_status(&status)?;
    }
    Ok(state)
}

/// The trainer's exit status as the batch script recorded it, when it is a failure
/// (neither success nor a saved stop).
fn failed_exit(run: &RegisteredRun) -> Option<i32> {
    let text = std::fs::read_to_string(run.files.job_exit()).ok()?;
    let code: i32 = text.trim().parse().ok()?;
    (code != 0 && code != crate::train::EXIT_INTERRUPTED).then_some(code)
}

/// Cancels the run's job.
pub(crate) fn cancel(run: &RegisteredRun) -> Result<(), SlurmError> {
    let current = crate::jobs::registry::cancellable(run)?;
    if let Some(job) = &current.status.slurm_job {
        std::fs::write(run.files.cancel_marker(), b"").map_err(|source| SlurmError::Write {
            path: run.files.cancel_marker(),
            source,
        })?;
        run_command("scancel", &[job])?;
    }
    Ok(())
}

/// Cancels a whole submission: each run's cancel marker, then one `scancel` per job: the
/// array's id for its tasks (the array goes as one), a single run's job id otherwise.
pub(crate) fn cancel_group(runs: &[RegisteredRun]) -> Result<(), SlurmError> {
    let mut jobs: Vec<String> = Vec::new();
    for run in runs {
        let Ok(current) = crate::jobs::registry::cancellable(run) else {
            continue;
        };
        let Some(job) = current.status.slurm_job else {
            continue;
        };
        std::fs::write(run.files.cancel_marker(), b"").map_err(|source| SlurmError::Write {
            path: run.files.cancel_marker(),
            source,
        })?;
        let whole = job.split_once('_').map_or(job.as_str(), |(array, _)| array);
        if !jobs.iter().any(|j| j == whole) {
            jobs.push(whole.to_string());
        }
    }
    for job in &jobs {
        run_command("scancel", &[job])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 4] = [
        "$(touch pwned-a)",
        "'; touch pwned-b #",
        "\"`touch pwned-c`\"",
        "x && touch pwned-d",
    ];

    /// Every file under `dir` whose name starts with `pwned`.
    fn pwned(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(pwned(&path));
            } else if entry.file_name().to_string_lossy().starts_with("pwned") {
                found.push(path);
            }
        }
        found
    }

    #[test]
    fn values_that_break_a_line_are_refused_before_anything_is_written() {
        let scratch = tempfile::tempdir().unwrap();
        let run = RunDir::new(scratch.path().join("r0001"));
        let program = Path::new("/bin/true");
        for bad in ["x\ntouch /tmp/PWNED #", "x\rtouch", "x\u{0}y", "x\u{1b}[2J"] {
            let fields: [(&str, SlurmConfig); 3] = [
                (
                    "memory",
                    SlurmConfig {
                        memory: bad.into(),
                        ..Default::default()
                    },
                ),
                (
                    "time",
                    SlurmConfig {
                        time: bad.into(),
                        ..Default::default()
                    },
                ),
                (
                    "partition",
                    SlurmConfig {
                        partition: Some(bad.into()),
                        ..Default::default()
                    },
                ),
            ];
            for (field, config) in fields {
                let error = script(&run, "n", program, &config).unwrap_err();
                assert!(error.to_string().starts_with(field), "{field}: {error}");
            }
            let bad_dir = RunDir::new(scratch.path().join(bad));
            let config = SlurmConfig::default();
            assert!(script(&bad_dir, "n", program, &config).is_err(), "{bad:?}");
            assert!(
                script(&run, "n", Path::new(bad), &config).is_err(),
                "{bad:?}"
            );
            // A name is never refused: it is reduced to safe characters.
            let text = script(&run, bad, program, &config).unwrap();
            let plain = script(&run, "plain", program, &config).unwrap();
            assert_eq!(text.lines().count(), plain.lines().count(), "{text}");
        }
        for hostile in HOSTILE {
            let config = SlurmConfig {
                memory: hostile.into(),
                ..Default::default()
            };
            assert!(script(&run, "n", program, &config).is_err());
        }
    }

    /// Runs a run's batch script under bash with a fake `scontrol` (recording its
    /// arguments) and a trainer that exits resumable (75) on SIGUSR1, sends the script
    /// SIGUSR1 once the trainer runs, and returns the script's status and what
    /// scontrol was asked.
    fn stop_a_job(cancelled: bool) -> (Option<i32>, String) {
        let scratch = tempfile::tempdir().unwrap();
        let (bin, dir) = (scratch.path().join("bin"), scratch.path().join("run"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let executable = crate::util::write_executable;
        let asked = scratch.path().join("scontrol.log");
        executable(
            &bin.join("scontrol"),
            &format!("#!/bin/sh\necho \"$@\" >> '{}'\n", asked.display()),
        );
        let started = scratch.path().join("trainer-started");
        let program = scratch.path().join("trainer");
        executable(
            &program,
            &format!(
                "#!/bin/bash\ntrap 'exit 75' USR1\ntouch '{}'\nwhile :; do sleep 0.02; done\n",
                started.display()
            ),
        );
        let run = RunDir::new(&dir);
        if cancelled {
            std::fs::write(run.cancel_marker(), "").unwrap();
        }
        let text = script(&run, "n", &program, &SlurmConfig::default()).unwrap();
        let path = run.batch_script();
        std::fs::write(&path, &text).unwrap();
        let search = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let mut job = std::process::Command::new("bash")
            .arg(&path)
            .current_dir(&dir)
            .env("PATH", search)
            .env("SLURM_JOB_ID", "4242")
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while !started.exists() {
            assert!(start.elapsed().as_secs() < 20, "the trainer did not start");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // What Slurm does `signal_lead` seconds before the time limit (B: the shell).
        // SAFETY: kill(2) with a pid and a signal number has no memory effects.
        unsafe { libc::kill(job.id() as libc::pid_t, libc::SIGUSR1) };
        let status = job.wait().unwrap();
        (
            status.code(),
            std::fs::read_to_string(&asked).unwrap_or_default(),
        )
    }

    #[test]
    fn a_job_warned_of_its_time_limit_passes_the_signal_on_and_requeues_itself() {
        let text = script(
            &RunDir::new("/runs/r1"),
            "n",
            Path::new("/bin/promptmner"),
            &SlurmConfig::default(),
        )
        .unwrap();
        for line in [
            "#SBATCH --requeue",
            "#SBATCH --signal=B:USR1@120",
            "#SBATCH --open-mode=append",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert!(text.contains("--auto-resume &"), "{text}");
        let (status, asked) = stop_a_job(false);
        assert_eq!(status, Some(crate::train::EXIT_INTERRUPTED));
        assert_eq!(asked.trim(), "requeue 4242");
        // A cancelled run stops, saved, and stays stopped.
        let (status, asked) = stop_a_job(true);
        assert_eq!(status, Some(crate::train::EXIT_INTERRUPTED));
        assert_eq!(asked, "");
    }

    #[test]
    fn an_array_script_over_hostile_run_folders_runs_each_task_in_its_own_and_nothing_else() {
        let scratch = tempfile::tempdir().unwrap();
        let dirs: Vec<RunDir> = HOSTILE
            .iter()
            .enumerate()
            .map(|(i, hostile)| {
                let dir = scratch.path().join(format!("r{i} {hostile}"));
                std::fs::create_dir_all(&dir).unwrap();
                RunDir::new(dir)
            })
            .collect();
        // The program records where it was asked to train.
        let program = scratch.path().join("program $(touch pwned-p)");
        crate::util::write_executable(
            &program,
            "#!/bin/sh\nprintf '%s' \"$5\" > \"$5/trained-here\"\n",
        );
        let config = SlurmConfig {
            array_parallel: 2,
            ..Default::default()
        };
        let text = array_script(&dirs, "n", &program, &config).unwrap();
        assert!(text.lines().any(|l| l == "#SBATCH --array=0-3%2"), "{text}");
        let path = scratch.path().join("array.sbatch");
        std::fs::write(&path, &text).unwrap();
        for (task, dir) in dirs.iter().enumerate() {
            let ran = std::process::Command::new("bash")
                .arg(&path)
                .current_dir(scratch.path())
                .env("SLURM_ARRAY_TASK_ID", task.to_string())
                .output()
                .unwrap();
            assert!(ran.status.success(), "{text}\n{ran:?}");
            let here = std::fs::read_to_string(dir.path().join("trained-here")).unwrap();
            assert_eq!(Path::new(&here), dir.path());
            assert_eq!(std::fs::read_to_string(dir.job_exit()).unwrap().trim(), "0");
        }
        assert_eq!(pwned(scratch.path()), Vec::<std::path::PathBuf>::new());
    }

    #[test]
    fn a_script_with_hostile_names_and_paths_runs_no_command() {
        let scratch = tempfile::tempdir().unwrap();
        for (i, hostile) in HOSTILE.iter().enumerate() {
            let dir = scratch
                .path()
                .join(format!("runs {hostile}"))
                .join(format!("r{i} {hostile}"));
            std::fs::create_dir_all(&dir).unwrap();
            // The program the script execs: exists, does nothing.
            let program = scratch.path().join(format!("program {hostile}"));
            crate::util::write_executable(&program, "#!/bin/sh\nexit 0\n");
            let run = RunDir::new(&dir);
            let config = SlurmConfig {
                partition: Some("debug".into()),
                ..Default::default()
            };
            let name = format!("promptmner-{hostile}-r{i}");
            let text = script(&run, &name, &program, &config).unwrap();
            let path = run.batch_script();
            std::fs::write(&path, &text).unwrap();
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&path)
                .output()
                .unwrap();
            assert!(check.status.success(), "{text}\n{check:?}");
            let ran = std::process::Command::new("bash")
                .arg(&path)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(ran.status.success(), "{text}\n{ran:?}");
            let job_name = text.lines().nth(1).unwrap();
            assert!(
                job_name
                    .strip_prefix("#SBATCH --job-name=")
                    .is_some_and(crate::util::is_plain_name),
                "{job_name}"
            );
        }
        assert_eq!(pwned(scratch.path()), Vec::<std::path::PathBuf>::new());
    }
}
