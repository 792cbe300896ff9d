//! Collaborative-filtering baselines over the binary user × item purchase matrix X
//! (distinct purchases before the split). Each scores every catalog item for a user.
//!
//! - MostPopular: the number of users who bought the item.
//! - ItemKNN: Σ over the user's items i of cos(i, j), the cosine of the item columns of X
//!   (an item is not its own neighbour).
//! - SparseItemKNN: the same sum over each item's `m` nearest neighbours only, built from
//!   inverted lists without any `items × items` matrix: Σ_u |x_u|² time and `items · m`
//!   memory, so it fits catalogs (100k items and more) where the dense ones cannot.
//! - EASE (Steck 2019): B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹; score = x_u·B. The
//!   inverse comes from faer's Cholesky factorisation, in f64.

use faer::linalg::solvers::DenseSolveCore;
use recgpt_data::ItemIx;

use crate::interactions::{Interactions, UserItems};

/// Scores every item of the catalog for a user.
pub trait Scorer {
    fn name(&self) -> &str;
    /// Writes one score per catalog item into `out`.
    fn score(&self, user: &UserItems, out: &mut [f32]);
}

/// Item popularity.
#[derive(Debug)]
pub struct MostPopular {
    counts: Vec<f32>,
}

impl MostPopular {
    pub fn fit(train: &Interactions, items: usize) -> Self {
        Self {
            counts: train
                .item_counts(items)
                .into_iter()
                .map(|c| c as f32)
                .collect(),
        }
    }
}

impl Scorer for MostPopular {
    fn name(&self) -> &str {
        "MostPopular"
    }

    fn score(&self, _: &UserItems, out: &mut [f32]) {
        out.copy_from_slice(&self.counts);
    }
}

/// XᵀX as a dense row-major `items × items` matrix.
fn gram(train: &Interactions, items: usize) -> Vec<f32> {
    let mut g = vec![0f32; items * items];
    for u in &train.users {
        for &i in &u.bought {
            let row = &mut g[i as usize * items..(i as usize + 1) * items];
            for &j in &u.bought {
                row[j as usize] += 1.0;
            }
        }
    }
    g
}

/// Sums the rows of a dense `items × items` matrix for the user's items.
fn sum_rows(m: &[f32], items: usize, user: &UserItems, out: &mut [f32]) {
    out.fill(0.0);
    for &i in &user.bought {
        let row = &m[i as usize * items..(i as usize + 1) * items];
        for (o, x) in out.iter_mut().zip(row) {
            *o += x;
        }
    }
}

/// Item-item cosine neighbours.
#[derive(Debug)]
pub struct ItemKnn {
    items: usize,
    sim: Vec<f32>,
}

impl ItemKnn {
    pub fn fit(train: &Interactions, items: usize) -> Self {
        let mut sim = gram(train, items);
        let norms: Vec<f32> = (0..items).map(|i| sim[i * items + i].sqrt()).collect();
        for i in 0..items {
            for j in 0..items {
                let d = norms[i] * norms[j];
                let s = &mut sim[i * items + j];
                *s = if i == j || d == 0.0 { 0.0 } else { *s / d };
            }
        }
        Self { items, sim }
    }
}

impl Scorer for ItemKnn {
    fn name(&self) -> &str {
        "ItemKNN"
    }

    fn score(&self, user: &UserItems, out: &mut [f32]) {
        sum_rows(&self.sim, self.items, user, out);
    }
}

/// Item-item cosine neighbours, the `m` nearest of each item kept (ties to the lower item).
#[derive(Debug)]
pub struct SparseItemKnn {
    neighbours: Vec<Vec<(ItemIx, f32)>>,
}

impl SparseItemKnn {
    pub fn fit(train: &Interactions, items: usize, m: usize) -> Self {
        let mut users_of: Vec<Vec<u32>> = vec![Vec::new(); items];
        for (u, user) in train.users.iter().enumerate() {
            for &i in &user.bought {
                users_of[i as usize].push(u as u32);
            }
        }
        // |column i|² = the number of users who bought i
        let norm = |i: usize| (users_of[i].len() as f32).sqrt();
        let mut co = vec![0u32; items];
        let mut touched: Vec<ItemIx> = Vec::new();
        let neighbours = (0..items)
            .map(|i| {
                for &u in &users_of[i] {
                    for &j in &train.users[u as usize].bought {
                        if j as usize != i {
                            if co[j as usize] == 0 {
                                touched.push(j);
                            }
                            co[j as usize] += 1;
                        }
                    }
                }
                let mut row: Vec<(ItemIx, f32)> = touched
                    .drain(..)
                    .map(|j| {
                        let c = std::mem::take(&mut co[j as usize]) as f32;
                        (j, c / (norm(i) * norm(j as usize)))
                    })
                    .collect();
                let order =
                    |a: &(ItemIx, f32), b: &(ItemIx, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
                if row.len() > m {
                    row.select_nth_unstable_by(m, order);
                    row.truncate(m);
                }
                row.sort_unstable_by(order);
                row.shrink_to_fit();
                row
            })
            .collect();
        Self { neighbours }
    }

    /// Stored (item, cosine) pairs, the memory the model holds beside its row headers.
    pub fn pairs(&self) -> usize {
        self.neighbours.iter().map(Vec::len).sum()
    }
}

impl Scorer for SparseItemKnn {
    fn name(&self) -> &str {
        "SparseItemKNN"
    }

    fn score(&self, user: &UserItems, out: &mut [f32]) {
        out.fill(0.0);
        for &i in &user.bought {
            for &(j, s) in &self.neighbours[i as usize] {
                out[j as usize] += s;
            }
        }
    }
}

/// Embarrassingly shallow autoencoder.
#[derive(Debug)]
pub struct Ease {
    items: usize,
    b: Vec<f32>,
}

impl Ease {
    pub fn fit(train: &Interactions, items: usize, lambda: f64) -> Self {
        let g = gram(train, items);
        let a = faer::Mat::<f64>::from_fn(items, items, |i, j| {
            g[i * items + j] as f64 + if i == j { lambda } else { 0.0 }
        });
        let p = a
            .llt(faer::Side::Lower)
            .expect("XᵀX + λI is positive definite for λ > 0")
            .inverse();
        let mut b = vec![0f32; items * items];
        for i in 0..items {
            for j in 0..items {
                if i != j {
                    b[i * items + j] = (-p[(i, j)] / p[(j, j)]) as f32;
                }
            }
        }
        Self { items, b }
    }
}

impl Scorer for Ease {
    fn name(&self) -> &str {
        "EASE"
    }

    fn score(&self, user: &UserItems, out: &mut [f32]) {
        sum_rows(&self.b, self.items, user, out);
    }
}

/// Users as `UserItems` with only purchases, for tests.
#[cfg(test)]
pub(crate) fn users(rows: &[&[recgpt_data::ItemIx]]) -> Interactions {
    Interactions {
        users: rows
            .iter()
            .enumerate()
            .map(|(u, items)| UserItems {
                user: format!("u{u}"),
                bought: items.to_vec(),
                returned: Vec::new(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use recgpt_data::ItemIx;

    use super::*;

    fn scores(s: &dyn Scorer, user: &[ItemIx], items: usize) -> Vec<f32> {
        let mut out = vec![0.0; items];
        let u = UserItems {
            user: "x".into(),
            bought: user.to_vec(),
            returned: Vec::new(),
        };
        s.score(&u, &mut out);
        out
    }

    #[test]
    fn co_bought_items_score_above_unrelated_ones() {
        // items 0 and 1 always go together; 2 and 3 together; 4 is popular with everyone
        let train = users(&[&[0, 1, 4], &[0, 1, 4], &[2, 3, 4], &[2, 3, 4], &[0, 1]]);
        let pop = scores(&MostPopular::fit(&train, 5), &[], 5);
        assert_eq!(pop, [3.0, 3.0, 2.0, 2.0, 4.0]);
        for s in [
            &ItemKnn::fit(&train, 5) as &dyn Scorer,
            &Ease::fit(&train, 5, 0.5) as &dyn Scorer,
        ] {
            let x = scores(s, &[0], 5);
            assert!(x[1] > x[2] && x[1] > x[3], "{}: {x:?}", s.name());
            assert_eq!(x[0], 0.0, "{}: an item is not its own neighbour", s.name());
        }
    }

    #[test]
    fn sparse_item_knn_is_dense_item_knn_with_every_neighbour_kept() {
        // 40 users over 30 items, a fixed pseudo-random pattern
        let rows: Vec<Vec<ItemIx>> = (0..40u32)
            .map(|u| {
                (0..30u32)
                    .filter(|i| (u * 7 + i * 13) % 5 == 0 || (u + i) % 11 == 0)
                    .collect()
            })
            .collect();
        let refs: Vec<&[ItemIx]> = rows.iter().map(Vec::as_slice).collect();
        let train = users(&refs);
        let dense = ItemKnn::fit(&train, 30);
        let all = SparseItemKnn::fit(&train, 30, 30);
        let few = SparseItemKnn::fit(&train, 30, 3);
        assert!(few.pairs() <= 30 * 3 && few.pairs() < all.pairs());
        for user in [&[0u32, 5, 9][..], &[17], &[1, 2, 3, 4, 29]] {
            let (d, s) = (scores(&dense, user, 30), scores(&all, user, 30));
            for (a, b) in d.iter().zip(&s) {
                assert!((a - b).abs() < 1e-5, "{d:?} vs {s:?}");
            }
            // the kept neighbours are each item's most similar ones
            let kept = scores(&few, &user[..1], 30);
            let full = scores(&dense, &user[..1], 30);
            let best = full.iter().cloned().fold(0f32, f32::max);
            let top = kept.iter().cloned().fold(0f32, f32::max);
            assert!((best - top).abs() < 1e-6, "{kept:?} vs {full:?}");
            assert!(kept.iter().filter(|&&x| x > 0.0).count() <= 3);
        }
    }

    #[test]
    fn ease_solves_the_closed_form() {
        let train = users(&[&[0, 1], &[1, 2], &[0, 2], &[0, 1, 2]]);
        let lambda = 1.0;
        let e = Ease::fit(&train, 3, lambda);
        // G = [[3,2,2],[2,3,2],[2,2,3]] + I → A = [[4,2,2],[2,4,2],[2,2,4]];
        // A⁻¹ = (1/16)·[[6,−2,−2],[−2,6,−2],[−2,−2,6]] ⇒ B_ij = 2/6 off the diagonal.
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 0.0 } else { 1.0 / 3.0 };
                assert!(
                    (e.b[i * 3 + j] - want).abs() < 1e-6,
                    "B[{i}][{j}] = {}",
                    e.b[i * 3 + j]
                );
            }
        }
    }
}
