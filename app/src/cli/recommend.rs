//! `recgpt recommend` (the whole chain for a few users) and `recgpt serve`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use recgpt::serve::{self, AppState};
use recgpt_pipeline::compress::Compressor;
use recgpt_pipeline::config::Config;
use recgpt_pipeline::embed::Embedder;
use recgpt_pipeline::explain::keys::InterestKeys;
use recgpt_pipeline::explain::{Explainer, Verify};
use recgpt_pipeline::interests::ThemeIndex;
use recgpt_pipeline::judge::Verifier;
use recgpt_pipeline::llm::GgufTokenizer;
use recgpt_pipeline::model::default_embedder_dir;
use recgpt_pipeline::prompts::Prompts;
use recgpt_pipeline::reason::Reasoner;
use recgpt_pipeline::recommend::Recommender;
use recgpt_pipeline::results::ResultStore;
use recgpt_pipeline::retrieval;
use recgpt_retrieval::baselines::Scorer;
use recgpt_retrieval::index::VectorIndex;
use recgpt_retrieval::tower::TowerModel;

use super::{print_json, HistoryContext};
use crate::{EmbedderArgs, HistoryArgs};

/// What the chain reads, opened from a data home.
pub(super) struct ChainInputs {
    pub ctx: HistoryContext,
    pub embedder: Embedder,
    pub prepared: retrieval::Prepared,
    pub model: TowerModel,
    pub index: Box<dyn VectorIndex>,
    pub results: ResultStore,
    pub prompts: Prompts,
    /// The collaborative-filtering channel (absent when `fusion.cf` is 0).
    pub cf: Option<Box<dyn Scorer + Send + Sync>>,
    /// The judge of new explanations (`[judge] explanations`), its model loaded.
    pub verifier: Option<Verifier>,
}

impl ChainInputs {
    /// Opens everything; `private_index` searches a private copy of the index, so several
    /// processes (job shards) can run side by side.
    pub fn open(
        home: &Path,
        config: Config,
        history: &HistoryArgs,
        embedder_args: &EmbedderArgs,
        private_index: bool,
    ) -> Result<Self> {
        let ctx = HistoryContext::open(home, config, history)?;
        let config = &ctx.config;
        let dir = embedder_args
            .embedder
            .clone()
            .unwrap_or_else(default_embedder_dir);
        let embedder = Embedder::load(&dir)?;
        let prepared = retrieval::Prepared::load(home, &ctx.store, config, &embedder)?;
        let model = TowerModel::load(&TowerModel::dir_in(home), &prepared.features)
            .context("no trained model: run `recgpt train` first")?;
        let dir = retrieval::index_dir(home);
        let index = recgpt_retrieval::index::open(&dir, &config.index, private_index)
            .context("no index: run `recgpt index build` first")?;
        let results = config.store.open(home)?;
        let cf = retrieval::fit_cf(&ctx.store, &model, config)?;
        let verifier = Verifier::load(config)
            .context("the judge of explanations ([judge] explanations = true)")?;
        Ok(Self {
            ctx,
            embedder,
            prepared,
            model,
            index,
            results,
            prompts: Prompts::new(),
            cf,
            verifier,
        })
    }

    /// The chain over these inputs.
    pub fn recommender<'a>(
        &'a self,
        compressor: &'a Compressor<'a, GgufTokenizer>,
        themes: &'a ThemeIndex,
    ) -> Recommender<'a> {
        let config = &self.ctx.config;
        let catalog = self.ctx.store.catalog();
        Recommender {
            config,
            reasoner: Reasoner::new(&self.prompts, catalog, compressor.texts(), themes, config)
                .with_categories(&self.embedder, &self.prepared.categories),
            explainer: Explainer::new(
                &self.prompts,
                catalog,
                compressor.texts(),
                Some(&self.prepared.categories),
                &config.explain,
                config.llm.sampling,
            )
            .with_verifier(self.verifier.as_ref().map(|v| v as &dyn Verify)),
            prepared: &self.prepared,
            model: &self.model,
            index: self.index.as_ref(),
            embedder: &self.embedder,
            results: &self.results,
            cf: self.cf.as_deref(),
        }
    }
}

pub fn recommend(
    home: &Path,
    config: Config,
    users: &[String],
    history: &HistoryArgs,
    embedder_args: &EmbedderArgs,
    json: bool,
) -> Result<()> {
    let inputs = ChainInputs::open(home, config, history, embedder_args, false)?;
    let ctx = &inputs.ctx;
    let results = &inputs.results;
    let mut keys = InterestKeys::load(results, ctx.config.explain.key_similarity)?;
    let llm = ctx.llm()?;
    let compressor = ctx.compressor();
    let themes = ThemeIndex::of(compressor.texts());
    let recommender = inputs.recommender(&compressor, &themes);
    let histories = users
        .iter()
        .map(|u| ctx.store.history(u, &ctx.window))
        .collect::<Result<Vec<_>, _>>()?;
    let narratives: Vec<_> = histories
        .iter()
        .map(|h| compressor.compress(h, &ctx.window))
        .collect();
    let pairs: Vec<_> = histories.iter().zip(&narratives).collect();
    let (out, counts) = recommender.run(llm.as_ref(), &mut keys, &pairs)?;
    if json {
        return print_json(&serde_json::json!({"users": out, "counts": counts}));
    }
    for r in &out {
        println!("user {} (as of {})", r.user, r.as_of);
        for i in &r.interests.interests {
            println!("  interest: {} — {}", i.name, i.description);
        }
        for rec in &r.recommendations {
            println!(
                "  {:>6.4} {:<4} {:<8} {:<36} tag: {:<28} interest: {}",
                rec.score,
                rec.channel,
                rec.item,
                rec.title,
                rec.tag.as_deref().unwrap_or("-"),
                rec.interest.as_deref().unwrap_or("-"),
            );
            if let Some(e) = &rec.explanation {
                let label = match rec.explanation_source.as_deref() {
                    Some("fallback") => " [fallback]",
                    _ => "",
                };
                println!("         “{e}”{label}");
            }
        }
    }
    let e = &counts.explain;
    let rejected: Vec<String> = e.rejected.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "-- {} users | explanations: {} pairs, {} cache hits ({:.0}%), {} generated in {} answers, {} fallbacks | rejected: {} | tokens {} prompt ({} reused) + {} generated | seconds: reason {:.1}, retrieve {:.1}, explain {:.1} | stored in {}",
        counts.users,
        e.requested,
        e.hits,
        100.0 * e.hit_rate(),
        e.generated,
        e.generations,
        e.fallbacks,
        if rejected.is_empty() { "none".into() } else { rejected.join(", ") },
        counts.tokens.prompt,
        counts.tokens.reused,
        counts.tokens.generated,
        counts.seconds.get("reason").copied().unwrap_or(0.0),
        counts.seconds.get("retrieve").copied().unwrap_or(0.0),
        counts.seconds.get("explain").copied().unwrap_or(0.0),
        results.location(),
    );
    Ok(())
}

pub fn serve(
    home: &Path,
    config: Config,
    addr: std::net::SocketAddr,
    api_key: Option<String>,
) -> Result<()> {
    let llm = if config.serve.generate {
        Some(Arc::from(config.llm.load()?))
    } else {
        None
    };
    let state = Arc::new(AppState::open(home, config, llm, api_key)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr}"))?;
        let generate = match &state.generator {
            Some(g) => format!("generating missing explanations with {}", g.llm.model_id()),
            None => "cached explanations only".to_string(),
        };
        eprintln!(
            "listening on http://{} ({generate})",
            listener.local_addr()?
        );
        serve::serve(state, listener).await?;
        anyhow::Ok(())
    })?;
    Ok(())
}
