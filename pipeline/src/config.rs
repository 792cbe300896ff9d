//! The configuration: compiled-in defaults, overridden by a TOML file (`--config FILE`, else
//! `recgpt.toml` in the data home when present), then by `RECGPT_*` environment variables and
//! command-line flags (applied by the binary). `recgpt.example.toml` lists every field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::categories::CategoriesConfig;
use crate::compress::CompressConfig;
use crate::explain::ExplainConfig;
use crate::interests::InterestsConfig;
use crate::job::JobConfig;
use crate::llm::LlamaCppConfig;
pub use crate::llm::{BackendConfig, LlmConfig};
use crate::retrieval::EvalConfig;
use crate::serve::ServeConfig;
use crate::tags::TagsConfig;
use recgpt_retrieval::fusion::FusionConfig;
use recgpt_retrieval::index::IndexConfig;
use recgpt_retrieval::retrieve::RetrieveConfig;
use recgpt_retrieval::tower::TowerConfig;

/// Everything configurable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Stage `compress`.
    pub compress: CompressConfig,
    /// The LLM backend and sampling.
    pub llm: LlmConfig,
    /// Stage `interests`.
    pub interests: InterestsConfig,
    /// Stage `tags`.
    pub tags: TagsConfig,
    /// Derived item categories.
    pub categories: CategoriesConfig,
    /// The three-tower model.
    pub tower: TowerConfig,
    /// The vector index.
    pub index: IndexConfig,
    /// Stage `retrieve`.
    pub retrieve: RetrieveConfig,
    /// `recgpt eval`.
    pub eval: EvalConfig,
    /// How the retrieval channels (collaborative filtering, user tower, LLM tags) are fused.
    pub fusion: FusionConfig,
    /// Stage `explain`.
    pub explain: ExplainConfig,
    /// `recgpt serve`.
    pub serve: ServeConfig,
    /// `recgpt run`, the batch job.
    pub job: JobConfig,
}

/// Errors reading the configuration: the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// Name of the config file looked for in the data home.
pub const CONFIG_FILE: &str = "recgpt.toml";

impl Config {
    /// Defaults, overridden by `file` (or `<home>/recgpt.toml` when it exists).
    pub fn load(file: Option<&Path>, home: &Path) -> Result<Self, ConfigError> {
        let in_home = home.join(CONFIG_FILE);
        let path = match file {
            Some(p) => p.to_path_buf(),
            None if in_home.is_file() => in_home,
            None => return Ok(Self::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path, message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        let model = &mut config.llm.model;
        if let Ok(rest) = model.strip_prefix("~") {
            if let Some(home) = std::env::var_os("HOME") {
                *model = PathBuf::from(home).join(rest);
            }
        }
        Ok(config)
    }

    /// The llama.cpp settings, when that is the backend.
    pub fn llama_cpp(&self) -> Option<&LlamaCppConfig> {
        match &self.llm.backend {
            BackendConfig::LlamaCpp(c) => Some(c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_to_the_defaults() {
        let text = include_str!("../../recgpt.example.toml");
        let mut parsed = Config::parse(text).unwrap();
        let mut defaults = Config::default();
        // `~` expands to $HOME; the default honours $RECGPT_CACHE
        assert!(parsed
            .llm
            .model
            .ends_with(".cache/recgpt/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"));
        assert!(!parsed.llm.model.starts_with("~"));
        parsed.llm.model = PathBuf::new();
        defaults.llm.model = PathBuf::new();
        assert_eq!(parsed, defaults);
    }

    #[test]
    fn every_backend_kind_parses() {
        let c = Config::parse(
            "[llm.backend]\nkind = \"openai\"\nurl = \"http://10.0.0.5:8000/v1\"\nconcurrency = 64\n",
        )
        .unwrap();
        match &c.llm.backend {
            BackendConfig::Openai(o) => {
                assert_eq!(
                    (o.url.as_str(), o.concurrency),
                    ("http://10.0.0.5:8000/v1", 64)
                );
                assert_eq!(o.retries, 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.llm.backend.batch(), 64);
        let c = Config::parse("[llm.backend]\nkind = \"mistralrs\"\nbatch = 16\n").unwrap();
        assert_eq!(c.llm.backend.batch(), 16);
        assert!(Config::parse("[llm.backend]\nkind = \"openai\"\ncontext = 5\n").is_err());
    }

    #[test]
    fn unknown_fields_and_kinds_are_errors() {
        let err = Config::parse("[compress]\nbudgett = 3\n").unwrap_err();
        assert!(err.contains("budgett"), "{err}");
        let err = Config::parse("[llm.backend]\nkind = \"vllm\"\n").unwrap_err();
        assert!(err.contains("vllm"), "{err}");
        let c = Config::parse("[compress]\nbudget = 300\n[llm.sampling]\nseed = 7\n").unwrap();
        assert_eq!((c.compress.budget, c.llm.sampling.seed), (300, 7));
    }
}
