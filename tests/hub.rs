//! The hub client against a hub of the tests' own on 127.0.0.1 (tests/common/hub_server.rs):
//! fetching through `HF_ENDPOINT` into `HF_HOME`'s cache, resolving from that cache
//! offline with the server gone, a body cut off mid-file, bytes that do not match their
//! ETag, unknown repositories and files, and a repository with only `pytorch_model.bin`.
//! No test reaches the public hub.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::hub_server::{HubServer, Repo};
use common::{max_abs_diff, promptmner};
use promptmner::model::bert::TextBackbone;
use promptmner::model::hub::{HubError, HubSettings, fetch_file};
use promptmner::model::store::{ModelStore, StoreError};
use promptmner::progress::NoProgress;

const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

fn demo_text() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/demo/text")
}

/// A test hub serving the demo's text encoder as `org/tiny-bert`.
fn tiny_bert_hub() -> HubServer {
    let server = HubServer::start();
    server.add_repo("org/tiny-bert", Repo::from_dir(&demo_text(), &FILES));
    server
}

/// `weights` of `org/tiny-bert`, fetched with `settings`: the error it must give.
fn fetch_weights_err(settings: &HubSettings) -> HubError {
    fetch_file(settings, "org/tiny-bert", "model.safetensors", &NoProgress).unwrap_err()
}

/// Nothing of `org/tiny-bert`'s weights is in the cache's snapshot.
fn no_cached_weights(settings: &HubSettings) {
    assert!(
        settings
            .cached_file("org/tiny-bert", "model.safetensors")
            .is_none()
    );
}

fn hub(server: &HubServer, cache: &Path) -> HubSettings {
    HubSettings {
        endpoint: server.endpoint.clone(),
        cache: cache.to_path_buf(),
        token: None,
        offline: false,
    }
}

/// Hidden states of one sentence from the text backbone in `dir`.
fn hidden(dir: &Path) -> Tensor {
    let varmap = candle_nn::VarMap::new();
    let backbone = TextBackbone::load(dir, 64, &varmap, "", &Device::Cpu).unwrap();
    let pieces = backbone
        .tokenizer
        .encode_words(&["Nova", "joins", "Atlas", "Group"])
        .unwrap();
    backbone
        .hidden_states(&[&pieces], promptmner::model::ops::Mode::Eval)
        .unwrap()
}

#[test]
fn a_fetch_through_hf_endpoint_fills_hf_home_and_resolves_offline_with_the_server_gone() {
    let scratch = tempfile::tempdir().unwrap();
    let server = tiny_bert_hub();
    let hf_home = scratch.path().join("hf");
    let store = scratch.path().join("store");
    let out = promptmner()
        .args(["models", "fetch", "org/tiny-bert"])
        .env("HF_ENDPOINT", &server.endpoint)
        .env("HF_HOME", &hf_home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE")
        .env("PROMPTMNER_MODELS", &store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| !r.contains("huggingface.co")),
        "{:?}",
        server.requests()
    );
    // huggingface_hub's layout: blobs by ETag, the snapshot linking to them, refs/main.
    let repo_dir = hf_home.join("hub/models--org--tiny-bert");
    let commit = std::fs::read_to_string(repo_dir.join("refs/main")).unwrap();
    let snapshot = repo_dir.join("snapshots").join(commit.trim());
    for file in FILES {
        let link = std::fs::read_link(snapshot.join(file)).unwrap();
        assert!(link.starts_with("../../blobs"), "{link:?}");
        assert_eq!(
            std::fs::read(snapshot.join(file)).unwrap(),
            std::fs::read(demo_text().join(file)).unwrap()
        );
    }
    // The store names the cache's files; nothing is copied.
    let entry = store.join("tiny-bert");
    assert!(
        std::fs::symlink_metadata(entry.join("model.safetensors"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    drop(server);

    // Offline, with another (empty) store: the name resolves from the cache in place.
    let offline = HubSettings {
        offline: true,
        ..hub(&HubServer::start(), &hf_home.join("hub"))
    };
    let elsewhere = ModelStore::with_hub(scratch.path().join("empty"), offline.clone());
    let dir = elsewhere.resolve("org/tiny-bert").unwrap();
    assert_eq!(dir, snapshot);
    assert!(max_abs_diff(&hidden(&dir), &hidden(&demo_text())) == 0.0);
    let missing = fetch_file(&offline, "org/other", "config.json", &NoProgress).unwrap_err();
    assert!(matches!(missing, HubError::Offline { .. }), "{missing}");
    assert!(
        missing
            .to_string()
            .contains("HF_HUB_OFFLINE is set and config.json of org/other"),
        "{missing}"
    );
    // Through the command line too: the variable is read, the message names the file.
    let out = promptmner()
        .args(["models", "fetch", "org/other"])
        .env("HF_HOME", &hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .env("PROMPTMNER_MODELS", &store)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("HF_HUB_OFFLINE is set"),
        "{err}"
    );
}

#[test]
fn a_body_cut_off_mid_file_is_an_error_that_leaves_nothing_loadable_and_a_retry_completes() {
    let scratch = tempfile::tempdir().unwrap();
    let server = tiny_bert_hub();
    server.cut_once("org/tiny-bert", "model.safetensors");
    let settings = hub(&server, scratch.path());
    let error = fetch_weights_err(&settings);
    assert!(matches!(error, HubError::Truncated { .. }), "{error}");
    assert!(error.to_string().contains("run the fetch again"), "{error}");
    no_cached_weights(&settings);
    let blobs: Vec<String> = std::fs::read_dir(settings.repo_dir("org/tiny-bert").join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        blobs.iter().all(|b| b.ends_with(".incomplete")),
        "{blobs:?}"
    );
    // The retry continues from what arrived (a ranged request) and verifies the whole.
    let path = fetch_file(&settings, "org/tiny-bert", "model.safetensors", &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(path).unwrap(),
        std::fs::read(demo_text().join("model.safetensors")).unwrap()
    );
    let ranged = server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /cdn/"))
        .count();
    assert_eq!(ranged, 2, "{:?}", server.requests());
}

#[test]
fn bytes_that_do_not_match_their_etag_are_refused_and_not_kept() {
    let scratch = tempfile::tempdir().unwrap();
    let server = tiny_bert_hub();
    server.corrupt("org/tiny-bert", "model.safetensors");
    let settings = hub(&server, scratch.path());
    let error = fetch_weights_err(&settings);
    assert!(
        matches!(error, HubError::Checksum { .. })
            && error
                .to_string()
                .contains("model.safetensors from org/tiny-bert does not match its checksum"),
        "{error}"
    );
    let blobs = settings.repo_dir("org/tiny-bert").join("blobs");
    assert_eq!(std::fs::read_dir(blobs).unwrap().count(), 0, "nothing kept");
    no_cached_weights(&settings);
}

#[test]
fn unknown_repositories_and_files_say_which_and_renamed_ones_follow_their_redirect() {
    let scratch = tempfile::tempdir().unwrap();
    let server = tiny_bert_hub();
    server.add_alias("tiny-bert-old", "org/tiny-bert");
    let settings = HubSettings {
        token: Some("hf_test_token".into()),
        ..hub(&server, scratch.path())
    };
    let error = fetch_file(&settings, "org/nope", "config.json", &NoProgress).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("repository org/nope does not exist on http://127.0.0.1"),
        "{error}"
    );
    let error = fetch_file(&settings, "org/tiny-bert", "vocab.txt", &NoProgress).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("org/tiny-bert has no file vocab.txt"),
        "{error}"
    );
    let moved = fetch_file(&settings, "tiny-bert-old", "config.json", &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(moved).unwrap(),
        std::fs::read(demo_text().join("config.json")).unwrap()
    );
    assert!(
        server
            .requests()
            .contains(&"authorization: Bearer hf_test_token".to_string()),
        "HF_TOKEN reaches the hub: {:?}",
        server.requests()
    );
    let store = ModelStore::with_hub(scratch.path().join("store"), settings);
    let error = store.fetch("org/nope", &NoProgress).unwrap_err();
    assert!(
        matches!(&error, StoreError::Hub(hub) if matches!(**hub, HubError::RepoNotFound { .. })),
        "{error}"
    );
    assert!(!scratch.path().join("store/nope").exists());
}

#[test]
fn a_repository_with_only_pytorch_model_bin_is_converted_and_gives_the_same_hidden_states() {
    let scratch = tempfile::tempdir().unwrap();
    let server = HubServer::start();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin-only");
    server.add_repo(
        "org/bin-only",
        Repo::from_dir(
            &fixture,
            &["config.json", "tokenizer.json", "pytorch_model.bin"],
        ),
    );
    let settings = hub(&server, &scratch.path().join("hub"));
    let store = ModelStore::with_hub(scratch.path().join("store"), settings.clone());
    let dirs = store.fetch("org/bin-only", &NoProgress).unwrap();
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r == "HEAD /org/bin-only/resolve/main/model.safetensors"),
        "safetensors asked for first: {:?}",
        server.requests()
    );
    let dir = store.resolve("org/bin-only").unwrap();
    assert_eq!(dirs, std::slice::from_ref(&dir));
    assert!(max_abs_diff(&hidden(&dir), &hidden(&demo_text())) == 0.0);
    // Resolved from the cache alone, the unconverted snapshot says what to do.
    let cache_only = ModelStore::with_hub(scratch.path().join("empty"), settings);
    let error = cache_only.resolve("org/bin-only").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("converts it into the model store"),
        "{error}"
    );
}

#[test]
fn models_fetch_minilm_fetches_both_backbones_of_the_preset_into_hf_hub_cache() {
    let scratch = tempfile::tempdir().unwrap();
    let server = HubServer::start();
    let demo_clip = demo_text().parent().unwrap().join("clip");
    server.add_repo(
        "sentence-transformers/all-MiniLM-L6-v2",
        Repo::from_dir(&demo_text(), &FILES),
    );
    server.add_repo(
        "openai/clip-vit-base-patch32",
        Repo::from_dir(&demo_clip, &FILES),
    );
    let cache = scratch.path().join("elsewhere/hub");
    let store = scratch.path().join("store");
    let out = promptmner()
        .args(["models", "fetch", "minilm"])
        .env("HF_ENDPOINT", &server.endpoint)
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HOME", scratch.path().join("unused"))
        .env_remove("HF_HUB_OFFLINE")
        .env("PROMPTMNER_MODELS", &store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for repo in [
        "models--sentence-transformers--all-MiniLM-L6-v2",
        "models--openai--clip-vit-base-patch32",
    ] {
        assert!(cache.join(repo).join("refs/main").is_file(), "{repo}");
    }
    assert!(
        !scratch.path().join("unused").exists(),
        "HF_HUB_CACHE wins over HF_HOME"
    );
    let listed = promptmner()
        .args(["models", "list"])
        .env("HF_HUB_CACHE", &cache)
        .env("PROMPTMNER_MODELS", &store)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("preset minilm  text all-MiniLM-L6-v2, clip clip-vit-base-patch32: ready"),
        "{listed}"
    );
}
