//! The workbench without a terminal: `update` driven by actions, and the views drawn
//! on ratatui's `TestBackend` and compared with insta snapshots.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{Action, App, Command, Effect, EngineState, Focus, Overlay, Session, update};
use super::filter::Filter;
use super::views;
use crate::data::spans::Span;
use crate::data::tags::EntityType::{self, Loc, Org, Other, Per};
use crate::engine::{Event, ImageChoice, ImageView, PromptScore, SplitView, TweetInfo, TweetView};
use crate::eval::score::{ErrorKind, Scorer, classify_errors};
use crate::model::prompts::PromptSource;
use crate::model::span::{PredictedSpan, ScoredSpan};
use crate::prompts::{Vocabulary, WordList};

fn span(start: usize, end: usize, kind: EntityType) -> Span {
    Span { start, end, kind }
}

/// Four tweets: right, wrong type (no image), wrong boundary plus a miss, spurious.
fn tweets() -> Vec<(TweetInfo, Vec<Span>)> {
    let tweet = |text: &str, gold: Vec<Span>, image: Option<&str>, pred: Vec<Span>| {
        (
            TweetInfo {
                words: text.split(' ').map(str::to_string).collect(),
                gold,
                image_id: image.map(str::to_string),
                image_path: image.map(|id| PathBuf::from(format!("images/{id}.png"))),
            },
            pred,
        )
    };
    vec![
        tweet(
            "Falcon Express opens new office in Austin",
            vec![span(0, 2, Org), span(6, 7, Loc)],
            Some("100"),
            vec![span(0, 2, Org), span(6, 7, Loc)],
        ),
        tweet(
            "RT @fan : Nova wins the cup tonight !",
            vec![span(3, 4, Other)],
            None,
            vec![span(3, 4, Per)],
        ),
        tweet(
            "Paris Hilton visits Paris",
            vec![span(0, 2, Per), span(3, 4, Loc)],
            Some("102"),
            vec![span(0, 1, Per)],
        ),
        tweet(
            "lol so tired today",
            vec![],
            Some("103"),
            vec![span(0, 1, Org)],
        ),
    ]
}

const VOCABULARY: &str = r#"
template = "an image of a {}"
continuous = 2
[PER]
labels = ["person"]
expert = ["player"]
candidates = ["athlete", "fan"]
[LOC]
labels = ["place"]
[OTHER]
labels = ["thing"]
"#;

fn vocabulary() -> Vocabulary {
    Vocabulary::parse(VOCABULARY, std::path::Path::new("prompts.toml")).unwrap()
}

/// The split scored with `predictions` (one list of spans per tweet).
fn split_view_of(predictions: &[Vec<Span>]) -> SplitView {
    let mut scorer = Scorer::new();
    let mut tweet_errors = Vec::new();
    for ((info, _), pred) in tweets().into_iter().zip(predictions) {
        scorer.add_spans(&info.gold, pred);
        tweet_errors.push(classify_errors(&info.gold, pred));
    }
    SplitView {
        report: scorer.report(),
        delta_f1: Some(0.0),
        delta_per_type: BTreeMap::new(),
        tweet_errors,
        predicted: predictions
            .iter()
            .map(|p| {
                p.iter()
                    .map(|&span| PredictedSpan { span, prob: 0.9 })
                    .collect()
            })
            .collect(),
        is_baseline: true,
        seconds: 0.1,
    }
}

/// The split scored with the fixture's own predictions.
fn split_view() -> SplitView {
    let predictions: Vec<Vec<Span>> = tweets().into_iter().map(|(_, pred)| pred).collect();
    split_view_of(&predictions)
}

fn prompt(word: &str, kind: EntityType, list: WordList, similarity: f32) -> PromptScore {
    PromptScore {
        text: format!("an image of a {word}"),
        source: PromptSource::Discrete {
            word: word.into(),
            kind,
            list,
        },
        similarity,
    }
}

/// `view` predicting one span only.
fn predicting(mut view: TweetView, predicted: Span, prob: f32) -> TweetView {
    view.predicted = vec![PredictedSpan {
        span: predicted,
        prob,
    }];
    view
}

/// The engine's view of tweet `index` (prompts only where there is an image).
fn tweet_view(index: usize) -> TweetView {
    let (info, pred) = tweets().swap_remove(index);
    let n = info.words.len();
    let mut candidates = Vec::new();
    for start in 0..n {
        for end in start + 1..=(start + 2).min(n) {
            let mut probs = [0.0, 0.0, 0.0, 0.0, 1.0];
            if let Some(p) = pred.iter().find(|p| p.start == start && p.end == end) {
                probs = [0.05; 5];
                probs[p.kind.index()] = 0.8;
            }
            candidates.push(ScoredSpan { start, end, probs });
        }
    }
    let prompts = match info.image_path {
        Some(_) => vec![
            prompt("person", Per, WordList::Labels, 0.41),
            prompt("player", Per, WordList::Expert, 0.27),
            prompt("place", Loc, WordList::Labels, 0.12),
            prompt("thing", Other, WordList::Labels, 0.08),
            PromptScore {
                text: "an image of a <v_0>".into(),
                source: PromptSource::Continuous { index: 0 },
                similarity: 0.07,
            },
            PromptScore {
                text: "an image of a <v_1>".into(),
                source: PromptSource::Continuous { index: 1 },
                similarity: 0.05,
            },
        ],
        None => Vec::new(),
    };
    let clue_attention = match prompts.len() {
        0 => Vec::new(),
        k => (0..n)
            .map(|w| (0..k).map(|i| ((w + i) % k) as f32 / k as f32).collect())
            .collect(),
    };
    TweetView {
        index,
        words: info.words,
        gold: info.gold,
        predicted: pred
            .iter()
            .map(|&span| PredictedSpan { span, prob: 0.8 })
            .collect(),
        candidates,
        clue_attention,
        image: ImageView {
            choice: ImageChoice::Own,
            from_tweet: info.image_path.as_ref().map(|_| index),
            no_image: info
                .image_path
                .is_none()
                .then(|| "the tweet has no image id".to_string()),
        },
        prompts,
        truncated_words: 0,
    }
}

fn session() -> Session {
    Session {
        dataset: "demo".into(),
        split: "test".into(),
        checkpoint: "demo".into(),
        device: "cpu".into(),
        save_path: PathBuf::from("demo-prompts.toml"),
        save_needs_confirm: false,
        checkpoint_dir: PathBuf::from("checkpoints/demo"),
        runs_root: PathBuf::from("runs"),
    }
}

/// Feeds the engine's answers to every Select effect, as the engine would.
fn run(app: &mut App, action: Action) -> Vec<Effect> {
    let effects = update(app, action);
    for effect in &effects {
        if let Effect::Select(index) = effect {
            let view = Box::new(tweet_view(*index));
            update(
                app,
                Action::Engine(Event::Tweet {
                    generation: 1,
                    view,
                }),
            );
        }
    }
    effects
}

fn command(app: &mut App, command: Command) -> Vec<Effect> {
    run(app, Action::Command(command))
}

/// A workbench with the split loaded and scored, tweet 0 shown.
fn loaded() -> App {
    let mut app = App::new(session(), Some(vec![false, true, true, false]));
    let loaded = Event::Loaded {
        tweets: tweets().into_iter().map(|(info, _)| info).collect(),
        vocabulary: Box::new(vocabulary()),
        continuous: 2,
        continuous_trained: 2,
        fusion: crate::model::fusion::FusionMode::Modality,
    };
    run(&mut app, Action::Engine(loaded));
    run(
        &mut app,
        Action::Engine(Event::Scores {
            generation: 0,
            view: Box::new(split_view()),
        }),
    );
    app
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        run(app, Action::Type(c));
    }
}

fn screen(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| views::draw(app, frame)).unwrap();
    terminal
}

// ---- update ----

#[test]
fn loading_selects_the_first_tweet_and_scores_make_the_engine_idle() {
    let mut app = App::new(session(), None);
    let loaded = Event::Loaded {
        tweets: tweets().into_iter().map(|(info, _)| info).collect(),
        vocabulary: Box::new(vocabulary()),
        continuous: 2,
        continuous_trained: 2,
        fusion: crate::model::fusion::FusionMode::Modality,
    };
    assert_eq!(
        update(&mut app, Action::Engine(loaded)),
        [Effect::Select(0)]
    );
    assert_eq!(app.list.visible, [0, 1, 2, 3]);
    assert!(matches!(app.engine, EngineState::Encoding { .. }));
    update(
        &mut app,
        Action::Engine(Event::Scores {
            generation: 0,
            view: Box::new(split_view()),
        }),
    );
    assert_eq!(app.engine, EngineState::Idle);
}

#[test]
fn filters_and_their_counts() {
    let app = loaded();
    let data = app.filter_data();
    let expect = [
        (Filter::All, 4),
        (Filter::Misclassified, 3),
        (Filter::Error(ErrorKind::WrongType), 1),
        (Filter::Error(ErrorKind::WrongBoundary), 1),
        (Filter::Error(ErrorKind::Missed), 1),
        (Filter::Error(ErrorKind::Spurious), 1),
        (Filter::Error(ErrorKind::WrongBoundaryAndType), 0),
        (Filter::GoldType(Per), 1),
        (Filter::PredictedType(Per), 2),
        (Filter::PredictedType(Org), 2),
        (Filter::HasImage, 3),
        (Filter::NoImage, 1),
        (Filter::ImageAmbiguous, 2),
    ];
    for (filter, count) in expect {
        assert_eq!(data.count(filter), Some(count), "{}", filter.label());
    }
    // Before any scoring, the error filters cannot be counted.
    let unscored = App {
        scores: None,
        ..app.clone()
    };
    assert_eq!(unscored.filter_data().count(Filter::Misclassified), None);
    assert_eq!(unscored.filter_data().count(Filter::NoImage), Some(1));
}

#[test]
fn cycling_filters_keeps_the_selection_when_it_stays_visible() {
    let mut app = loaded();
    command(&mut app, Command::Down);
    assert_eq!(app.selected(), Some(1));
    let effects = command(&mut app, Command::NextFilter);
    assert_eq!(app.list.filter, Filter::Misclassified);
    assert_eq!(app.list.visible, [1, 2, 3]);
    assert_eq!(app.selected(), Some(1));
    assert!(effects.is_empty(), "the shown tweet did not change");
    command(&mut app, Command::PreviousFilter);
    command(&mut app, Command::PreviousFilter);
    assert_eq!(app.list.filter, Filter::ImageAmbiguous, "cycling wraps");
    assert_eq!(app.list.visible, [1, 2]);
}

#[test]
fn moving_selects_tweets_within_bounds() {
    let mut app = loaded();
    assert_eq!(command(&mut app, Command::Bottom), [Effect::Select(3)]);
    assert!(command(&mut app, Command::Down).is_empty());
    assert_eq!(app.selected(), Some(3));
    app.page = 2;
    command(&mut app, Command::PageUp);
    assert_eq!(app.selected(), Some(1));
    command(&mut app, Command::Top);
    assert_eq!(app.selected(), Some(0));
}

#[test]
fn search_narrows_the_list_as_it_is_typed_and_escape_clears_it() {
    let mut app = loaded();
    command(&mut app, Command::Search);
    typed(&mut app, "paris");
    assert_eq!(app.list.visible, [2]);
    assert_eq!(app.selected(), Some(2));
    command(&mut app, Command::Open);
    assert_eq!(app.overlay, None);
    assert_eq!(app.list.query, "paris");
    command(&mut app, Command::Back);
    assert_eq!(app.list.visible.len(), 4);
}

#[test]
fn the_filter_menu_picks_a_filter() {
    let mut app = loaded();
    command(&mut app, Command::FilterMenu);
    for _ in 0..3 {
        command(&mut app, Command::Down);
    }
    command(&mut app, Command::Open);
    assert_eq!(app.list.filter, Filter::Error(ErrorKind::WrongBoundary));
    assert_eq!(app.list.visible, [2]);
    assert_eq!(app.overlay, None);
}

fn open_editor_at_per_labels(app: &mut App) {
    command(app, Command::Editor);
    assert_eq!(app.focus, Focus::Editor);
    command(app, Command::Down);
    command(app, Command::Down);
}

#[test]
fn an_edit_sends_the_vocabulary_and_undo_redo_walk_back_and_forth() {
    let mut app = loaded();
    open_editor_at_per_labels(&mut app);
    command(&mut app, Command::AddWord);
    typed(&mut app, "athlete");
    let effects = command(&mut app, Command::Open);
    let Some(Effect::SetVocabulary(sent)) = effects.first() else {
        panic!("expected the vocabulary to be sent, got {effects:?}");
    };
    assert_eq!(sent.types[&Per].labels, ["person", "athlete"]);
    assert_eq!(effects.len(), 1, "the continuous count did not change");
    assert!(app.unsaved());
    let effects = command(&mut app, Command::Undo);
    assert!(
        matches!(&effects[..], [Effect::SetVocabulary(v)] if v.types[&Per].labels == ["person"])
    );
    assert!(!app.unsaved());
    command(&mut app, Command::Redo);
    assert!(app.unsaved());
    assert_eq!(
        command(&mut app, Command::FewerContinuous),
        [Effect::SetContinuous(1)]
    );
}

#[test]
fn invalid_edits_are_refused_with_a_message_and_change_nothing() {
    let mut app = loaded();
    open_editor_at_per_labels(&mut app);
    let before = app.editor.clone().unwrap().state;
    command(&mut app, Command::AddWord);
    typed(&mut app, "Player");
    assert!(command(&mut app, Command::Open).is_empty());
    assert!(
        app.message.as_deref().unwrap().contains("twice"),
        "{:?}",
        app.message
    );
    command(&mut app, Command::AddWord);
    assert!(command(&mut app, Command::Open).is_empty(), "an empty word");
    command(&mut app, Command::EditTemplate);
    for _ in 0.."an image of a {}".len() {
        run(&mut app, Action::Backspace);
    }
    typed(&mut app, "a photo");
    assert!(command(&mut app, Command::Open).is_empty());
    assert!(app.message.as_deref().unwrap().contains("{}"));
    assert!(command(&mut app, Command::MoreContinuous).is_empty());
    assert!(app.message.as_deref().unwrap().contains("retrain"));
    assert_eq!(app.editor.unwrap().state, before);
}

#[test]
fn switching_a_list_off_scores_without_its_words_but_keeps_them() {
    let mut app = loaded();
    open_editor_at_per_labels(&mut app);
    let effects = command(&mut app, Command::ToggleList);
    assert!(matches!(&effects[..], [Effect::SetVocabulary(v)] if v.types[&Per].labels.is_empty()));
    let editor = app.editor.as_ref().unwrap();
    assert_eq!(editor.state.vocabulary.types[&Per].labels, ["person"]);
    let effects = command(&mut app, Command::ToggleList);
    assert!(
        matches!(&effects[..], [Effect::SetVocabulary(v)] if v.types[&Per].labels == ["person"])
    );
}

#[test]
fn quitting_with_unsaved_edits_asks_first() {
    let mut app = loaded();
    command(&mut app, Command::Quit);
    assert!(app.quit, "nothing to lose");
    let mut app = loaded();
    command(&mut app, Command::FewerContinuous);
    command(&mut app, Command::Quit);
    assert_eq!(app.overlay, Some(Overlay::ConfirmQuit));
    assert!(!app.quit);
    command(&mut app, Command::Deny);
    assert_eq!(app.overlay, None);
    command(&mut app, Command::Quit);
    let effects = command(&mut app, Command::Save);
    assert!(
        matches!(&effects[..], [Effect::Save { vocabulary, .. }] if vocabulary.continuous == 1)
    );
    run(
        &mut app,
        Action::Saved(Ok(PathBuf::from("demo-prompts.toml"))),
    );
    assert!(!app.unsaved());
    command(&mut app, Command::Quit);
    assert!(app.quit);
}

#[test]
fn saving_over_the_checkpoints_prompts_needs_a_yes() {
    let mut app = loaded();
    app.session.save_needs_confirm = true;
    assert!(command(&mut app, Command::Save).is_empty());
    assert_eq!(app.overlay, Some(Overlay::ConfirmOverwrite));
    command(&mut app, Command::Deny);
    assert_eq!(app.overlay, None);
    command(&mut app, Command::Save);
    assert!(matches!(
        &command(&mut app, Command::Confirm)[..],
        [Effect::Save { .. }]
    ));
}

#[test]
fn a_view_for_another_tweet_is_ignored() {
    let mut app = loaded();
    let stale = Box::new(tweet_view(2));
    update(
        &mut app,
        Action::Engine(Event::Tweet {
            generation: 9,
            view: stale,
        }),
    );
    assert_eq!(app.current_view().map(|v| v.index), Some(0));
}

// ---- views ----

#[test]
fn snapshot_first_screen() {
    insta::assert_snapshot!(screen(&loaded(), 120, 36).backend());
}

#[test]
fn snapshot_loading() {
    let app = App::new(session(), None);
    insta::assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn snapshot_each_filter() {
    for filter in loaded().filters() {
        let mut app = loaded();
        while app.list.filter != filter {
            command(&mut app, Command::NextFilter);
        }
        let terminal = screen(&app, 80, 24);
        let name = filter.label().replace(' ', "_");
        insta::assert_snapshot!(format!("filter_{name}"), terminal.backend());
    }
}

#[test]
fn snapshot_tweet_view_with_a_wrong_type_span_selected() {
    let mut app = loaded();
    command(&mut app, Command::Down);
    command(&mut app, Command::NextPanel);
    for _ in 0..3 {
        command(&mut app, Command::WordRight);
    }
    assert_eq!(app.word_cursor, 3, "on «Nova», gold OTHER, predicted PER");
    insta::assert_snapshot!(screen(&app, 120, 36).backend());
}

#[test]
fn snapshot_prompt_panel_with_clue_attention() {
    let mut app = loaded();
    command(&mut app, Command::NextPanel);
    command(&mut app, Command::WordRight);
    let mut terminal = Terminal::new(TestBackend::new(70, 10)).unwrap();
    terminal
        .draw(|frame| views::prompts::draw(&app, frame, frame.area()))
        .unwrap();
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn snapshot_editor_mid_edit() {
    let mut app = loaded();
    open_editor_at_per_labels(&mut app);
    command(&mut app, Command::AddWord);
    typed(&mut app, "athl");
    insta::assert_snapshot!(screen(&app, 100, 30).backend());
}

#[test]
fn snapshot_help_overlay() {
    let mut app = loaded();
    command(&mut app, Command::Help);
    insta::assert_snapshot!(screen(&app, 100, 40).backend());
}

#[test]
fn snapshot_confirm_quit() {
    let mut app = loaded();
    command(&mut app, Command::FewerContinuous);
    command(&mut app, Command::Quit);
    insta::assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn snapshot_small_and_large_terminals() {
    let mut app = loaded();
    command(&mut app, Command::Down);
    insta::assert_snapshot!("layout_80x24", screen(&app, 80, 24).backend());
    insta::assert_snapshot!("layout_200x60", screen(&app, 200, 60).backend());
}

// ---- jobs ----

fn jobs_snapshot() -> crate::jobs::watch::JobsSnapshot {
    use crate::jobs::registry::State;
    use crate::jobs::table::{MeanStd, Row};
    use crate::jobs::watch::{JobsSnapshot, RunSummary};
    let run = |id: &str, variant: &str, state: State, epoch: usize, test: Option<f64>| RunSummary {
        id: id.into(),
        group: "demo-1".into(),
        variant: variant.into(),
        seed: 1,
        state,
        epoch,
        epochs: 20,
        loss: Some(0.01),
        dev_f1: Some(90.0),
        test_f1: test,
        log_tail: vec![format!("epoch {epoch}: train loss 0.0100")],
        dir: PathBuf::from(format!("runs/{id}")),
    };
    let row = |variant: &str, f1: f64, delta: f64| Row {
        variant: variant.into(),
        finished: 1,
        runs: 1,
        precision: Some(MeanStd { mean: f1, std: 0.5 }),
        recall: Some(MeanStd { mean: f1, std: 0.4 }),
        f1: Some(MeanStd { mean: f1, std: 0.3 }),
        delta_f1: Some(delta),
    };
    JobsSnapshot {
        runs: vec![
            run("r0001-full-s1", "full", State::Finished, 20, Some(94.9)),
            run("r0002-none-s1", "none", State::Running, 7, None),
            run("r0003-plain-s1", "plain", State::Queued, 0, None),
        ],
        group: Some("demo-1".into()),
        table: vec![row("full", 94.9, 0.0), row("none", 81.5, -13.4)],
        skipped: Vec::new(),
    }
}

#[test]
fn the_ablation_dialog_queues_the_chosen_variants_with_the_current_vocabulary() {
    let mut app = loaded();
    command(&mut app, Command::FewerContinuous);
    command(&mut app, Command::Ablations);
    command(&mut app, Command::ToggleList);
    for _ in 0..4 {
        command(&mut app, Command::Down);
    }
    command(&mut app, Command::ToggleList);
    command(&mut app, Command::FewerContinuous);
    let effects = command(&mut app, Command::Open);
    let [
        Effect::SubmitRuns {
            variants,
            seeds,
            vocabulary,
        },
    ] = &effects[..]
    else {
        panic!("{effects:?}");
    };
    use crate::jobs::variant::Variant;
    assert_eq!(variants, &[Variant::Full, Variant::TextOnly]);
    assert_eq!(*seeds, 2, "3 by default, one fewer");
    assert_eq!(vocabulary.continuous, 1, "the edited vocabulary");
    assert_eq!(app.overlay, None);
}

#[test]
fn the_jobs_panel_cancels_running_runs_and_loads_finished_ones() {
    let mut app = loaded();
    run(&mut app, Action::Jobs(jobs_snapshot()));
    command(&mut app, Command::Jobs);
    assert_eq!(app.focus, Focus::Jobs);
    assert!(
        command(&mut app, Command::CancelRun).is_empty(),
        "finished: nothing to cancel"
    );
    command(&mut app, Command::Down);
    assert_eq!(
        command(&mut app, Command::CancelRun),
        [Effect::CancelRun("r0002-none-s1".into())]
    );
    assert!(command(&mut app, Command::Open).is_empty(), "still running");
    assert_eq!(
        command(&mut app, Command::ExportCsv),
        [Effect::ExportTable(crate::jobs::table::Format::Csv)]
    );
    command(&mut app, Command::Top);
    assert_eq!(
        command(&mut app, Command::Open),
        [Effect::LoadCheckpoint(PathBuf::from("runs/r0001-full-s1"))]
    );
    assert!(!app.jobs_view);
}

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
fn snapshot_jobs_panel() {
    let mut app = loaded();
    run(&mut app, Action::Jobs(jobs_snapshot()));
    command(&mut app, Command::Jobs);
    command(&mut app, Command::Down);
    insta::assert_snapshot!(screen(&app, 100, 30).backend());
}

#[test]
fn snapshot_ablation_dialog() {
    let mut app = loaded();
    command(&mut app, Command::Ablations);
    command(&mut app, Command::ToggleList);
    command(&mut app, Command::Down);
    insta::assert_snapshot!(screen(&app, 100, 30).backend());
}

#[test]
fn i_cycles_the_image_through_none_another_tweets_and_its_own() {
    let mut app = loaded();
    let cycle = |app: &mut App| match &update(app, Action::Command(Command::CycleImage))[..] {
        [Effect::SetImage { tweet: 0, image }] => *image,
        other => panic!("{other:?}"),
    };
    assert_eq!(cycle(&mut app), ImageChoice::None);
    // Tweet 1 has no image: the next with one is tweet 2.
    assert_eq!(cycle(&mut app), ImageChoice::FromTweet(2));
    assert_eq!(cycle(&mut app), ImageChoice::Own);
    assert!(app.image_overrides.is_empty());
    // With scenes known, the other image comes from another scene.
    app.scenes = Some(vec![
        Some("a".into()),
        None,
        Some("a".into()),
        Some("b".into()),
    ]);
    cycle(&mut app);
    assert_eq!(cycle(&mut app), ImageChoice::FromTweet(3));
}

#[test]
fn snapshot_counterfactual_image_marks_what_changed() {
    let mut app = loaded();
    command(&mut app, Command::Bottom);
    // Tweet 3 with tweet 0's image: the spurious ORG becomes a PER.
    let mut view = tweet_view(3);
    view.image.choice = ImageChoice::FromTweet(0);
    view.image.from_tweet = Some(0);
    update(
        &mut app,
        Action::Engine(Event::Tweet {
            generation: 5,
            view: Box::new(predicting(view, span(0, 1, Per), 0.7)),
        }),
    );
    insta::assert_snapshot!(screen(&app, 100, 30).backend());
}

#[test]
fn the_confusion_matrix_adds_up_to_the_scores_and_filters_the_list() {
    use crate::eval::confusion::{Confusion, classes};
    let view = split_view();
    let report = &view.report;
    let correct = EntityType::ALL.map(|k| report.per_type.get(&k).map_or(0, |s| s.counts.tp));
    let matrix = Confusion::new(&view.tweet_errors, correct);
    let e = &report.errors;
    let errors =
        e.wrong_type + e.wrong_boundary + e.wrong_boundary_and_type + e.spurious + e.missed;
    assert_eq!(matrix.total_errors(), errors);
    assert_eq!(correct.iter().sum::<usize>(), report.micro.counts.tp);
    assert_eq!(
        matrix.count(None, Some(Org)),
        e.spurious,
        "the spurious ORG"
    );
    assert_eq!(matrix.count(Some(Loc), None), e.missed, "the missed LOC");
    assert_eq!(matrix.count(Some(Other), Some(Per)), 1, "the wrong type");
    let cells: usize = classes()
        .into_iter()
        .flat_map(|g| classes().map(move |p| (g, p)))
        .map(|(g, p)| matrix.count(g, p))
        .sum();
    assert_eq!(cells, errors + report.micro.counts.tp);

    let mut app = loaded();
    command(&mut app, Command::Confusion);
    for _ in 0..3 {
        command(&mut app, Command::Down);
    }
    command(&mut app, Command::Open);
    assert_eq!(app.list.filter, Filter::Confusion(Some(Other), Some(Per)));
    assert_eq!(app.list.visible, [1]);
}

#[test]
fn snapshot_confusion_matrix() {
    let mut app = loaded();
    command(&mut app, Command::Confusion);
    command(&mut app, Command::Down);
    command(&mut app, Command::WordRight);
    insta::assert_snapshot!(screen(&app, 100, 30).backend());
}

fn suggestion(word: &str, delta: f64) -> crate::engine::suggest::Suggestion {
    crate::engine::suggest::Suggestion {
        word: word.into(),
        kind: Per,
        list: WordList::Labels,
        delta_f1: delta,
        delta_per_type: BTreeMap::from([(Per, delta)]),
        f1: 50.0 + delta,
    }
}

#[test]
fn suggestions_search_the_editors_list_rank_as_they_come_and_enter_adds_the_word() {
    let mut app = loaded();
    assert!(
        command(&mut app, Command::Suggest).is_empty(),
        "not on a list yet"
    );
    open_editor_at_per_labels(&mut app);
    let effects = command(&mut app, Command::Suggest);
    let [Effect::StartSuggestions(request)] = &effects[..] else {
        panic!("{effects:?}");
    };
    assert_eq!((request.kind, request.list), (Per, WordList::Labels));
    assert_eq!(request.candidates, ["athlete", "fan"]);
    run(&mut app, Action::Suggested(suggestion("fan", -0.5)));
    run(&mut app, Action::Suggested(suggestion("athlete", 1.25)));
    let words: Vec<&str> = app
        .suggestions
        .as_ref()
        .unwrap()
        .results
        .iter()
        .map(|s| s.word.as_str())
        .collect();
    assert_eq!(words, ["athlete", "fan"], "best first");
    assert_eq!(
        command(&mut app, Command::CancelRun),
        [Effect::StopSuggestions]
    );
    run(&mut app, Action::SuggestionsDone(None));
    let effects = command(&mut app, Command::Open);
    assert!(
        matches!(&effects[..], [Effect::SetVocabulary(v)] if v.types[&Per].labels == ["person", "athlete"])
    );
}

#[test]
fn snapshot_suggestions() {
    let mut app = loaded();
    open_editor_at_per_labels(&mut app);
    command(&mut app, Command::Suggest);
    run(&mut app, Action::Suggested(suggestion("athlete", 1.25)));
    insta::assert_snapshot!(screen(&app, 100, 30).backend());
}

/// B's scoring: tweet 0 misses Austin (A right), tweets 1–3 match gold (B right).
fn compared_app() -> App {
    let mut app = loaded();
    app.compare = Some(super::app::Compare {
        checkpoint: "b".into(),
        ..Default::default()
    });
    let b: Vec<Vec<Span>> = vec![
        vec![span(0, 2, Org)],
        vec![span(3, 4, Other)],
        vec![span(0, 2, Per), span(3, 4, Loc)],
        vec![],
    ];
    let view = split_view_of(&b);
    run(
        &mut app,
        Action::Compare(Event::Scores {
            generation: 0,
            view: Box::new(view),
        }),
    );
    b_views_tweet_1(&mut app, 1);
    app
}

/// B's view of tweet 1 arrives: an OTHER span there.
fn b_views_tweet_1(app: &mut App, generation: u64) {
    let view = tweet_view(1);
    run(
        app,
        Action::Compare(Event::Tweet {
            generation,
            view: Box::new(predicting(view, span(3, 4, Other), 0.9)),
        }),
    );
}

#[test]
fn compare_filters_count_disagreements_by_type_and_by_who_is_right() {
    use crate::eval::compare::Right;
    let app = compared_app();
    let data = app.filter_data();
    let count = |kind, right| data.count(Filter::Disagree(kind, right));
    assert_eq!(count(None, None), Some(4));
    assert_eq!(count(None, Some(Right::A)), Some(1));
    assert_eq!(count(None, Some(Right::B)), Some(3));
    assert_eq!(count(Some(Loc), None), Some(2), "Austin, and Paris");
    assert_eq!(count(Some(Other), Some(Right::B)), Some(1));
    let without = loaded();
    assert_eq!(
        without.filter_data().count(Filter::Disagree(None, None)),
        None
    );
}

#[test]
fn snapshot_compare_mode() {
    let mut app = compared_app();
    command(&mut app, Command::Down);
    b_views_tweet_1(&mut app, 2);
    insta::assert_snapshot!(screen(&app, 110, 34).backend());
}

#[test]
fn a_asks_for_the_attribution_of_the_span_under_the_cursor_and_the_panel_shows_it() {
    use crate::engine::{AttributionView, PromptEffect};
    let mut app = loaded();
    command(&mut app, Command::NextPanel);
    for _ in 0..6 {
        command(&mut app, Command::WordRight);
    }
    assert_eq!(
        command(&mut app, Command::Attribute),
        [Effect::Attribute {
            tweet: 0,
            start: 6,
            end: 7
        }],
        "Austin, the predicted LOC under the cursor"
    );
    let view = app.current_view().unwrap().clone();
    let effects = view
        .prompts
        .iter()
        .enumerate()
        .map(|(i, p)| PromptEffect {
            text: p.text.clone(),
            source: p.source.clone(),
            change: [-0.30, 0.05, -0.10, 0.0, 0.02, -0.01][i],
        })
        .collect();
    let attribution = AttributionView {
        tweet: 0,
        start: 6,
        end: 7,
        class: 1,
        probability: 0.8,
        effects,
    };
    run(
        &mut app,
        Action::Engine(Event::Attribution {
            generation: 3,
            view: Box::new(attribution),
        }),
    );
    let mut terminal = Terminal::new(TestBackend::new(70, 10)).unwrap();
    terminal
        .draw(|frame| views::prompts::draw(&app, frame, frame.area()))
        .unwrap();
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn a_start_vocabulary_asking_for_more_continuous_prompts_than_trained_says_so() {
    let mut app = App::new(session(), None);
    let mut start = vocabulary();
    start.continuous = 50;
    app.start_vocabulary = Some(start);
    let loaded = Event::Loaded {
        tweets: tweets().into_iter().map(|(info, _)| info).collect(),
        vocabulary: Box::new(vocabulary()),
        continuous: 2,
        continuous_trained: 2,
        fusion: crate::model::fusion::FusionMode::Modality,
    };
    update(&mut app, Action::Engine(loaded));
    assert!(
        app.message.as_deref().unwrap().contains("retrain"),
        "{:?}",
        app.message
    );
    assert_eq!(app.editor.unwrap().state.vocabulary.continuous, 2);
}
