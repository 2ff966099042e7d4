//! Ablation variants: each is a change to the training config it is derived from.

use std::fmt;
use std::str::FromStr;

use crate::model::fusion::FusionMode;
use crate::run::TrainConfig;

/// One ablation of the paper's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Variant {
    /// The config as it is.
    Full,
    NoDiscrete,
    NoContinuous,
    /// Shared clue projections, no bias, no gate (no modality-aware attention).
    Plain,
    /// Text only: no fusion layer.
    TextOnly,
    /// N continuous prompts.
    Continuous(usize),
    /// The workbench's edited vocabulary, written into the run.
    CurrentVocabulary,
}

impl Variant {
    /// The variants the workbench offers, in table order.
    pub(crate) fn menu() -> Vec<Variant> {
        let mut variants = vec![
            Variant::Full,
            Variant::NoDiscrete,
            Variant::NoContinuous,
            Variant::Plain,
            Variant::TextOnly,
        ];
        variants.extend([0, 10, 50, 100, 200].map(Variant::Continuous));
        variants.push(Variant::CurrentVocabulary);
        variants
    }

    /// The config of this variant (the vocabulary file of `CurrentVocabulary` is set by
    /// the caller, who writes it).
    pub(crate) fn apply(self, base: &TrainConfig) -> TrainConfig {
        let mut config = base.clone();
        match self {
            Variant::Full | Variant::CurrentVocabulary => {}
            Variant::NoDiscrete => config.model.discrete_prompts = false,
            Variant::NoContinuous => config.model.continuous_prompts = 0,
            Variant::Plain => config.model.fusion = FusionMode::Plain,
            Variant::TextOnly => config.model.fusion = FusionMode::None,
            Variant::Continuous(n) => config.model.continuous_prompts = n,
        }
        config
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variant::Full => f.write_str("full"),
            Variant::NoDiscrete => f.write_str("no-discrete"),
            Variant::NoContinuous => f.write_str("no-continuous"),
            Variant::Plain => f.write_str("plain"),
            Variant::TextOnly => f.write_str("none"),
            Variant::Continuous(n) => write!(f, "continuous-{n}"),
            Variant::CurrentVocabulary => f.write_str("current-vocabulary"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown variant '{0}' (full, no-discrete, no-continuous, plain, none, continuous-N, current-vocabulary)"
)]
pub(crate) struct UnknownVariant(pub String);

impl FromStr for Variant {
    type Err = UnknownVariant;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownVariant(name.to_string());
        Ok(match name {
            "full" => Variant::Full,
            "no-discrete" => Variant::NoDiscrete,
            "no-continuous" => Variant::NoContinuous,
            "plain" => Variant::Plain,
            "none" | "text-only" => Variant::TextOnly,
            "current-vocabulary" => Variant::CurrentVocabulary,
            other => Variant::Continuous(
                other
                    .strip_prefix("continuous-")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(unknown)?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TrainConfig {
        TrainConfig::parse(
            "data = \"d\"\nprompts = \"p.toml\"\n[backbones]\ntext = \"t\"\nclip = \"c\"\n[model]\ncontinuous_prompts = 8\n",
            std::path::Path::new("c.toml"),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn each_variant_changes_exactly_its_key() {
        let base = base();
        let diff = |variant: Variant| {
            let config = variant.apply(&base);
            let mut changed = Vec::new();
            let m = (&config.model, &base.model);
            if m.0.discrete_prompts != m.1.discrete_prompts {
                changed.push(format!("discrete_prompts={}", m.0.discrete_prompts));
            }
            if m.0.continuous_prompts != m.1.continuous_prompts {
                changed.push(format!("continuous_prompts={}", m.0.continuous_prompts));
            }
            if m.0.fusion != m.1.fusion {
                changed.push(format!("fusion={:?}", m.0.fusion));
            }
            let mut rest = config.clone();
            rest.model = base.model.clone();
            assert_eq!(rest, base, "{variant} changes only the model section");
            changed
        };
        assert!(diff(Variant::Full).is_empty());
        assert_eq!(diff(Variant::NoDiscrete), ["discrete_prompts=false"]);
        assert_eq!(diff(Variant::NoContinuous), ["continuous_prompts=0"]);
        assert_eq!(diff(Variant::Plain), ["fusion=Plain"]);
        assert_eq!(diff(Variant::TextOnly), ["fusion=None"]);
        assert_eq!(diff(Variant::Continuous(50)), ["continuous_prompts=50"]);
        assert!(diff(Variant::CurrentVocabulary).is_empty());
    }

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for variant in Variant::menu() {
            assert_eq!(variant.to_string().parse::<Variant>(), Ok(variant));
        }
        assert!("$(touch pwned)".parse::<Variant>().is_err());
        assert!("continuous-x".parse::<Variant>().is_err());
    }
}
