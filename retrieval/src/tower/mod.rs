//! The user / item / tag three-tower model of the RecGPT report, in candle on the CPU.
//!
//! - Item tower: item id embedding ‖ title embedding (all-MiniLM-L6-v2, fixed) ‖ category
//!   embedding ‖ price-bucket embedding → MLP.
//! - User tower: user id embedding ‖ mean of the item id embeddings of the distinct items the
//!   user bought ‖ mean of their title embeddings ‖ mean title embedding of returned items
//!   (one pooled sequence per behaviour kind) → MLP.
//! - Tag tower: the tag's text embedding → MLP.
//!
//! Every tower ends in a unit vector of `dim` numbers; scores are dot products. Training
//! ([`train`]) minimises L = L_col + α·L_tag + (1−α)·L_cate with sampled-softmax contrastive
//! losses over in-batch negatives and logQ correction. Serving a tag query uses
//! h = β·h_user + (1−β)·h_tag, made unit length ([`TowerModel::query`]).

mod train;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var, D};
use recgpt_data::{Catalog, ItemIx};
use serde::{Deserialize, Serialize};

use crate::categories::Categories;
use crate::embed::DIM;
use crate::interactions::{Interactions, UserItems};
use crate::rng::SplitMix64;

pub use train::{train, EpochLoss, Progress};

/// Hyper-parameters (`[tower]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TowerConfig {
    /// Output dimension of every tower.
    pub dim: usize,
    /// Hidden width of the towers' MLPs.
    pub hidden: usize,
    /// Width of the user and item id embeddings.
    pub id_dim: usize,
    pub category_dim: usize,
    pub price_dim: usize,
    /// Price buckets (quantiles of the catalog's prices); items without a price get their own.
    pub price_buckets: usize,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Softmax temperature of the contrastive losses.
    pub temperature: f64,
    /// Weight of the tag loss; the category loss gets 1 − α.
    pub alpha: f64,
    /// Serving: weight of the user vector in a tag query.
    pub beta: f64,
    pub seed: u64,
}

impl Default for TowerConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            hidden: 128,
            id_dim: 32,
            category_dim: 16,
            price_dim: 8,
            price_buckets: 10,
            epochs: 5,
            batch: 512,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            temperature: 0.07,
            alpha: 0.5,
            beta: 0.5,
            seed: 7,
        }
    }
}

/// Errors of the model.
#[derive(Debug, thiserror::Error)]
pub enum TowerError {
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("nothing to train on: no user bought anything before the split")]
    Empty,
}

/// What the item tower reads besides the item id: fixed for a catalog.
#[derive(Debug, Clone)]
pub struct ItemFeatures {
    pub titles: Vec<[f32; DIM]>,
    /// Category per item; `categories` (one past the last) when unknown.
    pub category: Vec<u32>,
    pub categories: usize,
    /// Price bucket per item; `buckets` when the item has no price.
    pub price_bucket: Vec<u32>,
    pub buckets: usize,
}

impl ItemFeatures {
    pub fn new(
        catalog: &Catalog,
        titles: Vec<[f32; DIM]>,
        categories: &Categories,
        buckets: usize,
    ) -> Self {
        assert_eq!(titles.len(), catalog.len(), "one title vector per item");
        let category = catalog
            .items()
            .iter()
            .map(|i| {
                categories
                    .of_item(&i.id)
                    .unwrap_or(categories.categories.len()) as u32
            })
            .collect();
        let mut prices: Vec<f64> = catalog.items().iter().filter_map(|i| i.price).collect();
        prices.sort_by(f64::total_cmp);
        let edges: Vec<f64> = (1..buckets)
            .filter_map(|b| prices.get(b * prices.len() / buckets).copied())
            .collect();
        let price_bucket = catalog
            .items()
            .iter()
            .map(|i| match i.price {
                Some(p) => edges.iter().filter(|&&e| e <= p).count() as u32,
                None => buckets as u32,
            })
            .collect();
        Self {
            titles,
            category,
            categories: categories.categories.len(),
            price_bucket,
            buckets,
        }
    }

    pub fn items(&self) -> usize {
        self.titles.len()
    }
}

/// A two-layer perceptron.
struct Mlp {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.w1.t()?)?
            .broadcast_add(&self.b1)?
            .relu()?
            .matmul(&self.w2.t()?)?
            .broadcast_add(&self.b2)
    }
}

/// The trainable parameters, by name (the names of the weights file).
struct Params {
    vars: Vec<(String, Var)>,
}

impl Params {
    fn get(&self, name: &str) -> &Var {
        &self
            .vars
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("parameter {name}"))
            .1
    }

    fn mlp(&self, name: &str) -> Mlp {
        Mlp {
            w1: self.get(&format!("{name}.w1")).clone(),
            b1: self.get(&format!("{name}.b1")).clone(),
            w2: self.get(&format!("{name}.w2")).clone(),
            b2: self.get(&format!("{name}.b2")).clone(),
        }
    }
}

/// Parameter shapes of a model for `users` users and these item features.
fn shapes(config: &TowerConfig, users: usize, f: &ItemFeatures) -> Vec<(String, Vec<usize>)> {
    let c = config;
    let mut out = vec![
        ("item_id".to_string(), vec![f.items(), c.id_dim]),
        ("user_id".to_string(), vec![users, c.id_dim]),
        (
            "category".to_string(),
            vec![f.categories + 1, c.category_dim],
        ),
        ("price".to_string(), vec![f.buckets + 1, c.price_dim]),
    ];
    let inputs = [
        ("item", c.id_dim + DIM + c.category_dim + c.price_dim),
        ("user", 2 * c.id_dim + 2 * DIM),
        ("tag", DIM),
    ];
    for (name, input) in inputs {
        out.push((format!("{name}.w1"), vec![c.hidden, input]));
        out.push((format!("{name}.b1"), vec![c.hidden]));
        out.push((format!("{name}.w2"), vec![c.dim, c.hidden]));
        out.push((format!("{name}.b2"), vec![c.dim]));
    }
    out
}

/// Seeded initial values: embeddings uniform in ±0.1, weights Glorot-uniform, biases 0.
fn init(config: &TowerConfig, users: usize, f: &ItemFeatures) -> candle_core::Result<Params> {
    let mut rng = SplitMix64::new(config.seed);
    let mut vars = Vec::new();
    for (name, shape) in shapes(config, users, f) {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if name.ends_with(".b1") || name.ends_with(".b2") {
            vec![0.0; n]
        } else if shape.len() == 2 && name.contains(".w") {
            let a = (6.0 / (shape[0] + shape[1]) as f32).sqrt();
            (0..n).map(|_| rng.symmetric(a)).collect()
        } else {
            (0..n).map(|_| rng.symmetric(0.1)).collect()
        };
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
        vars.push((name, Var::from_tensor(&t)?));
    }
    Ok(Params { vars })
}

/// The towers with their fixed inputs.
struct Towers {
    params: Params,
    item_mlp: Mlp,
    user_mlp: Mlp,
    tag_mlp: Mlp,
    titles: Tensor,
    item_category: Tensor,
    item_price: Tensor,
}

impl Towers {
    fn new(params: Params, f: &ItemFeatures) -> candle_core::Result<Self> {
        let dev = Device::Cpu;
        let flat: Vec<f32> = f.titles.iter().flatten().copied().collect();
        Ok(Self {
            item_mlp: params.mlp("item"),
            user_mlp: params.mlp("user"),
            tag_mlp: params.mlp("tag"),
            params,
            titles: Tensor::from_vec(flat, (f.items(), DIM), &dev)?,
            item_category: Tensor::new(f.category.as_slice(), &dev)?,
            item_price: Tensor::new(f.price_bucket.as_slice(), &dev)?,
        })
    }

    /// Unit vectors of items `ixs` (u32, `[B]`).
    fn items(&self, ixs: &Tensor) -> candle_core::Result<Tensor> {
        let p = &self.params;
        let id = p.get("item_id").index_select(ixs, 0)?;
        let title = self.titles.index_select(ixs, 0)?;
        let cat = p
            .get("category")
            .index_select(&self.item_category.index_select(ixs, 0)?, 0)?;
        let price = p
            .get("price")
            .index_select(&self.item_price.index_select(ixs, 0)?, 0)?;
        unit(
            &self
                .item_mlp
                .forward(&Tensor::cat(&[&id, &title, &cat, &price], 1)?)?,
        )
    }

    /// Unit vectors of users from their batch inputs.
    fn users(&self, batch: &UserBatch) -> candle_core::Result<Tensor> {
        let p = &self.params;
        let id = match &batch.ids {
            Some(ids) => p.get("user_id").index_select(ids, 0)?,
            None => Tensor::zeros(
                (batch.rows, p.get("user_id").dim(1)?),
                DType::F32,
                &Device::Cpu,
            )?,
        };
        let pooled_id = batch.history.matmul(p.get("item_id"))?;
        let x = Tensor::cat(&[&id, &pooled_id, &batch.titles, &batch.returned], 1)?;
        unit(&self.user_mlp.forward(&x)?)
    }

    /// Unit vectors of tags from their text embeddings (`[B, DIM]`).
    fn tags(&self, text: &Tensor) -> candle_core::Result<Tensor> {
        unit(&self.tag_mlp.forward(text)?)
    }
}

/// Rows scaled to unit length.
fn unit(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

/// The user tower's input for a batch of users.
struct UserBatch {
    rows: usize,
    /// Known users' positions (`None`: users the model was not trained on).
    ids: Option<Tensor>,
    /// `[B, items]`: 1/n for each of the n items a user bought (minus a held-out one).
    history: Tensor,
    /// `[B, DIM]`: mean title embedding of those items.
    titles: Tensor,
    /// `[B, DIM]`: mean title embedding of the returned items.
    returned: Tensor,
}

impl UserBatch {
    /// `rows`: (user position if known, the user's items, an item to leave out).
    fn new(
        rows: &[(Option<u32>, &UserItems, Option<ItemIx>)],
        f: &ItemFeatures,
    ) -> candle_core::Result<Self> {
        let dev = Device::Cpu;
        let n_items = f.items();
        let mut history = vec![0f32; rows.len() * n_items];
        let mut titles = vec![0f32; rows.len() * DIM];
        let mut returned = vec![0f32; rows.len() * DIM];
        for (r, (_, items, leave_out)) in rows.iter().enumerate() {
            let kept: Vec<ItemIx> = items
                .bought
                .iter()
                .copied()
                .filter(|&i| Some(i) != *leave_out)
                .collect();
            let rows_history = &mut history[r * n_items..(r + 1) * n_items];
            for &i in &kept {
                rows_history[i as usize] = 1.0 / kept.len() as f32;
            }
            mean_title_into(&kept, f, &mut titles[r * DIM..(r + 1) * DIM]);
            mean_title_into(&items.returned, f, &mut returned[r * DIM..(r + 1) * DIM]);
        }
        let ids = if rows.iter().all(|r| r.0.is_some()) {
            let ids: Vec<u32> = rows.iter().map(|r| r.0.expect("checked")).collect();
            Some(Tensor::new(ids.as_slice(), &dev)?)
        } else {
            None
        };
        Ok(Self {
            rows: rows.len(),
            ids,
            history: Tensor::from_vec(history, (rows.len(), n_items), &dev)?,
            titles: Tensor::from_vec(titles, (rows.len(), DIM), &dev)?,
            returned: Tensor::from_vec(returned, (rows.len(), DIM), &dev)?,
        })
    }
}

/// Adds the mean title vector of `items` to `titles` (left as is when `items` is empty).
fn mean_title_into(items: &[ItemIx], f: &ItemFeatures, titles: &mut [f32]) {
    let w = 1.0 / items.len() as f32;
    for &i in items {
        for (t, x) in titles.iter_mut().zip(&f.titles[i as usize]) {
            *t += w * x;
        }
    }
}

/// What `model.json` holds next to the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMeta {
    pub config: TowerConfig,
    /// Trained on events strictly before this date (`None`: all events).
    pub until: Option<String>,
    pub store_fingerprint: String,
    pub items: usize,
    pub categories: usize,
    /// The users of the user-id embedding, in row order.
    pub users: Vec<String>,
    pub losses: Vec<EpochLoss>,
    pub train_seconds: f64,
}

/// A trained model: the towers, and the item and user vectors it serves.
pub struct TowerModel {
    pub meta: ModelMeta,
    towers: Towers,
    /// `[items][dim]`, catalog order.
    pub item_vectors: Vec<Vec<f32>>,
    /// `[users][dim]`, in `meta.users` order (each from the user's whole training history).
    pub user_vectors: Vec<Vec<f32>>,
}

impl std::fmt::Debug for TowerModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TowerModel")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

const WEIGHTS_FILE: &str = "towers.safetensors";
const VECTORS_FILE: &str = "vectors.safetensors";
const META_FILE: &str = "model.json";

impl TowerModel {
    /// Directory of the model in a data home.
    pub fn dir_in(home: &Path) -> PathBuf {
        home.join("model")
    }

    fn from_towers(
        meta: ModelMeta,
        towers: Towers,
        train: &Interactions,
        f: &ItemFeatures,
    ) -> Result<Self, TowerError> {
        let mut model = Self {
            meta,
            towers,
            item_vectors: Vec::new(),
            user_vectors: Vec::new(),
        };
        let all: Vec<u32> = (0..f.items() as u32).collect();
        for chunk in all.chunks(1024) {
            let ixs = Tensor::new(chunk, &Device::Cpu)?;
            model
                .item_vectors
                .extend(model.towers.items(&ixs)?.to_vec2::<f32>()?);
        }
        let rows: Vec<(Option<u32>, &UserItems, Option<ItemIx>)> = train
            .users
            .iter()
            .enumerate()
            .map(|(u, items)| (Some(u as u32), items, None))
            .collect();
        for chunk in rows.chunks(256) {
            let batch = UserBatch::new(chunk, f)?;
            model
                .user_vectors
                .extend(model.towers.users(&batch)?.to_vec2::<f32>()?);
        }
        Ok(model)
    }

    /// The vector of a user who may not have been trained on (id part zero then).
    pub fn user_vector(&self, items: &UserItems, f: &ItemFeatures) -> Result<Vec<f32>, TowerError> {
        if let Ok(pos) = self
            .meta
            .users
            .binary_search_by(|u| u.as_str().cmp(&items.user))
        {
            return Ok(self.user_vectors[pos].clone());
        }
        let batch = UserBatch::new(&[(None, items, None)], f)?;
        Ok(self.towers.users(&batch)?.to_vec2::<f32>()?.remove(0))
    }

    /// Tag-tower vectors of tags, from their text embeddings.
    pub fn tag_vectors(&self, texts: &[[f32; DIM]]) -> Result<Vec<Vec<f32>>, TowerError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let flat: Vec<f32> = texts.iter().flatten().copied().collect();
        let t = Tensor::from_vec(flat, (texts.len(), DIM), &Device::Cpu)?;
        Ok(self.towers.tags(&t)?.to_vec2::<f32>()?)
    }

    /// A tag query: h = β·h_user + (1−β)·h_tag, unit length.
    pub fn query(&self, user: &[f32], tag: &[f32]) -> Vec<f32> {
        let beta = self.meta.config.beta as f32;
        let mut h: Vec<f32> = user
            .iter()
            .zip(tag)
            .map(|(u, t)| beta * u + (1.0 - beta) * t)
            .collect();
        let norm = h.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        h.iter_mut().for_each(|x| *x /= norm);
        h
    }

    /// Writes the weights, the served vectors and `model.json` under `dir` (each file to a
    /// temp name, then renamed).
    pub fn save(&self, dir: &Path) -> Result<(), TowerError> {
        let io = |path: &Path, e: &dyn std::fmt::Display| TowerError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        let weights: HashMap<String, Tensor> = self
            .towers
            .params
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let vectors = HashMap::from([
            ("items".to_string(), matrix(&self.item_vectors)?),
            ("users".to_string(), matrix(&self.user_vectors)?),
        ]);
        for (file, tensors) in [(WEIGHTS_FILE, weights), (VECTORS_FILE, vectors)] {
            let path = dir.join(file);
            let tmp = dir.join(format!("{file}.tmp"));
            candle_core::safetensors::save(&tensors, &tmp).map_err(|e| io(&tmp, &e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, &e))?;
        }
        let path = dir.join(META_FILE);
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(&self.meta).expect("serialisable meta");
        std::fs::write(&tmp, json).map_err(|e| io(&tmp, &e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, &e))?;
        Ok(())
    }

    /// Reads a model written by [`TowerModel::save`]; `features` must be those of the
    /// catalog it was trained on.
    pub fn load(dir: &Path, features: &ItemFeatures) -> Result<Self, TowerError> {
        let file_err = |path: &Path, e: &dyn std::fmt::Display| TowerError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path)
            .map_err(|e| file_err(&meta_path, &format!("{e} (run `recgpt train` first)")))?;
        let meta: ModelMeta = serde_json::from_str(&text).map_err(|e| file_err(&meta_path, &e))?;
        if meta.items != features.items() || meta.categories != features.categories {
            return Err(file_err(
                &meta_path,
                &"trained on another catalog or other categories; run `recgpt train` again",
            ));
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let mut weights = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| file_err(&weights_path, &e))?;
        let mut vars = Vec::new();
        for (name, shape) in shapes(&meta.config, meta.users.len(), features) {
            let t = weights
                .remove(&name)
                .ok_or_else(|| file_err(&weights_path, &format!("no tensor {name}")))?;
            if t.dims() != shape.as_slice() {
                return Err(file_err(
                    &weights_path,
                    &format!("{name}: shape {:?}", t.dims()),
                ));
            }
            vars.push((name, Var::from_tensor(&t)?));
        }
        let vectors_path = dir.join(VECTORS_FILE);
        let vectors = candle_core::safetensors::load(&vectors_path, &Device::Cpu)
            .map_err(|e| file_err(&vectors_path, &e))?;
        let rows = |name: &str| -> Result<Vec<Vec<f32>>, TowerError> {
            let t = vectors
                .get(name)
                .ok_or_else(|| file_err(&vectors_path, &format!("no tensor {name}")))?;
            Ok(t.to_vec2::<f32>()?)
        };
        Ok(Self {
            item_vectors: rows("items")?,
            user_vectors: rows("users")?,
            towers: Towers::new(Params { vars }, features)?,
            meta,
        })
    }
}

fn matrix(rows: &[Vec<f32>]) -> candle_core::Result<Tensor> {
    let cols = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), cols), &Device::Cpu)
}
