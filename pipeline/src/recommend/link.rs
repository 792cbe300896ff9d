//! The interest that links a stored user to an item, for the item's explanation (the HTTP
//! server explains items a user was not recommended too).

use recgpt_data::ItemIx;

use crate::explain::Pair;
use crate::results::UserResult;

/// What links a stored user to an item, for its explanation.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemLink {
    /// The item was recommended with an explanation: the stored text and its source.
    Stored {
        interest: String,
        text: String,
        source: String,
    },
    /// The pair to look up in the explanation cache, or to generate.
    Pair(Pair),
}

/// The interest that links `user` to `item` (catalog id `item_id`, derived category
/// `category`): the one its recommendation serves (none when that recommendation has no
/// interest), else the interest of the user's first tag in the item's category; `None` when
/// nothing links them.
pub fn link(
    user: &UserResult,
    item: ItemIx,
    item_id: &str,
    category: Option<&str>,
) -> Option<ItemLink> {
    let recommended = user.recommendations.iter().find(|r| r.item == item_id);
    let interest = match recommended {
        Some(r) => {
            let interest = r.interest.clone()?;
            if let (Some(text), Some(source)) = (&r.explanation, &r.explanation_source) {
                return Some(ItemLink::Stored {
                    interest,
                    text: text.clone(),
                    source: source.clone(),
                });
            }
            interest
        }
        None => {
            let category = category?;
            let tag = user
                .tags
                .tags
                .iter()
                .find(|t| t.category.as_deref() == Some(category))?;
            tag.interest.clone()
        }
    };
    let position = user
        .interests
        .interests
        .iter()
        .position(|i| i.name == interest);
    let (description, key) = match position {
        Some(p) => (
            user.interests.interests[p].description.clone(),
            user.interest_keys.get(p).cloned(),
        ),
        None => (String::new(), None),
    };
    let key = key.unwrap_or_else(|| crate::explain::keys::normalise(&interest));
    Some(ItemLink::Pair(Pair {
        interest,
        description,
        key,
        item,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interests::Interest;
    use crate::results::Recommendation;
    use crate::tags::Tag;

    fn recommendation(item: &str, interest: Option<&str>, text: Option<&str>) -> Recommendation {
        Recommendation {
            item: item.into(),
            title: String::new(),
            category: None,
            score: 0.0,
            tag: None,
            channel: "llm".into(),
            interest: interest.map(str::to_string),
            interest_key: interest.map(str::to_string),
            explanation: text.map(str::to_string),
            explanation_source: text.map(|_| "model".to_string()),
        }
    }

    #[test]
    fn an_item_links_through_its_recommendation_else_a_tag_of_its_category() {
        let mut user = UserResult::empty("u", "f");
        user.interests.interests = vec![Interest {
            name: "Tea Cups".into(),
            description: "Buys tea cups.".into(),
            description_source: "model".into(),
            evidence: vec![],
        }];
        user.interest_keys = vec!["tea cup".into()];
        user.tags.tags = vec![Tag {
            tag: "bone china mug".into(),
            interest: "Tea Cups".into(),
            rationale: String::new(),
            source: "model".into(),
            category: Some("mugs".into()),
        }];
        user.recommendations = vec![
            recommendation("1", Some("Tea Cups"), Some("You like tea.")),
            recommendation("2", None, None),
            recommendation("3", Some("Tea Cups"), None),
        ];
        let stored = ItemLink::Stored {
            interest: "Tea Cups".into(),
            text: "You like tea.".into(),
            source: "model".into(),
        };
        assert_eq!(link(&user, 0, "1", None), Some(stored));
        // recommended without an interest: nothing links it, whatever its category
        assert_eq!(link(&user, 1, "2", Some("mugs")), None);
        let pair = |item| {
            Some(ItemLink::Pair(Pair {
                interest: "Tea Cups".into(),
                description: "Buys tea cups.".into(),
                key: "tea cup".into(),
                item,
            }))
        };
        assert_eq!(link(&user, 2, "3", None), pair(2));
        // not recommended: the tag of its category
        assert_eq!(link(&user, 4, "5", Some("mugs")), pair(4));
        assert_eq!(link(&user, 4, "5", Some("cards")), None);
        assert_eq!(link(&user, 4, "5", None), None);
    }
}
