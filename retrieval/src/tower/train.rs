//! Training: sampled-softmax contrastive losses over in-batch negatives.
//!
//! Each step takes `batch` distinct (user, item) purchases, shuffled by the seed:
//! - L_col: user → bought item, against the batch's other items, logits corrected by
//!   −log q(item) (q: the item's share of all training purchases), the logQ correction for
//!   in-batch negatives being drawn by popularity. The user's pooled history leaves the
//!   target item out, so the tower learns to predict an item rather than to find it.
//! - L_tag: a tag of the bought item (derived from its title, as the report does) → item,
//!   against the batch's other items, logQ-corrected.
//! - L_cate: item → another item of its category, against the other rows' partners.
//!
//! A batch's other rows that share the positive (same item, same tag, same category) are
//! masked out of the negatives rather than punished as false negatives.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::loss::cross_entropy;
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use super::{
    init, ItemFeatures, ModelMeta, TowerConfig, TowerError, TowerModel, Towers, UserBatch,
};
use crate::embed::DIM;
use crate::interactions::{Interactions, UserItems};
use crate::rng::SplitMix64;
use crate::title_tags::ItemTags;

/// Mean losses of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLoss {
    pub epoch: usize,
    pub total: f32,
    pub col: f32,
    pub tag: f32,
    pub cate: f32,
    pub seconds: f64,
}

/// Reported after every step.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
}

/// Trains a model on `train`'s purchases. `tag_vectors[t]` is the text embedding of
/// `tags.texts[t]`. `until` and `store_fingerprint` are recorded in the model's metadata.
#[allow(clippy::too_many_arguments)]
pub fn train(
    config: &TowerConfig,
    train: &Interactions,
    features: &ItemFeatures,
    tags: &ItemTags,
    tag_vectors: &[[f32; DIM]],
    until: Option<String>,
    store_fingerprint: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<TowerModel, TowerError> {
    let started = Instant::now();
    let mut pairs = train.pairs();
    if pairs.len() < 2 {
        return Err(TowerError::Empty);
    }
    let params = init(config, train.users.len(), features)?;
    let vars = params.vars.iter().map(|(_, v)| v.clone()).collect();
    let towers = Towers::new(params, features)?;
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: config.weight_decay,
            ..Default::default()
        },
    )?;
    let batches = Batches::new(config, train, features, (tags, tag_vectors), &towers);
    let mut rng = SplitMix64::new(config.seed ^ 0x5eed);
    let batch = config.batch.max(2);
    let steps = pairs.len().div_ceil(batch);
    let mut losses = Vec::new();
    for epoch in 1..=config.epochs {
        let epoch_start = Instant::now();
        rng.shuffle(&mut pairs);
        let mut sums = [0f64; 4];
        let mut counted = 0usize;
        for (step, chunk) in pairs.chunks(batch).enumerate() {
            if chunk.len() < 2 {
                continue;
            }
            let [l_col, l_tag, l_cate] = batches.losses(chunk, &mut rng)?;
            let loss = (l_col.clone()
                + l_tag.affine(config.alpha, 0.0)?
                + l_cate.affine(1.0 - config.alpha, 0.0)?)?;
            opt.backward_step(&loss)?;
            let values = [&loss, &l_col, &l_tag, &l_cate].map(|t| t.to_scalar::<f32>());
            for (s, v) in sums.iter_mut().zip(values) {
                *s += v? as f64;
            }
            counted += 1;
            progress(Progress {
                epoch,
                epochs: config.epochs,
                step: step + 1,
                steps,
                loss: (sums[0] / counted as f64) as f32,
            });
        }
        let mean = |s: f64| (s / counted.max(1) as f64) as f32;
        losses.push(EpochLoss {
            epoch,
            total: mean(sums[0]),
            col: mean(sums[1]),
            tag: mean(sums[2]),
            cate: mean(sums[3]),
            seconds: epoch_start.elapsed().as_secs_f64(),
        });
    }
    let meta = ModelMeta {
        config: config.clone(),
        until,
        store_fingerprint: store_fingerprint.to_string(),
        items: features.items(),
        categories: features.categories,
        users: train.users.iter().map(|u| u.user.clone()).collect(),
        losses,
        train_seconds: started.elapsed().as_secs_f64(),
    };
    TowerModel::from_towers(meta, towers, train, features)
}

/// What every training step reads.
struct Batches<'a> {
    config: &'a TowerConfig,
    train: &'a Interactions,
    features: &'a ItemFeatures,
    tags: &'a ItemTags,
    tag_vectors: &'a [[f32; DIM]],
    towers: &'a Towers,
    /// −log q for every item (items nobody bought never appear in a batch).
    neg_log_q: Vec<f32>,
    /// Items of each category.
    by_category: Vec<Vec<u32>>,
}

impl<'a> Batches<'a> {
    fn new(
        config: &'a TowerConfig,
        train: &'a Interactions,
        features: &'a ItemFeatures,
        (tags, tag_vectors): (&'a ItemTags, &'a [[f32; DIM]]),
        towers: &'a Towers,
    ) -> Batches<'a> {
        let counts = train.item_counts(features.items());
        let total: f64 = counts.iter().map(|&c| c as f64).sum();
        let neg_log_q = counts
            .iter()
            .map(|&c| -((c.max(1) as f64 / total).ln()) as f32)
            .collect();
        let mut by_category: Vec<Vec<u32>> = vec![Vec::new(); features.categories + 1];
        for (i, &c) in features.category.iter().enumerate() {
            by_category[c as usize].push(i as u32);
        }
        Batches {
            config,
            train,
            features,
            tags,
            tag_vectors,
            towers,
            neg_log_q,
            by_category,
        }
    }

    /// L_col, L_tag and L_cate of one batch of (user, item) purchases; draws each item's
    /// category partner, then each item's tag, from `rng`.
    fn losses(
        &self,
        chunk: &[(u32, u32)],
        rng: &mut SplitMix64,
    ) -> Result<[Tensor; 3], TowerError> {
        let (features, towers) = (self.features, self.towers);
        let b = chunk.len();
        let items: Vec<u32> = chunk.iter().map(|&(_, i)| i).collect();
        let partners: Vec<u32> = items
            .iter()
            .map(|&i| {
                let group = &self.by_category[features.category[i as usize] as usize];
                group[rng.below(group.len())]
            })
            .collect();
        let tag_ids: Vec<u32> = items
            .iter()
            .map(|&i| {
                let of = &self.tags.of_item[i as usize];
                of[rng.below(of.len())]
            })
            .collect();
        let rows: Vec<(Option<u32>, &UserItems, Option<u32>)> = chunk
            .iter()
            .map(|&(u, i)| (Some(u), &self.train.users[u as usize], Some(i)))
            .collect();
        let users = towers.users(&UserBatch::new(&rows, features)?)?;
        let both: Vec<u32> = items.iter().chain(&partners).copied().collect();
        let item_vecs = towers.items(&Tensor::new(both.as_slice(), &Device::Cpu)?)?;
        let positives = item_vecs.narrow(0, 0, b)?;
        let partner_vecs = item_vecs.narrow(0, b, b)?;
        let tag_text: Vec<f32> = tag_ids
            .iter()
            .flat_map(|&t| self.tag_vectors[t as usize])
            .collect();
        let tag_vecs = towers.tags(&Tensor::from_vec(tag_text, (b, DIM), &Device::Cpu)?)?;
        let bias: Vec<f32> = items.iter().map(|&i| self.neg_log_q[i as usize]).collect();
        let bias = Tensor::from_vec(bias, (1, b), &Device::Cpu)?;
        let same_item = mask(b, |i, j| items[i] == items[j])?;
        let same_tag = mask(b, |i, j| items[i] == items[j] || tag_ids[i] == tag_ids[j])?;
        let same_cat = mask(b, |i, j| {
            features.category[items[i] as usize] == features.category[items[j] as usize]
        })?;
        let t = self.config.temperature;
        Ok([
            contrastive(&users, &positives, Some(&bias), &same_item, t)?,
            contrastive(&tag_vecs, &positives, Some(&bias), &same_tag, t)?,
            contrastive(&positives, &partner_vecs, None, &same_cat, t)?,
        ])
    }
}

/// `[b, b]` additive mask: −1e9 off the diagonal where `same(i, j)`, else 0.
fn mask(b: usize, same: impl Fn(usize, usize) -> bool) -> candle_core::Result<Tensor> {
    let mut m = vec![0f32; b * b];
    for i in 0..b {
        for j in 0..b {
            if i != j && same(i, j) {
                m[i * b + j] = -1e9;
            }
        }
    }
    Tensor::from_vec(m, (b, b), &Device::Cpu)
}

/// Cross-entropy of each anchor row against the candidates, the diagonal being the positive.
fn contrastive(
    anchors: &Tensor,
    candidates: &Tensor,
    column_bias: Option<&Tensor>,
    mask: &Tensor,
    temperature: f64,
) -> candle_core::Result<Tensor> {
    let b = anchors.dim(0)?;
    let mut logits = anchors
        .matmul(&candidates.t()?)?
        .affine(1.0 / temperature, 0.0)?;
    if let Some(bias) = column_bias {
        logits = logits.broadcast_add(bias)?;
    }
    let logits = (logits + mask)?;
    let targets = Tensor::arange(0u32, b as u32, &Device::Cpu)?;
    cross_entropy(&logits, &targets)
}
