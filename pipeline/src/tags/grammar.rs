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

use std::fmt::Write as _;

use recgpt_llm::gbnf::{literal, trie_rules};

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

#[cfg(test)]
mod tests {
    use super::*;

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
