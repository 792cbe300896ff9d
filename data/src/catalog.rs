use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Dense index of an item in a [`Catalog`] (position in item-id order).
pub type ItemIx = u32;

/// A catalog item: what can be recommended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub title: String,
    /// Category path, most general first (`["Home", "Lighting", "Lanterns"]`); empty when the
    /// data set has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

/// All items, indexed densely by [`ItemIx`] in ascending id order, so the same items always
/// get the same indexes (a store with appended imports holds each import's new items after
/// the ones before, so the indexes already stored stay valid).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    items: Vec<Item>,
    by_id: HashMap<String, ItemIx>,
}

impl Catalog {
    /// Builds a catalog; items are sorted by id. Ids must be unique.
    pub fn new(mut items: Vec<Item>) -> Self {
        items.sort_by(|a, b| a.id.cmp(&b.id));
        debug_assert!(items.windows(2).all(|w| w[0].id != w[1].id));
        Self::indexed(items)
    }

    /// A catalog whose indexes are the items' positions as given (a store's items table: id
    /// order for an import, then each appended import's new items in id order). Ids must be
    /// unique.
    pub fn indexed(items: Vec<Item>) -> Self {
        let by_id: HashMap<String, ItemIx> = items
            .iter()
            .enumerate()
            .map(|(ix, item)| (item.id.clone(), ix as ItemIx))
            .collect();
        Self { items, by_id }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn get(&self, ix: ItemIx) -> &Item {
        &self.items[ix as usize]
    }

    pub fn ix(&self, id: &str) -> Option<ItemIx> {
        self.by_id.get(id).copied()
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }
}
