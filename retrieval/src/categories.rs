//! Item categories. RecGPT needs them (the category loss, a limit on tags per category,
//! category diversity, tag HR@30); Online Retail has none, so they are derived from titles:
//! spherical k-means over the items' title embeddings (k-means++ seeding from a fixed seed,
//! so the same catalog and embedder give the same categories), each category named by its
//! most distinctive title words (share of the category's titles holding the word × the word's
//! inverse document frequency over the catalog). A data set with real categories keeps them
//! (the first level of each item's category path); their centroids are the mean embeddings of
//! their items. Either way a text (a tag) is placed in the category of its nearest centroid.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use recgpt_data::{Catalog, DataError, Item, Store};
use serde::{Deserialize, Serialize};

use crate::embed::{cosine, DIM};
use crate::rng::SplitMix64;

const FILE: &str = "categories.json";

/// Configuration of derived categories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CategoriesConfig {
    /// Number of derived categories.
    pub k: usize,
    pub seed: u64,
    /// k-means iterations at most (it stops earlier when no item moves).
    pub iterations: usize,
}

impl Default for CategoriesConfig {
    fn default() -> Self {
        Self {
            k: 40,
            seed: 7,
            iterations: 50,
        }
    }
}

/// One category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub name: String,
    pub items: usize,
    /// Its most distinctive title words, best first.
    pub words: Vec<String>,
}

/// The categories of a catalog, with the centroids that place new texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Categories {
    /// `derived (k-means k=…, seed …)` or `dataset`.
    pub method: String,
    /// The fingerprint of the store whose catalog they describe.
    pub store_fingerprint: String,
    pub categories: Vec<Category>,
    /// Item id → category index.
    pub items: BTreeMap<String, usize>,
    pub centroids: Vec<Vec<f32>>,
}

impl Categories {
    /// Categories of `store`'s catalog, whose title embeddings are `vectors` (catalog order).
    pub fn build(store: &Store, vectors: &[[f32; DIM]], config: &CategoriesConfig) -> Self {
        Self::of_catalog(
            store.catalog(),
            &store.manifest().fingerprint,
            vectors,
            config,
        )
    }

    fn of_catalog(
        catalog: &Catalog,
        store_fingerprint: &str,
        vectors: &[[f32; DIM]],
        config: &CategoriesConfig,
    ) -> Self {
        let items = catalog.items();
        assert_eq!(items.len(), vectors.len(), "one vector per item");
        let real = items.iter().filter(|i| !i.category.is_empty()).count();
        // the data set's own names (first level of the path), sorted; None: derive them
        let (method, assignment, k, names) = if real * 2 > items.len() {
            fn of(i: &Item) -> &str {
                i.category.first().map_or("(none)", String::as_str)
            }
            let mut names: Vec<&str> = items.iter().map(of).collect();
            names.sort_unstable();
            names.dedup();
            let assignment = items
                .iter()
                .map(|i| names.binary_search(&of(i)).expect("listed above"))
                .collect();
            ("dataset".to_string(), assignment, names.len(), Some(names))
        } else {
            let k = config.k.clamp(1, items.len().max(1));
            (
                format!(
                    "derived (spherical k-means over title embeddings, k={k}, seed {})",
                    config.seed
                ),
                kmeans(vectors, k, config.seed, config.iterations),
                k,
                None,
            )
        };
        let centroids = centroids(vectors, &assignment, k);
        let titles: Vec<&str> = items.iter().map(|i| i.title.as_str()).collect();
        let mut categories = describe(&titles, &assignment, k);
        for (name, c) in names.into_iter().flatten().zip(&mut categories) {
            c.name = name.to_string();
        }
        Self {
            method,
            store_fingerprint: store_fingerprint.to_string(),
            categories,
            items: items
                .iter()
                .zip(&assignment)
                .map(|(i, &c)| (i.id.clone(), c))
                .collect(),
            centroids: centroids.into_iter().map(|c| c.to_vec()).collect(),
        }
    }

    /// Path of the categories file in a data home.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join(FILE)
    }

    /// Writes `categories.json` in `home` (temp file, then rename).
    pub fn save(&self, home: &Path) -> Result<PathBuf, DataError> {
        let path = Self::path_in(home);
        let tmp = home.join(format!("{FILE}.tmp"));
        let json = serde_json::to_vec(self).expect("serialisable categories");
        std::fs::write(&tmp, json).map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))?;
        Ok(path)
    }

    /// Reads `categories.json` from `home`; an error if it is missing or was built for another
    /// store (`recgpt categories` builds it).
    pub fn load(home: &Path, store: &Store) -> Result<Self, DataError> {
        let path = Self::path_in(home);
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        let c: Self = serde_json::from_str(&text).map_err(|e| DataError::store(&path, e))?;
        if c.store_fingerprint != store.manifest().fingerprint {
            return Err(DataError::store(
                &path,
                "built for another import of the data; run `recgpt categories` again",
            ));
        }
        Ok(c)
    }

    /// The category of an item.
    pub fn of_item(&self, id: &str) -> Option<usize> {
        self.items.get(id).copied()
    }

    /// The category whose centroid is nearest to a text's embedding.
    pub fn nearest(&self, vector: &[f32; DIM]) -> usize {
        nearest(&self.centroids, vector)
    }

    pub fn name(&self, category: usize) -> &str {
        &self.categories[category].name
    }
}

fn nearest<C: AsRef<[f32]>>(centroids: &[C], v: &[f32]) -> usize {
    let mut best = (0, f32::MIN);
    for (i, c) in centroids.iter().enumerate() {
        let s = cosine(c.as_ref(), v);
        if s > best.1 {
            best = (i, s);
        }
    }
    best.0
}

/// Spherical k-means with k-means++ seeding; returns each vector's cluster.
pub fn kmeans(vectors: &[[f32; DIM]], k: usize, seed: u64, iterations: usize) -> Vec<usize> {
    let n = vectors.len();
    if n == 0 {
        return Vec::new();
    }
    let mut rng = SplitMix64::new(seed);
    // k-means++: each next centre drawn with probability ∝ squared distance to the nearest one
    let mut centres: Vec<[f32; DIM]> = vec![vectors[rng.below(n)]];
    let dist = |a: &[f32; DIM], b: &[f32; DIM]| (2.0 - 2.0 * cosine(a, b)).max(0.0) as f64;
    let mut d2: Vec<f64> = vectors.iter().map(|v| dist(v, &centres[0])).collect();
    while centres.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total <= 0.0 {
            rng.below(n)
        } else {
            let mut target = rng.unit() * total;
            let mut pick = n - 1;
            for (i, d) in d2.iter().enumerate() {
                if target < *d {
                    pick = i;
                    break;
                }
                target -= d;
            }
            pick
        };
        centres.push(vectors[next]);
        for (d, v) in d2.iter_mut().zip(vectors) {
            *d = d.min(dist(v, &vectors[next]));
        }
    }
    let mut assignment = vec![usize::MAX; n];
    for _ in 0..iterations {
        let mut moved = 0;
        for (a, v) in assignment.iter_mut().zip(vectors) {
            let c = nearest(&centres, v);
            if *a != c {
                *a = c;
                moved += 1;
            }
        }
        if moved == 0 {
            break;
        }
        let mut fresh = centroids(vectors, &assignment, k);
        // an emptied cluster restarts at the vector farthest from its centre
        for (c, centre) in fresh.iter_mut().enumerate() {
            if assignment.iter().all(|&a| a != c) {
                let far = (0..n)
                    .min_by(|&i, &j| {
                        let si = cosine(&vectors[i], &centres[assignment[i]]);
                        let sj = cosine(&vectors[j], &centres[assignment[j]]);
                        si.total_cmp(&sj).then(i.cmp(&j))
                    })
                    .expect("n > 0");
                *centre = vectors[far];
                assignment[far] = c;
            }
        }
        centres = fresh;
    }
    assignment
}

/// Unit-length mean vector of each cluster.
fn centroids(vectors: &[[f32; DIM]], assignment: &[usize], k: usize) -> Vec<[f32; DIM]> {
    let mut sums = vec![[0.0f32; DIM]; k];
    for (v, &a) in vectors.iter().zip(assignment) {
        for (s, x) in sums[a].iter_mut().zip(v) {
            *s += x;
        }
    }
    for s in &mut sums {
        let norm = s.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            s.iter_mut().for_each(|x| *x /= norm);
        }
    }
    sums
}

/// Words that say nothing about a product kind.
const NAME_STOP: &[&str] = &[
    "and", "the", "with", "for", "set", "of", "pack", "box", "small", "large", "mini", "jumbo",
    "assorted", "design", "colour", "colours", "col", "red", "pink", "blue", "green", "white",
    "black", "ivory", "cream", "gold", "silver", "purple", "yellow", "orange",
];

fn title_words(title: &str) -> Vec<String> {
    let mut words: Vec<String> = title
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| !NAME_STOP.contains(&w.as_str()))
        .collect();
    words.sort_unstable();
    words.dedup();
    words
}

/// Each cluster's size and most distinctive words; its name is its two best words.
fn describe(titles: &[&str], assignment: &[usize], k: usize) -> Vec<Category> {
    let words: Vec<Vec<String>> = titles.iter().map(|t| title_words(t)).collect();
    let mut df: HashMap<&str, usize> = HashMap::new();
    for ws in &words {
        for w in ws {
            *df.entry(w.as_str()).or_default() += 1;
        }
    }
    let n = titles.len() as f64;
    let mut out = Vec::with_capacity(k);
    for c in 0..k {
        let members: Vec<usize> = (0..titles.len()).filter(|&i| assignment[i] == c).collect();
        let mut tf: HashMap<&str, usize> = HashMap::new();
        for &i in &members {
            for w in &words[i] {
                *tf.entry(w.as_str()).or_default() += 1;
            }
        }
        let size = members.len().max(1) as f64;
        let mut scored: Vec<(f64, &str)> = tf
            .into_iter()
            .map(|(w, t)| ((t as f64 / size) * (n / df[w] as f64).ln(), w))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        let top: Vec<String> = scored.iter().take(5).map(|(_, w)| w.to_string()).collect();
        out.push(Category {
            name: top.iter().take(2).cloned().collect::<Vec<_>>().join(" / "),
            items: members.len(),
            words: top,
        });
    }
    // names must tell categories apart: a repeated name takes the next distinctive word
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in &mut out {
        let count = seen.entry(c.name.clone()).or_default();
        *count += 1;
        if *count > 1 {
            if let Some(extra) = c.words.get(2) {
                c.name = format!("{} / {extra}", c.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> [f32; DIM] {
        let mut out = [0.0; DIM];
        out[..v.len()].copy_from_slice(v);
        let n = out.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.iter_mut().for_each(|x| *x /= n);
        out
    }

    #[test]
    fn kmeans_separates_clear_groups_and_is_deterministic() {
        let mut vectors = Vec::new();
        for i in 0..30 {
            let e = (i % 5) as f32 * 0.01;
            vectors.push(unit(&[1.0, e, 0.0]));
            vectors.push(unit(&[0.0, 1.0, e]));
            vectors.push(unit(&[e, 0.0, 1.0]));
        }
        let a = kmeans(&vectors, 3, 1, 50);
        assert_eq!(a, kmeans(&vectors, 3, 1, 50));
        for i in 0..30 {
            for j in 0..3 {
                assert_eq!(a[3 * i + j], a[j], "vector {} joins its group", 3 * i + j);
            }
        }
        let distinct: std::collections::HashSet<_> = a[..3].iter().collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn a_data_set_keeps_its_own_categories() {
        let item = |id: &str, title: &str, category: &str| Item {
            id: id.into(),
            title: title.into(),
            category: vec![category.into(), "Sub".into()],
            brand: None,
            attributes: Default::default(),
            price: None,
        };
        let catalog = Catalog::new(vec![
            item("1", "WHITE METAL LANTERN", "Lighting"),
            item("2", "MOROCCAN LANTERN", "Lighting"),
            item("3", "CAKE CASES", "Baking"),
        ]);
        let vectors = [unit(&[1.0, 0.1]), unit(&[1.0, 0.2]), unit(&[0.0, 1.0])];
        let c = Categories::of_catalog(&catalog, "f", &vectors, &CategoriesConfig::default());
        assert_eq!(c.method, "dataset");
        let names: Vec<&str> = c.categories.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["Baking", "Lighting"]);
        assert_eq!(
            (c.of_item("1"), c.of_item("2"), c.of_item("3")),
            (Some(1), Some(1), Some(0))
        );
        assert_eq!(c.nearest(&unit(&[0.9, 0.3])), 1);
        assert_eq!((c.categories[0].items, c.categories[1].items), (1, 2));
    }

    #[test]
    fn names_use_distinctive_words() {
        let titles = [
            "RED RETROSPOT CAKE CASES",
            "PACK OF 72 SKULL CAKE CASES",
            "CAKE CASES VINTAGE CHRISTMAS",
            "WHITE METAL LANTERN",
            "ANTIQUE SILVER T-LIGHT LANTERN",
            "MOROCCAN LANTERN",
        ];
        let c = describe(&titles, &[0, 0, 0, 1, 1, 1], 2);
        assert_eq!(c[0].name, "cake / cases");
        assert_eq!(c[1].words[0], "lantern");
        assert_eq!((c[0].items, c[1].items), (3, 3));
    }
}
