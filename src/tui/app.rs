//! The workbench's state and `update`: a plain function from (state, action) to the new
//! state and the effects the event loop carries out (engine requests, a file save).
//!
//! A command goes to the open overlays first, then to the focused component, then to
//! the image panel (`i` works from every panel the jobs panel does not cover), then to
//! the keys that mean the same everywhere; the first that consumes it ends the search,
//! so no handler depends on the order of another's match arms. The components answer
//! with [`Message`]s, which [`App::apply`] carries out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::engine::suggest::{SuggestRequest, Suggestion};
use crate::engine::{Event, ImageChoice, SplitView, TweetInfo, TweetView};
use crate::eval::significance::Significance;
use crate::jobs::table::Format;
use crate::jobs::variant::Variant;
use crate::jobs::watch::JobsSnapshot;
use crate::prompts::{Vocabulary, WordList};
use crate::tui::components::editor::EditorPanel;
use crate::tui::components::image::{ImageOutcome, ImagePanel};
use crate::tui::components::jobs::JobsPanel;
use crate::tui::components::list::ExampleList;
use crate::tui::components::metrics::MetricsPanel;
use crate::tui::components::overlays::{Input, InputPurpose, Overlay, Overlays};
use crate::tui::components::prompts::PromptsPanel;
use crate::tui::components::status::StatusBar;
use crate::tui::components::tweet::TweetPanel;
use crate::tui::components::{Component, Handled, Message};
use crate::tui::editor::Editor;
use crate::tui::filter::{Filter, FilterData};

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
    /// A case-study figure of the tweet in view.
    Figure,
    /// The prompt panel's selected prompt: the next (or previous) by a_i.
    NextPrompt,
    PreviousPrompt,
    CancelRun,
    ExportCsv,
    ExportMarkdown,
    ExportLatex,
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
    /// The background submission of ablation runs ended: how many were queued.
    Queued(Result<usize, String>),
    /// The background cancel of run `id` ended.
    Cancelled {
        id: String,
        result: Result<(), String>,
    },
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
    /// A case-study figure of the tweet in view (SVG and PNG under figures/).
    Figure(usize),
}

/// The workbench's whole state: the session data the components share, the
/// components, and the bookkeeping of `update`.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub shared: Shared,
    /// A vocabulary from `--prompts`, applied once the checkpoint is loaded.
    pub start_vocabulary: Option<Vocabulary>,
    /// The vocabulary (with continuous count) the engine was last given.
    pub engine_vocabulary: Option<Vocabulary>,
    pub quit: bool,
    pub list: ExampleList,
    pub tweet: TweetPanel,
    pub image: ImagePanel,
    pub prompts: PromptsPanel,
    pub metrics: MetricsPanel,
    pub status: StatusBar,
    pub editor: EditorPanel,
    pub jobs: JobsPanel,
    pub overlays: Overlays,
}

/// What the components read and do not own: the session's data, and what each may
/// know of the others (the selected tweet, the word under the cursor, unsaved edits,
/// an open overlay), which [`App::sync`] copies in before every handler and draw.
/// Components change it only through the [`Message`]s they return.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub session: Session,
    pub tweets: Vec<TweetInfo>,
    pub ambiguous: Option<Vec<bool>>,
    /// Each tweet's scene category (meta.tsv), for picking a counterfactual image.
    pub scenes: Option<Vec<Option<String>>>,
    /// Each tweet's predicted spans with its own image, to mark what an override changes.
    pub own_spans: BTreeMap<usize, Vec<crate::data::spans::Span>>,
    pub scores: Option<SplitView>,
    pub view: Option<TweetView>,
    pub focus: Focus,
    pub engine: EngineState,
    pub message: Option<String>,
    /// Rows a page moves (set from the list's height by the loop).
    pub page: usize,
    /// The second checkpoint of `--compare`.
    pub compare: Option<Compare>,
    pub suggestions: Option<Suggestions>,
    /// `--candidates`: words for suggestions, instead of the vocabulary's.
    pub candidates: Option<Vec<String>>,
    /// The tweet under the list's cursor.
    pub selected: Option<usize>,
    /// The word under the tweet view's cursor.
    pub word_cursor: usize,
    /// The vocabulary has edits not saved yet.
    pub unsaved: bool,
    /// An overlay is open (and takes the keys).
    pub overlay_open: bool,
}

/// What the compared checkpoint (B) says: the current tweet and the split.
#[derive(Debug, Clone, Default)]
pub(crate) struct Compare {
    pub checkpoint: String,
    pub view: Option<TweetView>,
    pub scores: Option<SplitView>,
    /// ΔF1 (B − A) over the split with its paired-bootstrap interval and p-value, once
    /// both have scored it; made again whenever either scores it anew.
    pub significance: Option<Significance>,
}

impl Shared {
    /// Tests B against A on the split, the same test as `eval --compare`.
    fn test_significance(&mut self) {
        use crate::eval::significance::{DEFAULT_RESAMPLES, paired_test, tweet_counts};
        let Some(compare) = &mut self.compare else {
            return;
        };
        compare.significance = match (&self.scores, &compare.scores) {
            (Some(a), Some(b)) => {
                let gold: Vec<_> = self.tweets.iter().map(|t| t.gold.clone()).collect();
                Some(paired_test(
                    &tweet_counts(&gold, &a.spans()),
                    &tweet_counts(&gold, &b.spans()),
                    DEFAULT_RESAMPLES,
                    crate::eval::significance::SEED,
                ))
            }
            _ => None,
        };
    }
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
        let mut app = Self {
            shared: Shared {
                session,
                tweets: Vec::new(),
                ambiguous,
                scenes: None,
                own_spans: BTreeMap::new(),
                scores: None,
                view: None,
                focus: Focus::List,
                engine: EngineState::Loading,
                message: None,
                page: 10,
                compare: None,
                suggestions: None,
                candidates: None,
                selected: None,
                word_cursor: 0,
                unsaved: false,
                overlay_open: false,
            },
            start_vocabulary: None,
            engine_vocabulary: None,
            quit: false,
            list: ExampleList::default(),
            tweet: TweetPanel::default(),
            image: ImagePanel::default(),
            prompts: PromptsPanel::default(),
            metrics: MetricsPanel,
            status: StatusBar,
            editor: EditorPanel::default(),
            jobs: JobsPanel::default(),
            overlays: Overlays::default(),
        };
        app.sync();
        app
    }

    /// Copies what the components may know of each other into [`Shared`].
    pub(crate) fn sync(&mut self) {
        self.shared.selected = self.list.selected();
        self.shared.word_cursor = self.tweet.word_cursor;
        self.shared.unsaved = self.editor.unsaved();
        self.shared.overlay_open = self.overlays.top().is_some();
    }

    /// Carries out the components' messages in order; returns the effects for the loop.
    pub(crate) fn apply(&mut self, messages: Vec<Message>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for message in messages {
            match message {
                Message::Effect(effect) => effects.push(effect),
                Message::Focus(focus) => self.shared.focus = focus,
                Message::Status(text) => self.shared.message = Some(text),
                Message::ClearStatus => self.shared.message = None,
                Message::Open(overlay) => effects.extend(self.overlays.open(overlay)),
                Message::Search(search) => self.shared.suggestions = Some(search),
                Message::VocabularyChanged => effects.extend(self.vocabulary_effects()),
                Message::Edit(edit) => {
                    let edited = self.editor.edit(edit);
                    effects.extend(self.apply(edited));
                }
                Message::Save { confirmed } => {
                    let saving = self.editor.save(confirmed, &self.shared);
                    effects.extend(self.apply(saving));
                }
                Message::SetFilter(filter) => {
                    let filtered = self.list.set_filter(filter, &self.shared);
                    effects.extend(self.apply(filtered));
                }
                Message::Query(query) => {
                    self.list.query = query;
                    effects.extend(self.refilter());
                }
                Message::Queue { variants, seeds } => match &self.editor.vocabulary {
                    Some(editor) => effects.push(Effect::SubmitRuns {
                        variants,
                        seeds,
                        vocabulary: editor.state.effective(),
                    }),
                    None => self.shared.message = Some("the checkpoint is still loading".into()),
                },
                Message::Quit => self.quit = true,
                Message::StepList(command) => {
                    let moved = self.list.step(command, &self.shared);
                    effects.extend(self.apply(moved.consumed().unwrap_or_default()));
                }
                Message::Selected(tweet) => {
                    self.tweet.word_cursor = 0;
                    effects.push(Effect::Select(tweet));
                }
            }
        }
        self.sync();
        effects
    }

    /// The engine requests that bring it to the editor's vocabulary: the words and
    /// template when they changed, the continuous count when it changed.
    pub(crate) fn vocabulary_effects(&mut self) -> Vec<Effect> {
        let Some(editor) = &self.editor.vocabulary else {
            return Vec::new();
        };
        let wanted = editor.state.effective();
        let sent = self.engine_vocabulary.replace(wanted.clone());
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
            self.shared.engine = EngineState::Rescoring { done: 0, total: 0 };
        }
        effects
    }

    /// The list recomputed (the data or the query changed).
    pub(crate) fn refilter(&mut self) -> Vec<Effect> {
        let messages = self.list.refilter(&self.shared);
        self.apply(messages)
    }

    /// The tweet under the list's cursor.
    pub(crate) fn selected(&self) -> Option<usize> {
        self.list.selected()
    }

    pub(crate) fn unsaved(&self) -> bool {
        self.editor.unsaved()
    }

    /// The current tweet's view, when it is the selected tweet's.
    pub(crate) fn current_view(&self) -> Option<&TweetView> {
        self.shared
            .view
            .as_ref()
            .filter(|v| Some(v.index) == self.selected())
    }
}

impl Shared {
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

    /// The current tweet's view, when it is the selected tweet's.
    pub(crate) fn current_view(&self) -> Option<&TweetView> {
        self.view
            .as_ref()
            .filter(|v| Some(v.index) == self.selected)
    }

    /// Whether `focus`'s panel has the keys (no overlay over it).
    pub(crate) fn focused(&self, focus: Focus) -> bool {
        !self.overlay_open && self.focus == focus
    }
}

/// Applies one action; returns what the loop must do.
pub(crate) fn update(app: &mut App, action: Action) -> Vec<Effect> {
    app.sync();
    let effects = on_action(app, action);
    app.sync();
    effects
}

fn on_action(app: &mut App, action: Action) -> Vec<Effect> {
    match action {
        Action::Command(command) => on_command(app, command),
        Action::Type(c) => {
            let messages = app.overlays.type_char(c);
            app.apply(messages)
        }
        Action::Backspace => {
            let messages = app.overlays.backspace();
            app.apply(messages)
        }
        Action::Engine(event) => on_engine(app, event),
        Action::Image(outcome) => {
            app.image.shown = Some(outcome);
            Vec::new()
        }
        Action::Compare(event) => {
            on_compare(app, event);
            Vec::new()
        }
        Action::Jobs(snapshot) => {
            app.jobs.refresh(snapshot);
            Vec::new()
        }
        Action::Suggested(suggestion) => {
            if let Some(search) = &mut app.shared.suggestions {
                let at = search
                    .results
                    .partition_point(|s| s.delta_f1 >= suggestion.delta_f1);
                search.results.insert(at, suggestion);
            }
            Vec::new()
        }
        Action::SuggestionsDone(error) => {
            if let Some(search) = &mut app.shared.suggestions {
                search.running = false;
            }
            app.shared.message =
                Some(error.map_or("suggestions: done".into(), |e| format!("suggestions: {e}")));
            Vec::new()
        }
        Action::Message(message) => {
            app.shared.message = Some(message);
            Vec::new()
        }
        Action::Queued(result) => {
            app.shared.message = Some(match result {
                Ok(n) => format!("queued {n} runs (J shows them)"),
                Err(e) => format!("cannot queue the runs: {e}"),
            });
            Vec::new()
        }
        Action::Cancelled { id, result } => {
            app.shared.message = Some(match result {
                Ok(()) => format!("cancelling {id}"),
                Err(e) => format!("cannot cancel {id}: {e}"),
            });
            Vec::new()
        }
        Action::Saved(result) => {
            let messages = app.editor.saved(result);
            app.apply(messages)
        }
    }
}

/// Overlays first, then the focused component, then the image (its key works from
/// every panel the jobs panel does not cover), then the keys that mean the same
/// everywhere: the first to consume the command decides what it does.
fn on_command(app: &mut App, command: Command) -> Vec<Effect> {
    let stages: [fn(&mut App, Command) -> Handled; 5] =
        [on_overlays, on_focused, on_image, on_prompts, on_global];
    let messages = stages
        .into_iter()
        .find_map(|stage| {
            app.sync();
            stage(app, command).consumed()
        })
        .unwrap_or_default();
    app.apply(messages)
}

fn on_overlays(app: &mut App, command: Command) -> Handled {
    app.overlays.handle(command, &app.shared)
}

fn on_focused(app: &mut App, command: Command) -> Handled {
    match app.shared.focus {
        Focus::List => app.list.handle(command, &app.shared),
        Focus::Tweet => app.tweet.handle(command, &app.shared),
        Focus::Editor => app.editor.handle(command, &app.shared),
        Focus::Jobs => app.jobs.handle(command, &app.shared),
    }
}

fn on_image(app: &mut App, command: Command) -> Handled {
    app.image.handle(command, &app.shared)
}

fn on_prompts(app: &mut App, command: Command) -> Handled {
    app.prompts.handle(command, &app.shared)
}

/// The keys that mean the same in every panel.
fn on_global(app: &mut App, command: Command) -> Handled {
    let messages = match command {
        Command::Editor => app.editor.toggle(),
        Command::Jobs => app.jobs.toggle(),
        Command::Suggest => app.editor.suggest(&app.shared),
        Command::NextFilter => app.list.cycle_filter(1, &app.shared),
        Command::PreviousFilter => app.list.cycle_filter(-1, &app.shared),
        Command::Save => app.editor.save(false, &app.shared),
        Command::Undo => app.editor.history(Editor::undo, "nothing to undo"),
        Command::Redo => app.editor.history(Editor::redo, "nothing to redo"),
        Command::MoreContinuous => app.editor.continuous(1),
        Command::FewerContinuous => app.editor.continuous(-1),
        _ => return on_window(app, command),
    };
    Handled::Consumed(messages)
}

/// The keys that open a window, quit or move between panels.
fn on_window(app: &mut App, command: Command) -> Handled {
    let effects = match command {
        Command::Quit => quit(app),
        Command::Help => app.overlays.open(Overlay::Help),
        Command::NextPanel => next_panel(app),
        Command::Ablations => app.overlays.open(Overlay::Ablation {
            cursor: 0,
            chosen: vec![false; Variant::menu().len()],
            seeds: 3,
        }),
        Command::Confusion => app.overlays.open(Overlay::Confusion { row: 0, col: 0 }),
        Command::FilterMenu => {
            let cursor = app
                .shared
                .filters()
                .iter()
                .position(|f| *f == app.list.filter)
                .unwrap_or(0);
            app.overlays.open(Overlay::FilterMenu { cursor })
        }
        Command::Search => app.overlays.open(Overlay::Input(Input {
            purpose: InputPurpose::Search,
            text: app.list.query.clone(),
        })),
        _ => return Handled::NotConsumed,
    };
    Handled::effects(effects)
}

/// Quits, or asks first when the vocabulary has unsaved edits.
fn quit(app: &mut App) -> Vec<Effect> {
    if app.unsaved() {
        return app.overlays.open(Overlay::ConfirmQuit);
    }
    app.quit = true;
    Vec::new()
}

/// Tab: list (or editor) → tweet → list (or editor, when it is shown).
fn next_panel(app: &mut App) -> Vec<Effect> {
    app.shared.focus = match (app.shared.focus, app.editor.shown) {
        (Focus::List | Focus::Editor | Focus::Jobs, _) => Focus::Tweet,
        (Focus::Tweet, true) => Focus::Editor,
        (Focus::Tweet, false) => Focus::List,
    };
    Vec::new()
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
            app.shared.tweets = tweets;
            let mut vocabulary = *vocabulary;
            vocabulary.continuous = continuous;
            app.engine_vocabulary = Some(vocabulary.clone());
            app.editor.vocabulary = Some(Editor::new(vocabulary, continuous_trained));
            app.shared.engine = EngineState::Encoding { done: 0, total: 0 };
            let mut effects = app.refilter();
            if let (Some(start), Some(editor)) =
                (app.start_vocabulary.take(), &mut app.editor.vocabulary)
            {
                let mut start = start;
                if start.continuous > continuous_trained {
                    app.shared.message = Some(format!(
                        "the vocabulary asks for {} continuous prompts; the checkpoint trained {continuous_trained}: using {continuous_trained} (more needs a retrain, r)",
                        start.continuous
                    ));
                    start.continuous = continuous_trained;
                }
                *editor = Editor::new(start, continuous_trained);
                effects.extend(app.vocabulary_effects());
            }
            effects
        }
        Event::Tweet { view, .. } => {
            if view.image.choice == ImageChoice::Own {
                let spans = view.predicted.iter().map(|p| p.span).collect();
                app.shared.own_spans.insert(view.index, spans);
            }
            if Some(view.index) == app.selected() {
                app.tweet.word_cursor = app
                    .tweet
                    .word_cursor
                    .min(view.words.len().saturating_sub(1));
                app.shared.view = Some(*view);
            }
            Vec::new()
        }
        Event::Progress {
            task, done, total, ..
        } => {
            app.shared.engine = if task.starts_with("rescoring") {
                EngineState::Rescoring { done, total }
            } else {
                EngineState::Encoding { done, total }
            };
            Vec::new()
        }
        Event::Scores { view, .. } => {
            app.shared.scores = Some(*view);
            app.shared.engine = EngineState::Idle;
            app.shared.test_significance();
            app.refilter()
        }
        Event::RescoreStopped { .. } => Vec::new(),
        Event::Attribution { view, .. } => {
            app.shared.message = Some("the prompt panel shows each prompt's effect (Δp)".into());
            app.prompts.attribution = Some(*view);
            Vec::new()
        }
        Event::RetrainNeeded {
            requested, trained, ..
        } => {
            app.shared.message = Some(format!(
                "{requested} continuous prompts need a retrain (the checkpoint has {trained})"
            ));
            Vec::new()
        }
        Event::Error { message, .. } => {
            if app.shared.tweets.is_empty() {
                app.shared.engine = EngineState::Failed;
            }
            app.shared.message = Some(format!("engine: {message}"));
            Vec::new()
        }
    }
}

/// B's engine: its tweet views and split scores (its other events say nothing new).
fn on_compare(app: &mut App, event: Event) {
    let Some(compare) = &mut app.shared.compare else {
        return;
    };
    match event {
        Event::Tweet { view, .. } => compare.view = Some(*view),
        Event::Scores { view, .. } => {
            compare.scores = Some(*view);
            app.shared.test_significance();
        }
        Event::Error { message, .. } => app.shared.message = Some(format!("B: {message}")),
        Event::RetrainNeeded { trained, .. } => {
            app.shared.message = Some(format!(
                "B trained {trained} continuous prompts: it keeps those"
            ));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Event;
    use crate::tui::app::Action;
    use crate::tui::app::App;
    use crate::tui::app::EngineState;
    use crate::tui::app::update;
    use crate::tui::app::{Command, Effect, Focus};
    use crate::tui::components::overlays::Overlay;
    use crate::tui::test_support::{
        command, loaded, loaded_event, session, split_view, vocabulary,
    };

    #[test]
    fn loading_selects_the_first_tweet_and_scores_make_the_engine_idle() {
        let mut app = App::new(session(), None);
        let loaded = loaded_event();
        assert_eq!(
            update(&mut app, Action::Engine(loaded)),
            [Effect::Select(0)]
        );
        assert_eq!(app.list.visible, [0, 1, 2, 3]);
        assert!(matches!(app.shared.engine, EngineState::Encoding { .. }));
        update(
            &mut app,
            Action::Engine(Event::Scores {
                generation: 0,
                view: Box::new(split_view()),
            }),
        );
        assert_eq!(app.shared.engine, EngineState::Idle);
    }

    #[test]
    fn a_start_vocabulary_asking_for_more_continuous_prompts_than_trained_says_so() {
        let mut app = App::new(session(), None);
        let mut start = vocabulary();
        start.continuous = 50;
        app.start_vocabulary = Some(start);
        let loaded = loaded_event();
        update(&mut app, Action::Engine(loaded));
        assert!(
            app.shared.message.as_deref().unwrap().contains("retrain"),
            "{:?}",
            app.shared.message
        );
        assert_eq!(
            app.editor.vocabulary.unwrap().state.vocabulary.continuous,
            2
        );
    }

    #[test]
    fn an_open_overlay_takes_the_keys_before_the_focused_panel() {
        let mut app = loaded();
        command(&mut app, Command::FilterMenu);
        assert!(command(&mut app, Command::Down).is_empty());
        assert_eq!(app.overlays.top(), Some(&Overlay::FilterMenu { cursor: 1 }));
        assert_eq!(app.selected(), Some(0), "the list did not move");
    }

    #[test]
    fn the_tweet_view_steps_through_the_list_and_keeps_its_own_keys() {
        let mut app = loaded();
        command(&mut app, Command::Open);
        assert_eq!(app.shared.focus, Focus::Tweet);
        command(&mut app, Command::WordRight);
        assert_eq!(app.tweet.word_cursor, 1);
        assert_eq!(command(&mut app, Command::Down), [Effect::Select(1)]);
        assert_eq!(
            app.tweet.word_cursor, 0,
            "a new tweet starts at its first word"
        );
        command(&mut app, Command::Back);
        assert_eq!(app.shared.focus, Focus::List);
    }

    #[test]
    fn the_jobs_panel_covers_the_other_panels_keys_but_not_quit_help_or_leaving() {
        let mut app = loaded();
        command(&mut app, Command::FewerContinuous);
        command(&mut app, Command::Jobs);
        assert!(
            command(&mut app, Command::Save).is_empty(),
            "no save from here"
        );
        assert!(command(&mut app, Command::CycleImage).is_empty());
        command(&mut app, Command::NextPanel);
        assert_eq!(app.shared.focus, Focus::Jobs, "Tab stays in the jobs panel");
        command(&mut app, Command::Help);
        assert_eq!(app.overlays.top(), Some(&Overlay::Help));
        command(&mut app, Command::Back);
        command(&mut app, Command::Jobs);
        assert_eq!(app.shared.focus, Focus::List);
        assert!(matches!(
            &command(&mut app, Command::Save)[..],
            [Effect::Save { .. }]
        ));
    }
}
