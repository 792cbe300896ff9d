//! all-MiniLM-L6-v2 with candle against reference vectors made once with the package's own
//! Python model (`tests/fixtures/minilm_reference.json`), and categories of the real catalog.

use std::sync::OnceLock;

use recgpt_pipeline::categories::{Categories, CategoriesConfig};
use recgpt_pipeline::embed::{cosine, Embedder, MAX_TOKENS, WEIGHTS_SHA256};
use recgpt_pipeline::model::default_embedder_dir;

use crate::common::{fixture, real_store};

/// The real embedder, loaded once per test process.
pub fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        Embedder::load(&default_embedder_dir())
            .unwrap_or_else(|e| panic!("{e} (run `make test`, or set RECGPT_EMBEDDER)"))
    })
}

/// The real catalog's title vectors, embedded once per test process.
fn title_vectors() -> &'static [[f32; recgpt_pipeline::embed::DIM]] {
    static VECTORS: OnceLock<Vec<[f32; recgpt_pipeline::embed::DIM]>> = OnceLock::new();
    VECTORS.get_or_init(|| {
        recgpt_pipeline::retrieval::title_vectors(&real_store(), embedder()).unwrap()
    })
}

/// Categories of the real catalog, built once per test process.
pub fn real_categories() -> &'static Categories {
    static CATEGORIES: OnceLock<Categories> = OnceLock::new();
    CATEGORIES.get_or_init(|| {
        Categories::build(&real_store(), title_vectors(), &CategoriesConfig::default())
    })
}

#[test]
fn vectors_match_the_reference_model() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("minilm_reference.json")).unwrap())
            .unwrap();
    assert_eq!(reference["weights_sha256"], WEIGHTS_SHA256);
    assert_eq!(reference["max_seq_length"], MAX_TOKENS);
    let cases = reference["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    // one batch of all lengths together, so padding to the longest is exercised
    let vectors = embedder().embed(&texts).unwrap();
    for (case, v) in cases.iter().zip(&vectors) {
        let want: Vec<f32> = case["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let text = case["text"].as_str().unwrap();
        let sim = cosine(v, &want);
        assert!(sim >= 0.999, "{text:?}: cosine {sim}");
        assert_eq!(
            embedder().token_count(text).unwrap() as u64,
            case["tokens"].as_u64().unwrap(),
            "{text:?}"
        );
    }
    // alone or in a batch: the same vector (padding does not leak into the mean)
    let alone = embedder().embed(&texts[..1]).unwrap();
    assert!(cosine(&alone[0], &vectors[0]) > 0.99999);
}

#[test]
fn real_catalog_categories_are_deterministic_and_named() {
    let store = real_store();
    let titles = store.catalog().items();
    let config = CategoriesConfig::default();
    let c = real_categories();
    // the same vectors give the same categories, and embedding again gives the same vectors
    // (checked on a sample: the whole catalog takes half a minute in a test build)
    assert_eq!(*c, Categories::build(&store, title_vectors(), &config));
    let sample: Vec<&str> = titles[..300].iter().map(|i| i.title.as_str()).collect();
    for (again, first) in embedder()
        .embed(&sample)
        .unwrap()
        .iter()
        .zip(title_vectors())
    {
        assert!(cosine(again, first) > 0.99999);
    }
    assert!(c.method.starts_with("derived"), "{}", c.method);
    assert_eq!(c.categories.len(), config.k);
    assert_eq!(c.items.len(), titles.len());
    let sizes: usize = c.categories.iter().map(|k| k.items).sum();
    assert_eq!(sizes, titles.len());
    let mut names: Vec<&str> = c.categories.iter().map(|k| k.name.as_str()).collect();
    assert!(names.iter().all(|n| !n.is_empty()));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), config.k, "names tell categories apart");
    // items that are plainly the same kind mostly share a category
    let cake_cases: Vec<usize> = store
        .catalog()
        .items()
        .iter()
        .filter(|i| i.title.contains("CAKE CASES"))
        .filter_map(|i| c.of_item(&i.id))
        .collect();
    assert!(cake_cases.len() >= 10, "{}", cake_cases.len());
    let top = (0..config.k)
        .map(|k| cake_cases.iter().filter(|&&x| x == k).count())
        .max()
        .unwrap();
    assert!(
        top * 10 >= cake_cases.len() * 8,
        "{top} of {}",
        cake_cases.len()
    );
    // a tag lands in the category of the items it describes
    let tag = embedder().embed(&["fairy cake cases"]).unwrap();
    let most = (0..config.k)
        .max_by_key(|&k| cake_cases.iter().filter(|&&x| x == k).count())
        .unwrap();
    assert_eq!(c.nearest(&tag[0]), most, "{}", c.name(c.nearest(&tag[0])));
    // saved and loaded for this store
    let home = crate::common::temp_home();
    c.save(&home).unwrap();
    assert_eq!(Categories::load(&home, &store).unwrap(), *c);
}

#[test]
fn cached_embeddings_are_the_computed_ones() {
    let dir = crate::common::temp_home();
    let texts = [
        "jumbo bag red retrospot",
        "t-light holder",
        "vintage enamel coffee mugs",
    ];
    let fresh = embedder().embed(&texts).unwrap();
    let first = embedder().embed_cached(&dir, &texts).unwrap();
    assert_eq!(first, fresh);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "one file per text list");
    // a hit reads the file: a corrupted body is a miss and is recomputed, not returned
    let path = files[0].as_ref().unwrap().path();
    assert_eq!(embedder().embed_cached(&dir, &texts).unwrap(), fresh);
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len();
    bytes.truncate(whole - 4);
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(embedder().embed_cached(&dir, &texts).unwrap(), fresh);
    assert_eq!(
        std::fs::read(&path).unwrap().len(),
        whole,
        "rewritten whole"
    );
    // other texts, another file
    embedder().embed_cached(&dir, &texts[..2]).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
}
