//! Equivalence with PyTorch/HF on the fixtures of ../shared/fixtures (reads
//! `$PROMPTMNER_SHARED/fixtures/<name>/`; any fixture of the same format can be used).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::max_abs_diff;
use promptmner::data::images::decode_image;
use promptmner::model::bert::TextBackbone;
use promptmner::model::bert::cpu::EncoderPass;
use promptmner::model::clip::{ClipBackbone, l2_normalize};
use promptmner::model::ops::Mode;
use promptmner::model::prompts::encode_texts;
use serde_json::Value;

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The tiny-clip fixture: its directory, expected tensors and the CLIP loaded from it.
fn tiny_clip() -> Option<(PathBuf, HashMap<String, Tensor>, ClipBackbone)> {
    let dir = common::shared()?.join("fixtures/tiny-clip");
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let clip = ClipBackbone::load(&dir, &Device::Cpu).unwrap();
    Some((dir, expected, clip))
}

#[test]
fn minilm_ids_and_hidden_states_match_hf() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = shared.join("fixtures/minilm");
    let cases = json(&dir.join("cases.json"));
    let model_dir = shared.join("models").join(cases["model"].as_str().unwrap());
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let varmap = candle_nn::VarMap::new();
    let backbone = TextBackbone::load(&model_dir, 128, &varmap, "", &Device::Cpu).unwrap();
    let mut all_pieces = Vec::new();
    for (i, case) in cases["cases"].as_array().unwrap().iter().enumerate() {
        let words: Vec<String> = serde_json::from_value(case["words"].clone()).unwrap();
        let pieces = backbone.tokenizer.encode_words(&words).unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        assert_eq!(pieces.ids, ids, "case {i}: input ids");
        // Each word's first piece is where HF's word_ids first names it.
        let word_ids: Vec<Option<usize>> =
            serde_json::from_value(case["word_ids"].clone()).unwrap();
        for (w, first) in pieces.first_piece.iter().enumerate() {
            assert_eq!(
                *first,
                word_ids.iter().position(|x| *x == Some(w)),
                "case {i} word {w}"
            );
        }
        let hidden = backbone
            .hidden_states(&[&pieces], Mode::Eval)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let want = &expected[&format!("case{i}.last_hidden_state")];
        let diff = max_abs_diff(&hidden, want);
        eprintln!("case {i}: {} pieces, max |diff| {diff:.2e}", ids.len());
        assert!(diff <= 1e-4, "case {i}: max |diff| {diff}");
        all_pieces.push(pieces);
    }
    // The padded batch gives the same states on real pieces.
    let batch: Vec<_> = all_pieces.iter().collect();
    let hidden = backbone.hidden_states(&batch, Mode::Eval).unwrap();
    let want = &expected["batch.last_hidden_state"];
    let mask = expected["batch.attention_mask"]
        .to_dtype(DType::F32)
        .unwrap()
        .unsqueeze(2)
        .unwrap();
    let diff = max_abs_diff(
        &hidden.broadcast_mul(&mask).unwrap(),
        &want.broadcast_mul(&mask).unwrap(),
    );
    assert!(diff <= 1e-4, "batch: max |diff| {diff}");

    // The fast CPU forward (inference, activations dropped) equals candle's forward.
    let mut pass = EncoderPass::new(&backbone.model.config, false);
    let fast = pass
        .forward(&backbone.model.tensors().unwrap(), &batch, None)
        .unwrap();
    let diff = max_abs_diff(
        &fast.broadcast_mul(&mask).unwrap(),
        &hidden.broadcast_mul(&mask).unwrap(),
    );
    eprintln!("CPU forward against candle's on the padded batch: max |diff| {diff:.2e}");
    assert!(diff <= 1e-5, "CPU forward: max |diff| {diff}");
}

#[test]
fn clip_ids_and_embeddings_match_hf() {
    let Some((dir, expected, clip)) = tiny_clip() else {
        return;
    };
    let prompts: Vec<String> = serde_json::from_value(json(&dir.join("prompts.json"))).unwrap();

    let ids = expected["input_ids"].to_vec2::<i64>().unwrap();
    let mask = expected["attention_mask"].to_vec2::<i64>().unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let ours = clip.tokenizer.encode_prompt(prompt).unwrap();
        let theirs: Vec<u32> = ids[i]
            .iter()
            .zip(&mask[i])
            .filter(|(_, m)| **m == 1)
            .map(|(id, _)| *id as u32)
            .collect();
        assert_eq!(ours, theirs, "{prompt}");
    }

    let image = clip
        .model
        .image_embeds(&expected["pixel_values"], Mode::Eval)
        .unwrap();
    let diff = max_abs_diff(&image, &expected["image_embeds"]);
    eprintln!("image embeddings: max |diff| {diff:.2e}");
    assert!(diff <= 1e-4, "image embeddings: {diff}");
    let diff = max_abs_diff(
        &l2_normalize(&image).unwrap(),
        &expected["image_embeds_normalized"],
    );
    assert!(diff <= 1e-4, "normalised image embeddings: {diff}");

    let text = encode_texts(&clip.model, &clip.tokenizer, &prompts).unwrap();
    let diff = max_abs_diff(&text, &expected["text_embeds_normalized"]);
    eprintln!("text embeddings: max |diff| {diff:.2e}");
    assert!(diff <= 1e-4, "normalised text embeddings: {diff}");

    // Raw projections, through the tower run from token embeddings.
    let ends: Vec<usize> = expected["text_eos_positions"]
        .to_vec1::<i64>()
        .unwrap()
        .iter()
        .map(|p| *p as usize)
        .collect();
    let tokens = clip
        .model
        .text
        .embed_tokens(&expected["input_ids"].to_dtype(DType::U32).unwrap())
        .unwrap();
    let raw = clip.model.text_embeds(&tokens, &ends, Mode::Eval).unwrap();
    assert!(max_abs_diff(&raw, &expected["text_embeds"]) <= 1e-4);
    // The differentiable path (continuous prompts train through it) agrees too.
    let raw_grad = clip.model.text_embeds(&tokens, &ends, Mode::Grad).unwrap();
    assert!(max_abs_diff(&raw_grad, &expected["text_embeds"]) <= 1e-4);

    let logits = (l2_normalize(&image)
        .unwrap()
        .matmul(&text.t().unwrap())
        .unwrap()
        * clip.model.logit_scale as f64)
        .unwrap();
    assert!(max_abs_diff(&logits, &expected["logits_per_image"]) <= 1e-3);
}

#[test]
fn clip_preprocessing_of_fixture_images_feeds_the_tower() {
    let Some((dir, expected, clip)) = tiny_clip() else {
        return;
    };
    let cases = json(&dir.join("cases.json"));
    let pre = promptmner::data::images::ClipPreprocess::default();
    let pixels: Vec<Tensor> = cases["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let image = decode_image(&dir.join(c["file"].as_str().unwrap())).unwrap();
            Tensor::from_vec(pre.apply(&image), (3, 224, 224), &Device::Cpu).unwrap()
        })
        .collect();
    let pixels = Tensor::stack(&pixels, 0).unwrap();
    let diff = max_abs_diff(&pixels, &expected["pixel_values_pil"]);
    assert!(diff <= 0.031, "{diff}");
    // Embeddings of our pixels stay close to those of the torchvision pixels.
    let ours = l2_normalize(&clip.model.image_embeds(&pixels, Mode::Eval).unwrap()).unwrap();
    let diff = max_abs_diff(&ours, &expected["image_embeds_normalized"]);
    eprintln!("embeddings from our pixels: max |diff| {diff:.2e}");
    assert!(diff <= 1e-2, "{diff}");
}

#[test]
fn minilm_with_a_clip_builds_and_scores_real_tweets() {
    use promptmner::data::images::NoImage;
    use promptmner::model::store::{ModelStore, Preset};
    use promptmner::model::{Backbones, ImageState, PromptMner};
    let Some(shared) = common::shared() else {
        return;
    };
    // Backbones resolve by path as well as by name.
    let store = ModelStore::new(shared.join("models"));
    let backbones = Backbones {
        text: store.resolve("all-MiniLM-L6-v2").unwrap(),
        clip: store
            .resolve(shared.join("fixtures/tiny-clip").to_str().unwrap())
            .unwrap(),
    };
    let model = PromptMner::new(&backbones, &Preset::Minilm.model_config(), &Device::Cpu).unwrap();
    let vocabulary = promptmner::prompts::Vocabulary::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/twitter.toml"),
    )
    .unwrap();
    let bank = common::bank(&model, &vocabulary, 4);
    assert_eq!(bank.len(), vocabulary.prompts().len() + 4);
    let tweets = promptmner::data::read_conll(&shared.join("data/twitter2015/test.txt")).unwrap();
    let image = ImageState::none(NoImage::NoImageId);
    for tweet in &tweets[..5] {
        let prediction = common::score_one(&model, &tweet.words, &image, &bank);
        assert_eq!(prediction.truncated_words, 0);
        assert!(
            prediction
                .candidates
                .iter()
                .all(|c| c.end <= tweet.words.len())
        );
    }
    // A tweet longer than 128 pieces is cut, not crashed.
    let long: Vec<String> = tweets
        .iter()
        .take(8)
        .flat_map(|t| t.words.clone())
        .collect();
    let prediction = common::score_one(&model, &long, &image, &bank);
    assert!(prediction.truncated_words > 0);
}
