//! The terminal workbench (DESIGN §7): an [`App`](app::App) of components (one file
//! each under `components/`: state, key handling, draw), keys become actions,
//! [`update`](app::update) is a plain function, and one event loop waits on input,
//! engine events, job events and encoded images, and redraws only when something
//! changed. The engine's worker does the model work; an image thread decodes and
//! encodes pictures; effects that can block (queueing runs, cancelling one, dropping
//! the engine a loaded checkpoint replaces) run on threads of their own and report back
//! as wake-ups; the UI thread only handles keys and draws.

pub(crate) mod app;
pub(crate) mod components;
pub(crate) mod editor;
pub(crate) mod filter;
pub(crate) mod keys;
mod terminal_query;

#[cfg(test)]
mod test_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::Device;
use ratatui::DefaultTerminal;
use ratatui::layout::Rect;
use ratatui_image::Resize;
use ratatui_image::picker::Picker;

use crate::engine::suggest::{SuggestRequest, Suggestion, suggest};
use crate::engine::{Engine, EngineHandle, EngineOptions, Event};
use crate::jobs::registry::{BackendKind, Registry};
use crate::jobs::submit::{Submission, submit};
use crate::jobs::table::{Format, render};
use crate::jobs::watch::{JobsSnapshot, snapshot};
use crate::jobs::{Backend, JobsError, LocalBackend, SlurmConfig, backend_for};
use crate::model::device::Precision;
use crate::prompts::{Vocabulary, VocabularyError};
use app::{Action, App, Effect, Session, update};
use components::image::{ImageOutcome, ShownImage};

/// What the workbench opens.
#[derive(Debug, Clone)]
pub(crate) struct TuiOptions {
    pub data: PathBuf,
    pub checkpoint: PathBuf,
    pub split: String,
    /// A vocabulary to start from (and save to) instead of the checkpoint's.
    pub prompts: Option<PathBuf>,
    pub device: Device,
    pub precision: Precision,
    pub images: Option<PathBuf>,
    /// Writes frame-time figures (JSON) here on exit.
    pub frame_stats: Option<PathBuf>,
    /// The runs folder of the jobs panel and the ablations queued from the workbench.
    pub runs_root: PathBuf,
    /// A second checkpoint (B) whose predictions are shown beside the first's.
    pub compare: Option<PathBuf>,
    /// Candidate words for suggestions, instead of the vocabulary's.
    pub candidates: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TuiError {
    #[error("the terminal failed")]
    Terminal(#[from] std::io::Error),
    #[error(transparent)]
    Vocabulary(#[from] VocabularyError),
    #[error("cannot write the frame figures to {path}")]
    FrameStats {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where `s` saves: `--prompts`, else `<checkpoint>-prompts.toml` beside the checkpoint.
/// Saving over the checkpoint's own prompts.toml needs a yes.
pub(crate) fn save_target(checkpoint: &Path, prompts: Option<&Path>) -> (PathBuf, bool) {
    let own = crate::run::RunDir::new(checkpoint).prompts();
    match prompts {
        Some(path) => {
            let same = std::fs::canonicalize(path).ok() == std::fs::canonicalize(&own).ok()
                && own.exists();
            (path.to_path_buf(), same)
        }
        None => {
            let name = checkpoint
                .file_name()
                .map_or("checkpoint".into(), |n| n.to_string_lossy().into_owned());
            let dir = checkpoint.parent().unwrap_or(Path::new("."));
            (dir.join(format!("{name}-prompts.toml")), false)
        }
    }
}

/// The state before anything is loaded.
pub(crate) fn new_app(options: &TuiOptions) -> Result<App, TuiError> {
    let (save_path, save_needs_confirm) =
        save_target(&options.checkpoint, options.prompts.as_deref());
    let session = Session {
        dataset: crate::util::folder_name(&options.data),
        split: options.split.clone(),
        checkpoint: crate::util::folder_name(&options.checkpoint),
        // The precision shows where it differs from the default and runs here.
        device: match options.precision.effective(&options.device) {
            _ if options.device.is_cuda() => "cuda",
            Precision::Bf16 => "cpu bf16",
            Precision::Fp32 => "cpu",
        }
        .into(),
        save_path,
        save_needs_confirm,
        checkpoint_dir: options.checkpoint.clone(),
        runs_root: options.runs_root.clone(),
    };
    let mut app = App::new(session, None);
    app.shared.candidates = options.candidates.clone();
    if let Some(path) = options.prompts.as_deref().filter(|p| p.exists()) {
        app.start_vocabulary = Some(Vocabulary::load(path)?);
    }
    Ok(app)
}

/// What wakes the event loop.
enum Wake {
    Input(crossterm::event::Event),
    /// An event of the engine started `epoch`-th.
    Engine(u64, Event),
    Image(ImageOutcome),
    Jobs(JobsSnapshot),
    Suggested(Suggestion),
    SuggestionsDone(Option<String>),
    /// An event of the compared checkpoint's engine.
    Compare(Event),
    /// What a blocking effect run off the UI thread came to.
    Done(Action),
}

/// Runs the workbench until the user quits; the terminal is restored on every path
/// (ratatui's panic hook restores it on a panic).
pub(crate) fn run(options: TuiOptions) -> Result<(), TuiError> {
    let started = Instant::now();
    let app = new_app(&options)?;
    let mut terminal = ratatui::try_init().inspect_err(|_| ratatui::restore())?;
    restore_only_on_ui_panics();
    let result = run_on(&mut terminal, app, &options, started);
    ratatui::restore();
    result
}

/// ratatui's hook restores the terminal on any panic; a panic the engine's worker
/// catches and reports must not tear the screen down, nor print over it.
fn restore_only_on_ui_panics() {
    let ui = std::thread::current().id();
    let restore_and_report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui {
            restore_and_report(info);
        } else {
            tracing::error!("a background thread panicked: {info}");
        }
    }));
}

fn picker() -> Picker {
    match std::env::var("PROMPTMNER_IMAGE_PROTOCOL").as_deref() {
        // Skips the query (terminals known not to show images, tests).
        Ok("halfblocks") => Picker::halfblocks(),
        // Asks the terminal (kitty, sixel; up to 1.5 s) before any event is read.
        _ => terminal_query::query_picker(),
    }
}

fn run_on(
    terminal: &mut DefaultTerminal,
    mut app: App,
    options: &TuiOptions,
    started: Instant,
) -> Result<(), TuiError> {
    let (wake, inbox) = channel();
    let compare_engine = options.compare.as_ref().map(|other| {
        app.shared.compare = Some(app::Compare {
            checkpoint: crate::util::folder_name(other),
            ..app::Compare::default()
        });
        let (engine, events) = Engine::spawn(
            other,
            &options.data,
            &options.split,
            engine_options(options),
        );
        forward(events, wake.clone(), Wake::Compare);
        engine
    });
    let mut workbench = Workbench {
        compare_engine,
        engine: start_engine(options, &options.checkpoint, &wake, 0),
        engine_epoch: 0,
        options,
        wake: wake.clone(),
        suggestions_stop: Arc::new(AtomicBool::new(false)),
        background: Background::new(wake.clone()),
    };
    // The engine loads while the terminal is asked about images (up to 2 s where it
    // does not answer). The query reads stdin, so it ends before the first screen and
    // before keys are read: a key typed once the workbench shows is never its answer.
    let picker = picker();
    read_input(wake.clone());
    terminal.draw(|frame| components::draw(&app, frame))?;
    let images = image_worker(picker, wake.clone());
    watch_jobs(options.runs_root.clone(), wake.clone());
    let mut frames = FrameTimes::new(started);
    let mut requested: Option<(PathBuf, Rect)> = None;
    let mut dirty = true;
    while !app.quit {
        if dirty {
            let size = terminal.size()?;
            let areas = components::Areas::of(
                Rect::new(0, 0, size.width, size.height),
                app.shared.compare.is_some(),
            );
            app.shared.page = areas.left.height.saturating_sub(3).max(1) as usize;
            request_image(&app, areas.image, &images, &mut requested);
            let start = Instant::now();
            terminal.draw(|frame| components::draw(&app, frame))?;
            frames.record(
                start.elapsed(),
                !matches!(app.shared.engine, app::EngineState::Idle),
            );
            if app.shared.scores.is_some() && app.current_view().is_some() {
                frames.scored_screen();
            }
            dirty = false;
        }
        let Ok(first) = inbox.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        // Everything that arrived together is one redraw.
        for woke in std::iter::once(first).chain(inbox.try_iter()) {
            dirty |= workbench.handle(&mut app, woke);
        }
    }
    if let Some(path) = &options.frame_stats {
        crate::util::write_atomic(path, frames.to_json().as_bytes()).map_err(|source| {
            TuiError::FrameStats {
                path: path.clone(),
                source,
            }
        })?;
    }
    tracing::info!("frame times: {}", frames.to_json());
    workbench.finish();
    Ok(())
}

fn engine_options(options: &TuiOptions) -> EngineOptions {
    EngineOptions {
        device: options.device.clone(),
        precision: options.precision,
        images: options.images.clone(),
        ..EngineOptions::default()
    }
}

/// Starts an engine on `checkpoint` (at once: its worker loads); its events reach the
/// loop tagged with `epoch`.
fn start_engine(
    options: &TuiOptions,
    checkpoint: &Path,
    wake: &Sender<Wake>,
    epoch: u64,
) -> EngineHandle {
    let (engine, events) = Engine::spawn(
        checkpoint,
        &options.data,
        &options.split,
        engine_options(options),
    );
    forward(events, wake.clone(), move |event| {
        Wake::Engine(epoch, event)
    });
    engine
}

/// Runs the effects that can block on threads of their own: a job's result comes back
/// to the loop as `Wake::Done`; a value handed over to drop (an engine, whose drop
/// waits for its worker) is dropped there, and those drops are waited for at exit so
/// that the caches they write are complete.
struct Background {
    wake: Sender<Wake>,
    drops: Vec<JoinHandle<()>>,
}

impl Background {
    fn new(wake: Sender<Wake>) -> Self {
        Self {
            wake,
            drops: Vec::new(),
        }
    }

    /// Starts `job`; returns at once.
    fn run(&self, job: impl FnOnce() -> Action + Send + 'static) {
        let wake = self.wake.clone();
        std::thread::spawn(move || {
            let _ = wake.send(Wake::Done(job()));
        });
    }

    /// Drops `value` on another thread; returns at once.
    fn drop_later<T: Send + 'static>(&mut self, value: T) {
        self.drops.retain(|drop| !drop.is_finished());
        self.drops.push(std::thread::spawn(move || drop(value)));
    }

    /// Waits for the drops handed over.
    fn finish(self) {
        for drop in self.drops {
            let _ = drop.join();
        }
    }
}

/// What the loop owns besides the state: the engine (restarted when a run's checkpoint
/// is loaded) and where wake-ups go.
struct Workbench<'a> {
    engine: EngineHandle,
    /// The engine of `--compare`'s checkpoint: it gets the same requests.
    compare_engine: Option<EngineHandle>,
    /// Events of an engine that was replaced are dropped.
    engine_epoch: u64,
    options: &'a TuiOptions,
    wake: Sender<Wake>,
    /// Set to stop the running suggestion search.
    suggestions_stop: Arc<AtomicBool>,
    background: Background,
}

impl Workbench<'_> {
    /// Turns one wake-up into actions; returns whether the screen changed.
    fn handle(&mut self, app: &mut App, woke: Wake) -> bool {
        let action = match woke {
            Wake::Input(crossterm::event::Event::Key(key)) => match keys::action(app, key) {
                Some(action) => action,
                None => return false,
            },
            Wake::Input(crossterm::event::Event::Resize(..)) => return true,
            Wake::Input(_) => return false,
            Wake::Engine(epoch, _) if epoch != self.engine_epoch => return false,
            Wake::Engine(_, event) => {
                if let Event::Loaded { tweets, .. } = &event {
                    // The demo world's meta.tsv marks the image-ambiguous tweets and scenes.
                    let meta = crate::data::demo::meta_rows(
                        &self.options.data,
                        &self.options.split,
                        tweets.len(),
                    );
                    app.shared.ambiguous = meta
                        .as_ref()
                        .map(|rows| rows.iter().map(|r| r.ambiguous).collect());
                    app.shared.scenes =
                        meta.map(|rows| rows.into_iter().map(|r| r.scene).collect());
                }
                Action::Engine(event)
            }
            Wake::Image(outcome) => Action::Image(outcome),
            Wake::Suggested(suggestion) => Action::Suggested(suggestion),
            Wake::Compare(event) => Action::Compare(event),
            Wake::SuggestionsDone(error) => Action::SuggestionsDone(error),
            Wake::Jobs(snapshot) => {
                if snapshot == app.jobs.snapshot {
                    return false;
                }
                Action::Jobs(snapshot)
            }
            Wake::Done(action) => action,
        };
        self.apply(app, action);
        true
    }

    fn apply(&mut self, app: &mut App, action: Action) {
        for effect in update(app, action) {
            if let Some(outcome) = self.carry_out(app, effect) {
                self.apply(app, outcome);
            }
        }
    }

    /// Does what `update` asked; returns the action that reports how it went.
    fn carry_out(&mut self, app: &mut App, effect: Effect) -> Option<Action> {
        match effect {
            Effect::Select(index) => {
                self.each_engine(|e| e.select(index));
            }
            Effect::SetVocabulary(vocabulary) => {
                // Both models score the edited vocabulary.
                self.each_engine(|e| e.set_vocabulary(vocabulary.clone()));
            }
            Effect::SetContinuous(count) => {
                self.each_engine(|e| e.set_continuous(count));
            }
            Effect::StartSuggestions(request) => self.start_suggestions(app, request),
            Effect::Attribute { tweet, start, end } => {
                self.engine.attribute(tweet, start, end);
            }
            Effect::StopSuggestions => self.suggestions_stop.store(true, Ordering::Relaxed),
            Effect::SetImage { tweet, image } => {
                self.each_engine(|e| e.set_image(tweet, image));
            }
            Effect::Save { path, vocabulary } => {
                let result = vocabulary
                    .save(&path)
                    .map(|()| path)
                    .map_err(|e| crate::util::error_chain(&e));
                return Some(Action::Saved(result));
            }
            Effect::SubmitRuns {
                variants,
                seeds,
                vocabulary,
            } => {
                let submission = Submission {
                    source: app.shared.session.checkpoint_dir.clone(),
                    variants,
                    seeds,
                    overrides: Vec::new(),
                    backend: BackendKind::Local,
                    vocabulary: Some(vocabulary),
                    name: Some(app.shared.session.checkpoint.clone()),
                };
                let root = app.shared.session.runs_root.clone();
                self.background.run(move || {
                    Action::Queued(
                        queue_runs(&root, &submission).map_err(|e| crate::util::error_chain(&e)),
                    )
                });
            }
            Effect::CancelRun(id) => {
                let root = app.shared.session.runs_root.clone();
                self.background.run(move || {
                    let result = cancel_run(&root, &id).map_err(|e| crate::util::error_chain(&e));
                    Action::Cancelled { id, result }
                });
            }
            Effect::ExportTable(format) => return Some(Action::Message(export_table(app, format))),
            Effect::Figure(index) => {
                let job = FigureJob::of(app, index, Path::new("figures"));
                self.background.run(move || Action::Message(job.write()));
            }
            Effect::LoadCheckpoint(dir) => self.load_checkpoint(app, dir),
        }
        None
    }

    /// Sends a request to the engine and to the compared one.
    fn each_engine(&self, request: impl Fn(&EngineHandle) -> u64) {
        request(&self.engine);
        if let Some(other) = &self.compare_engine {
            request(other);
        }
    }

    /// Runs a suggestion search on the dev split (the open split when there is none) on
    /// its own thread and engine; results stream back as wake-ups.
    fn start_suggestions(&mut self, app: &App, request: SuggestRequest) {
        self.suggestions_stop.store(true, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        self.suggestions_stop = Arc::clone(&stop);
        let checkpoint = app.shared.session.checkpoint_dir.clone();
        let data = self.options.data.clone();
        let split = if crate::data::split_path(&data, "valid").is_file() {
            "valid".to_string()
        } else {
            self.options.split.clone()
        };
        let options = engine_options(self.options);
        let wake = self.wake.clone();
        std::thread::spawn(move || {
            let result = suggest(&checkpoint, &data, &split, options, &request, &mut |s| {
                !stop.load(Ordering::Relaxed) && wake.send(Wake::Suggested(s)).is_ok()
            });
            let _ = wake.send(Wake::SuggestionsDone(result.err()));
        });
    }

    /// Replaces the engine with one on a finished run's checkpoint. Starting it returns
    /// at once; dropping the old one waits for its worker, so that runs on a thread.
    fn load_checkpoint(&mut self, app: &mut App, dir: PathBuf) {
        self.engine_epoch += 1;
        let engine = start_engine(self.options, &dir, &self.wake, self.engine_epoch);
        let old = std::mem::replace(&mut self.engine, engine);
        self.background.drop_later(old);
        let (save_path, save_needs_confirm) = save_target(&dir, None);
        let session = Session {
            checkpoint: crate::util::folder_name(&dir),
            checkpoint_dir: dir,
            save_path,
            save_needs_confirm,
            ..app.shared.session.clone()
        };
        let jobs = std::mem::take(&mut app.jobs.snapshot);
        let compare = app.shared.compare.take();
        *app = App::new(session, None);
        app.jobs.snapshot = jobs;
        app.shared.compare = compare;
        app.shared.message = Some(format!("loading {}", app.shared.session.checkpoint));
    }

    /// Waits for the replaced engines' drops; the current engines drop after them.
    fn finish(self) {
        self.background.finish();
    }
}

/// Queues `submission`'s runs in the registry under `root` and starts them locally.
fn queue_runs(root: &Path, submission: &Submission) -> Result<usize, JobsError> {
    let registry = Registry::open(root)?;
    let runs = submit(&registry, submission)?;
    let backend = LocalBackend {
        root: root.to_path_buf(),
        program: std::env::current_exe().unwrap_or_else(|_| "promptmner".into()),
        limit: 1,
    };
    backend.submit(&runs)?;
    Ok(runs.len())
}

/// Asks the backend of run `id` under `root` to cancel it.
fn cancel_run(root: &Path, id: &str) -> Result<(), JobsError> {
    let program = std::env::current_exe().unwrap_or_else(|_| "promptmner".into());
    let run = Registry::open(root).and_then(|registry| registry.run(id))?;
    let kind = run.spec()?.backend;
    backend_for(kind, root, &program, &SlurmConfig::default()).cancel(&run)
}

fn export_table(app: &App, format: Format) -> String {
    let jobs = &app.jobs.snapshot;
    let path = export_path(&app.shared.session.runs_root, jobs.group.as_deref(), format);
    match crate::util::write_atomic(&path, render(&jobs.table, format).as_bytes()) {
        Ok(()) => format!("wrote {}", path.display()),
        Err(e) => format!("cannot write {}: {e}", path.display()),
    }
}

/// `table-GROUP.md|csv|tex` in the runs folder; the group (a user's label) becomes a plain
/// file name first, so the file cannot land outside the folder.
fn export_path(runs_root: &Path, group: Option<&str>, format: Format) -> PathBuf {
    let extension = match format {
        Format::Md => "md",
        Format::Csv => "csv",
        Format::Latex => "tex",
    };
    let stem = crate::util::safe_stem(group.unwrap_or("runs"));
    runs_root.join(format!("table-{stem}.{extension}"))
}

/// A case-study figure of the tweet in view, made off the UI thread: what it needs,
/// copied out of the state.
struct FigureJob {
    title: String,
    views: Vec<(String, crate::engine::TweetView)>,
    image: Result<PathBuf, String>,
    out: PathBuf,
}

impl FigureJob {
    fn of(app: &App, index: usize, folder: &Path) -> Self {
        let shared = &app.shared;
        let session = &shared.session;
        let mut views = Vec::new();
        if let Some(view) = shared.view.clone().filter(|v| v.index == index) {
            views.push((format!("A: {}", session.checkpoint), view));
        }
        if let Some(compare) = &shared.compare
            && let Some(view) = compare.current_view(Some(index))
        {
            views.push((format!("B: {}", compare.checkpoint), view.clone()));
        }
        // The image the tweet was scored with: its own, another tweet's, or none.
        let scored = views.first().map(|(_, v)| &v.image);
        let image = match scored.and_then(|i| i.from_tweet) {
            Some(from) => shared.tweets[from]
                .image_path
                .clone()
                .ok_or_else(|| "no image".to_string()),
            None => Err(scored
                .and_then(|i| i.no_image.clone())
                .unwrap_or_else(|| "no image".into())),
        };
        let image_note = match scored.and_then(|i| i.from_tweet) {
            Some(from) if from != index => format!(" · the image of tweet {from}"),
            _ => String::new(),
        };
        let stem = format!("{}-{index}", crate::util::safe_stem(&session.split));
        Self {
            title: format!(
                "{} · {}-{index}{image_note}",
                session.dataset, session.split
            ),
            views,
            image,
            out: folder.join(stem),
        }
    }

    /// Writes FILE.svg and FILE.png; says where, or why not.
    fn write(self) -> String {
        let picture = self
            .image
            .and_then(|path| crate::data::images::decode_image(&path).map_err(|e| e.to_string()));
        let views: Vec<(String, &crate::engine::TweetView)> =
            self.views.iter().map(|(n, v)| (n.clone(), v)).collect();
        let written = crate::engine::case_study(
            self.title,
            &views,
            picture.as_ref().map_err(Clone::clone),
            crate::eval::figure::TOP_PROMPTS,
        )
        .and_then(|case| {
            for extension in ["svg", "png"] {
                let path = self.out.with_extension(extension);
                crate::eval::figure::write(&case, &path, 2.0)?;
            }
            Ok(())
        });
        match written {
            Ok(()) => format!("wrote {}.svg and .png", self.out.display()),
            Err(e) => format!("cannot write the figure: {}", crate::util::error_chain(&e)),
        }
    }
}

/// Reads the runs folder every second (file reads stay off the UI thread).
fn watch_jobs(root: PathBuf, to: Sender<Wake>) {
    let program = std::env::current_exe().unwrap_or_else(|_| "promptmner".into());
    std::thread::spawn(move || {
        let mut details = crate::jobs::watch::TestDetails::default();
        loop {
            match snapshot(&root, &program, &mut details) {
                Ok(jobs) => {
                    if to.send(Wake::Jobs(jobs)).is_err() {
                        break;
                    }
                }
                Err(e) => tracing::warn!("jobs panel: {}", crate::util::error_chain(&e)),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// Passes every value of `from` to the loop.
fn forward<T: Send + 'static>(
    from: Receiver<T>,
    to: Sender<Wake>,
    wrap: impl Fn(T) -> Wake + Send + 'static,
) {
    std::thread::spawn(move || {
        for value in from {
            if to.send(wrap(value)).is_err() {
                break;
            }
        }
    });
}

fn read_input(to: Sender<Wake>) {
    std::thread::spawn(move || {
        while let Ok(event) = crossterm::event::read() {
            if to.send(Wake::Input(event)).is_err() {
                break;
            }
        }
    });
}

/// An image to show: which file, fitted into which cells.
struct ImageJob {
    path: PathBuf,
    area: Rect,
}

/// A thread that decodes and encodes images for the terminal, newest request first.
fn image_worker(picker: Picker, to: Sender<Wake>) -> Sender<ImageJob> {
    let (jobs, inbox) = channel::<ImageJob>();
    std::thread::spawn(move || {
        while let Ok(first) = inbox.recv() {
            // Only the newest request matters: the user has moved on from the others.
            let job = inbox.try_iter().last().unwrap_or(first);
            let outcome = encode_image(&picker, job);
            if to.send(Wake::Image(outcome)).is_err() {
                break;
            }
        }
    });
    jobs
}

fn encode_image(picker: &Picker, job: ImageJob) -> ImageOutcome {
    let encoded = crate::data::images::decode_image(&job.path)
        .map_err(|e| e.to_string())
        .and_then(|image| {
            picker
                .new_protocol(image, job.area, Resize::Scale(None))
                .map_err(|e| crate::util::error_chain(&e))
        });
    match encoded {
        Ok(protocol) => ImageOutcome::Shown(ShownImage {
            path: job.path,
            area: job.area,
            protocol: Arc::new(protocol),
        }),
        Err(reason) => ImageOutcome::Failed {
            path: job.path,
            reason,
        },
    }
}

/// Asks the image thread for the current tweet's image at the panel's size, once.
fn request_image(
    app: &App,
    panel: Rect,
    images: &Sender<ImageJob>,
    requested: &mut Option<(PathBuf, Rect)>,
) {
    let Ok(path) = components::image::wanted(&app.shared) else {
        return;
    };
    let area = components::image::inner(panel);
    let wanted = (path, area);
    if requested.as_ref() != Some(&wanted) && area.width > 0 && area.height > 0 {
        let _ = images.send(ImageJob {
            path: wanted.0.clone(),
            area,
        });
        *requested = Some(wanted);
    }
}

/// Draw durations, split by whether the engine was working, and how long the first
/// fully scored screen took from start-up.
#[derive(Debug)]
struct FrameTimes {
    started: Instant,
    first_scored_ms: Option<f64>,
    busy: Vec<f64>,
    idle: Vec<f64>,
}

impl FrameTimes {
    fn new(started: Instant) -> Self {
        Self {
            started,
            first_scored_ms: None,
            busy: Vec::new(),
            idle: Vec::new(),
        }
    }

    fn scored_screen(&mut self) {
        if self.first_scored_ms.is_none() {
            self.first_scored_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        }
    }

    fn record(&mut self, took: Duration, engine_busy: bool) {
        let ms = took.as_secs_f64() * 1000.0;
        if engine_busy {
            self.busy.push(ms);
        } else {
            self.idle.push(ms);
        }
    }

    fn to_json(&self) -> String {
        let summary = |times: &[f64]| {
            let mut sorted = times.to_vec();
            sorted.sort_by(f64::total_cmp);
            let at = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize);
            serde_json::json!({
                "frames": sorted.len(),
                "p50_ms": at(0.5),
                "p95_ms": at(0.95),
                "max_ms": sorted.last(),
            })
        };
        serde_json::json!({
            "first_scored_screen_ms": self.first_scored_ms,
            "while_engine_busy": summary(&self.busy),
            "while_idle": summary(&self.idle),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_exported_table_stays_in_the_runs_folder_whatever_the_group_is_called() {
        let root = std::path::Path::new("/runs");
        let path = super::export_path(
            root,
            Some("x/../../escape-17"),
            crate::jobs::table::Format::Md,
        );
        assert_eq!(path, root.join("table-x_.._.._escape-17.md"));
        assert_eq!(path.parent(), Some(root));
        let csv = super::export_path(root, None, crate::jobs::table::Format::Csv);
        assert_eq!(csv, root.join("table-runs.csv"));
    }

    #[test]
    fn f_writes_the_tweet_in_view_as_svg_and_png_with_both_models() {
        use crate::tui::app::{Command, Effect};
        use crate::tui::test_support::{command, compared_app};
        let mut app = compared_app();
        command(&mut app, Command::Down);
        command(&mut app, Command::NextPanel);
        assert_eq!(command(&mut app, Command::Figure), [Effect::Figure(1)]);
        let folder = tempfile::tempdir().unwrap();
        let job = super::FigureJob::of(&app, 1, folder.path());
        assert_eq!(job.views.len(), 2, "A and B");
        let said = job.write();
        assert!(said.starts_with("wrote "), "{said}");
        let svg = std::fs::read_to_string(folder.path().join("test-1.svg")).unwrap();
        let texts = [
            "A: demo",
            "B: b",
            "Nova",
            "OTHER",
            "PER ✗",
            "the tweet has no image id",
        ];
        for text in texts {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "{text}");
        }
        let png = image::open(folder.path().join("test-1.png")).unwrap();
        assert_eq!(png.width(), 1920);
    }

    /// A value whose drop waits until it is let go, and says when it is done.
    struct SlowDrop {
        release: std::sync::mpsc::Receiver<()>,
        dropped: std::sync::mpsc::Sender<()>,
    }

    impl Drop for SlowDrop {
        fn drop(&mut self) {
            let _ = self.release.recv();
            let _ = self.dropped.send(());
        }
    }

    #[test]
    fn a_background_job_returns_at_once_and_reports_when_it_ends() {
        let (wake, inbox) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let background = super::Background::new(wake);
        background.run(move || {
            let _ = released.recv();
            super::Action::Queued(Ok(2))
        });
        assert!(inbox.try_recv().is_err(), "the job is still running");
        release.send(()).unwrap();
        let done = inbox.recv_timeout(std::time::Duration::from_secs(10));
        assert!(matches!(
            done,
            Ok(super::Wake::Done(super::Action::Queued(Ok(2))))
        ));
    }

    #[test]
    fn a_value_handed_over_drops_on_its_own_thread_and_finish_waits_for_it() {
        let (wake, _inbox) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        let (dropped, was_dropped) = std::sync::mpsc::channel();
        let mut background = super::Background::new(wake);
        background.drop_later(SlowDrop {
            release: released,
            dropped,
        });
        assert!(
            was_dropped.try_recv().is_err(),
            "the drop waits to be let go"
        );
        release.send(()).unwrap();
        background.finish();
        assert!(was_dropped.try_recv().is_ok(), "finish waited for the drop");
    }
}
