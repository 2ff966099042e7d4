//! Fixtures for the workbench's tests (shared by each component's): a four-tweet split,
//! its vocabulary and scores, the engine's answers, and a screen drawn on ratatui's
//! `TestBackend`.

use crate::data::spans::Span;
use crate::data::tags::EntityType;
use crate::data::tags::EntityType::Loc;
use crate::data::tags::EntityType::Org;
use crate::data::tags::EntityType::Other;
use crate::data::tags::EntityType::Per;
use crate::engine::Event;
use crate::engine::ImageChoice;
use crate::engine::ImageView;
use crate::engine::PromptScore;
use crate::engine::SplitView;
use crate::engine::TweetInfo;
use crate::engine::TweetView;
use crate::eval::score::Scorer;
use crate::eval::score::classify_errors;
use crate::model::prompts::PromptSource;
use crate::model::span::PredictedSpan;
use crate::model::span::ScoredSpan;
use crate::prompts::Vocabulary;
use crate::prompts::WordList;
use crate::tui::app::Action;
use crate::tui::app::App;
use crate::tui::app::Command;
use crate::tui::app::Effect;
use crate::tui::app::Focus;
use crate::tui::app::Session;
use crate::tui::app::update;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub(crate) fn span(start: usize, end: usize, kind: EntityType) -> Span {
    Span { start, end, kind }
}

/// Four tweets: right, wrong type (no image), wrong boundary plus a miss, spurious.
pub(crate) fn tweets() -> Vec<(TweetInfo, Vec<Span>)> {
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

pub(crate) const VOCABULARY: &str = r#"
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

pub(crate) fn vocabulary() -> Vocabulary {
    Vocabulary::parse(VOCABULARY, std::path::Path::new("prompts.toml")).unwrap()
}

/// The split scored with `predictions` (one list of spans per tweet).
pub(crate) fn split_view_of(predictions: &[Vec<Span>]) -> SplitView {
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
        // Each tweet with an image scales its view's a_i, so that the split has a spread.
        similarities: (0..predictions.len())
            .map(|i| {
                let view = tweet_view(i);
                let scale = 1.0 + 0.25 * i as f32;
                view.prompts.iter().map(|p| p.similarity * scale).collect()
            })
            .collect(),
        is_baseline: true,
        seconds: 0.1,
    }
}

/// The split scored with the fixture's own predictions.
pub(crate) fn split_view() -> SplitView {
    let predictions: Vec<Vec<Span>> = tweets().into_iter().map(|(_, pred)| pred).collect();
    split_view_of(&predictions)
}

pub(crate) fn prompt(word: &str, kind: EntityType, list: WordList, similarity: f32) -> PromptScore {
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
pub(crate) fn predicting(mut view: TweetView, predicted: Span, prob: f32) -> TweetView {
    view.predicted = vec![PredictedSpan {
        span: predicted,
        prob,
    }];
    view
}

/// The engine's view of tweet `index` (prompts only where there is an image).
pub(crate) fn tweet_view(index: usize) -> TweetView {
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

pub(crate) fn session() -> Session {
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
pub(crate) fn run(app: &mut App, action: Action) -> Vec<Effect> {
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

pub(crate) fn command(app: &mut App, command: Command) -> Vec<Effect> {
    run(app, Action::Command(command))
}

/// What the engine says once the test split is loaded (two continuous prompts trained).
pub(crate) fn loaded_event() -> Event {
    Event::Loaded {
        tweets: tweets().into_iter().map(|(info, _)| info).collect(),
        vocabulary: Box::new(vocabulary()),
        continuous: 2,
        continuous_trained: 2,
        fusion: crate::model::fusion::FusionMode::Modality,
    }
}

/// A workbench with the split loaded and scored, tweet 0 shown.
pub(crate) fn loaded() -> App {
    let mut app = App::new(session(), Some(vec![false, true, true, false]));
    run(&mut app, Action::Engine(loaded_event()));
    run(
        &mut app,
        Action::Engine(Event::Scores {
            generation: 0,
            view: Box::new(split_view()),
        }),
    );
    app
}

pub(crate) fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        run(app, Action::Type(c));
    }
}

pub(crate) fn screen(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| crate::tui::components::draw(app, frame))
        .unwrap();
    terminal
}

pub(crate) fn open_editor_at_per_labels(app: &mut App) {
    command(app, Command::Editor);
    assert_eq!(app.shared.focus, Focus::Editor);
    command(app, Command::Down);
    command(app, Command::Down);
}

/// B's scoring: tweet 0 misses Austin (A right), tweets 1–3 match gold (B right).
pub(crate) fn compared_app() -> App {
    let mut app = loaded();
    app.shared.compare = Some(crate::tui::app::Compare {
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
pub(crate) fn b_views_tweet_1(app: &mut App, generation: u64) {
    let view = tweet_view(1);
    run(
        app,
        Action::Compare(Event::Tweet {
            generation,
            view: Box::new(predicting(view, span(3, 4, Other), 0.9)),
        }),
    );
}
