//! The workbench's state and `update`: a plain function from (state, action) to the new
//! state and the effects the event loop carries out (engine requests, a file save).

use std::path::PathBuf;

use crate::engine::suggest::{SuggestRequest, Suggestion};
use crate::engine::{AttributionView, Event, ImageChoice, SplitView, TweetInfo, TweetView};
use crate::jobs::table::Format;
use crate::jobs::variant::Variant;
use crate::jobs::watch::JobsSnapshot;
use crate::prompts::{Vocabulary, WordList};
use crate::tui::editor::{Edit, Editor, Row};
use crate::tui::filter::{Filter, FilterData};

/// The image panel's picture: encoded off the UI thread for one path and one area.
#[derive(Clone)]
pub(crate) struct ShownImage {
    pub path: PathBuf,
    pub area: ratatui::layout::Rect,
    pub protocol: std::sync::Arc<ratatui_image::protocol::Protocol>,
}

impl std::fmt::Debug for ShownImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShownImage")
            .field("path", &self.path)
            .field("area", &self.area)
            .finish_non_exhaustive()
    }
}

/// What the image worker made of a request.
#[derive(Debug, Clone)]
pub(crate) enum ImageOutcome {
    Shown(ShownImage),
    Failed { path: PathBuf, reason: String },
}

/// Where the workbench's data came from (the status bar shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub dataset: String,
    pub split: String,
    pub checkpoint: String,
    pub device: String,
    /// Where `s` writes the vocabulary.
    pub save_path: PathBuf,
    /// Saving there overwrites the checkpoint's own prompts.toml: ask first.
    pub save_needs_confirm: bool,
    /// The checkpoint directory (ablations derive from its config).
    pub checkpoint_dir: PathBuf,
    /// The runs folder the jobs panel watches.
    pub runs_root: PathBuf,
}

/// Which panel keys go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Focus {
    List,
    Tweet,
    Editor,
    Jobs,
}

/// A window over the screen that takes the keys while it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Overlay {
    Help,
    FilterMenu {
        cursor: usize,
    },
    ConfirmQuit,
    ConfirmOverwrite,
    Input(Input),
    /// The suggestion search's ranked table.
    Suggestions {
        cursor: usize,
    },
    /// The confusion matrix, a cell under the cursor (indices into `classes()`).
    Confusion {
        row: usize,
        col: usize,
    },
    /// Variants to queue (by their place in `Variant::menu()`), and seeds each.
    Ablation {
        cursor: usize,
        chosen: Vec<bool>,
        seeds: usize,
    },
}

/// A line of text being typed, and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Input {
    pub purpose: InputPurpose,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputPurpose {
    Search,
    AddWord(crate::data::tags::EntityType, WordList),
    RenameWord(crate::data::tags::EntityType, WordList, usize),
    Template,
}

impl InputPurpose {
    pub(crate) fn title(&self) -> String {
        match self {
            InputPurpose::Search => "search".into(),
            InputPurpose::AddWord(kind, list) => format!("add a word to {kind}.{list}"),
            InputPurpose::RenameWord(kind, list, _) => format!("rename in {kind}.{list}"),
            InputPurpose::Template => "template (the word goes in {})".into(),
        }
    }
}

/// What the engine is doing, as the status bar says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EngineState {
    Loading,
    Encoding { done: u64, total: u64 },
    Rescoring { done: u64, total: u64 },
    Idle,
    Failed,
}

/// A key's meaning, independent of which key it is (keys.rs maps keys to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Down,
    Up,
    PageDown,
    PageUp,
    Top,
    Bottom,
    Open,
    Back,
    NextPanel,
    WordLeft,
    WordRight,
    NextFilter,
    PreviousFilter,
    FilterMenu,
    Search,
    Help,
    Quit,
    Save,
    Undo,
    Redo,
    MoreContinuous,
    FewerContinuous,
    Editor,
    AddWord,
    RenameWord,
    DeleteWord,
    ToggleList,
    EditTemplate,
    Confirm,
    Deny,
    /// The jobs panel on and off.
    Jobs,
    /// The dialog that queues ablation retrains.
    Ablations,
    /// The tweet's image: none, its own, another tweet's.
    CycleImage,
    /// The confusion matrix of the split.
    Confusion,
    /// Search the candidate words for the list under the editor's cursor.
    Suggest,
    /// Which prompts the span under the cursor depends on.
    Attribute,
    CancelRun,
    ExportCsv,
    ExportMarkdown,
}

/// Everything that changes the state.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Command(Command),
    /// A character typed into an open input line.
    Type(char),
    Backspace,
    Engine(Event),
    /// An image the worker decoded and encoded for the terminal.
    Image(ImageOutcome),
    /// The result of a save the loop carried out.
    Saved(Result<PathBuf, String>),
    /// An event of the compared checkpoint's engine.
    Compare(Event),
    /// The registry, read again.
    Jobs(JobsSnapshot),
    /// One more scored candidate of the suggestion search.
    Suggested(Suggestion),
    /// The suggestion search ended (with an error message if it failed).
    SuggestionsDone(Option<String>),
    /// What an effect the loop carried out came to.
    Message(String),
}

/// What `update` asks the event loop to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    Select(usize),
    SetVocabulary(Vocabulary),
    SetContinuous(usize),
    Save {
        path: PathBuf,
        vocabulary: Vocabulary,
    },
    SubmitRuns {
        variants: Vec<Variant>,
        seeds: usize,
        vocabulary: Vocabulary,
    },
    CancelRun(String),
    StartSuggestions(SuggestRequest),
    Attribute {
        tweet: usize,
        start: usize,
        end: usize,
    },
    StopSuggestions,
    SetImage {
        tweet: usize,
        image: ImageChoice,
    },
    /// Restart the engine on another checkpoint (a finished run's).
    LoadCheckpoint(PathBuf),
    ExportTable(Format),
}

/// The example list: filter, search, what is visible and where the cursor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListState {
    pub filter: Filter,
    pub query: String,
    pub visible: Vec<usize>,
    pub cursor: usize,
}

/// The workbench's whole state.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub session: Session,
    pub tweets: Vec<TweetInfo>,
    pub ambiguous: Option<Vec<bool>>,
    /// Each tweet's scene category (meta.tsv), for picking a counterfactual image.
    pub scenes: Option<Vec<Option<String>>>,
    /// Tweets shown with another image than their own (`i`).
    pub image_overrides: std::collections::BTreeMap<usize, ImageChoice>,
    /// Each tweet's predicted spans with its own image, to mark what an override changes.
    pub own_spans: std::collections::BTreeMap<usize, Vec<crate::data::spans::Span>>,
    pub scores: Option<SplitView>,
    pub view: Option<TweetView>,
    pub list: ListState,
    pub focus: Focus,
    /// The editor replaces the example list on the left.
    pub editing: bool,
    pub word_cursor: usize,
    pub editor: Option<Editor>,
    pub overlay: Option<Overlay>,
    pub image: Option<ImageOutcome>,
    pub engine: EngineState,
    pub message: Option<String>,
    /// A vocabulary from `--prompts`, applied once the checkpoint is loaded.
    pub start_vocabulary: Option<Vocabulary>,
    /// The vocabulary (with continuous count) the engine was last given.
    pub engine_vocabulary: Option<Vocabulary>,
    pub quit: bool,
    /// Rows a page moves (set from the list's height by the loop).
    pub page: usize,
    /// The jobs panel replaces the main screen.
    pub jobs_view: bool,
    pub jobs: JobsSnapshot,
    pub jobs_cursor: usize,
    pub suggestions: Option<Suggestions>,
    /// The second checkpoint of `--compare`.
    pub compare: Option<Compare>,
    /// The last leave-one-prompt-out attribution (`a` in the tweet view).
    pub attribution: Option<AttributionView>,
    /// `--candidates`: words for suggestions, instead of the vocabulary's.
    pub candidates: Option<Vec<String>>,
}

/// What the compared checkpoint (B) says: the current tweet and the split.
#[derive(Debug, Clone, Default)]
pub(crate) struct Compare {
    pub checkpoint: String,
    pub view: Option<TweetView>,
    pub scores: Option<SplitView>,
}

impl Compare {
    /// B's view of the selected tweet.
    pub(crate) fn current_view(&self, selected: Option<usize>) -> Option<&TweetView> {
        self.view.as_ref().filter(|v| Some(v.index) == selected)
    }
}

/// A suggestion search: its list, how many candidates, the results so far (best first).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Suggestions {
    pub kind: crate::data::tags::EntityType,
    pub list: WordList,
    pub candidates: usize,
    pub results: Vec<Suggestion>,
    pub running: bool,
}

impl App {
    pub(crate) fn new(session: Session, ambiguous: Option<Vec<bool>>) -> Self {
        Self {
            session,
            tweets: Vec::new(),
            ambiguous,
            scenes: None,
            image_overrides: std::collections::BTreeMap::new(),
            own_spans: std::collections::BTreeMap::new(),
            scores: None,
            view: None,
            list: ListState {
                filter: Filter::All,
                query: String::new(),
                visible: Vec::new(),
                cursor: 0,
            },
            focus: Focus::List,
            editing: false,
            word_cursor: 0,
            editor: None,
            overlay: None,
            image: None,
            engine: EngineState::Loading,
            message: None,
            start_vocabulary: None,
            engine_vocabulary: None,
            quit: false,
            page: 10,
            jobs_view: false,
            jobs: JobsSnapshot::default(),
            jobs_cursor: 0,
            suggestions: None,
            compare: None,
            attribution: None,
            candidates: None,
        }
    }

    pub(crate) fn filter_data(&self) -> FilterData<'_> {
        FilterData {
            tweets: &self.tweets,
            scores: self.scores.as_ref(),
            ambiguous: self.ambiguous.as_deref(),
            compare: self.compare.as_ref().and_then(|c| c.scores.as_ref()),
        }
    }

    /// The filters on offer: those comparing two checkpoints only with `--compare`.
    pub(crate) fn filters(&self) -> Vec<Filter> {
        Filter::all()
            .into_iter()
            .filter(|f| !matches!(f, Filter::Disagree(..)) || self.compare.is_some())
            .collect()
    }

    /// The tweet under the list's cursor.
    pub(crate) fn selected(&self) -> Option<usize> {
        self.list.visible.get(self.list.cursor).copied()
    }

    pub(crate) fn unsaved(&self) -> bool {
        self.editor.as_ref().is_some_and(Editor::unsaved)
    }

    /// The current tweet's view, when it is the selected tweet's.
    pub(crate) fn current_view(&self) -> Option<&TweetView> {
        self.view
            .as_ref()
            .filter(|v| Some(v.index) == self.selected())
    }
}

/// Applies one action; returns what the loop must do.
pub(crate) fn update(app: &mut App, action: Action) -> Vec<Effect> {
    match action {
        Action::Engine(event) => on_engine(app, event),
        Action::Image(outcome) => {
            app.image = Some(outcome);
            Vec::new()
        }
        Action::Compare(event) => {
            on_compare(app, event);
            Vec::new()
        }
        Action::Jobs(snapshot) => {
            app.jobs_cursor = app.jobs_cursor.min(snapshot.runs.len().saturating_sub(1));
            app.jobs = snapshot;
            Vec::new()
        }
        Action::Suggested(suggestion) => {
            if let Some(search) = &mut app.suggestions {
                let at = search
                    .results
                    .partition_point(|s| s.delta_f1 >= suggestion.delta_f1);
                search.results.insert(at, suggestion);
            }
            Vec::new()
        }
        Action::SuggestionsDone(error) => {
            if let Some(search) = &mut app.suggestions {
                search.running = false;
            }
            app.message =
                Some(error.map_or("suggestions: done".into(), |e| format!("suggestions: {e}")));
            Vec::new()
        }
        Action::Message(message) => {
            app.message = Some(message);
            Vec::new()
        }
        Action::Saved(result) => {
            match result {
                Ok(path) => {
                    if let Some(editor) = &mut app.editor {
                        editor.saved = editor.state.clone();
                    }
                    app.message = Some(format!("saved {}", path.display()));
                }
                Err(message) => app.message = Some(message),
            }
            Vec::new()
        }
        Action::Type(c) => {
            if let Some(Overlay::Input(input)) = &mut app.overlay {
                input.text.push(c);
                return live_search(app);
            }
            Vec::new()
        }
        Action::Backspace => {
            if let Some(Overlay::Input(input)) = &mut app.overlay {
                input.text.pop();
                return live_search(app);
            }
            Vec::new()
        }
        Action::Command(command) => match app.overlay.clone() {
            Some(overlay) => on_overlay(app, overlay, command),
            None => on_command(app, command),
        },
    }
}

fn on_engine(app: &mut App, event: Event) -> Vec<Effect> {
    match event {
        Event::Loaded {
            tweets,
            vocabulary,
            continuous,
            continuous_trained,
            ..
        } => {
            app.tweets = tweets;
            let mut vocabulary = *vocabulary;
            vocabulary.continuous = continuous;
            app.engine_vocabulary = Some(vocabulary.clone());
            app.editor = Some(Editor::new(vocabulary, continuous_trained));
            app.engine = EngineState::Encoding { done: 0, total: 0 };
            let mut effects = refilter(app);
            if let (Some(start), Some(editor)) = (app.start_vocabulary.take(), &mut app.editor) {
                let mut start = start;
                if start.continuous > continuous_trained {
                    app.message = Some(format!(
                        "the vocabulary asks for {} continuous prompts; the checkpoint trained {continuous_trained}: using {continuous_trained} (more needs a retrain, r)",
                        start.continuous
                    ));
                    start.continuous = continuous_trained;
                }
                *editor = Editor::new(start, continuous_trained);
                effects.extend(vocabulary_effects(app));
            }
            effects
        }
        Event::Tweet { view, .. } => {
            if view.image.choice == ImageChoice::Own {
                let spans = view.predicted.iter().map(|p| p.span).collect();
                app.own_spans.insert(view.index, spans);
            }
            if Some(view.index) == app.selected() {
                app.word_cursor = app.word_cursor.min(view.words.len().saturating_sub(1));
                app.view = Some(*view);
            }
            Vec::new()
        }
        Event::Progress {
            task, done, total, ..
        } => {
            app.engine = if task.starts_with("rescoring") {
                EngineState::Rescoring { done, total }
            } else {
                EngineState::Encoding { done, total }
            };
            Vec::new()
        }
        Event::Scores { view, .. } => {
            app.scores = Some(*view);
            app.engine = EngineState::Idle;
            refilter(app)
        }
        Event::RescoreStopped { .. } => Vec::new(),
        Event::Attribution { view, .. } => {
            app.message = Some("the prompt panel shows each prompt's effect (Δp)".into());
            app.attribution = Some(*view);
            Vec::new()
        }
        Event::RetrainNeeded {
            requested, trained, ..
        } => {
            app.message = Some(format!(
                "{requested} continuous prompts need a retrain (the checkpoint has {trained})"
            ));
            Vec::new()
        }
        Event::Error { message, .. } => {
            if app.tweets.is_empty() {
                app.engine = EngineState::Failed;
            }
            app.message = Some(format!("engine: {message}"));
            Vec::new()
        }
    }
}

/// Recomputes the visible tweets, keeping the selected tweet under the cursor when it
/// is still visible; asks for the newly selected tweet when that changed.
fn refilter(app: &mut App) -> Vec<Effect> {
    let before = app.selected();
    app.list.visible = app.filter_data().visible(app.list.filter, &app.list.query);
    app.list.cursor = before
        .and_then(|b| app.list.visible.iter().position(|&i| i == b))
        .unwrap_or(0);
    select_effect(app, before)
}

fn select_effect(app: &mut App, before: Option<usize>) -> Vec<Effect> {
    match app.selected() {
        Some(now) if Some(now) != before || app.view.is_none() => {
            app.word_cursor = 0;
            vec![Effect::Select(now)]
        }
        _ => Vec::new(),
    }
}

fn move_cursor(app: &mut App, to: impl FnOnce(usize, usize) -> usize) -> Vec<Effect> {
    let before = app.selected();
    let len = app.list.visible.len();
    if len == 0 {
        return Vec::new();
    }
    app.list.cursor = to(app.list.cursor, len).min(len - 1);
    select_effect(app, before)
}

fn on_command(app: &mut App, command: Command) -> Vec<Effect> {
    let page = app.page.max(1);
    match (app.focus, command) {
        (_, Command::Quit) => {
            if app.unsaved() {
                app.overlay = Some(Overlay::ConfirmQuit);
            } else {
                app.quit = true;
            }
            Vec::new()
        }
        (_, Command::Help) => open(app, Overlay::Help),
        (Focus::Jobs, Command::NextPanel) => Vec::new(),
        (_, Command::NextPanel) => {
            app.focus = match (app.focus, app.editing) {
                (Focus::List | Focus::Editor | Focus::Jobs, _) => Focus::Tweet,
                (Focus::Tweet, true) => Focus::Editor,
                (Focus::Tweet, false) => Focus::List,
            };
            Vec::new()
        }
        (_, Command::Editor) => {
            app.editing = !app.editing;
            app.focus = if app.editing {
                Focus::Editor
            } else {
                Focus::List
            };
            Vec::new()
        }
        (_, Command::Jobs) => {
            app.jobs_view = !app.jobs_view;
            app.focus = if app.jobs_view {
                Focus::Jobs
            } else {
                Focus::List
            };
            Vec::new()
        }
        (_, Command::Ablations) => {
            let chosen = vec![false; Variant::menu().len()];
            open(
                app,
                Overlay::Ablation {
                    cursor: 0,
                    chosen,
                    seeds: 3,
                },
            )
        }
        (Focus::Jobs, command) => on_jobs(app, command),
        (_, Command::CycleImage) => cycle_image(app),
        (_, Command::Confusion) => open(app, Overlay::Confusion { row: 0, col: 0 }),
        (_, Command::Suggest) => start_suggestions(app),
        (_, Command::NextFilter) => cycle_filter(app, 1),
        (_, Command::PreviousFilter) => cycle_filter(app, -1),
        (_, Command::FilterMenu) => {
            let filters = app.filters();
            let cursor = filters
                .iter()
                .position(|f| *f == app.list.filter)
                .unwrap_or(0);
            open(app, Overlay::FilterMenu { cursor })
        }
        (_, Command::Search) => open(
            app,
            Overlay::Input(Input {
                purpose: InputPurpose::Search,
                text: app.list.query.clone(),
            }),
        ),
        (_, Command::Save) => save(app, false),
        (_, Command::Undo) => history(app, Editor::undo, "nothing to undo"),
        (_, Command::Redo) => history(app, Editor::redo, "nothing to redo"),
        (_, Command::MoreContinuous) => continuous(app, 1),
        (_, Command::FewerContinuous) => continuous(app, -1),
        (Focus::Editor, command) => on_editor(app, command),
        (Focus::Tweet, Command::WordLeft) => {
            app.word_cursor = app.word_cursor.saturating_sub(1);
            Vec::new()
        }
        (Focus::Tweet, Command::WordRight) => {
            let words = app.selected().map_or(0, |i| app.tweets[i].words.len());
            app.word_cursor = (app.word_cursor + 1).min(words.saturating_sub(1));
            Vec::new()
        }
        (Focus::Tweet, Command::Attribute) => attribute(app),
        (Focus::Tweet, Command::Back) => {
            app.focus = Focus::List;
            Vec::new()
        }
        (_, Command::Down) => move_cursor(app, |c, _| c + 1),
        (_, Command::Up) => move_cursor(app, |c, _| c.saturating_sub(1)),
        (_, Command::PageDown) => move_cursor(app, |c, _| c + page),
        (_, Command::PageUp) => move_cursor(app, |c, _| c.saturating_sub(page)),
        (_, Command::Top) => move_cursor(app, |_, _| 0),
        (_, Command::Bottom) => move_cursor(app, |_, len| len.saturating_sub(1)),
        (Focus::List, Command::Open) => {
            app.focus = Focus::Tweet;
            Vec::new()
        }
        (Focus::List, Command::Back) if !app.list.query.is_empty() => {
            app.list.query.clear();
            refilter(app)
        }
        _ => Vec::new(),
    }
}

fn open(app: &mut App, overlay: Overlay) -> Vec<Effect> {
    app.overlay = Some(overlay);
    Vec::new()
}

fn cycle_filter(app: &mut App, step: isize) -> Vec<Effect> {
    let filters = app.filters();
    let at = filters
        .iter()
        .position(|f| *f == app.list.filter)
        .unwrap_or(0);
    let next = (at as isize + step).rem_euclid(filters.len() as isize) as usize;
    app.list.filter = filters[next];
    app.message = Some(format!("filter: {}", filters[next].label()));
    refilter(app)
}

fn history(app: &mut App, step: fn(&mut Editor) -> bool, none: &str) -> Vec<Effect> {
    let Some(editor) = &mut app.editor else {
        return Vec::new();
    };
    if step(editor) {
        app.message = None;
        vocabulary_effects(app)
    } else {
        app.message = Some(none.into());
        Vec::new()
    }
}

fn continuous(app: &mut App, step: isize) -> Vec<Effect> {
    let Some(editor) = &app.editor else {
        return Vec::new();
    };
    let now = editor.state.vocabulary.continuous;
    let Some(count) = now.checked_add_signed(step) else {
        app.message = Some("already no continuous prompts".into());
        return Vec::new();
    };
    edit(app, Edit::Continuous(count))
}

/// Applies an edit; on success the engine gets the new vocabulary (and count).
fn edit(app: &mut App, edit: Edit) -> Vec<Effect> {
    let Some(editor) = &mut app.editor else {
        return Vec::new();
    };
    match editor.apply(edit) {
        Ok(()) => {
            app.message = None;
            vocabulary_effects(app)
        }
        Err(refused) => {
            app.message = Some(format!("refused: {refused}"));
            Vec::new()
        }
    }
}

/// The engine requests that bring it to the editor's vocabulary: the words and
/// template when they changed, the continuous count when it changed.
fn vocabulary_effects(app: &mut App) -> Vec<Effect> {
    let Some(editor) = &app.editor else {
        return Vec::new();
    };
    let wanted = editor.state.effective();
    let sent = app.engine_vocabulary.replace(wanted.clone());
    let mut effects = Vec::new();
    let words_changed = sent
        .as_ref()
        .is_none_or(|sent| sent.template != wanted.template || sent.types != wanted.types);
    if words_changed {
        effects.push(Effect::SetVocabulary(wanted.clone()));
    }
    if sent.is_none_or(|sent| sent.continuous != wanted.continuous) {
        effects.push(Effect::SetContinuous(wanted.continuous));
    }
    if !effects.is_empty() {
        app.engine = EngineState::Rescoring { done: 0, total: 0 };
    }
    effects
}

fn save(app: &mut App, confirmed: bool) -> Vec<Effect> {
    let Some(editor) = &app.editor else {
        return Vec::new();
    };
    if app.session.save_needs_confirm && !confirmed {
        return open(app, Overlay::ConfirmOverwrite);
    }
    vec![Effect::Save {
        path: app.session.save_path.clone(),
        vocabulary: editor.state.effective(),
    }]
}

fn on_editor(app: &mut App, command: Command) -> Vec<Effect> {
    let Some(editor) = &mut app.editor else {
        return Vec::new();
    };
    let rows = editor.rows().len();
    let row = editor.current_row();
    match command {
        Command::Down => editor.cursor = (editor.cursor + 1).min(rows - 1),
        Command::Up => editor.cursor = editor.cursor.saturating_sub(1),
        Command::PageDown => editor.cursor = (editor.cursor + app.page).min(rows - 1),
        Command::PageUp => editor.cursor = editor.cursor.saturating_sub(app.page),
        Command::Top => editor.cursor = 0,
        Command::Bottom => editor.cursor = rows - 1,
        Command::Back => app.focus = Focus::Tweet,
        Command::AddWord => {
            if let Row::List(kind, list) | Row::Word(kind, list, _) = row {
                return input(app, InputPurpose::AddWord(kind, list), "");
            }
        }
        Command::RenameWord | Command::Open => match row {
            Row::Word(kind, list, i) => {
                let word = editor.word(kind, list, i).unwrap_or_default().to_string();
                return input(app, InputPurpose::RenameWord(kind, list, i), &word);
            }
            Row::Template => {
                let template = editor.state.vocabulary.template.clone();
                return input(app, InputPurpose::Template, &template);
            }
            Row::List(kind, list) => return edit(app, Edit::ToggleList(kind, list)),
            Row::Continuous => {}
        },
        Command::DeleteWord => {
            if let Row::Word(kind, list, i) = row {
                return edit(app, Edit::DeleteWord(kind, list, i));
            }
        }
        Command::ToggleList => {
            if let Row::List(kind, list) | Row::Word(kind, list, _) = row {
                return edit(app, Edit::ToggleList(kind, list));
            }
        }
        Command::EditTemplate => {
            let template = editor.state.vocabulary.template.clone();
            return input(app, InputPurpose::Template, &template);
        }
        _ => {}
    }
    Vec::new()
}

fn input(app: &mut App, purpose: InputPurpose, text: &str) -> Vec<Effect> {
    open(
        app,
        Overlay::Input(Input {
            purpose,
            text: text.to_string(),
        }),
    )
}

/// The list narrows as the search query is typed.
fn live_search(app: &mut App) -> Vec<Effect> {
    match &app.overlay {
        Some(Overlay::Input(Input {
            purpose: InputPurpose::Search,
            text,
        })) => {
            app.list.query = text.clone();
            refilter(app)
        }
        _ => Vec::new(),
    }
}

fn on_overlay(app: &mut App, overlay: Overlay, command: Command) -> Vec<Effect> {
    match overlay {
        Overlay::Help => {
            if matches!(command, Command::Help | Command::Back | Command::Quit) {
                app.overlay = None;
            }
            Vec::new()
        }
        Overlay::FilterMenu { cursor } => filter_menu(app, cursor, command),
        Overlay::Confusion { row, col } => confusion_matrix(app, row, col, command),
        Overlay::Suggestions { cursor } => suggestions_table(app, cursor, command),
        Overlay::Ablation {
            cursor,
            chosen,
            seeds,
        } => ablation_dialog(app, cursor, chosen, seeds, command),
        Overlay::ConfirmQuit => {
            match command {
                Command::Confirm => app.quit = true,
                Command::Save => {
                    app.overlay = None;
                    return save(app, false);
                }
                Command::Deny | Command::Back => app.overlay = None,
                _ => {}
            }
            Vec::new()
        }
        Overlay::ConfirmOverwrite => match command {
            Command::Confirm => {
                app.overlay = None;
                save(app, true)
            }
            Command::Deny | Command::Back => {
                app.overlay = None;
                app.message = Some("not saved".into());
                Vec::new()
            }
            _ => Vec::new(),
        },
        Overlay::Input(input) => match command {
            Command::Open => {
                app.overlay = None;
                submit(app, input)
            }
            Command::Back => {
                app.overlay = None;
                if input.purpose == InputPurpose::Search {
                    app.list.query.clear();
                    return refilter(app);
                }
                Vec::new()
            }
            _ => Vec::new(),
        },
    }
}

fn filter_menu(app: &mut App, cursor: usize, command: Command) -> Vec<Effect> {
    let filters = app.filters();
    let cursor = match command {
        Command::Down => (cursor + 1).min(filters.len() - 1),
        Command::Up => cursor.saturating_sub(1),
        Command::Top => 0,
        Command::Bottom => filters.len() - 1,
        Command::Open => {
            app.overlay = None;
            app.list.filter = filters[cursor];
            app.message = Some(format!("filter: {}", filters[cursor].label()));
            return refilter(app);
        }
        Command::Back | Command::Quit | Command::FilterMenu => {
            app.overlay = None;
            return Vec::new();
        }
        _ => cursor,
    };
    app.overlay = Some(Overlay::FilterMenu { cursor });
    Vec::new()
}

fn submit(app: &mut App, input: Input) -> Vec<Effect> {
    match input.purpose {
        InputPurpose::Search => {
            app.focus = Focus::List;
            Vec::new()
        }
        InputPurpose::AddWord(kind, list) => edit(app, Edit::AddWord(kind, list, input.text)),
        InputPurpose::RenameWord(kind, list, i) => {
            edit(app, Edit::RenameWord(kind, list, i, input.text))
        }
        InputPurpose::Template => edit(app, Edit::Template(input.text)),
    }
}

fn on_jobs(app: &mut App, command: Command) -> Vec<Effect> {
    let runs = app.jobs.runs.len();
    let last = runs.saturating_sub(1);
    match command {
        Command::Down => app.jobs_cursor = (app.jobs_cursor + 1).min(last),
        Command::Up => app.jobs_cursor = app.jobs_cursor.saturating_sub(1),
        Command::PageDown => app.jobs_cursor = (app.jobs_cursor + app.page).min(last),
        Command::PageUp => app.jobs_cursor = app.jobs_cursor.saturating_sub(app.page),
        Command::Top => app.jobs_cursor = 0,
        Command::Bottom => app.jobs_cursor = last,
        Command::Back => {
            app.jobs_view = false;
            app.focus = Focus::List;
        }
        Command::ExportCsv => return vec![Effect::ExportTable(Format::Csv)],
        Command::ExportMarkdown => return vec![Effect::ExportTable(Format::Md)],
        Command::CancelRun | Command::Open => {
            let Some(run) = app.jobs.runs.get(app.jobs_cursor) else {
                return Vec::new();
            };
            return match (command, run.state) {
                (Command::CancelRun, state) if !state.is_final() => {
                    vec![Effect::CancelRun(run.id.clone())]
                }
                (Command::Open, crate::jobs::registry::State::Finished) => {
                    let dir = run.dir.clone();
                    app.jobs_view = false;
                    app.focus = Focus::List;
                    vec![Effect::LoadCheckpoint(dir)]
                }
                (_, state) => {
                    app.message = Some(format!("{} is {}", run.id, state.as_str()));
                    Vec::new()
                }
            };
        }
        _ => {}
    }
    Vec::new()
}

fn ablation_dialog(
    app: &mut App,
    cursor: usize,
    mut chosen: Vec<bool>,
    seeds: usize,
    command: Command,
) -> Vec<Effect> {
    let variants = Variant::menu();
    let mut cursor = cursor;
    let mut seeds = seeds;
    match command {
        Command::Down => cursor = (cursor + 1).min(variants.len() - 1),
        Command::Up => cursor = cursor.saturating_sub(1),
        Command::ToggleList => chosen[cursor] = !chosen[cursor],
        Command::MoreContinuous => seeds += 1,
        Command::FewerContinuous => seeds = seeds.saturating_sub(1).max(1),
        Command::Back | Command::Quit => {
            app.overlay = None;
            return Vec::new();
        }
        Command::Open => {
            app.overlay = None;
            let mut picked: Vec<Variant> = variants
                .iter()
                .zip(&chosen)
                .filter(|(_, c)| **c)
                .map(|(v, _)| *v)
                .collect();
            if picked.is_empty() {
                picked.push(variants[cursor]);
            }
            let Some(editor) = &app.editor else {
                app.message = Some("the checkpoint is still loading".into());
                return Vec::new();
            };
            return vec![Effect::SubmitRuns {
                variants: picked,
                seeds,
                vocabulary: editor.state.effective(),
            }];
        }
        _ => {}
    }
    app.overlay = Some(Overlay::Ablation {
        cursor,
        chosen,
        seeds,
    });
    Vec::new()
}

/// Own image → none → another tweet's (the next with an image of another scene) → own.
fn cycle_image(app: &mut App) -> Vec<Effect> {
    let Some(tweet) = app.selected() else {
        return Vec::new();
    };
    let current = app
        .image_overrides
        .get(&tweet)
        .copied()
        .unwrap_or(ImageChoice::Own);
    let has_image: Vec<bool> = app.tweets.iter().map(|t| t.image_path.is_some()).collect();
    let partner = crate::eval::probe::swap_partner(tweet, &has_image, app.scenes.as_deref());
    let next = match (current, partner) {
        (ImageChoice::Own, _) => ImageChoice::None,
        (ImageChoice::None, Some(j)) => ImageChoice::FromTweet(j),
        _ => ImageChoice::Own,
    };
    if next == ImageChoice::Own {
        app.image_overrides.remove(&tweet);
    } else {
        app.image_overrides.insert(tweet, next);
    }
    app.message = Some(match next {
        ImageChoice::Own => "its own image".into(),
        ImageChoice::None => "as if it had no image".into(),
        ImageChoice::FromTweet(j) => format!("with the image of tweet {j}"),
    });
    vec![Effect::SetImage { tweet, image: next }]
}

/// Moves over the matrix; Enter filters the list to the tweets with errors in the cell.
fn confusion_matrix(app: &mut App, row: usize, col: usize, command: Command) -> Vec<Effect> {
    let classes = crate::eval::confusion::classes();
    let last = classes.len() - 1;
    let (row, col) = match command {
        Command::Down => ((row + 1).min(last), col),
        Command::Up => (row.saturating_sub(1), col),
        Command::WordRight => (row, (col + 1).min(last)),
        Command::WordLeft => (row, col.saturating_sub(1)),
        Command::Open => {
            app.overlay = None;
            let filter = Filter::Confusion(classes[row], classes[col]);
            app.list.filter = filter;
            app.focus = Focus::List;
            app.message = Some(format!("filter: {}", filter.label()));
            return refilter(app);
        }
        Command::Back | Command::Quit | Command::Confusion => {
            app.overlay = None;
            return Vec::new();
        }
        _ => (row, col),
    };
    app.overlay = Some(Overlay::Confusion { row, col });
    Vec::new()
}

/// Starts a search over the candidates of the list under the editor's cursor (or shows
/// the running one again).
fn start_suggestions(app: &mut App) -> Vec<Effect> {
    if app.suggestions.as_ref().is_some_and(|s| s.running) {
        return open(app, Overlay::Suggestions { cursor: 0 });
    }
    let Some(editor) = &app.editor else {
        return Vec::new();
    };
    let (Row::List(kind, list) | Row::Word(kind, list, _)) = editor.current_row() else {
        app.message = Some("put the editor's cursor on a list (e), then S".into());
        return Vec::new();
    };
    let base = editor.state.effective();
    let candidates = app.candidates.clone().unwrap_or_else(|| {
        editor
            .state
            .vocabulary
            .types
            .get(&kind)
            .map(|w| w.candidates.clone())
            .unwrap_or_default()
    });
    if candidates.is_empty() {
        app.message = Some(format!(
            "{kind} has no candidates (a `candidates` list in the vocabulary)"
        ));
        return Vec::new();
    }
    app.suggestions = Some(Suggestions {
        kind,
        list,
        candidates: candidates.len(),
        results: Vec::new(),
        running: true,
    });
    app.overlay = Some(Overlay::Suggestions { cursor: 0 });
    vec![Effect::StartSuggestions(SuggestRequest {
        base,
        kind,
        list,
        candidates,
    })]
}

/// The ranked table: Enter adds the word to its list, x stops the search.
fn suggestions_table(app: &mut App, cursor: usize, command: Command) -> Vec<Effect> {
    let Some(search) = app.suggestions.clone() else {
        app.overlay = None;
        return Vec::new();
    };
    let last = search.results.len().saturating_sub(1);
    let cursor = match command {
        Command::Down => (cursor + 1).min(last),
        Command::Up => cursor.saturating_sub(1),
        Command::CancelRun => {
            return if search.running {
                vec![Effect::StopSuggestions]
            } else {
                Vec::new()
            };
        }
        Command::Open => {
            let Some(best) = search.results.get(cursor) else {
                return Vec::new();
            };
            app.overlay = None;
            return edit(
                app,
                Edit::AddWord(search.kind, search.list, best.word.clone()),
            );
        }
        Command::Back | Command::Quit | Command::Suggest => {
            app.overlay = None;
            return Vec::new();
        }
        _ => cursor,
    };
    app.overlay = Some(Overlay::Suggestions { cursor });
    Vec::new()
}

/// B's engine: its tweet views and split scores (its other events say nothing new).
fn on_compare(app: &mut App, event: Event) {
    let Some(compare) = &mut app.compare else {
        return;
    };
    match event {
        Event::Tweet { view, .. } => compare.view = Some(*view),
        Event::Scores { view, .. } => compare.scores = Some(*view),
        Event::Error { message, .. } => app.message = Some(format!("B: {message}")),
        Event::RetrainNeeded { trained, .. } => {
            app.message = Some(format!(
                "B trained {trained} continuous prompts: it keeps those"
            ));
        }
        _ => {}
    }
}

/// The span under the cursor: the predicted entity there, else the candidate over the
/// word most likely to be one.
pub(crate) fn span_at_cursor(app: &App) -> Option<(usize, usize)> {
    let view = app.current_view()?;
    let word = app.word_cursor;
    if let Some(p) = view
        .predicted
        .iter()
        .find(|p| p.span.start <= word && word < p.span.end)
    {
        return Some((p.span.start, p.span.end));
    }
    view.candidates
        .iter()
        .filter(|c| c.start <= word && word < c.end)
        .min_by(|a, b| a.probs[4].total_cmp(&b.probs[4]))
        .map(|c| (c.start, c.end))
}

fn attribute(app: &mut App) -> Vec<Effect> {
    let Some((start, end)) = span_at_cursor(app) else {
        return Vec::new();
    };
    let Some(tweet) = app.selected() else {
        return Vec::new();
    };
    if app.current_view().is_some_and(|v| v.prompts.is_empty()) {
        app.message = Some("no image, no prompts: nothing to attribute".into());
        return Vec::new();
    }
    app.message = Some("attributing: each prompt left out in turn…".into());
    vec![Effect::Attribute { tweet, start, end }]
}
