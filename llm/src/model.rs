//! Where files live by default: the data home (event store, stage outputs) and the cache
//! (model files, downloads), both outside the repository.

use std::path::PathBuf;

/// File name of the default model inside the cache: Qwen2.5-Coder-0.5B-Instruct, chosen by
/// the quality loop's model comparison (tag hit@10 per CPU-minute on the dev split).
pub const DEFAULT_MODEL_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// File name of the smallest model (SmolLM2-135M-Instruct), which `make test` and `make demo`
/// run for speed on a few CPU cores.
pub const SMALL_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// File name of the judge's default model (Qwen2.5-Coder-1.5B-Instruct, the largest model the
/// setup provides: `scripts/setup.sh qwen 1.5b`).
pub const JUDGE_MODEL_FILE: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// `$RECGPT_CACHE`, else `$XDG_CACHE_HOME/recgpt`, else `~/.cache/recgpt`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RECGPT_CACHE") {
        return dir.into();
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map_or_else(|| home_dir().join(".cache"), PathBuf::from)
        .join("recgpt")
}

/// The default model, which `make model` fetches (`scripts/setup.sh qwen 0.5b`):
/// `<cache>/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf`.
pub fn default_model_path() -> PathBuf {
    cache_dir().join("models").join(DEFAULT_MODEL_FILE)
}

/// The judge's default model: `<cache>/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`.
pub fn judge_model_path() -> PathBuf {
    cache_dir().join("models").join(JUDGE_MODEL_FILE)
}

/// The smallest model, which `make model` fetches too (`scripts/setup.sh model`):
/// `<cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn small_model_path() -> PathBuf {
    cache_dir().join("models").join(SMALL_MODEL_FILE)
}

/// The text embedder's directory: `RECGPT_EMBEDDER`, else `<cache>/models/all-MiniLM-L6-v2`.
pub fn default_embedder_dir() -> PathBuf {
    std::env::var_os("RECGPT_EMBEDDER").map_or_else(
        || cache_dir().join("models/all-MiniLM-L6-v2"),
        PathBuf::from,
    )
}

/// `$XDG_DATA_HOME/recgpt`, else `~/.local/share/recgpt` (used when neither `--home` nor
/// `RECGPT_HOME` is given).
pub fn default_data_home() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map_or_else(|| home_dir().join(".local/share"), PathBuf::from)
        .join("recgpt")
}
