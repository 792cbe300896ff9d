use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use recgpt_data::import::{import_online_retail, ImportSummary, ImportTarget};
use recgpt_data::Store;
use recgpt_pipeline::llm::{GgufTokenizer, TokenCounter};

/// The real Online Retail file.
pub fn data_file() -> PathBuf {
    let path = std::env::var_os("RECGPT_DATA").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/data/online-retail/online_retail.csv.gz")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "Online Retail data not found at {} (run `make test`, or set RECGPT_DATA)",
        path.display()
    );
    path
}

/// The real model file.
pub fn model_file() -> PathBuf {
    let path = std::env::var_os("RECGPT_MODEL")
        .map_or_else(recgpt_pipeline::model::small_model_path, PathBuf::from);
    assert!(
        path.is_file(),
        "model not found at {} (run `make model`, or set RECGPT_MODEL)",
        path.display()
    );
    path
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// A fresh directory that lives as long as the test process. Each process keeps its homes
/// under `<tmp>/recgpt-e2e-<pid>/`; the first call removes the folders of earlier processes
/// that are gone, so repeated runs do not fill the disk.
pub fn temp_home() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stale = name
                    .strip_prefix("recgpt-e2e-")
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if stale {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = tmp.join(format!("recgpt-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("temp root");
        root
    });
    tempfile::tempdir_in(root).expect("temp dir").keep()
}

/// The real data imported once per test process.
pub fn real_import() -> &'static (PathBuf, ImportSummary) {
    static IMPORT: OnceLock<(PathBuf, ImportSummary)> = OnceLock::new();
    IMPORT.get_or_init(|| {
        let home = temp_home();
        let summary =
            import_online_retail(&data_file(), &ImportTarget::new(&home)).expect("import");
        (home, summary)
    })
}

pub fn real_store() -> Store {
    Store::open(&real_import().0).expect("open store")
}

/// The real tokenizer, loaded once per test process.
pub fn counter() -> &'static TokenCounter {
    static COUNTER: OnceLock<TokenCounter> = OnceLock::new();
    COUNTER
        .get_or_init(|| TokenCounter::new(GgufTokenizer::load(&model_file()).expect("tokenizer")))
}

/// A compressor over `store`'s catalog at `budget`, counting with the real tokenizer.
pub fn compressor(
    store: &recgpt_data::Store,
    budget: usize,
) -> recgpt_pipeline::compress::Compressor<'static, GgufTokenizer> {
    use recgpt_pipeline::compress::{CompressConfig, Compressor};
    Compressor::new(
        store.catalog(),
        CompressConfig {
            budget,
            ..CompressConfig::default()
        },
        counter(),
    )
}

/// Real users' histories in `window` and their narratives.
pub fn narrated(
    store: &recgpt_data::Store,
    compressor: &recgpt_pipeline::compress::Compressor<'_, GgufTokenizer>,
    window: &recgpt_data::TimeWindow,
    users: &[&str],
) -> (
    Vec<recgpt_data::History>,
    Vec<recgpt_pipeline::compress::Narrative>,
) {
    let histories: Vec<_> = users
        .iter()
        .map(|u| store.history(u, window).unwrap())
        .collect();
    let narratives = histories
        .iter()
        .map(|h| compressor.compress(h, window))
        .collect();
    (histories, narratives)
}

/// Serialises the tests that run the model: each runs llama.cpp on every core (OpenMP threads
/// that spin), so two at once, or one beside a `llama-server`, thrash 2 cores many times over.
pub fn model_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh PostgreSQL database named `recgpt_e2e_NAME` on the test server
/// (`RECGPT_TEST_POSTGRES`, which `make test` sets to a throwaway cluster): its URL.
pub fn scratch_postgres(name: &str) -> String {
    let admin = std::env::var("RECGPT_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "RECGPT_TEST_POSTGRES is unset: run `make test` (it starts a throwaway PostgreSQL \
             cluster) or point it at a server where the tests may create databases"
        )
    });
    recgpt_pipeline::results::scratch_database(&admin, &format!("recgpt_e2e_{name}"))
        .unwrap_or_else(|e| panic!("scratch database on {admin}: {e}"))
}

/// llama.cpp's `llama-server`, built by `scripts/setup.sh server` (which `make test` runs).
pub fn llama_server_bin() -> PathBuf {
    let bin = std::env::var_os("RECGPT_LLAMA_SERVER").map_or_else(
        || recgpt_pipeline::model::cache_dir().join("llama-server/bin/llama-server"),
        PathBuf::from,
    );
    assert!(
        bin.is_file(),
        "llama-server not found at {} (run `scripts/setup.sh server`, or set RECGPT_LLAMA_SERVER)",
        bin.display()
    );
    bin
}
