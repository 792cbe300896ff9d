//! `recgpt categories`.

use std::path::Path;

use anyhow::Result;
use recgpt_data::Store;
use recgpt_pipeline::categories::Categories;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::embed::Embedder;
use recgpt_pipeline::model::default_embedder_dir;

use super::print_json;

pub fn build(home: &Path, config: &Config, embedder: Option<&Path>, json: bool) -> Result<()> {
    let store = Store::open(home)?;
    let embedder = Embedder::load(&embedder.map_or_else(default_embedder_dir, Path::to_path_buf))?;
    let started = std::time::Instant::now();
    let vectors = recgpt_pipeline::retrieval::title_vectors(&store, &embedder)?;
    let embedded = started.elapsed().as_secs_f64();
    let categories = Categories::build(&store, &vectors, &config.categories);
    let path = categories.save(home)?;
    if json {
        return print_json(&serde_json::json!({
            "method": categories.method,
            "file": path,
            "categories": categories.categories,
        }));
    }
    println!(
        "{} categories for {} items ({}); titles embedded in {embedded:.1}s; written to {}",
        categories.categories.len(),
        vectors.len(),
        categories.method,
        path.display()
    );
    let items = store.catalog().items();
    for (c, cat) in categories.categories.iter().enumerate() {
        let sample: Vec<&str> = items
            .iter()
            .filter(|i| categories.of_item(&i.id) == Some(c))
            .take(3)
            .map(|i| i.title.as_str())
            .collect();
        println!(
            "{c:>3} {:<32} {:>5} items  e.g. {}",
            cat.name,
            cat.items,
            sample.join("; ")
        );
    }
    Ok(())
}
