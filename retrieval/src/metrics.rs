//! Ranking metrics with binary relevance, and top-K selection.

use std::collections::HashSet;

use recgpt_data::ItemIx;

/// The `k` best items by score (ties: lower index first), best first, skipping `exclude`.
pub fn top_k(scores: &[f32], k: usize, exclude: &HashSet<ItemIx>) -> Vec<ItemIx> {
    let mut ixs: Vec<ItemIx> = (0..scores.len() as ItemIx)
        .filter(|i| !exclude.contains(i))
        .collect();
    let better = |a: &ItemIx, b: &ItemIx| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then(a.cmp(b))
    };
    if ixs.len() > k {
        ixs.select_nth_unstable_by(k, better);
        ixs.truncate(k);
    }
    ixs.sort_by(better);
    ixs
}

/// Share of the relevant items found in `top`.
pub fn recall(top: &[ItemIx], relevant: &HashSet<ItemIx>) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    hits(top, relevant) as f64 / relevant.len() as f64
}

/// Normalised discounted cumulative gain: DCG of `top` over the DCG of an ideal list
/// (min(K, relevant) hits first).
pub fn ndcg(top: &[ItemIx], relevant: &HashSet<ItemIx>) -> f64 {
    let gain = |rank: usize| 1.0 / (rank as f64 + 2.0).log2();
    let dcg: f64 = top
        .iter()
        .enumerate()
        .filter(|(_, i)| relevant.contains(i))
        .map(|(r, _)| gain(r))
        // (an empty f64 sum is -0.0, which would print as "-0.000")
        .fold(0.0, |a, g| a + g);
    let ideal: f64 = (0..top.len().min(relevant.len())).map(gain).sum();
    if ideal == 0.0 {
        0.0
    } else {
        dcg / ideal
    }
}

/// 1 when `top` holds at least one relevant item.
pub fn hit(top: &[ItemIx], relevant: &HashSet<ItemIx>) -> f64 {
    f64::from(u8::from(hits(top, relevant) > 0))
}

fn hits(top: &[ItemIx], relevant: &HashSet<ItemIx>) -> usize {
    top.iter().filter(|i| relevant.contains(i)).count()
}

/// Shannon entropy (bits) of the category distribution of a list.
pub fn category_entropy(categories: &[u32]) -> f64 {
    if categories.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::HashMap::new();
    for c in categories {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = categories.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// A difference of means with its paired bootstrap 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// mean(a) − mean(b).
    pub diff: f64,
    pub low: f64,
    pub high: f64,
}

/// The mean of `xs`, 0 for none. Summed from +0: an empty f64 sum is −0.0, which prints as
/// "-0.000".
pub fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = xs
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    sum / n.max(1) as f64
}

/// The paired bootstrap of mean(a) − mean(b) over the same users (`a[u]`, `b[u]` are user
/// u's figures): `resamples` draws of the users with replacement, seeded, and the 2.5th and
/// 97.5th percentiles of the drawn differences.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Interval {
    assert_eq!(a.len(), b.len(), "paired figures");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    let mean = |xs: &mut dyn Iterator<Item = f64>| xs.sum::<f64>() / n.max(1) as f64;
    let diff = mean(&mut d.iter().copied());
    if n == 0 || resamples == 0 {
        return Interval {
            diff,
            low: diff,
            high: diff,
        };
    }
    let mut rng = crate::rng::SplitMix64::new(seed);
    let mut draws: Vec<f64> = (0..resamples)
        .map(|_| mean(&mut (0..n).map(|_| d[rng.below(n)])))
        .collect();
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Interval {
        diff,
        low: at(0.025),
        high: at(0.975),
    }
}

/// A proportion `k / n` with its Wilson score 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    pub k: usize,
    pub n: usize,
    /// k / n (0 for none).
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Rate {
    /// `k` of `n` with the Wilson score interval (z = 1.96), which stays inside [0, 1] and
    /// is not empty at 0 or n successes, unlike the normal approximation.
    pub fn wilson(k: usize, n: usize) -> Self {
        assert!(k <= n, "{k} of {n}");
        if n == 0 {
            return Self {
                k,
                n,
                rate: 0.0,
                low: 0.0,
                high: 1.0,
            };
        }
        let z = 1.96_f64;
        let (kf, nf) = (k as f64, n as f64);
        let p = kf / nf;
        let denominator = 1.0 + z * z / nf;
        let centre = (p + z * z / (2.0 * nf)) / denominator;
        let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denominator;
        Self {
            k,
            n,
            rate: p,
            low: (centre - half).max(0.0),
            high: (centre + half).min(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[ItemIx]) -> HashSet<ItemIx> {
        xs.iter().copied().collect()
    }

    #[test]
    fn wilson_intervals_by_hand() {
        // 8 of 10: the textbook interval [0.490, 0.943]
        let r = Rate::wilson(8, 10);
        assert_eq!(r.rate, 0.8);
        assert!(
            (r.low - 0.4902).abs() < 1e-3 && (r.high - 0.9433).abs() < 1e-3,
            "{r:?}"
        );
        let none = Rate::wilson(0, 20);
        assert!(none.low == 0.0 && none.high > 0.1, "{none:?}");
        let all = Rate::wilson(20, 20);
        assert!(all.high == 1.0 && all.low < 0.9, "{all:?}");
        assert_eq!(Rate::wilson(0, 0).high, 1.0);
    }

    #[test]
    fn metrics_by_hand() {
        let top = [4, 2, 9];
        let rel = set(&[2, 7]);
        assert_eq!(recall(&top, &rel), 0.5);
        assert_eq!(hit(&top, &rel), 1.0);
        // one hit at rank 2: (1/log2 3) / (1/log2 2 + 1/log2 3)
        let want = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg(&top, &rel) - want).abs() < 1e-12);
        assert_eq!(ndcg(&[2, 7], &rel), 1.0);
        assert_eq!(hit(&[1], &rel), 0.0);
        // no hit is +0, not -0 (which prints as "-0.000")
        assert!(ndcg(&[1], &rel).is_sign_positive());
        assert_eq!(mean([1.0, 2.0, 6.0]), 3.0);
        assert!(mean([]).is_sign_positive() && mean([]) == 0.0);
        assert_eq!(recall(&[1], &set(&[])), 0.0);
    }

    #[test]
    fn top_k_orders_breaks_ties_and_excludes() {
        let scores = [0.1, 0.9, 0.5, 0.9, -1.0];
        assert_eq!(top_k(&scores, 3, &set(&[])), [1, 3, 2]);
        assert_eq!(top_k(&scores, 2, &set(&[1])), [3, 2]);
        assert_eq!(top_k(&scores, 10, &set(&[])).len(), 5);
    }

    #[test]
    fn entropy_in_bits() {
        assert_eq!(category_entropy(&[1, 1, 1]), 0.0);
        assert!((category_entropy(&[1, 2]) - 1.0).abs() < 1e-12);
        assert!((category_entropy(&[1, 2, 3, 4]) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn paired_bootstrap_brackets_the_difference_and_is_seeded() {
        let a: Vec<f64> = (0..200).map(|u| f64::from(u % 3 == 0)).collect();
        let b: Vec<f64> = (0..200).map(|u| f64::from(u % 5 == 0)).collect();
        let i = paired_bootstrap(&a, &b, 1000, 7);
        assert!((i.diff - (67.0 - 40.0) / 200.0).abs() < 1e-12, "{i:?}");
        assert!(i.low < i.diff && i.diff < i.high, "{i:?}");
        assert!(i.low > 0.0, "a clear difference excludes zero: {i:?}");
        assert_eq!(paired_bootstrap(&a, &b, 1000, 7), i);
        let same = paired_bootstrap(&a, &a, 1000, 7);
        assert_eq!((same.low, same.diff, same.high), (0.0, 0.0, 0.0));
    }
}
