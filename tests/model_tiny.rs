//! The model on tiny random backbones: staged path against the plain forward, caches,
//! padding, truncation, gradients and loading errors.

mod common;

use std::sync::atomic::Ordering;

use candle_core::{Device, Tensor};
use promptmner::data::demo;
use promptmner::data::images::{ImageResolver, NoImage};
use promptmner::data::tags::EntityType;
use promptmner::data::{Tweet, read_conll, split_path};
use promptmner::model::bert::tokenizer::WordPieces;
use promptmner::model::device::Precision;
use promptmner::model::fusion::FusionMode;
use promptmner::model::ops::Mode;
use promptmner::model::store::{Preset, write_tiny_backbones};
use promptmner::model::{Detail, ImageState, ModelConfig, ModelError, Prediction, PromptMner};
use promptmner::progress::NoProgress;
use promptmner::prompts::{Vocabulary, WordList};
use promptmner::stages::image_cache::{ImageCache, image_states};
use promptmner::stages::{PromptCache, StageCounters};

struct World {
    _dir: tempfile::TempDir,
    backbones: promptmner::model::Backbones,
    tweets: Vec<Tweet>,
    vocabulary: Vocabulary,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let backbones =
        write_tiny_backbones(dir.path(), &promptmner::prompts::demo::words(), 7).unwrap();
    let tweets = read_conll(&split_path(&demo::embedded_dir(), "test")).unwrap();
    World {
        _dir: dir,
        backbones,
        tweets,
        vocabulary: promptmner::prompts::demo::vocabulary().unwrap(),
    }
}

fn model(world: &World, fusion: FusionMode) -> PromptMner {
    let config = ModelConfig {
        fusion,
        dropout: 0.1,
        ..Preset::Tiny.model_config()
    };
    let model = PromptMner::new(&world.backbones, &config, &Device::Cpu).unwrap();
    // Random layers with non-trivial weights everywhere, fixed by a seed.
    model.initialize_new_layers(1).unwrap();
    // Biases (the clue bias included) start at zero; give them values so that every
    // path that reads them is checked.
    for (name, var) in model.varmap.data().lock().unwrap().iter() {
        if var.rank() == 1 && (name.starts_with("fusion.") || name.starts_with("span.")) {
            let shift = Tensor::randn(0f32, 0.2, var.shape(), &Device::Cpu).unwrap();
            var.set(&(var.as_tensor() + shift).unwrap()).unwrap();
        }
    }
    model
}

fn image(world: &World, model: &PromptMner, tweet: &Tweet) -> ImageState {
    let resolver = ImageResolver::for_dataset(&demo::embedded_dir(), None);
    let _ = world;
    match resolver.load(tweet.image_id.as_deref()) {
        Ok((_, img)) => model.encode_image(&img).unwrap(),
        Err(reason) => ImageState::none(reason),
    }
}

/// Word pieces and image states of tweets.
fn inputs<'a>(
    w: &World,
    m: &PromptMner,
    tweets: impl Iterator<Item = &'a Tweet>,
) -> (Vec<WordPieces>, Vec<ImageState>) {
    tweets
        .map(|t| (m.tokenize(&t.words).unwrap(), image(w, m, t)))
        .unzip()
}

fn max_diff(a: &Prediction, b: &Prediction) -> f32 {
    assert_eq!(a.candidates.len(), b.candidates.len());
    a.candidates
        .iter()
        .zip(&b.candidates)
        .flat_map(|(x, y)| {
            assert_eq!((x.start, x.end), (y.start, y.end));
            x.probs.iter().zip(&y.probs).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn staged_scoring_equals_the_plain_forward() {
    let w = world();
    for fusion in [FusionMode::Modality, FusionMode::Plain, FusionMode::None] {
        let m = model(&w, fusion);
        let bank = common::bank(&m, &w.vocabulary, 4);
        let tweets = &w.tweets[..6];
        let (pieces, images) = inputs(&w, &m, tweets.iter());
        let embeds: Vec<Option<&Tensor>> = images.iter().map(ImageState::embedding).collect();
        let batch = m
            .predict_batch(&pieces.iter().collect::<Vec<_>>(), &embeds, &bank)
            .unwrap();
        for (i, t) in tweets.iter().enumerate() {
            let staged = common::score_one(&m, &t.words, &images[i], &bank);
            let diff = max_diff(&staged, &batch[i]);
            assert!(diff < 1e-5, "{fusion:?} tweet {i}: {diff}");
            assert_eq!(staged.spans.len(), batch[i].spans.len());
            assert_eq!(staged.similarities.len(), batch[i].similarities.len());
            for (a, b) in staged.similarities.iter().zip(&batch[i].similarities) {
                assert!((a - b).abs() < 1e-5);
            }
            for (a, b) in staged
                .clue_attention
                .iter()
                .flatten()
                .zip(batch[i].clue_attention.iter().flatten())
            {
                assert!((a - b).abs() < 1e-5);
            }
            if fusion != FusionMode::None && images[i].has_image() {
                assert_eq!(staged.similarities.len(), bank.len());
                assert_eq!(staged.clue_attention.len(), t.words.len());
                let sum: f32 = staged.similarities.iter().sum();
                assert!((sum - 1.0).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn a_tweet_without_image_gets_exactly_the_text_only_prediction() {
    let w = world();
    let m = model(&w, FusionMode::Modality);
    let bank = common::bank(&m, &w.vocabulary, 4);
    let empty = common::bank(&m, &Vocabulary::default(), 0);
    assert!(empty.is_empty());
    let tweet = &w.tweets[0];
    let no_image = ImageState::none(NoImage::NoImageId);
    let with_bank = common::score_one(&m, &tweet.words, &no_image, &bank);
    let text_only = common::score_one(&m, &tweet.words, &no_image, &empty);
    assert_eq!(with_bank.candidates, text_only.candidates);
    assert!(with_bank.similarities.is_empty() && with_bank.clue_attention.is_empty());

    // In a batch beside tweets with images, its clues are masked: again the same.
    let other = &w.tweets[1];
    let other_image = image(&w, &m, other);
    assert!(other_image.has_image());
    let pieces = [
        m.tokenize(&tweet.words).unwrap(),
        m.tokenize(&other.words).unwrap(),
    ];
    let mixed = m
        .predict_batch(
            &[&pieces[0], &pieces[1]],
            &[None, other_image.embedding()],
            &bank,
        )
        .unwrap();
    let alone = m.predict_batch(&[&pieces[0]], &[None], &empty).unwrap();
    assert!(max_diff(&mixed[0], &alone[0]) < 1e-6);
    assert!(max_diff(&mixed[0], &text_only) < 1e-5);
}

#[test]
fn a_tweet_scores_the_same_alone_and_in_a_padded_batch() {
    let w = world();
    let m = model(&w, FusionMode::Modality);
    let bank = common::bank(&m, &w.vocabulary, 4);
    let mut tweets: Vec<&Tweet> = w.tweets.iter().take(12).collect();
    tweets.sort_by_key(|t| t.words.len());
    let (pieces, images) = inputs(&w, &m, tweets.iter().copied());
    let embeds: Vec<Option<&Tensor>> = images.iter().map(ImageState::embedding).collect();
    let batch = m
        .predict_batch(&pieces.iter().collect::<Vec<_>>(), &embeds, &bank)
        .unwrap();
    assert!(
        pieces[0].ids.len() < pieces[11].ids.len(),
        "the batch is padded"
    );
    for i in 0..tweets.len() {
        let alone = m.predict_batch(&[&pieces[i]], &[embeds[i]], &bank).unwrap();
        assert!(max_diff(&alone[0], &batch[i]) < 1e-5, "tweet {i}");
        // The same entities; their probabilities agree to rounding (checked above).
        let spans = |p: &Prediction| p.spans.iter().map(|s| s.span).collect::<Vec<_>>();
        assert_eq!(spans(&alone[0]), spans(&batch[i]), "tweet {i}");
    }
}

#[test]
fn the_prompt_cache_does_only_new_work() {
    let w = world();
    let m = model(&w, FusionMode::Modality);
    let (cache, counters) = (PromptCache::default(), StageCounters::default());
    let encoded = || counters.prompts_encoded.load(Ordering::Relaxed);
    let discrete = w.vocabulary.prompts().len();
    let bank = cache.bank(&m, &w.vocabulary, 4, &counters).unwrap();
    assert_eq!(bank.len(), discrete + 4);
    assert_eq!(encoded(), discrete + 4);

    // The same vocabulary again: nothing is encoded.
    let again = cache.bank(&m, &w.vocabulary, 4, &counters).unwrap();
    assert_eq!(encoded(), discrete + 4);
    let diff = (bank.embeds().unwrap() - again.embeds().unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);

    // One added word: one prompt string through CLIP; fewer continuous prompts: none.
    let mut edited = w.vocabulary.clone();
    edited
        .add_word(EntityType::Per, WordList::Expert, "athlete")
        .unwrap();
    let bank = cache.bank(&m, &edited, 2, &counters).unwrap();
    assert_eq!(bank.len(), discrete + 1 + 2);
    assert_eq!(encoded(), discrete + 4 + 1);

    // Scoring after the edit runs on the stored text and image stages; the edited
    // bank's prompts are the ones matched.
    let tweet = &w.tweets[1];
    let pieces = m.tokenize(&tweet.words).unwrap();
    let states = m.encode_word_states(&[&pieces]).unwrap();
    let text = m.text_batch(&[&states[0]], &[&pieces]).unwrap();
    let img = image(&w, &m, tweet);
    assert!(img.has_image());
    for bank in [&bank, &again] {
        let scored = m
            .score_batch(&text, &[img.embedding()], bank, Detail::Clues)
            .unwrap();
        assert_eq!(scored[0].similarities.len(), bank.len());
    }
    // Forgetting the encodings (new weights) encodes every prompt again.
    cache.clear();
    cache.bank(&m, &edited, 2, &counters).unwrap();
    assert_eq!(encoded(), 2 * (discrete + 4 + 1));
}

#[test]
fn tweets_longer_than_the_encoder_are_cut_not_crashed() {
    let w = world();
    let m = model(&w, FusionMode::Modality);
    let bank = common::bank(&m, &w.vocabulary, 4);
    let words: Vec<String> = (0..300)
        .map(|i| {
            if i % 2 == 0 {
                "Jordan".to_string()
            } else {
                "wins".to_string()
            }
        })
        .collect();
    let pred = common::score_one(&m, &words, &ImageState::none(NoImage::NoImageId), &bank);
    assert!(pred.truncated_words > 150, "{}", pred.truncated_words);
    let encoded = words.len() - pred.truncated_words;
    assert!(pred.candidates.iter().all(|c| c.end <= encoded));
    assert!(
        pred.spans
            .iter()
            .all(|s| s.span.end <= encoded && s.span.len() <= 8)
    );
}

#[test]
fn every_trainable_tensor_receives_a_gradient() {
    let w = world();
    let m = model(&w, FusionMode::Modality);
    let tweets = &w.tweets[..4];
    let (pieces, images) = inputs(&w, &m, tweets.iter());
    let embeds: Vec<Option<&Tensor>> = images.iter().map(ImageState::embedding).collect();
    let discrete = common::bank(&m, &w.vocabulary, 0).embeds().unwrap().clone();
    let continuous = m
        .training_continuous_prompts(&w.vocabulary.template, 4)
        .unwrap()
        .unwrap();
    let prompts = Tensor::cat(&[&discrete, &continuous], 0).unwrap();
    let rng =
        std::cell::RefCell::new(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0));
    let out = m
        .forward_batch(
            &pieces.iter().collect::<Vec<_>>(),
            &embeds,
            &prompts,
            Mode::Train(&rng),
        )
        .unwrap();
    let loss = out.logits.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let vars = m.varmap.data().lock().unwrap();
    let mut without = Vec::new();
    for (name, var) in vars.iter() {
        let ok = grads
            .get(var.as_tensor())
            .map(|g| {
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
            })
            .unwrap_or(false);
        // Position rows beyond the longest tweet and unused vocabulary rows get zero
        // gradient by design; every tensor must still get some.
        if !ok {
            without.push(name.clone());
        }
    }
    assert!(without.is_empty(), "no gradient: {without:?}");
}

#[test]
fn missing_or_mismatched_weights_name_the_tensor() {
    let w = world();
    let mut m = model(&w, FusionMode::Modality);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    m.save_weights(&file).unwrap();
    m.load_weights(&file).unwrap();

    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    tensors.remove("span.out.weight");
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let err = m.load_weights(&file).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensor { tensor, .. } if tensor == "span.out.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("span.out.weight"));

    tensors.insert(
        "span.out.weight".into(),
        Tensor::zeros((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let err = m.load_weights(&file).unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err}");

    // A backbone without one of its tensors.
    let text = w.backbones.text.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&text, &Device::Cpu).unwrap();
    tensors.remove("encoder.layer.1.output.dense.weight");
    candle_core::safetensors::save(&tensors, &text).unwrap();
    let err = PromptMner::new(&w.backbones, &Preset::Tiny.model_config(), &Device::Cpu)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("encoder.layer.1.output.dense.weight"),
        "{err}"
    );
}

#[test]
fn a_whole_split_predicts_in_batches_in_tweet_order() {
    let w = world();
    let m = model(&w, FusionMode::Modality);
    let bank = common::bank(&m, &w.vocabulary, 4);
    let tweets = &w.tweets[..20];
    let resolver = ImageResolver::for_dataset(&demo::embedded_dir(), None);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(cache_dir.path(), &w.backbones.clip, Precision::Fp32).unwrap();
    let counters = StageCounters::default();
    let images_encoded = || counters.images_encoded.load(Ordering::Relaxed);
    let states = || {
        image_states(
            &m,
            tweets,
            &resolver,
            Some(&cache),
            4,
            &NoProgress,
            &counters,
        )
        .unwrap()
    };
    let images = states();
    let encoded = images_encoded();
    assert!(encoded > 0);
    // A second pass reads every embedding from the disk cache.
    let again = states();
    assert_eq!(images_encoded(), encoded);
    let values = |s: &ImageState| s.embedding().map(|e| e.to_vec1::<f32>().unwrap());
    for (a, b) in images.iter().zip(&again) {
        assert_eq!(values(a), values(b));
    }
    // Entries cut short (a foreign or broken file) are encoded again, not trusted.
    let entries: Vec<_> = std::fs::read_dir(cache_dir.path())
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!entries.is_empty());
    for entry in &entries {
        let bytes = std::fs::read(entry).unwrap();
        std::fs::write(entry, &bytes[..bytes.len() - 4]).unwrap();
    }
    let repaired = states();
    assert_eq!(images_encoded(), 2 * encoded);
    for (a, b) in images.iter().zip(&repaired) {
        assert_eq!(values(a), values(b));
    }
    // Another CLIP (its weights changed) gets its own cache folder.
    let weights = w.backbones.clip.join("model.safetensors");
    let original = std::fs::read(&weights).unwrap();
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    let scale = tensors["logit_scale"].clone();
    tensors.insert("logit_scale".into(), (scale + 0.5).unwrap());
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    ImageCache::open(cache_dir.path(), &w.backbones.clip, Precision::Fp32).unwrap();
    std::fs::write(&weights, original).unwrap();
    assert_eq!(std::fs::read_dir(cache_dir.path()).unwrap().count(), 2);
    let predictions =
        promptmner::eval::predict::predict_split(&m, tweets, &images, &bank, 6, &NoProgress)
            .unwrap();
    assert_eq!(predictions.len(), tweets.len());
    for (t, p) in tweets.iter().zip(&predictions) {
        let staged = common::score_one(&m, &t.words, &image(&w, &m, t), &bank);
        assert!(max_diff(&staged, p) < 1e-5);
        assert_eq!(
            staged.spans.iter().map(|s| s.span).collect::<Vec<_>>(),
            p.spans.iter().map(|s| s.span).collect::<Vec<_>>()
        );
    }
}

#[test]
fn batched_staged_scoring_equals_the_plain_forward() {
    let w = world();
    for fusion in [FusionMode::Modality, FusionMode::Plain, FusionMode::None] {
        let m = model(&w, fusion);
        let bank = common::bank(&m, &w.vocabulary, 4);
        // Tweets of different lengths, some without an image (no image ids), in one batch.
        let mut tweets: Vec<Tweet> = w.tweets[..9].to_vec();
        for t in tweets.iter_mut().step_by(3) {
            t.image_id = None;
        }
        let (pieces, images) = inputs(&w, &m, tweets.iter());
        let embeds: Vec<Option<&Tensor>> = images.iter().map(ImageState::embedding).collect();
        assert!(embeds.iter().any(Option::is_some) && embeds.iter().any(Option::is_none));
        let refs: Vec<&WordPieces> = pieces.iter().collect();
        let plain = m.predict_batch(&refs, &embeds, &bank).unwrap();
        let states = m.encode_word_states(&refs).unwrap();
        let batch = m
            .text_batch(&states.iter().collect::<Vec<_>>(), &refs)
            .unwrap();
        let staged = m
            .score_batch(&batch, &embeds, &bank, Detail::Clues)
            .unwrap();
        for (i, (a, b)) in staged.iter().zip(&plain).enumerate() {
            let diff = max_diff(a, b);
            assert!(diff < 1e-5, "{fusion:?} tweet {i}: {diff}");
            assert_eq!(
                a.spans.iter().map(|s| s.span).collect::<Vec<_>>(),
                b.spans.iter().map(|s| s.span).collect::<Vec<_>>()
            );
        }
    }
}
