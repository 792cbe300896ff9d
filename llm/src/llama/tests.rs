//! Unit tests of the slot scheduling and prefix reuse (no model).

use llama_cpp_2::token::LlamaToken;

use super::kv::*;
use super::*;

fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
    ids.iter().map(|&i| LlamaToken(i)).collect()
}

#[test]
fn groups_of_consecutive_prompts_with_a_longer_shared_prefix() {
    let system: Vec<i32> = (0..20).collect();
    let user = |u: i32, tail: i32| {
        let mut t = system.clone();
        t.extend((0..30).map(|i| 1000 * u + i));
        t.push(tail);
        tokens(&t)
    };
    let prompts = vec![
        user(1, 1),
        user(1, 2),
        user(1, 3),
        user(2, 1),
        user(3, 1),
        user(3, 2),
    ];
    assert_eq!(common_prefix(&prompts), 20);
    let groups = prefix_groups(&prompts, 20);
    assert_eq!(
        groups,
        vec![
            PrefixGroup {
                start: 0,
                end: 3,
                prefix: 50
            },
            PrefixGroup {
                start: 4,
                end: 6,
                prefix: 50
            },
        ]
    );
}

fn prompt(head: &[i32], user: i32, len: i32) -> Vec<LlamaToken> {
    let mut t = head.to_vec();
    t.extend((0..len).map(|i| 1000 * user + i));
    tokens(&t)
}

#[test]
fn entries_copy_the_longest_cached_prefix_in_waves() {
    let system: Vec<i32> = (0..20).collect();
    let a = prompt(&system, 1, 30);
    let a2 = prompt(&system, 1, 30);
    let b = prompt(&system, 2, 30);
    let kv = vec![Vec::new(); 3];
    let plans = plan(&kv, &[(0, &a), (1, &b), (2, &a2)]);
    let keep_all_but_two = a2.len() - 2;
    assert_eq!(
        plans,
        vec![
            Plan {
                source: Source::Own,
                keep: 0,
                wave: 0
            },
            Plan {
                source: Source::Entry(0),
                keep: 20,
                wave: 1
            },
            Plan {
                source: Source::Entry(0),
                keep: keep_all_but_two,
                wave: 1
            },
        ]
    );
}

#[test]
fn a_slot_reuses_its_own_cache_or_an_untouched_slot() {
    let system: Vec<i32> = (0..20).collect();
    let a = prompt(&system, 1, 30);
    let b = prompt(&system, 2, 30);
    // slot 0 holds a's conversation, slot 1 b's; a follow-up of a enters slot 0
    let mut follow = a.clone();
    follow.extend(tokens(&[7, 8, 9]));
    let kv = vec![a.clone(), b.clone(), Vec::new()];
    let plans = plan(&kv, &[(0, &follow), (2, &b)]);
    assert_eq!(
        plans[0],
        Plan {
            source: Source::Own,
            keep: a.len(),
            wave: 0
        }
    );
    // slot 1 is not entered: b's prompt but its last two tokens is copied from it
    assert_eq!(
        plans[1],
        Plan {
            source: Source::Slot(1),
            keep: b.len() - 2,
            wave: 0
        }
    );
    // a shorter gain than MIN_SHARED_PREFIX over the own cache is not worth a copy
    let kv = vec![
        prompt(&system, 3, 5),
        system.iter().map(|&i| LlamaToken(i)).collect(),
        Vec::new(),
    ];
    let c = prompt(&system, 4, 10);
    assert_eq!(
        plan(&kv, &[(0, &c)])[0],
        Plan {
            source: Source::Own,
            keep: 20,
            wave: 0
        }
    );
}

#[test]
fn units_keep_a_users_rounds_together_within_the_slots() {
    let system: Vec<i32> = (0..20).collect();
    let prompts = vec![
        prompt(&system, 1, 30),
        prompt(&system, 1, 30),
        prompt(&system, 1, 30),
        prompt(&system, 2, 30),
        prompt(&system, 3, 30),
        prompt(&system, 3, 30),
    ];
    assert_eq!(LlamaCppBackend::units(&prompts, 8), vec![0..3, 3..4, 4..6]);
    assert_eq!(
        LlamaCppBackend::units(&prompts, 2),
        vec![0..2, 2..3, 3..4, 4..6]
    );
    // one user's rounds alone (a batch of one user) are one unit too
    assert_eq!(LlamaCppBackend::units(&prompts[..3], 8), vec![0..3]);
    assert_eq!(LlamaCppBackend::units(&prompts[..1], 8), vec![0..1]);
}
