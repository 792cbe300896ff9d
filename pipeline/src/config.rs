//! The configuration: compiled-in defaults, overridden by a TOML file (`--config FILE`, else
//! `recgpt.toml` in the data home when present), then by `RECGPT_*` environment variables and
//! command-line flags (applied by the binary). `recgpt.example.toml` lists every field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compress::CompressConfig;
use crate::interests::InterestsConfig;
use crate::llm::{LlamaCppConfig, Sampling};
use crate::tags::TagsConfig;

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
}

/// The LLM: which backend, and how to sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub backend: BackendConfig,
    pub sampling: Sampling,
}

/// The LLM backend, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// llama.cpp in-process.
    LlamaCpp(LlamaCppConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self::LlamaCpp(LlamaCppConfig::default())
    }
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
        let model = &mut config.llama_cpp_mut().model;
        if let Ok(rest) = model.strip_prefix("~") {
            if let Some(home) = std::env::var_os("HOME") {
                *model = PathBuf::from(home).join(rest);
            }
        }
        Ok(config)
    }

    /// The llama.cpp settings (the only backend so far).
    pub fn llama_cpp(&self) -> &LlamaCppConfig {
        match &self.llm.backend {
            BackendConfig::LlamaCpp(c) => c,
        }
    }

    pub fn llama_cpp_mut(&mut self) -> &mut LlamaCppConfig {
        match &mut self.llm.backend {
            BackendConfig::LlamaCpp(c) => c,
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
            .llama_cpp()
            .model
            .ends_with(".cache/recgpt/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert!(!parsed.llama_cpp().model.starts_with("~"));
        parsed.llama_cpp_mut().model = PathBuf::new();
        defaults.llama_cpp_mut().model = PathBuf::new();
        assert_eq!(parsed, defaults);
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
