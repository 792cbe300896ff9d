//! `recgpt train`, `recgpt index build`, `recgpt retrieve`, `recgpt eval`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use recgpt_data::Store;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::embed::Embedder;
use recgpt_pipeline::model::default_embedder_dir;
use recgpt_pipeline::reports;
use recgpt_pipeline::retrieval::{self, EvalReport, Prepared};
use recgpt_retrieval::interactions::UserItems;
use recgpt_retrieval::retrieve::retrieve as retrieve_user;
use recgpt_retrieval::tower::{Progress, TowerModel};

use super::print_json;
use crate::EmbedderArgs;

pub(super) fn open(home: &Path, config: &Config, args: &EmbedderArgs) -> Result<(Store, Prepared)> {
    let store = Store::open(home)?;
    let dir = args.embedder.clone().unwrap_or_else(default_embedder_dir);
    let embedder = Embedder::load(&dir)?;
    let prepared = Prepared::load(home, &store, config, &embedder)?;
    Ok((store, prepared))
}

/// A bar over the training steps (hidden when stderr is not a terminal).
fn training_bar() -> impl FnMut(Progress) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {msg} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    move |p: Progress| {
        if bar.length() != Some(p.steps as u64) {
            bar.set_length(p.steps as u64);
        }
        bar.set_position(p.step as u64);
        bar.set_message(format!("{}/{} loss {:.3}", p.epoch, p.epochs, p.loss));
        if p.epoch == p.epochs && p.step == p.steps {
            bar.finish_and_clear();
        }
    }
}

pub fn train(
    home: &Path,
    config: &Config,
    until: Option<NaiveDate>,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    let (store, prepared) = open(home, config, embedder)?;
    let (model, before, _) =
        retrieval::train(&store, &prepared, config, until, &mut training_bar())?;
    let dir = TowerModel::dir_in(home);
    model.save(&dir)?;
    if json {
        return print_json(&model.meta.losses);
    }
    println!(
        "trained on {} purchases of {} users ({} items, {} categories) in {:.1}s; written to {}",
        before.pairs().len(),
        before.users.len(),
        prepared.features.items(),
        prepared.features.categories,
        model.meta.train_seconds,
        dir.display()
    );
    println!("epoch  total   L_col   L_tag   L_cate  seconds");
    for l in &model.meta.losses {
        println!(
            "{:>5}  {:.3}  {:.3}  {:.3}  {:.3}  {:>7.1}",
            l.epoch, l.total, l.col, l.tag, l.cate, l.seconds
        );
    }
    Ok(())
}

pub fn index_build(
    home: &Path,
    config: &Config,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    let (store, prepared) = open(home, config, embedder)?;
    let model = TowerModel::load(&TowerModel::dir_in(home), &prepared.features)?;
    let started = std::time::Instant::now();
    let index = retrieval::build_index(home, &store, &prepared, &model, config)?;
    let seconds = started.elapsed().as_secs_f64();
    let at = match config.index.kind {
        recgpt_retrieval::index::IndexKind::Edge => {
            retrieval::index_dir(home).display().to_string()
        }
        recgpt_retrieval::index::IndexKind::Qdrant => {
            format!("collection {}", config.index.collection)
        }
    };
    if json {
        return print_json(&serde_json::json!({
            "kind": index.kind(),
            "points": index.len(),
            "indexed": index.indexed(),
            "seconds": seconds,
            "at": at,
        }));
    }
    let indexed = index
        .indexed()
        .map_or(String::new(), |n| format!(" ({n} in the HNSW graph)"));
    println!(
        "{} index: {} points{indexed} built in {seconds:.2}s at {at}",
        index.kind(),
        index.len(),
    );
    Ok(())
}

pub fn retrieve(
    home: &Path,
    config: &Config,
    user: &str,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    let (store, prepared) = open(home, config, embedder)?;
    let model = TowerModel::load(&TowerModel::dir_in(home), &prepared.features)?;
    let index = recgpt_retrieval::index::open(&retrieval::index_dir(home), &config.index, false)?;
    // the model's own view of time: its training cut-off, else the store's end
    let until = model
        .meta
        .until
        .as_deref()
        .map(recgpt_data::parse_date)
        .transpose()?;
    let window = store.window(until, None);
    let history = store.history(user, &window)?;
    let events: Vec<_> = history.events.iter().collect();
    let items = UserItems::from_events(user, &events);
    anyhow::ensure!(
        !items.bought.is_empty(),
        "user {user} bought nothing before {}",
        window.as_of
    );
    let filter =
        retrieval::recently_bought(&history, window.as_of, config.retrieve.exclude_bought_days);
    let tags = prepared.user_title_tag_queries(&model, &items, config.eval.tags_per_user)?;
    let user_vector = model.user_vector(&items, &prepared.features)?;
    let candidates = retrieve_user(
        index.as_ref(),
        &model,
        &user_vector,
        &tags,
        &filter,
        &config.retrieve,
    )?;
    let catalog = store.catalog();
    if json {
        let rows: Vec<_> = candidates
            .iter()
            .map(|c| {
                let item = catalog.get(c.item);
                serde_json::json!({
                    "item": item.id, "title": item.title, "score": c.score, "tag": c.tag,
                })
            })
            .collect();
        return print_json(&serde_json::json!({
            "user": user,
            "tags_source": "title-derived (latest purchases)",
            "tags": tags.iter().map(|t| &t.tag).collect::<Vec<_>>(),
            "items": rows,
        }));
    }
    println!(
        "user {user}: {} tags (title-derived from the latest purchases), {} candidates from {}",
        tags.len(),
        candidates.len(),
        index.kind()
    );
    for (rank, c) in candidates.iter().enumerate() {
        let item = catalog.get(c.item);
        println!(
            "{:>3}  {:.3}  {:<10} {:<40}  <- {}",
            rank + 1,
            c.score,
            item.id,
            item.title,
            c.tag.as_deref().unwrap_or("(user)")
        );
    }
    Ok(())
}

pub fn eval(
    home: &Path,
    config: &Config,
    split: NaiveDate,
    embedder: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    let (store, prepared) = open(home, config, embedder)?;
    let report = retrieval::evaluate(&store, &prepared, config, split, &mut |step| {
        eprintln!("eval: {step}");
    })?;
    let json_path = report.save(home)?;
    let svg_path = reports::recall_chart(home, &split.to_string());
    std::fs::write(&svg_path, recall_chart(&report))?;
    if json {
        return print_json(&report);
    }
    print!("{}", table(&report));
    println!(
        "written: {} and {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}

/// The evaluation as a text table.
pub fn table(r: &EvalReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "split {}: {} users on both sides ({} with items new to them), {} items, {} categories; seed {}",
        r.split, r.users, r.users_with_new_items, r.items, r.categories, r.seed
    );
    let _ = writeln!(out, "three-tower tags: {}", r.tags_source);
    let _ = writeln!(
        out,
        "{:<12} {:>4} {:>7} {:>7} {:>6} {:>9} {:>8} {:>6} {:>8} {:>6} {:>7} {:>8}",
        "method",
        "K",
        "Recall",
        "NDCG",
        "HR",
        "Recall-new",
        "NDCG-new",
        "HR-new",
        "coverage",
        "cats",
        "entropy",
        "seconds"
    );
    for m in &r.methods {
        for a in &m.at {
            let _ = writeln!(
                out,
                "{:<12} {:>4} {:>7.4} {:>7.4} {:>6.3} {:>9.4} {:>8.4} {:>6.3} {:>8.3} {:>6.2} {:>7.2} {:>8.1}",
                m.method,
                a.k,
                a.recall,
                a.ndcg,
                a.hr,
                a.recall_new,
                a.ndcg_new,
                a.hr_new,
                a.coverage,
                a.distinct_categories,
                a.category_entropy,
                r.seconds.get(&m.method).copied().unwrap_or(0.0)
            );
        }
    }
    if let Some(t) = &r.tag_hr {
        let _ = writeln!(
            out,
            "tag HR@{}: {:.4} over {} users ({})",
            t.n, t.value, t.users, t.tags_source
        );
    }
    out
}

/// Recall@K per method as an SVG line chart.
pub fn recall_chart(r: &EvalReport) -> String {
    let (w, h, pad) = (640.0, 400.0, 50.0);
    let max = r
        .methods
        .iter()
        .flat_map(|m| m.at.iter().map(|a| a.recall))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let kmax = r.ks.iter().copied().max().unwrap_or(1) as f64;
    let x = |k: usize| pad + (k as f64 / kmax) * (w - 2.0 * pad);
    let y = |v: f64| h - pad - (v / max) * (h - 2.0 * pad);
    let colours = [
        "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
    ];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"24\" font-size=\"14\">Recall@K, split {} ({} users)</text>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n",
        r.split,
        r.users,
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for &k in &r.ks {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{k}</text>",
            x(k),
            h - pad + 16.0
        );
    }
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.3}</text>",
            pad - 6.0,
            y(v) + 4.0
        );
    }
    for (i, m) in r.methods.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let points: Vec<String> =
            m.at.iter()
                .map(|a| format!("{:.1},{:.1}", x(a.k), y(a.recall)))
                .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>",
            w - pad - 110.0,
            pad + 16.0 * i as f64,
            m.method
        );
    }
    svg.push_str("</svg>\n");
    svg
}
