//! `recgpt judge` as the real binary on a home with stored results of the real model on real
//! users: the cases written for labelling match what is stored, explanations answered afresh
//! keep every answer with the rules' verdict, and the judge grades a sample deterministically
//! with its cost reported. (The calibrated judge, Qwen2.5-Coder-1.5B on the labelled set, runs
//! in `make test` after the suite, with floors on its agreement with the labels.)

use std::collections::BTreeSet;
use std::path::Path;

use recgpt_pipeline::judge::{cases, Case, Stage};

use crate::common::{model_file, model_turn};
use crate::job::{job_home, recgpt, run, set_config, stored, text, CONFIG};

fn judge(home: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["judge"];
    all.extend(args);
    recgpt(home, &all).output().unwrap()
}

fn written(home: &Path, name: &str, args: &[&str]) -> Vec<Case> {
    let path = home.join(name);
    let mut all = args.to_vec();
    let p = path.to_str().unwrap();
    all.extend(["--write-cases", p]);
    let out = judge(home, &all);
    assert!(out.status.success(), "{}", text(&out));
    cases::load(&path).unwrap()
}

#[test]
fn stored_outputs_are_written_regenerated_and_judged() {
    let _turn = model_turn();
    let home = job_home(CONFIG, None);
    let summary = run(&home, &["--users", "3"]);
    assert!(summary["done"].as_u64().unwrap() >= 2, "{summary}");
    let (users, _) = stored(&home);

    // every stored output of each stage, once
    let all = written(&home, "all.jsonl", &["--sample", "1000"]);
    let count = |stage| all.iter().filter(|c| c.stage == stage).count();
    let interests: usize = users.values().map(|r| r.interests.interests.len()).sum();
    let tags: usize = users.values().map(|r| r.tags.tags.len()).sum();
    let pairs: BTreeSet<(String, String)> = users
        .values()
        .flat_map(|r| &r.recommendations)
        .filter(|x| x.explanation.is_some())
        .map(|x| (x.interest_key.clone().unwrap(), x.item.clone()))
        .collect();
    assert_eq!(count(Stage::Interests), interests);
    assert_eq!(count(Stage::Tags), tags);
    assert_eq!(count(Stage::Explanations), pairs.len());
    assert!(pairs.len() >= 2, "{pairs:?}");
    for c in all.iter().filter(|c| c.stage == Stage::Explanations) {
        // a stored model explanation passed the rules; a fallback is there because they failed
        assert_eq!(c.rules, Some(c.source == "model"), "{c:?}");
        assert!(c.title.is_some() && c.item.is_some(), "{c:?}");
    }
    // a smaller sample is a seeded subset
    let some = written(&home, "some.jsonl", &["--stage", "tags", "--sample", "3"]);
    assert_eq!(some.len(), 3.min(tags));
    assert_eq!(
        some,
        written(&home, "again.jsonl", &["--stage", "tags", "--sample", "3"])
    );

    // answered afresh: every answer kept, with the rules' verdict and the rule it broke
    let fresh = written(
        &home,
        "fresh.jsonl",
        &[
            "--stage",
            "explanations",
            "--sample",
            "2",
            "--regenerate",
            "2",
        ],
    );
    assert!(!fresh.is_empty() && fresh.len() <= 4, "{fresh:?}");
    let ids: BTreeSet<&str> = fresh.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), fresh.len());
    for c in &fresh {
        assert_eq!(c.source, "model");
        assert_eq!(c.rules == Some(false), c.rule.is_some(), "{c:?}");
        assert!(!c.text.is_empty());
    }

    // judged (the small model stands in for the judge's here: this checks the command, not
    // the verdicts), greedily: the same verdicts twice
    let model = model_file();
    let args = [
        "--json",
        "judge",
        "--stage",
        "tags,explanations",
        "--sample",
        "3",
        "--model",
        model.to_str().unwrap(),
    ];
    let report = |args: &[&str]| -> serde_json::Value {
        let out = recgpt(&home, args).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let r = report(&args);
    let stages: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["tags", "explanations"]);
    let graded = r["graded"].as_array().unwrap();
    let judged: u64 = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["judge_pass"]["n"].as_u64().unwrap())
        .sum();
    assert_eq!(judged as usize, graded.len());
    assert!(r["tokens"]["generated"].as_u64().unwrap() > 0, "{r}");
    assert!(r["seconds_per_output"].as_f64().unwrap() > 0.0);
    assert!(r["stages"][1]["rules"].is_object(), "{r}");
    let verdicts = |r: &serde_json::Value| r["graded"].clone();
    assert_eq!(verdicts(&r), verdicts(&report(&args)));

    // the judge inside the batch job (`[judge] explanations`): the explanations' key changes,
    // so the stored users are explained again, each answer the rules keep graded before it is
    // stored, and the cache statistics find them under the judge's key
    // (more pairs and answers than the job's quick settings, so that some answer passes the
    // rules and reaches the judge whatever the narratives make of these users)
    let quick = CONFIG
        .replace("attempts = 1", "attempts = 3")
        .replace("k = 2", "k = 6");
    set_config(
        &home,
        &format!("{quick}[judge]\nexplanations = true\nmodel = {model:?}\n"),
    );
    let judged = run(&home, &["--users", "3"]);
    let e = &judged["explain"];
    assert_eq!(judged["done"], summary["done"], "{judged}");
    assert!(e["judged"].as_u64().unwrap() > 0, "{judged}");
    assert!(e["judge_tokens"]["generated"].as_u64().unwrap() > 0, "{e}");
    assert!(e["judge_failed"].as_u64().unwrap() <= e["judged"].as_u64().unwrap());
    assert_eq!(
        e["generated"].as_u64().unwrap() + e["fallbacks"].as_u64().unwrap(),
        e["requested"].as_u64().unwrap() - e["hits"].as_u64().unwrap(),
        "{e}"
    );
    let out = recgpt(&home, &["--json", "stats", "explanations"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let reuse: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        reuse["prompt_version"]
            .as_str()
            .unwrap()
            .contains("+judge@"),
        "{reuse}"
    );
    assert_eq!(reuse["users"], summary["done"], "{reuse}");
    assert_eq!(reuse["other_users"], 0, "{reuse}");
}

#[test]
fn bad_judge_input_is_a_clear_error() {
    let home = crate::common::temp_home();
    let out = judge(&home, &["--cases", "/nonexistent/cases.jsonl"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("/nonexistent/cases.jsonl"),
        "{}",
        text(&out)
    );

    let out = judge(&home, &["--stage", "outputs"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown stage `outputs`"),
        "{}",
        text(&out)
    );

    let bad = home.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"a\", \"stage\": \"tags\", \"interest\": 3}\n",
    )
    .unwrap();
    let out = judge(&home, &["--cases", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("bad.jsonl:1:") && err.contains("invalid type"),
        "{err}"
    );

    // the labelled set's halves split it
    let labelled = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../prompts/cases/judge/labelled.jsonl"
    );
    let n = |half: &str| {
        let path = home.join(format!("{half}.jsonl"));
        let out = judge(
            &home,
            &[
                "--cases",
                labelled,
                "--half",
                half,
                "--write-cases",
                path.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        cases::load(&path).unwrap().len()
    };
    let (dev, held_out, all) = (n("dev"), n("held-out"), n("all"));
    assert_eq!(dev + held_out, all);
    assert!(
        all >= 150 && dev >= all / 3 && held_out >= all / 3,
        "{dev} {held_out}"
    );
}
