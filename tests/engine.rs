//! The live engine on the committed demo checkpoint: results after edits equal a
//! from-scratch forward, stale requests are dropped, rescorings stop and restart
//! cleanly, and the on-disk caches make a second start encode nothing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use candle_core::{Device, Tensor};
use promptmner::data::images::ImageResolver;
use promptmner::data::tags::EntityType;
use promptmner::data::{Tweet, read_conll, split_path};
use promptmner::engine::{
    Engine, EngineCounters, EngineHandle, EngineOptions, Event, ImageChoice, SplitView, StopReason,
    TweetView,
};
use promptmner::model::{ImageState, Prediction};
use promptmner::prompts::{Vocabulary, WordList};
use promptmner::run::Checkpoint;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn checkpoint() -> PathBuf {
    root().join("checkpoints/demo")
}

fn data() -> PathBuf {
    root().join("data/demo")
}

/// Waits for the first event that `pick` accepts (events, never a fixed sleep; a
/// minute without one fails the test).
fn wait_for<T>(events: &Receiver<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    loop {
        let event = events
            .recv_timeout(Duration::from_secs(120))
            .expect("the engine went quiet");
        if let Event::Error { message, .. } = &event {
            panic!("engine error: {message}");
        }
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

fn tweet_of(events: &Receiver<Event>, generation: u64) -> TweetView {
    wait_for(events, |e| match e {
        Event::Tweet {
            generation: g,
            view,
        } if *g == generation => Some((**view).clone()),
        _ => None,
    })
}

fn scores_of(events: &Receiver<Event>, generation: u64) -> SplitView {
    wait_for(events, |e| match e {
        Event::Scores {
            generation: g,
            view,
        } if *g == generation => Some((**view).clone()),
        _ => None,
    })
}

fn spawn(cache: &Path, first: usize) -> (EngineHandle, Receiver<Event>) {
    let options = EngineOptions {
        cache_root: Some(cache.to_path_buf()),
        first_tweet: first,
        batch_size: 16,
        ..EngineOptions::default()
    };
    Engine::spawn(&checkpoint(), &data(), "test", options)
}

/// A from-scratch forward: a freshly loaded checkpoint, the given vocabulary and
/// continuous count, tweet `i` with the image of tweet `image_from` (None: no image).
struct Reference {
    checkpoint: Checkpoint,
    tweets: Vec<Tweet>,
    resolver: ImageResolver,
}

impl Reference {
    fn new() -> Self {
        Self {
            checkpoint: Checkpoint::load(&checkpoint(), &Device::Cpu).unwrap(),
            tweets: read_conll(&split_path(&data(), "test")).unwrap(),
            resolver: ImageResolver::for_dataset(&data(), None),
        }
    }

    fn image(&self, i: Option<usize>) -> ImageState {
        let model = &self.checkpoint.model;
        let id = i.and_then(|i| self.tweets[i].image_id.as_deref());
        match self.resolver.load(id) {
            Ok((_, image)) => model.encode_image(&image).unwrap(),
            Err(reason) => ImageState::none(reason),
        }
    }

    fn predict(
        &self,
        vocabulary: &Vocabulary,
        continuous: usize,
        i: usize,
        image_from: Option<usize>,
    ) -> Prediction {
        let model = &self.checkpoint.model;
        let bank = common::bank(model, vocabulary, continuous);
        let pieces = model.tokenize(&self.tweets[i].words).unwrap();
        let image = self.image(image_from);
        let embeds: Vec<Option<&Tensor>> = vec![image.embedding()];
        model
            .predict_batch(&[&pieces], &embeds, &bank)
            .unwrap()
            .remove(0)
    }
}

fn assert_same(view: &TweetView, reference: &Prediction, what: &str) {
    assert_eq!(view.candidates.len(), reference.candidates.len(), "{what}");
    let mut worst = 0f32;
    for (a, b) in view.candidates.iter().zip(&reference.candidates) {
        assert_eq!((a.start, a.end), (b.start, b.end), "{what}");
        for (p, q) in a.probs.iter().zip(&b.probs) {
            worst = worst.max((p - q).abs());
        }
    }
    assert!(worst < 1e-5, "{what}: probabilities differ by {worst}");
    let spans =
        |s: &[promptmner::model::span::PredictedSpan]| s.iter().map(|p| p.span).collect::<Vec<_>>();
    assert_eq!(spans(&view.predicted), spans(&reference.spans), "{what}");
    for (a, b) in view.prompts.iter().zip(&reference.similarities) {
        assert!((a.similarity - b).abs() < 1e-5, "{what}: similarity");
    }
}

#[test]
fn edits_give_what_a_from_scratch_forward_gives() {
    let cache = tempfile::tempdir().unwrap();
    let reference = Reference::new();
    let trained = reference.checkpoint.config.model.continuous_prompts;
    let (engine, events) = spawn(cache.path(), 5);
    let (mut vocabulary, loaded_continuous) = wait_for(&events, |e| match e {
        Event::Loaded {
            vocabulary,
            continuous,
            ..
        } => Some(((**vocabulary).clone(), *continuous)),
        _ => None,
    });
    assert_eq!(loaded_continuous, trained);
    let first = tweet_of(&events, 0);
    assert_eq!(first.index, 5);
    assert_same(
        &first,
        &reference.predict(&vocabulary, trained, 5, Some(5)),
        "start",
    );
    let baseline = scores_of(&events, 0);
    assert!(baseline.is_baseline);

    // The selected tweet: an image-ambiguous one would do; any tweet with an image works.
    let i = (0..reference.tweets.len())
        .find(|&i| reference.tweets[i].image_id.is_some())
        .unwrap();
    let g = engine.select(i);
    assert_same(
        &tweet_of(&events, g),
        &reference.predict(&vocabulary, trained, i, Some(i)),
        "select",
    );

    let mut continuous = trained;
    let mut image_from = Some(i);
    let step = |name: &str, g: u64, v: &Vocabulary, n: usize, img: Option<usize>| {
        let view = tweet_of(&events, g);
        assert_same(&view, &reference.predict(v, n, i, img), name);
        let split = scores_of(&events, g);
        // The whole split after the edit: each tweet's spans as a fresh forward gives.
        for t in (0..reference.tweets.len()).step_by(37) {
            let own = if t == i { img } else { Some(t) };
            let fresh = reference.predict(v, n, t, own);
            let spans: Vec<_> = fresh.spans.iter().map(|s| s.span).collect();
            let got: Vec<_> = split.predicted[t].iter().map(|s| s.span).collect();
            assert_eq!(got, spans, "{name}: tweet {t} in the split");
        }
        assert!(
            split.delta_f1.is_some(),
            "{name}: delta against the checkpoint"
        );
    };

    vocabulary
        .add_word(EntityType::Per, WordList::Expert, "referee")
        .unwrap();
    let g = engine.set_vocabulary(vocabulary.clone());
    step("add a word", g, &vocabulary, continuous, image_from);

    assert!(vocabulary.remove_word(EntityType::Loc, WordList::Expert, "map"));
    let g = engine.set_vocabulary(vocabulary.clone());
    step("remove a word", g, &vocabulary, continuous, image_from);

    assert!(vocabulary.remove_word(EntityType::Org, WordList::Related, "shop"));
    vocabulary
        .add_word(EntityType::Org, WordList::Related, "store")
        .unwrap();
    let g = engine.set_vocabulary(vocabulary.clone());
    step("rename a word", g, &vocabulary, continuous, image_from);

    let related: Vec<String> = vocabulary.types[&EntityType::Per]
        .list(WordList::Related)
        .to_vec();
    for word in &related {
        assert!(vocabulary.remove_word(EntityType::Per, WordList::Related, word));
    }
    let g = engine.set_vocabulary(vocabulary.clone());
    step("switch a list off", g, &vocabulary, continuous, image_from);

    vocabulary.template = "a photo of {}".into();
    let g = engine.set_vocabulary(vocabulary.clone());
    step(
        "change the template",
        g,
        &vocabulary,
        continuous,
        image_from,
    );

    continuous = trained / 2;
    let g = engine.set_continuous(continuous);
    step(
        "fewer continuous prompts",
        g,
        &vocabulary,
        continuous,
        image_from,
    );

    let other = (0..reference.tweets.len())
        .rev()
        .find(|&t| t != i && reference.tweets[t].image_id.is_some())
        .unwrap();
    image_from = Some(other);
    let g = engine.set_image(i, ImageChoice::FromTweet(other));
    let view = tweet_of(&events, g);
    assert_eq!(view.image.from_tweet, Some(other));
    assert_same(
        &view,
        &reference.predict(&vocabulary, continuous, i, image_from),
        "another tweet's image",
    );

    let g = engine.set_image(i, ImageChoice::None);
    let view = tweet_of(&events, g);
    assert!(view.prompts.is_empty() && view.image.no_image.is_some());
    assert_same(
        &view,
        &reference.predict(&vocabulary, continuous, i, None),
        "no image",
    );

    let g = engine.set_continuous(trained + 1);
    let (requested, limit) = wait_for(&events, |e| match e {
        Event::RetrainNeeded {
            generation,
            requested,
            trained,
        } if *generation == g => Some((*requested, *trained)),
        _ => None,
    });
    assert_eq!((requested, limit), (trained + 1, trained));
}

#[test]
fn stale_requests_are_dropped_and_a_cancelled_rescoring_leaves_things_right() {
    let cache = tempfile::tempdir().unwrap();
    let reference = Reference::new();
    let trained = reference.checkpoint.config.model.continuous_prompts;
    let (engine, events) = spawn(cache.path(), 0);
    let vocabulary = wait_for(&events, |e| match e {
        Event::Loaded { vocabulary, .. } => Some((**vocabulary).clone()),
        _ => None,
    });
    scores_of(&events, 0);

    // A burst of edits: each one supersedes the one before; the newest wins.
    let mut last = 0;
    let mut edited = vocabulary.clone();
    for word in ["alpha", "beta", "gamma", "delta", "epsilon"] {
        edited = vocabulary.clone();
        edited
            .add_word(EntityType::Other, WordList::Expert, word)
            .unwrap();
        last = engine.set_vocabulary(edited.clone());
    }
    scores_of(&events, last);
    let counters = &engine.counters;
    let dropped = EngineCounters::get(&counters.stale_dropped);
    let stopped = EngineCounters::get(&counters.rescores_stopped);
    // Every superseded edit was either dropped while waiting or stopped its rescoring.
    assert!(
        dropped + stopped >= 4,
        "dropped {dropped}, stopped {stopped}"
    );

    // Rescore, cancel at once: it stops; the next rescoring is complete and right.
    let g = engine.rescore();
    engine.cancel();
    // It stops (cancelled), unless it finished before the cancel arrived.
    let stopped = wait_for(&events, |e| match e {
        Event::RescoreStopped { generation, reason } if *generation == g => Some(Some(*reason)),
        Event::Scores { generation, .. } if *generation == g => Some(None),
        _ => None,
    });
    assert!(matches!(stopped, Some(StopReason::Cancelled) | None));
    let g = engine.rescore();
    let split = scores_of(&events, g);
    for t in 0..reference.tweets.len() {
        let fresh = reference.predict(&edited, trained, t, Some(t));
        let spans: Vec<_> = fresh.spans.iter().map(|s| s.span).collect();
        let got: Vec<_> = split.predicted[t].iter().map(|s| s.span).collect();
        assert_eq!(got, spans, "tweet {t}");
    }
}

#[test]
fn a_warm_start_encodes_nothing_and_changed_files_invalidate_the_caches() {
    let cache = tempfile::tempdir().unwrap();
    let (engine, events) = spawn(cache.path(), 0);
    scores_of(&events, 0);
    let cold = EngineCounters::get(&engine.counters.texts_encoded);
    assert!(cold >= 300, "{cold}");
    assert!(EngineCounters::get(&engine.counters.images_encoded) > 0);
    drop(engine);

    let (engine, events) = spawn(cache.path(), 0);
    scores_of(&events, 0);
    assert_eq!(EngineCounters::get(&engine.counters.texts_encoded), 0);
    assert_eq!(EngineCounters::get(&engine.counters.images_encoded), 0);
    drop(engine);

    // Another dataset file: its text states are encoded again.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(data()).unwrap() {
        let entry = entry.unwrap();
        let target = copy.path().join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::os::unix::fs::symlink(entry.path(), target).unwrap();
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
    let test = copy.path().join("test.txt");
    let text = std::fs::read_to_string(&test).unwrap();
    std::fs::write(&test, text + "\n").unwrap();
    let options = EngineOptions {
        cache_root: Some(cache.path().to_path_buf()),
        ..EngineOptions::default()
    };
    let (engine, events) = Engine::spawn(&checkpoint(), copy.path(), "test", options.clone());
    scores_of(&events, 0);
    assert!(EngineCounters::get(&engine.counters.texts_encoded) >= 300);
    drop(engine);

    // Another checkpoint (its weights changed): encoded again.
    let changed = tempfile::tempdir().unwrap();
    copy_dir(&checkpoint(), changed.path());
    let weights = changed.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    let name = tensors
        .keys()
        .find(|k| k.starts_with("span."))
        .unwrap()
        .clone();
    let t = tensors[&name].clone();
    tensors.insert(name, (t * 1.01).unwrap());
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let (engine, events) = Engine::spawn(changed.path(), &data(), "test", options);
    scores_of(&events, 0);
    assert!(EngineCounters::get(&engine.counters.texts_encoded) >= 300);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn an_empty_split_loads_and_scores_to_nothing() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("test.txt"), "").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        cache_root: Some(cache.path().to_path_buf()),
        ..EngineOptions::default()
    };
    let (engine, events) = Engine::spawn(&checkpoint(), data.path(), "test", options);
    let tweets = wait_for(&events, |e| match e {
        Event::Loaded { tweets, .. } => Some(tweets.len()),
        _ => None,
    });
    assert_eq!(tweets, 0);
    let scores = scores_of(&events, 0);
    assert_eq!(scores.report.tweets, 0);
    // Requests about tweets that are not there are errors, not crashes.
    let g = engine.select(3);
    let message = events
        .recv_timeout(Duration::from_secs(60))
        .map(|e| match e {
            Event::Error {
                generation,
                message,
            } if generation == g => message,
            other => panic!("expected an error, got {other:?}"),
        })
        .unwrap();
    assert!(message.contains("not in the split"), "{message}");
}

#[test]
fn an_attribution_equals_the_probability_change_of_a_rescoring_without_that_prompt() {
    let cache = tempfile::tempdir().unwrap();
    let (engine, events) = spawn(cache.path(), 0);
    let reference = Reference::new();
    let vocabulary = reference.checkpoint.vocabulary.clone();
    let continuous = reference.checkpoint.config.model.continuous_prompts;
    // Tweet 0: "Falcon Express opens new office in Austin", Austin a LOC.
    let generation = engine.attribute(0, 6, 7);
    let view = wait_for(&events, |e| match e {
        Event::Attribution {
            generation: g,
            view,
        } if *g == generation => Some((**view).clone()),
        _ => None,
    });
    assert_eq!((view.tweet, view.start, view.end), (0, 6, 7));
    assert_eq!(
        view.effects.len(),
        reference
            .predict(&vocabulary, continuous, 0, Some(0))
            .similarities
            .len()
    );
    let probability = |p: &Prediction| {
        p.candidates
            .iter()
            .find(|c| (c.start, c.end) == (6, 7))
            .unwrap()
            .probs[view.class]
    };
    let all = reference.predict(&vocabulary, continuous, 0, Some(0));
    assert!((probability(&all) - view.probability).abs() < 1e-4);
    // Every discrete prompt of the strongest few, left out through the vocabulary.
    let mut checked = 0;
    for effect in &view.effects {
        let promptmner::model::prompts::PromptSource::Discrete { word, kind, list } =
            &effect.source
        else {
            continue;
        };
        let mut without = vocabulary.clone();
        assert!(without.remove_word(*kind, *list, word));
        let expected =
            probability(&reference.predict(&without, continuous, 0, Some(0))) - probability(&all);
        assert!(
            (effect.change - expected).abs() < 1e-4,
            "{word}: {} against {expected}",
            effect.change
        );
        checked += 1;
    }
    assert!(
        checked > 10,
        "the demo vocabulary has {checked} discrete prompts"
    );
    assert!(
        view.effects.iter().any(|e| e.change.abs() > 1e-6),
        "some prompt matters"
    );
}

#[test]
fn a_template_too_long_for_clip_is_refused_and_the_vocabulary_stays() {
    let cache = tempfile::tempdir().unwrap();
    let (engine, events) = spawn(cache.path(), 0);
    let before = scores_of(&events, 0);
    let mut long = Checkpoint::load(&checkpoint(), &Device::Cpu)
        .unwrap()
        .vocabulary;
    // Within the word limit, but each word takes nine of the demo CLIP's 32 tokens.
    long.template = format!("{{}} {}", ["a-b-c-d-e"; 15].join(" "));
    long.validate().unwrap();
    let g = engine.set_vocabulary(long);
    let message = loop {
        match events.recv_timeout(Duration::from_secs(60)).unwrap() {
            Event::Error {
                generation,
                message,
            } if generation == g => break message,
            Event::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    };
    assert!(
        message.contains("the edit is not applied")
            && message.contains("this CLIP reads at most 32"),
        "{message}"
    );
    // The engine goes on with the vocabulary it had: a rescoring scores as before.
    let again = engine.rescore();
    assert_eq!(scores_of(&events, again).report, before.report);
}
