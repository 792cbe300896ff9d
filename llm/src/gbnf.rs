//! GBNF helpers for grammars built from data (catalog phrases, an item's words): string
//! literals, and a character trie written as rules, one per branching node with chains of
//! single children merged into one literal, so that llama.cpp's grammar keeps few parse stacks
//! however many phrases there are and rejects a token outside every phrase at the first
//! character that leaves the trie.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A GBNF string literal of `text`.
pub fn literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default)]
struct Node {
    children: BTreeMap<char, usize>,
    end: bool,
}

/// Rules `{prefix}-N` of a trie over `phrases`, `{prefix}-0` its root.
pub fn trie_rules(prefix: &str, phrases: &[&str], out: &mut String) {
    let mut nodes = vec![Node::default()];
    for p in phrases {
        let mut at = 0;
        for c in p.chars() {
            at = match nodes[at].children.get(&c) {
                Some(&next) => next,
                None => {
                    nodes.push(Node::default());
                    let next = nodes.len() - 1;
                    nodes[at].children.insert(c, next);
                    next
                }
            };
        }
        nodes[at].end = true;
    }
    // rules for the root and every node where the trie branches or a phrase ends inside it
    let mut rule_of: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = vec![0usize];
    rule_of.insert(0, 0);
    while let Some(node) = queue.pop() {
        let mut alternatives = Vec::new();
        for (&c, &child) in &nodes[node].children {
            let mut text = String::from(c);
            let mut at = child;
            while !nodes[at].end && nodes[at].children.len() == 1 {
                let (&c, &next) = nodes[at].children.iter().next().expect("one child");
                text.push(c);
                at = next;
            }
            if nodes[at].children.is_empty() {
                alternatives.push(literal(&text));
            } else {
                let next_rule = rule_of.len();
                let rule = *rule_of.entry(at).or_insert_with(|| {
                    queue.push(at);
                    next_rule
                });
                alternatives.push(format!("{} {prefix}-{rule}", literal(&text)));
            }
        }
        let body = alternatives.join(" | ");
        let rule = rule_of[&node];
        if nodes[node].end {
            let _ = writeln!(out, "{prefix}-{rule} ::= ({body})?");
        } else {
            let _ = writeln!(out, "{prefix}-{rule} ::= {body}");
        }
    }
}

/// Every string the rules of a trie written by [`trie_rules`] accept from `rule`, by
/// expanding them (small tries: for tests and checks).
pub fn trie_phrases(g: &str, rule: &str) -> Vec<String> {
    let rules: BTreeMap<&str, &str> = g.lines().filter_map(|l| l.split_once(" ::= ")).collect();
    let body = rules[rule];
    let (body, optional) = match body.strip_prefix('(').and_then(|b| b.strip_suffix(")?")) {
        Some(b) => (b, true),
        None => (body, false),
    };
    let mut out = Vec::new();
    if optional {
        out.push(String::new());
    }
    for alt in body.split(" | ") {
        // `"literal"` then an optional rule name (test phrases hold no quote)
        let close = 1 + alt[1..].find('"').expect("a closed literal");
        let lit = &alt[1..close];
        let next = Some(alt[close + 1..].trim()).filter(|n| !n.is_empty());
        match next {
            Some(n) => out.extend(trie_phrases(g, n).into_iter().map(|s| format!("{lit}{s}"))),
            None => out.push(lit.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trie_accepts_exactly_its_phrases() {
        let phrases = [
            "cake stand",
            "cake stand tier",
            "cake tins",
            "candle holder",
            "tea cup",
        ];
        let mut g = String::new();
        trie_rules("t", &phrases, &mut g);
        let mut got = trie_phrases(&g, "t-0");
        got.sort();
        assert_eq!(got, phrases);
        // chains are merged: one rule per branching node
        assert!(g.lines().count() <= 4, "{g}");
    }
}
