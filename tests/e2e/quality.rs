//! The LLM quality loop (`recgpt eval llm`) on the real data: the sample, the tag scorer and
//! bad input. The loop itself runs with the real model in `make test` (`recgpt eval llm
//! --floors prompts/cases/llm_floors.json`) and in the tags tests below.

use std::collections::HashMap;
use std::process::Command;

use recgpt_data::import::{import_online_retail, ImportTarget};
use recgpt_data::parse_date;
use recgpt_pipeline::channels::{self, Comparison};
use recgpt_pipeline::config::Config;
use recgpt_pipeline::quality::{popular_tags, QualityError, SplitUsers, TagScorer, TagTexts};
use recgpt_pipeline::tags::TagVocabulary;
use recgpt_retrieval::eval::{EvalSet, Protocol};

use crate::common::{data_file, model_file, real_store, temp_home};
use crate::embed::embedder;
use crate::retrieval::{model, prepared, SPLIT};

#[test]
fn the_sample_is_seeded_nested_and_bounded() {
    let store = real_store();
    let split = SplitUsers::read(&store, parse_date(SPLIT).unwrap(), 30).unwrap();
    let eligible = split.eligible();
    assert!(eligible.len() > 500, "{}", eligible.len());
    let small = split.sample(5, 7).unwrap();
    let large = split.sample(50, 7).unwrap();
    assert_eq!(small, large[..5], "a larger sample holds the smaller one");
    assert_eq!(small, split.sample(5, 7).unwrap(), "seeded");
    assert_ne!(
        small,
        split.sample(5, 8).unwrap(),
        "another seed, other users"
    );
    for u in &large {
        let (before, after) = split.sides(u).unwrap();
        assert!(!before.bought.is_empty() && !after.bought.is_empty());
    }
    // the horizon bounds the truth: a shorter one never holds more users
    let week = SplitUsers::read(&store, parse_date(SPLIT).unwrap(), 7).unwrap();
    assert!(week.eligible().len() < eligible.len());

    match split.sample(eligible.len() + 1, 7) {
        Err(QualityError::SampleTooLarge {
            asked, eligible: e, ..
        }) => {
            assert_eq!((asked, e), (eligible.len() + 1, eligible.len()))
        }
        other => panic!("{other:?}"),
    }
    let err = SplitUsers::read(&store, parse_date("2030-01-01").unwrap(), 30).unwrap_err();
    assert!(err.to_string().contains("outside the data"), "{err}");
}

/// The scorer through the tag tower: the titles of the very items a user bought next find
/// most of them; the most popular tags find fewer; scores are shares.
#[test]
fn an_oracle_list_of_tags_beats_the_popular_one() {
    let store = real_store();
    let split = SplitUsers::read(&store, parse_date(SPLIT).unwrap(), 30).unwrap();
    let (model, _, _) = model();
    let scorer = TagScorer {
        model,
        embedder: embedder(),
        prepared: prepared(),
        k: 10,
        n: 30,
    };
    let popular: Vec<_> = popular_tags(prepared(), &split.before, 50)
        .into_iter()
        .map(|t| prepared().tag_vectors[t as usize])
        .collect();
    assert_eq!(popular.len(), 50);
    let (mut oracle_sum, mut popular_sum) = (0.0, 0.0);
    let users = split.sample(20, 7).unwrap();
    for u in &users {
        let (before, after) = split.sides(u).unwrap();
        let titles: Vec<String> = after
            .bought
            .iter()
            .take(50)
            .map(|&i| store.catalog().get(i).title.to_lowercase())
            .collect();
        let oracle = scorer
            .score(TagTexts::Texts(&titles), before, after)
            .unwrap();
        let pop = scorer
            .score(TagTexts::Embedded(popular.clone()), before, after)
            .unwrap();
        for s in [&oracle, &pop] {
            assert!((0.0..=1.0).contains(&s.hit_rate), "{s:?}");
            assert!(s.hit_rate_new.is_none_or(|h| (0.0..=1.0).contains(&h)));
        }
        assert_eq!(pop.tags, 50);
        oracle_sum += oracle.hit_rate;
        popular_sum += pop.hit_rate;
    }
    let n = users.len() as f64;
    assert!(oracle_sum / n > 0.5, "oracle {}", oracle_sum / n);
    assert!(
        oracle_sum > 2.0 * popular_sum,
        "{oracle_sum} vs {popular_sum}"
    );
}

/// The channel comparison on real users: CF (EASE), the user tower and a tag channel whose tags
/// are the titles of what each user bought next (an oracle), fused. The oracle channel lifts the
/// fusion above its ablation; intervals bracket their differences; the exclude-bought protocol
/// never ranks a bought item.
#[test]
fn fusion_with_an_oracle_tag_channel_beats_its_ablation() {
    let store = real_store();
    let split = SplitUsers::read(&store, parse_date(SPLIT).unwrap(), 30).unwrap();
    let (model, _, _) = model();
    let users = split.sample(40, 7).unwrap();
    let set = EvalSet {
        users: users.iter().map(|u| split.sides(u).unwrap()).collect(),
    };
    let mut oracle = HashMap::new();
    for (_, after) in &set.users {
        let titles: Vec<String> = after
            .bought
            .iter()
            .take(20)
            .map(|&i| store.catalog().get(i).title.to_lowercase())
            .collect();
        let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
        let embedded = embedder().embed(&refs).unwrap();
        oracle.insert(after.user.clone(), model.tag_vectors(&embedded).unwrap());
    }
    // the mechanism, not the tuned defaults: every channel weighs in
    let mut config = Config::default();
    config.fusion.user = 0.5;
    config.fusion.llm = 0.5;
    let compare = |protocol| {
        let c = Comparison {
            config: &config,
            prepared: prepared(),
            model,
            before: &split.before,
            llm_tags: &oracle,
            protocol,
            seed: 7,
        };
        channels::compare(&c, &set, false).unwrap()
    };
    let report = compare(Protocol::Repeats);
    let row = |name: &str| report.rows.iter().find(|r| r.method == name).unwrap();
    assert_eq!(report.rows[0].method, "EASE");
    assert!(report.rows[0].vs_cf.is_none());
    let (fusion, ablation) = (row("Fusion"), row("Fusion without LLM tags"));
    assert!(
        fusion.recall_50 > ablation.recall_50 + 0.05,
        "{fusion:?} vs {ablation:?}"
    );
    for r in &report.rows[1..] {
        let v = r.vs_cf.as_ref().unwrap();
        assert!(v.recall_50.low <= v.recall_50.diff && v.recall_50.diff <= v.recall_50.high);
        assert!(
            (0.0..=1.0).contains(&r.recall_50) && r.recall_20 <= r.recall_50,
            "{r:?}"
        );
        assert!(r.novelty_50 >= 1.0 && r.categories_50 >= 1.0, "{r:?}");
    }
    assert!(
        row("ThreeTower (LLM tags)").recall_new_50 > row("ThreeTower (title tags)").recall_new_50
    );

    // nothing bought before the split is ranked: Recall@50 is Recall-new@50
    let excluded = compare(Protocol::ExcludeBought);
    for (r, e) in report.rows.iter().zip(&excluded.rows) {
        assert!(
            (r.recall_new_50 - e.recall_new_50).abs() < 1e-9,
            "{r:?} {e:?}"
        );
    }
}

#[test]
fn the_catalog_vocabulary_holds_real_product_phrases() {
    let store = real_store();
    let compressor = crate::common::compressor(&store, 512);
    let v = TagVocabulary::of(compressor.texts());
    eprintln!("{} catalog phrases", v.len());
    assert!(v.len() > 5_000, "{}", v.len());
    for phrase in [
        "t-light holder",
        "cake cases",
        "hot water bottle",
        "jumbo bag",
    ] {
        assert!(v.contains(phrase), "{phrase}");
    }
    for phrase in [
        "enamel coffee mugs",
        "paper ailerad tripty",
        "jumbo bag red",
    ] {
        assert!(!v.contains(phrase), "{phrase}");
    }
}

/// Bad input to `recgpt eval llm` fails with a clear error and writes nothing.
#[test]
fn eval_llm_refuses_bad_input_and_writes_nothing() {
    let home = temp_home();
    import_online_retail(&data_file(), &ImportTarget::new(&home)).expect("import");
    let run = |args: &[&str], model: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_recgpt"))
            .args(["eval", "llm"])
            .args(args)
            .env("RECGPT_HOME", &home)
            .env("RECGPT_MODEL", model)
            .output()
            .expect("run recgpt");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--split", "2030-01-01"], &model_file());
    assert!(err.contains("outside the data"), "{err}");
    let err = run(
        &["--split", "2011-10-01", "--users", "100000"],
        &model_file(),
    );
    assert!(err.contains("a sample of 100000 users: only"), "{err}");
    let not_a_model = temp_home().join("model.gguf");
    std::fs::write(&not_a_model, "not a model").unwrap();
    let err = run(&["--split", "2011-10-01", "--users", "2"], &not_a_model);
    assert!(err.contains("not a GGUF file"), "{err}");
    let err = run(
        &["--split", "2011-10-01", "--floors", "/nonexistent.json"],
        &model_file(),
    );
    assert!(err.contains("nonexistent.json"), "{err}");
    // `recgpt eval --llm-sample N` checks its sample before the full evaluation runs
    let out = Command::new(env!("CARGO_BIN_EXE_recgpt"))
        .args(["eval", "--split", "2011-11-01", "--llm-sample", "100000"])
        .env("RECGPT_HOME", &home)
        .env("RECGPT_MODEL", model_file())
        .output()
        .expect("run recgpt");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a sample of 100000 users: only"), "{err}");
    assert!(!home.join("eval").exists(), "nothing written");
}
