//! CLIP preprocessing against HF's PIL pipeline (needs ../shared/fixtures/tiny-clip).

mod common;

use promptmner::data::images::{ClipPreprocess, decode_image};
use safetensors::SafeTensors;

#[test]
fn clip_preprocessing_matches_pil_pixel_values() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = shared.join("fixtures/tiny-clip");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let expected = tensors.tensor("pixel_values_pil").unwrap();
    let expected: Vec<f32> = expected
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let per_image = 3 * 224 * 224;
    let preprocess = ClipPreprocess::default();
    for (i, case) in cases["images"].as_array().unwrap().iter().enumerate() {
        let file = case["file"].as_str().unwrap();
        let image = decode_image(&dir.join(file)).unwrap();
        let ours = preprocess.apply(&image);
        let theirs = &expected[i * per_image..(i + 1) * per_image];
        let diffs: Vec<f32> = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let max = diffs.iter().cloned().fold(0.0, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        eprintln!("{file}: max |diff| {max:.5}, mean {mean:.6}");
        assert!(max <= 0.031, "{file}: max |diff| {max}");
        assert!(mean <= 0.002, "{file}: mean |diff| {mean}");
    }
}
