//! Retrieval wiring: from the store and the embedder to the inputs of the three-tower model,
//! its training, the vector index, per-user retrieval and the evaluation harness. The
//! models themselves live in `recgpt-retrieval`.
//!
//! Files under the data home: `categories.json`, `model/` (the trained towers), `index/` (the
//! Qdrant Edge shard), `eval/` (evaluation reports). Text embeddings are cached in
//! `<cache>/embeddings/`, named by the hash of the texts and the embedder's weights.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use recgpt_data::{BehaviorKind, DataError, History, ItemIx, Store, Timestamp};
use recgpt_retrieval::baselines::{Ease, ItemKnn, MostPopular, Scorer, SparseItemKnn};
use recgpt_retrieval::categories::Categories;
use recgpt_retrieval::embed::{EmbedError, Embedder, DIM};
use recgpt_retrieval::eval::{self, EvalSet, MethodReport, ThreeTower, UserTower};
use recgpt_retrieval::index::{IndexError, IndexPoint, SearchFilter, VectorIndex};
use recgpt_retrieval::interactions::{Interactions, UserItems};
use recgpt_retrieval::retrieve::TagQuery;
use recgpt_retrieval::title_tags::ItemTags;
use recgpt_retrieval::tower::{self, EpochLoss, ItemFeatures, Progress, TowerError, TowerModel};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The collaborative-filtering channel fitted on `train`: EASE where its dense matrix fits
/// (`eval.ease_max_items`), sparse item-kNN otherwise.
pub fn cf_channel(
    train: &Interactions,
    items: usize,
    config: &Config,
) -> Box<dyn Scorer + Send + Sync> {
    if items <= config.eval.ease_max_items {
        Box::new(Ease::fit(train, items, config.eval.ease_lambda))
    } else {
        Box::new(SparseItemKnn::fit(train, items, config.eval.knn_neighbours))
    }
}

/// The product's CF channel: [`cf_channel`] fitted on the purchases the towers were trained
/// on (before `model.meta.until`), or `None` when `fusion.cf` is 0.
pub fn fit_cf(
    store: &Store,
    model: &TowerModel,
    config: &Config,
) -> Result<Option<Box<dyn Scorer + Send + Sync>>, DataError> {
    if config.fusion.cf <= 0.0 {
        return Ok(None);
    }
    // a cut-off that does not parse is an error, not "all events" (that would fit CF on
    // purchases the towers never saw)
    let until = model
        .meta
        .until
        .as_deref()
        .map(recgpt_data::parse_date)
        .transpose()?;
    let t0 = std::time::Instant::now();
    let (before, _) = Interactions::split(store, until.map(Timestamp::from_date))?;
    let cf = cf_channel(&before, model.item_vectors.len(), config);
    tracing::info!(
        channel = cf.name(),
        users = before.users.len(),
        seconds = t0.elapsed().as_secs_f64(),
        "fitted the CF channel"
    );
    Ok(Some(cf))
}

/// Errors of the retrieval commands.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Tower(#[from] TowerError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// What the towers read about the catalog, computed once and cached under the data home.
#[derive(Debug)]
pub struct Prepared {
    pub categories: Categories,
    pub features: ItemFeatures,
    pub item_tags: ItemTags,
    /// Text embedding of each of `item_tags.texts`.
    pub tag_vectors: Vec<[f32; DIM]>,
}

/// The content-addressed cache of text embeddings: `<cache>/embeddings`.
pub fn embeddings_dir() -> PathBuf {
    crate::model::cache_dir().join("embeddings")
}

/// Title embeddings of the catalog (cached in [`embeddings_dir`]).
pub fn title_vectors(store: &Store, embedder: &Embedder) -> Result<Vec<[f32; DIM]>, EmbedError> {
    let titles: Vec<&str> = store
        .catalog()
        .items()
        .iter()
        .map(|i| i.title.as_str())
        .collect();
    embedder.embed_cached(&embeddings_dir(), &titles)
}

impl Prepared {
    /// Title embeddings, categories (`categories.json`, built when missing or stale), title
    /// tags and their embeddings.
    pub fn load(
        home: &Path,
        store: &Store,
        config: &Config,
        embedder: &Embedder,
    ) -> Result<Self, RetrievalError> {
        let titles = title_vectors(store, embedder)?;
        let categories = match Categories::load(home, store) {
            Ok(c) => c,
            Err(_) => {
                let c = Categories::build(store, &titles, &config.categories);
                c.save(home)?;
                c
            }
        };
        let item_tags = ItemTags::from_catalog(store.catalog());
        let texts: Vec<&str> = item_tags.texts.iter().map(String::as_str).collect();
        let tag_vectors = embedder.embed_cached(&embeddings_dir(), &texts)?;
        let features = ItemFeatures::new(
            store.catalog(),
            titles,
            &categories,
            config.tower.price_buckets,
        );
        Ok(Self {
            categories,
            features,
            item_tags,
            tag_vectors,
        })
    }

    /// Up to `n` title-derived tags of a user's most recent purchases (the short
    /// "modifier + core word" tag of each item when it has one), distinct, as tag ids.
    pub fn user_title_tags(&self, user: &UserItems, n: usize) -> Vec<u32> {
        let mut seen = HashSet::new();
        user.bought
            .iter()
            .filter_map(|&i| self.item_tags.of_item[i as usize].last().copied())
            .filter(|t| seen.insert(*t))
            .take(n)
            .collect()
    }

    /// The index queries of [`Self::user_title_tags`]: each tag's text and tag-tower vector.
    pub fn user_title_tag_queries(
        &self,
        model: &TowerModel,
        user: &UserItems,
        n: usize,
    ) -> Result<Vec<TagQuery>, TowerError> {
        let ids = self.user_title_tags(user, n);
        let texts: Vec<[f32; DIM]> = ids.iter().map(|&t| self.tag_vectors[t as usize]).collect();
        Ok(ids
            .iter()
            .zip(model.tag_vectors(&texts)?)
            .map(|(&t, vector)| TagQuery {
                tag: self.item_tags.texts[t as usize].clone(),
                vector,
            })
            .collect())
    }
}

/// The filter that leaves out what `history`'s user bought in the `days` days before `as_of`
/// (nothing when `days` is 0).
pub fn recently_bought(history: &History, as_of: chrono::NaiveDate, days: u32) -> SearchFilter {
    let mut exclude = HashSet::new();
    if days > 0 {
        let since = as_of
            .checked_sub_days(chrono::Days::new(days.into()))
            .map_or(Timestamp(i64::MIN), Timestamp::from_date);
        exclude.extend(
            history
                .events
                .iter()
                .filter(|e| e.at >= since && e.kind == BehaviorKind::Purchase)
                .filter_map(|e| e.item),
        );
    }
    SearchFilter { exclude }
}

/// Trains the three-tower model on purchases before `until` (all when `None`). Returns the
/// model and the interactions on both sides of `until`.
pub fn train(
    store: &Store,
    prepared: &Prepared,
    config: &Config,
    until: Option<chrono::NaiveDate>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(TowerModel, Interactions, Interactions), RetrievalError> {
    let (before, after) = Interactions::split(store, until.map(Timestamp::from_date))?;
    let model = tower::train(
        &config.tower,
        &before,
        &prepared.features,
        &prepared.item_tags,
        &prepared.tag_vectors,
        until.map(|d| d.to_string()),
        &store.manifest().fingerprint,
        progress,
    )?;
    Ok((model, before, after))
}

/// Directory of the vector index in a data home.
pub fn index_dir(home: &Path) -> PathBuf {
    home.join("index")
}

/// The index's points: every item with its item-tower vector and payload.
pub fn index_points(store: &Store, prepared: &Prepared, model: &TowerModel) -> Vec<IndexPoint> {
    store
        .catalog()
        .items()
        .iter()
        .zip(&model.item_vectors)
        .enumerate()
        .map(|(ix, (item, vector))| IndexPoint {
            item: ix as ItemIx,
            vector: vector.clone(),
            id: item.id.clone(),
            title: item.title.clone(),
            category: prepared
                .categories
                .of_item(&item.id)
                .map_or_else(String::new, |c| prepared.categories.name(c).to_string()),
        })
        .collect()
}

/// Builds the Qdrant Edge index of `model`'s item vectors under the data home.
pub fn build_index(
    home: &Path,
    store: &Store,
    prepared: &Prepared,
    model: &TowerModel,
    config: &Config,
) -> Result<Box<dyn VectorIndex>, RetrievalError> {
    let points = index_points(store, prepared, model);
    Ok(recgpt_retrieval::index::build(
        &index_dir(home),
        model.meta.config.dim,
        &points,
        &config.index,
    )?)
}

/// One evaluation run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub split: String,
    pub users: usize,
    pub users_with_new_items: usize,
    pub items: usize,
    pub categories: usize,
    pub ks: Vec<usize>,
    /// Where the three-tower model's tags came from.
    pub tags_source: String,
    pub methods: Vec<MethodReport>,
    /// Seconds each method took to fit (train) and score every user.
    pub seconds: HashMap<String, f64>,
    /// Tag HR@N of the tags the three-tower model used, and the users it covers.
    pub tag_hr: Option<TagHitRate>,
    pub losses: Vec<EpochLoss>,
    pub seed: u64,
}

impl EvalReport {
    /// Writes the report where `recgpt serve` finds it ([`crate::reports::retrieval`]) and
    /// returns its path.
    pub fn save(&self, home: &Path) -> std::io::Result<PathBuf> {
        let path = crate::reports::retrieval(home, &self.split);
        std::fs::create_dir_all(crate::reports::dir(home))?;
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagHitRate {
    pub n: usize,
    pub value: f64,
    pub users: usize,
    pub tags_source: String,
}

/// Trains every method on events before `split` and scores them on the users present on
/// both sides.
pub fn evaluate(
    store: &Store,
    prepared: &Prepared,
    config: &Config,
    split: chrono::NaiveDate,
    progress: &mut dyn FnMut(&str),
) -> Result<EvalReport, RetrievalError> {
    progress("training the three-tower model");
    let started = std::time::Instant::now();
    let (model, before, after) = train(store, prepared, config, Some(split), &mut |_| {})?;
    let seconds = started.elapsed().as_secs_f64();
    evaluate_trained(
        store, prepared, config, split, &model, &before, &after, seconds, progress,
    )
}

/// [`evaluate`] with the three-tower model already trained on `before` (taking
/// `train_seconds`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_trained(
    store: &Store,
    prepared: &Prepared,
    config: &Config,
    split: chrono::NaiveDate,
    model: &TowerModel,
    before: &Interactions,
    after: &Interactions,
    tower_train: f64,
    progress: &mut dyn FnMut(&str),
) -> Result<EvalReport, RetrievalError> {
    let items = store.catalog().len();
    let ks = &config.eval.ks;
    let category = &prepared.features.category;
    let mut seconds = HashMap::new();
    let mut methods = Vec::new();
    let timed = |seconds: &mut HashMap<String, f64>, name: &str, started: std::time::Instant| {
        *seconds.entry(name.to_string()).or_insert(0.0) += started.elapsed().as_secs_f64();
    };
    let set = EvalSet::new(before, after);

    let run = |scorer: &dyn Scorer, methods: &mut Vec<MethodReport>| {
        methods.push(eval::evaluate(scorer, &set, items, category, ks));
    };
    for name in ["MostPopular", "ItemKNN", "SparseItemKNN", "EASE"] {
        progress(name);
        let started = std::time::Instant::now();
        let scorer: Box<dyn Scorer> = match name {
            "MostPopular" => Box::new(MostPopular::fit(before, items)),
            "ItemKNN" => Box::new(ItemKnn::fit(before, items)),
            "SparseItemKNN" => Box::new(SparseItemKnn::fit(
                before,
                items,
                config.eval.knn_neighbours,
            )),
            _ => Box::new(Ease::fit(before, items, config.eval.ease_lambda)),
        };
        run(scorer.as_ref(), &mut methods);
        timed(&mut seconds, name, started);
    }

    progress("UserTower");
    let started = std::time::Instant::now();
    let user_tower = UserTower::new(model, &set, &prepared.features)?;
    run(&user_tower, &mut methods);
    timed(&mut seconds, "UserTower", started);
    *seconds.get_mut("UserTower").expect("just timed") += tower_train;

    progress("ThreeTower");
    let started = std::time::Instant::now();
    let tags_source = "title-derived tags of each user's latest purchases before the split";
    let mut tag_vectors = HashMap::new();
    let mut tag_categories = HashMap::new();
    for (before, _) in &set.users {
        let ids = prepared.user_title_tags(before, config.eval.tags_per_user);
        tag_categories.insert(
            before.user.clone(),
            ids.iter()
                .map(|&t| {
                    prepared
                        .categories
                        .nearest(&prepared.tag_vectors[t as usize]) as u32
                })
                .collect::<Vec<_>>(),
        );
        let queries = prepared.user_title_tag_queries(model, before, config.eval.tags_per_user)?;
        tag_vectors.insert(
            before.user.clone(),
            queries.into_iter().map(|q| q.vector).collect::<Vec<_>>(),
        );
    }
    let three = ThreeTower::new(model, &user_tower, &tag_vectors, "ThreeTower".into());
    run(&three, &mut methods);
    timed(&mut seconds, "ThreeTower", started);
    *seconds.get_mut("ThreeTower").expect("just timed") += tower_train;

    let n = config.eval.tag_hr_n;
    let (value, users) = eval::tag_hit_rate(&set, &tag_categories, category, n);
    Ok(EvalReport {
        split: split.to_string(),
        users: set.users.len(),
        users_with_new_items: set.users_with_new_items(),
        items,
        categories: prepared.categories.categories.len(),
        ks: ks.clone(),
        tags_source: tags_source.to_string(),
        methods,
        seconds,
        tag_hr: Some(TagHitRate {
            n,
            value,
            users,
            tags_source: tags_source.to_string(),
        }),
        losses: model.meta.losses.clone(),
        seed: config.tower.seed,
    })
}
