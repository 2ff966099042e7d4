//! promptmner: PromptMNER (prompt-based entity-related visual clue extraction and
//! integration for multimodal NER) in Rust, with a terminal research workbench.
//!
//! The crate is laid out by stage, in the order data flows: [`data`] (datasets, spans,
//! images), [`prompts`] (the prompt vocabulary), [`model`], [`stages`] (cached stages),
//! [`eval`] (scoring), [`run`] (run directories), [`train`].

// A panic is not an error message: outside tests every `expect` states the invariant
// that makes it safe, in an `allow` beside it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// What nothing outside the crate needs is crate-private, and says so where it is declared.
#![warn(unreachable_pub)]

pub(crate) mod bench;
pub mod cli;
pub mod data;
pub mod engine;
pub mod eval;
pub mod jobs;
pub(crate) mod kernels;
pub mod model;
pub mod progress;
pub mod prompts;
pub mod run;
pub mod stages;
pub mod train;
pub(crate) mod tui;
pub(crate) mod util;
