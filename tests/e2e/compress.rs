use recgpt_data::{Behavior, BehaviorKind, DataError, History, TimeWindow};
use recgpt_pipeline::compress::{name_in, CompressConfig, Compressor};
use recgpt_pipeline::llm::{TokenCount, TokenCounter};

use crate::common::{counter, real_store};

fn config(budget: usize) -> CompressConfig {
    CompressConfig {
        budget,
        ..CompressConfig::default()
    }
}

/// The memoised piece-wise count must equal llama.cpp's count of the whole text, on every
/// real narrative (and on the uncompressed lines too).
#[test]
fn piecewise_token_counts_equal_whole_text_tokenization() {
    let store = real_store();
    let window = store.window(None, None);
    let compressor = Compressor::new(store.catalog(), config(1024), counter());
    let tokenizer = counter().inner();
    let mut checked = 0;
    store
        .for_each_history(&window, |h: History| {
            let n = compressor.compress(&h, &window);
            assert_eq!(n.tokens, tokenizer.count_tokens(&n.text), "user {}", h.user);
            checked += 1;
            Ok::<_, DataError>(())
        })
        .unwrap();
    assert_eq!(checked, 4_362);
}

/// Every user's narrative fits, at a tight and at the default budget, and the drop
/// accounting adds up.
#[test]
fn budget_is_respected_for_every_user() {
    let store = real_store();
    let window = store.window(None, None);
    for budget in [200, 1024] {
        let compressor = Compressor::new(store.catalog(), config(budget), counter());
        let (mut users, mut dropped_users) = (0, 0);
        store
            .for_each_history(&window, |h: History| {
                let n = compressor.compress(&h, &window);
                assert!(
                    n.tokens <= budget,
                    "user {}: {} > {budget}",
                    h.user,
                    n.tokens
                );
                assert_eq!(n.events, h.events.len() as u64);
                assert_eq!(
                    n.events_kept + n.dropped.events + n.dropped.low_signal_events,
                    n.events
                );
                if n.dropped.is_empty() {
                    assert!(!n.text.contains("Omitted"), "user {}", h.user);
                } else {
                    dropped_users += 1;
                    let note = format!("{} older events", n.dropped.events);
                    assert!(
                        n.text.contains(&note),
                        "user {}: no drop note in\n{}",
                        h.user,
                        n.text
                    );
                }
                users += 1;
                Ok::<_, DataError>(())
            })
            .unwrap();
        assert_eq!(users, 4_362);
        assert!(
            dropped_users > 0,
            "the heaviest users cannot fit {budget} tokens uncompressed"
        );
    }
}

#[test]
fn narratives_are_deterministic() {
    let store = real_store();
    let window = store.window(None, None);
    let fresh = TokenCounter::new(
        recgpt_pipeline::llm::GgufTokenizer::load(&crate::common::model_file()).unwrap(),
    );
    let a = Compressor::new(store.catalog(), config(512), counter());
    let b = Compressor::new(store.catalog(), config(512), &fresh);
    for user in ["12347", "17841", "14911", "13047"] {
        let h = store.history(user, &window).unwrap();
        let first = a.compress(&h, &window);
        assert_eq!(first, a.compress(&h, &window));
        assert_eq!(
            first,
            b.compress(&h, &window),
            "cold and warm memo differ for {user}"
        );
    }
}

/// User 12347 at a roomy budget: day buckets in the last month, month buckets within the year,
/// a year bucket beyond, newest first.
#[test]
fn real_user_buckets_at_month_and_year_boundaries() {
    let store = real_store();
    let window = store.window(None, None);
    assert_eq!(window.as_of.to_string(), "2011-12-10");
    let compressor = Compressor::new(store.catalog(), config(4096), counter());
    let n = compressor.compress(&store.history("12347", &window).unwrap(), &window);
    assert!(n.dropped.is_empty());
    let times: Vec<&str> = n
        .text
        .lines()
        .skip(1)
        .map(|l| l.split(" | ").next().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "2011-12-07 (purchase)",
            "2011-10 (purchase)",
            "2011-08 (purchase)",
            "2011-06 (purchase)",
            "2011-04 (purchase)",
            "2011-01 (purchase)",
            "2010 (purchase)",
        ]
    );
    // as of 2011-12-08, the purchase of 2011-12-07 is still a day; as of 2012-01-08 it is a month.
    let later = TimeWindow {
        until: None,
        as_of: recgpt_data::parse_date("2012-01-08").unwrap(),
    };
    let n = compressor.compress(&store.history("12347", &later).unwrap(), &later);
    assert!(n.text.contains("\n2011-12 (purchase) | "), "{}", n.text);
    assert!(n.text.contains("\n2011-01 (purchase) | "), "{}", n.text);
    // as of 2012-12-07, 2011-12-07 is exactly a year back (still a month); the rest is years
    let year_later = TimeWindow {
        until: None,
        as_of: recgpt_data::parse_date("2012-12-07").unwrap(),
    };
    let n = compressor.compress(&store.history("12347", &year_later).unwrap(), &year_later);
    let times: Vec<&str> = n
        .text
        .lines()
        .skip(1)
        .map(|l| l.split(" | ").next().unwrap())
        .collect();
    assert_eq!(
        times,
        ["2011-12 (purchase)", "2011 (purchase)", "2010 (purchase)"],
        "{}",
        n.text
    );
}

fn event(item: u32, kind: BehaviorKind, at: &str) -> Behavior {
    Behavior {
        item: Some(item),
        kind,
        at: recgpt_data::parse_timestamp(at).unwrap(),
        quantity: 1.0,
        value: 1.0,
        query: None,
    }
}

/// A made-up user's history of `events` (sorted here), seen as of 2011-12-10.
fn synthetic(mut events: Vec<Behavior>) -> (History, TimeWindow) {
    events.sort_by_key(|e| e.at);
    let history = History {
        user: "synthetic".into(),
        events,
    };
    let window = TimeWindow {
        until: None,
        as_of: recgpt_data::parse_date("2011-12-10").unwrap(),
    };
    (history, window)
}

/// Identical item sequences under different (time, behaviour) keys share one line; keys of one
/// time are listed together, newest first.
#[test]
fn reverse_grouping_merges_identical_item_sequences() {
    let store = real_store();
    let compressor = Compressor::new(store.catalog(), config(1024), counter());
    let (a, b, c) = (10, 20, 30);
    let history = History {
        user: "synthetic".into(),
        events: vec![
            event(a, BehaviorKind::Purchase, "2011-03-05 10:00"),
            event(b, BehaviorKind::Purchase, "2011-03-06 10:00"),
            event(a, BehaviorKind::Purchase, "2011-06-05 10:00"),
            event(b, BehaviorKind::Purchase, "2011-06-09 10:00"),
            event(a, BehaviorKind::Return, "2011-06-10 10:00"),
            event(b, BehaviorKind::Return, "2011-06-10 11:00"),
            event(a, BehaviorKind::Purchase, "2011-09-01 10:00"),
            event(c, BehaviorKind::Purchase, "2011-12-01 10:00"),
        ],
    };
    let window = TimeWindow {
        until: None,
        as_of: recgpt_data::parse_date("2011-12-10").unwrap(),
    };
    let n = compressor.compress(&history, &window);
    let name = |ix: u32| compressor.texts().compact(ix).to_string();
    let lines: Vec<&str> = n.text.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            format!("2011-12-01 (purchase) | {}", name(c)),
            format!("2011-09 (purchase) | {}", name(a)),
            // b was bought and returned more recently than a in June, and bought later in March
            format!(
                "2011-06 (purchase, return), 2011-03 (purchase) | {}; {}",
                name(b),
                name(a)
            ),
        ]
    );
    assert_eq!(n.items, vec![a, b, c]);
}

/// Views and clicks go first when over budget, and the narrative says so.
#[test]
fn low_signal_behaviours_are_dropped_first() {
    let store = real_store();
    let mut events = Vec::new();
    for day in 1..=28 {
        for item in 0..40u32 {
            events.push(event(
                item * 7 + day,
                BehaviorKind::View,
                &format!("2011-11-{day:02} 09:00"),
            ));
        }
        events.push(event(
            day,
            BehaviorKind::Purchase,
            &format!("2011-11-{day:02} 10:00"),
        ));
    }
    let (history, window) = synthetic(events);
    let compressor = Compressor::new(store.catalog(), config(600), counter());
    let n = compressor.compress(&history, &window);
    assert!(n.fits());
    assert_eq!(n.dropped.low_signal_events, 28 * 40);
    assert_eq!(
        n.dropped.events, 0,
        "all purchases fit once the views are gone"
    );
    assert!(
        n.text
            .contains(&format!("Omitted to fit: {} views and clicks.", 28 * 40)),
        "{}",
        n.text
    );
    assert!(!n.text.contains("(view)"));
}

/// Over budget, an item bought in several months is mentioned once, at its newest time, with
/// its count, before anything is cut; without summaries the same history loses its oldest
/// lines.
#[test]
fn repeats_are_collapsed_before_anything_is_cut() {
    let store = real_store();
    let (staple, others) = (5u32, 100u32..160);
    let mut events = Vec::new();
    for (month, item) in (1..=9).zip(others.clone().step_by(6)) {
        events.push(event(
            staple,
            BehaviorKind::Purchase,
            &format!("2011-{month:02}-03 10:00"),
        ));
        for i in item..item + 6 {
            events.push(event(
                i,
                BehaviorKind::Purchase,
                &format!("2011-{month:02}-04 10:00"),
            ));
        }
    }
    let (history, window) = synthetic(events);
    let whole =
        Compressor::new(store.catalog(), config(100_000), counter()).compress(&history, &window);
    // a budget the whole history misses by a little: collapsing the staple's nine mentions fits
    let budget = whole.tokens - 20;
    let summarised = Compressor::new(store.catalog(), config(budget), counter());
    let n = summarised.compress(&history, &window);
    let name = summarised.texts().compact(staple).to_string();
    assert!(n.fits() && n.uncut(), "{}", n.text);
    assert!(n.summarised.repeats);
    assert_eq!(n.text.matches(&name).count(), 1, "{}", n.text);
    assert!(
        n.text
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("2011-09 (purchase)")
            && n.text.contains(&format!("{name} ×9")),
        "the staple at its newest month, with its count:\n{}",
        n.text
    );
    assert_eq!(n.items.len(), 1 + 9 * 6);

    let cut = Compressor::new(
        store.catalog(),
        CompressConfig {
            summarise: false,
            ..config(budget)
        },
        counter(),
    )
    .compress(&history, &window);
    assert!(cut.dropped.events > 0 && !cut.uncut(), "{}", cut.text);
}

/// The heaviest real user at the default budget: the items that share their first two words
/// are written once under them, so the narrative names every item it names without that step
/// (`group_shared_words = false`) and more, still within the budget; what was in a group is still in
/// the text. A history that fits is not grouped.
#[test]
fn items_sharing_their_first_words_are_grouped_before_anything_is_cut() {
    let store = real_store();
    let window = store.window(None, None);
    let history = store.history("17841", &window).unwrap();
    let plain = Compressor::new(
        store.catalog(),
        CompressConfig {
            group_shared_words: false,
            ..config(1024)
        },
        counter(),
    );
    let grouping = Compressor::new(store.catalog(), config(1024), counter());
    let without = plain.compress(&history, &window);
    let with = grouping.compress(&history, &window);
    assert!(!without.summarised.grouped && with.summarised.grouped);
    assert!(with.fits(), "{} > 1024", with.tokens);
    assert!(
        without.items.iter().all(|i| with.items.contains(i)),
        "grouping kept every item the plain narrative named"
    );
    assert!(
        with.items.len() > without.items.len(),
        "{} items grouped against {} plain",
        with.items.len(),
        without.items.len()
    );
    // every named item is in the text: whole, or its words after the first two in a group
    for &ix in &with.items {
        let name = grouping.texts().compact(ix);
        let words: Vec<&str> = name.split(' ').collect();
        let rest = words[words.len().min(2)..].join(" ");
        let rest = rest.trim_start_matches([' ', ',']);
        assert!(
            with.text.contains(name) || with.text.contains(&format!(", {rest}")),
            "{name} missing from\n{}",
            with.text
        );
    }
    // and some of them are named only after their group's shared words
    let in_groups = with
        .items
        .iter()
        .map(|&ix| grouping.texts().compact(ix))
        .filter(|&name| name_in(&with.text, name) != name)
        .count();
    assert!(in_groups > 0, "no item written in a group:\n{}", with.text);

    let fits = grouping.compress(&store.history("12347", &window).unwrap(), &window);
    assert!(fits.uncut() && !fits.summarised.grouped, "{}", fits.text);
}

/// A real user's shopping days repeated week after week for three years (a household going
/// through the same baskets in turn): the narrative keeps every recurring item, each once with
/// its count, and cuts nothing; cutting the oldest lines instead leaves events out.
#[test]
fn a_real_history_repeated_weekly_keeps_its_recurring_items() {
    let store = real_store();
    let window = store.window(None, None);
    // the first user in id order with 20 to 40 distinct purchased items over at least 6 days
    let mut chosen = None;
    store
        .for_each_history(&window, |h: History| {
            let items: std::collections::BTreeSet<u32> = h
                .events
                .iter()
                .filter(|e| e.kind == BehaviorKind::Purchase)
                .filter_map(|e| e.item)
                .collect();
            let days: std::collections::BTreeSet<_> =
                h.events.iter().map(|e| e.at.date()).collect();
            if chosen.is_none() && (20..=40).contains(&items.len()) && days.len() >= 3 {
                chosen = Some((h, items));
            }
            Ok::<_, DataError>(())
        })
        .unwrap();
    let (real, items) = chosen.expect("such a user");
    let day = 86_400;
    let purchases: Vec<&Behavior> = real
        .events
        .iter()
        .filter(|e| e.kind == BehaviorKind::Purchase)
        .collect();
    let days: Vec<i64> = purchases
        .iter()
        .map(|e| e.at.0 / day)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // week k (from 2010-01-04) goes through the user's shopping day k mod days
    let monday = 1_262_563_200; // 2010-01-04
    let mut events = Vec::new();
    for k in 0..156i64 {
        let shopping = days[k as usize % days.len()];
        for e in purchases.iter().filter(|e| e.at.0 / day == shopping) {
            events.push(Behavior {
                at: recgpt_data::Timestamp(monday + k * 7 * day + e.at.0 % day),
                ..(*e).clone()
            });
        }
    }
    events.sort_by_key(|e| e.at);
    let last = events.last().unwrap().at;
    let history = History {
        user: format!("{} weekly", real.user),
        events,
    };
    let as_of = TimeWindow::resolve(None, None, last);
    let compressor = Compressor::new(store.catalog(), config(1024), counter());
    let n = compressor.compress(&history, &as_of);
    assert!(n.fits(), "{} tokens", n.tokens);
    assert!(n.uncut(), "user {}: cut\n{}", real.user, n.text);
    let mentioned: std::collections::BTreeSet<u32> = n.items.iter().copied().collect();
    assert_eq!(
        mentioned, items,
        "every recurring item of user {}",
        real.user
    );
    for ix in &items {
        let name = compressor.texts().compact(*ix).to_string();
        assert!(
            n.text.contains(&format!("{name} ×")),
            "{name} with its count:\n{}",
            n.text
        );
    }

    let cut = Compressor::new(
        store.catalog(),
        CompressConfig {
            summarise: false,
            ..config(1024)
        },
        counter(),
    )
    .compress(&history, &as_of);
    assert!(
        cut.dropped.events > 0,
        "cutting instead of summarising leaves events out"
    );
}
