//! promptmner: PromptMNER (prompt-based entity-related visual clue extraction and
//! integration for multimodal NER) in Rust, with a terminal research workbench.
//!
//! The crate is laid out by stage, in the order data flows: [`data`] (datasets, spans,
//! images), [`prompts`] (the prompt vocabulary), [`eval`] (scoring).

pub mod cli;
pub mod data;
pub mod engine;
pub mod eval;
pub mod model;
pub mod progress;
pub mod prompts;
pub mod train;
pub mod util;
