//! The configuration: compiled-in defaults, overridden by a TOML file (`--config FILE`, else
//! `recgpt.toml` in the data home when present), then by `RECGPT_*` environment variables and
//! command-line flags (applied by the binary). `recgpt.example.toml` lists every field.
//!
//! Each stage's section lives with its stage (`compress`, `interests`, `tags`, `explain`,
//! `llm`, and the retrieval crate's); the sections of the commands that compose the stages
//! (`[job]`, `[serve]`, `[eval]`) live here. A stage takes its own section, never the whole
//! [`Config`]: only the composing modules (reason, recommend, job, serve, the evaluations)
//! read it, and none of them defines a section, so no import runs in a loop through here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::categories::CategoriesConfig;
use crate::compress::CompressConfig;
use crate::explain::ExplainConfig;
use crate::interests::InterestsConfig;
use crate::judge::JudgeConfig;
use crate::llm::LlamaCppConfig;
pub use crate::llm::{BackendConfig, LlmConfig};
use crate::results::StoreConfig;
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
    /// Where results and the explanation cache live.
    pub store: StoreConfig,
    /// `recgpt judge`.
    pub judge: JudgeConfig,
}

/// Settings of the batch job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobConfig {
    /// Users whose LLM requests are decoded together; 0 fills [`GROUP_BATCHES`] of the
    /// backend's batches (sequences × 4 ÷ interest rounds, at least 1).
    pub group_users: usize,
    /// Groups each channel between two stages holds.
    pub queue_groups: usize,
    /// Attempts per user when the backend fails (a failed group is retried user by user).
    pub attempts: usize,
    /// Seconds between progress log lines when stderr is not a terminal.
    pub log_every_s: u64,
}

/// Backend batches of conversations a default group holds. A group's call ends with a tail
/// in which the slots of finished conversations stay idle; with more conversations than
/// slots, the slots refill while the group lasts and the tail is a smaller share of the call.
/// On the first 24 users (2 cores, `scripts/quick.toml`), one group of 24 instead of three
/// of 8 kept 6.8 instead of 5.2 of the 8 slots busy in the reason stage on average and cut
/// the job's time by 9% (338 to 309 s).
pub const GROUP_BATCHES: usize = 4;

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            group_users: 0,
            queue_groups: 2,
            attempts: 2,
            log_every_s: 30,
        }
    }
}

/// `[serve]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Recommendations returned when `k` is not given, and the most `k` may ask for.
    pub default_k: usize,
    pub max_k: usize,
    /// Pairs in one `POST /v1/explanations:batch`.
    pub max_batch: usize,
    /// Request bodies larger than this are refused (413).
    pub max_body_bytes: usize,
    /// Request URIs (path and query) longer than this are refused (414).
    pub max_uri_bytes: usize,
    /// A request taking longer is answered 503 `timeout`.
    pub request_timeout_ms: u64,
    /// Generate missing explanations on demand (needs the model).
    pub generate: bool,
    /// Generations running at once, and requests waiting for one.
    pub generate_concurrency: usize,
    pub queue: usize,
    /// How long a request waits in the queue before 503.
    pub queue_timeout_ms: u64,
    /// `Retry-After` of a 503, in seconds.
    pub retry_after_s: u64,
    /// Memory for decoded stored results of the users read most (weighed by their stored
    /// JSON's size). 0: no cache.
    pub cache_mb: usize,
    /// How often the server reads which results were written since it last looked and drops
    /// their copies: a result a job rewrites is served as rewritten within this time.
    pub follow_ms: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            default_k: 20,
            max_k: 100,
            max_batch: 100,
            max_body_bytes: 64 << 10,
            max_uri_bytes: 2048,
            request_timeout_ms: 60_000,
            generate: true,
            generate_concurrency: 1,
            queue: 8,
            queue_timeout_ms: 10_000,
            retry_after_s: 5,
            cache_mb: 128,
            follow_ms: 200,
        }
    }
}

/// `[eval]` in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Cut-offs of the metrics.
    pub ks: Vec<usize>,
    /// EASE's L2 regularisation λ.
    pub ease_lambda: f64,
    /// Title-derived tags per user when the user has no LLM tags.
    pub tags_per_user: usize,
    /// Tags whose categories count in tag HR@N.
    pub tag_hr_n: usize,
    /// `recgpt eval llm`: items each tag retrieves through the tag tower in the tag hit rate.
    pub tag_k: usize,
    /// `recgpt eval llm`: days after the split whose purchases are the truth.
    pub horizon_days: u32,
    /// The collaborative-filtering channel is EASE up to this many catalog items (its dense
    /// `items × items` inverse takes 12·items² bytes while fitting) and sparse item-kNN above.
    pub ease_max_items: usize,
    /// Neighbours kept per item by sparse item-kNN.
    pub knn_neighbours: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            ks: vec![10, 20, 50],
            ease_lambda: 200.0,
            tags_per_user: 10,
            tag_hr_n: 30,
            tag_k: 10,
            horizon_days: 30,
            ease_max_items: 20_000,
            knn_neighbours: 100,
        }
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
    fn a_store_url_parses() {
        let c = Config::parse("[store]\nurl = \"postgres://recgpt@db:5432/recgpt\"\n").unwrap();
        assert_eq!(
            c.store.url.as_deref(),
            Some("postgres://recgpt@db:5432/recgpt")
        );
        assert!(Config::parse("[store]\nuri = \"x\"\n").is_err());
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
