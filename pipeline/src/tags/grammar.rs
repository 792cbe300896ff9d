//! The grammar (GBNF) of a tags answer whose every tag is a catalog phrase offered for its
//! interest: `{"tags":[{"interest":"…","tag":"…"},…]}`. It has no rationale: written after the
//! tag it cannot inform the choice, and a small model's rationales were noise that cost a
//! third of the answer's tokens.
//!
//! The interest comes first, so the tag that follows is decoded among that interest's phrases
//! ([`super::vocab::TagVocabulary::choices`]). Each interest's phrases are written as a
//! character trie, one rule per branching node with chains of single children merged into one
//! literal: a node offers at most one alternative per next character, so llama.cpp's grammar
//! keeps few parse stacks however many phrases there are, and rejects a token outside every
//! phrase at the first character that leaves the trie.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One interest and the phrases its tags may be.
#[derive(Debug, Clone)]
pub struct InterestChoices<'a> {
    pub name: &'a str,
    pub phrases: Vec<&'a str>,
}

/// How many tags an answer holds.
#[derive(Debug, Clone, Copy)]
pub struct AnswerShape {
    pub min_tags: usize,
    pub max_tags: usize,
}

/// The grammar, or `None` when no interest has a phrase.
pub fn tags_grammar(interests: &[InterestChoices<'_>], shape: AnswerShape) -> Option<String> {
    let offered: Vec<&InterestChoices<'_>> =
        interests.iter().filter(|i| !i.phrases.is_empty()).collect();
    if offered.is_empty() {
        return None;
    }
    let mut g = String::new();
    let more = shape.max_tags.max(1) - 1;
    let _ = writeln!(
        g,
        "root ::= \"{{\\\"tags\\\":[\" item (\",\" item){{{},{}}} \"]}}\"",
        shape.min_tags.clamp(1, shape.max_tags.max(1)) - 1,
        more
    );
    let _ = writeln!(g, "item ::= \"{{\\\"interest\\\":\" choice \"}}\"");
    let alternatives: Vec<String> = (0..offered.len()).map(|i| format!("i{i}")).collect();
    let _ = writeln!(g, "choice ::= {}", alternatives.join(" | "));
    for (i, interest) in offered.iter().enumerate() {
        let name = serde_json::to_string(interest.name).expect("a string serialises");
        let _ = writeln!(
            g,
            "i{i} ::= {} i{i}-0 \"\\\"\"",
            literal(&format!("{name},\"tag\":\""))
        );
        trie_rules(&format!("i{i}"), &interest.phrases, &mut g);
    }
    Some(g)
}

/// A GBNF string literal of `text`.
fn literal(text: &str) -> String {
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
fn trie_rules(prefix: &str, phrases: &[&str], out: &mut String) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string the trie's rules accept, by expanding them (small tries only).
    fn expand(g: &str, rule: &str) -> Vec<String> {
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
                Some(n) => out.extend(expand(g, n).into_iter().map(|s| format!("{lit}{s}"))),
                None => out.push(lit.to_string()),
            }
        }
        out
    }

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
        let mut got = expand(&g, "t-0");
        got.sort();
        assert_eq!(got, phrases);
        // chains are merged: one rule per branching node
        assert!(g.lines().count() <= 4, "{g}");
    }

    #[test]
    fn the_answer_grammar_names_interests_as_json() {
        let shape = AnswerShape {
            min_tags: 3,
            max_tags: 20,
        };
        assert_eq!(tags_grammar(&[], shape), None);
        let none = [InterestChoices {
            name: "tea",
            phrases: vec![],
        }];
        assert_eq!(tags_grammar(&none, shape), None);
        let g = tags_grammar(
            &[
                InterestChoices {
                    name: "say \"hi\"",
                    phrases: vec!["tea cup"],
                },
                InterestChoices {
                    name: "empty",
                    phrases: vec![],
                },
            ],
            shape,
        )
        .expect("a grammar");
        assert!(g.contains(r#"item ("," item){2,19}"#), "{g}");
        // the name is a JSON string inside a GBNF literal
        assert!(
            g.contains(r#"i0 ::= "\"say \\\"hi\\\"\",\"tag\":\"" i0-0"#),
            "{g}"
        );
        assert!(g.contains("choice ::= i0\n"), "{g}");
        assert!(g.contains(r#"i0-0 ::= "tea cup""#), "{g}");
        assert!(g.contains(r#"item ::= "{\"interest\":" choice "}""#), "{g}");
    }
}
