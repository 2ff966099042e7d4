//! Prompt-word suggestions: each ΔF1 equals a from-scratch scoring of the split with the
//! word added, against one without it.

mod common;

use std::path::Path;

use promptmner::data::images::ImageResolver;
use promptmner::data::tags::EntityType;
use promptmner::data::{read_conll, split_path};
use promptmner::engine::EngineOptions;
use promptmner::engine::suggest::{SuggestRequest, suggest};
use promptmner::eval::predict::predict_split;
use promptmner::eval::split::score_predictions;
use promptmner::progress::NoProgress;
use promptmner::prompts::{Vocabulary, WordList};
use promptmner::run::Checkpoint;
use promptmner::stages::image_cache::image_states;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_suggestions_delta_equals_a_rescoring_with_the_word_added() {
    let checkpoint_dir = repo().join("checkpoints/demo");
    let data = repo().join("data/demo");
    let checkpoint = Checkpoint::load(&checkpoint_dir, &candle_core::Device::Cpu).unwrap();
    let request = SuggestRequest {
        base: checkpoint.vocabulary.clone(),
        kind: EntityType::Per,
        list: WordList::Expert,
        candidates: vec!["skyline".into(), "building".into(), "player".into()],
    };
    let options = EngineOptions {
        cache_root: None,
        ..EngineOptions::default()
    };
    let mut found = Vec::new();
    suggest(
        &checkpoint_dir,
        &data,
        "valid",
        options,
        &request,
        &mut |s| {
            found.push(s);
            true
        },
    )
    .unwrap();
    assert_eq!(found.len(), 2, "player is in the list already: skipped");

    let model = &checkpoint.model;
    let gold = read_conll(&split_path(&data, "valid")).unwrap();
    let resolver = ImageResolver::for_dataset(&data, None);
    let states = image_states(
        model,
        &gold,
        &resolver,
        None,
        32,
        &NoProgress,
        &promptmner::stages::StageCounters::default(),
    )
    .unwrap();
    let f1 = |vocabulary: &Vocabulary| {
        let bank = common::bank(
            model,
            vocabulary,
            checkpoint.config.model.continuous_prompts,
        );
        let predictions = predict_split(model, &gold, &states, &bank, 32, &NoProgress).unwrap();
        score_predictions(&gold, &predictions).report.micro.prf.f1
    };
    let base = f1(&checkpoint.vocabulary);
    for suggestion in &found {
        let mut vocabulary = checkpoint.vocabulary.clone();
        vocabulary
            .add_word(EntityType::Per, WordList::Expert, &suggestion.word)
            .unwrap();
        let expected = f1(&vocabulary) - base;
        assert!(
            (suggestion.delta_f1 - expected).abs() < 1e-9,
            "{}: {} against {expected}",
            suggestion.word,
            suggestion.delta_f1
        );
    }
    assert!(
        found.iter().any(|s| s.delta_f1 != 0.0),
        "some word should matter: {found:?}"
    );
}
