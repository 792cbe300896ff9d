//! The `recgpt` binary on the real data.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{data_file, model_file, temp_home};

fn recgpt(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recgpt"))
        .args(args)
        .env("RECGPT_HOME", home)
        .env("RECGPT_MODEL", model_file())
        .output()
        .expect("run recgpt")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

#[test]
fn import_narrative_and_stats_from_the_command_line() {
    let home = temp_home();
    let data = data_file();
    let summary = json(&recgpt(
        &home,
        &["import", "online-retail", data.to_str().unwrap(), "--json"],
    ));
    assert_eq!(summary["events_file"]["rows_read"], 541_909);
    assert_eq!(summary["events"], 404_793);

    let n = json(&recgpt(
        &home,
        &["narrative", "12347", "--budget", "300", "--json"],
    ));
    assert!(n["tokens"].as_u64().unwrap() <= 300);
    assert_eq!(n["events"], 182);
    assert!(n["text"]
        .as_str()
        .unwrap()
        .starts_with("Behaviour history as of 2011-12-10"));

    // --until hides later events; --as-of moves "now"
    let n = json(&recgpt(
        &home,
        &["narrative", "12347", "--until", "2011-11-01", "--json"],
    ));
    assert_eq!(n["as_of"], "2011-11-01");
    assert!(n["events"].as_u64().unwrap() < 182);
    let text = recgpt(
        &home,
        &[
            "narrative",
            "12347",
            "--until",
            "2011-11-01",
            "--as-of",
            "2011-11-20",
        ],
    );
    assert!(String::from_utf8_lossy(&text.stdout).contains("2011-10-31 (purchase)"));

    let s = json(&recgpt(&home, &["stats", "narratives", "--json"]));
    assert_eq!(s["users"], 4_362);
    assert_eq!(s["narratives"]["fit_rate"], 1.0);
    assert!(s["narratives"]["max"].as_u64().unwrap() <= 1024);
    let fit = |k: &str| s[k]["fit_rate"].as_f64().unwrap();
    assert!(
        fit("uncompressed") < fit("compressed"),
        "compression makes more histories fit"
    );
    assert!(
        s["compressed"]["max"].as_u64().unwrap() > 1024,
        "some histories need dropping"
    );
    assert_eq!(s["retention"]["split"], "2011-11-01");
    let r = &s["retention"];
    assert!(r["narrative"].as_f64().unwrap() <= r["history"].as_f64().unwrap());
    assert!(r["narrative"].as_f64().unwrap() > 0.0);
    // summaries before cuts: more histories are told whole than fit as they are
    assert!(
        s["uncut"].as_f64().unwrap() > fit("compressed"),
        "{}",
        s["uncut"]
    );
    let deciles = s["retention_by_decile"].as_array().unwrap();
    assert_eq!(deciles.len(), 10);
    let users: u64 = deciles.iter().map(|d| d["users"].as_u64().unwrap()).sum();
    assert_eq!(users, r["users"].as_u64().unwrap());
    for d in deciles {
        assert!(d["narrative"].as_f64().unwrap() <= d["history"].as_f64().unwrap() + 1e-12);
    }

    // a reader that goes away (`recgpt users | head`) ends the command quietly, by SIGPIPE as
    // other tools, not with a panic
    let mut child = Command::new(env!("CARGO_BIN_EXE_recgpt"))
        .args(["users", "--limit", "5000"])
        .env("RECGPT_HOME", &home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run recgpt");
    drop(child.stdout.take()); // 4,362 lines do not fit a pipe's buffer
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "SIGPIPE: {:?}", out.status);
}

#[test]
fn errors_name_what_is_wrong() {
    let home = temp_home();
    let out = recgpt(&home, &["narrative", "12347"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no event store"));

    let data = data_file();
    assert!(
        recgpt(&home, &["import", "online-retail", data.to_str().unwrap()])
            .status
            .success()
    );
    let out = recgpt(&home, &["narrative", "no-such-user"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown user `no-such-user`"));
    let out = recgpt(&home, &["narrative", "12347", "--until", "01/11/2011"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected YYYY-MM-DD"));
    let out = Command::new(env!("CARGO_BIN_EXE_recgpt"))
        .args(["narrative", "12347"])
        .env("RECGPT_HOME", &home)
        .env("RECGPT_MODEL", home.join("missing.gguf"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.gguf not found"));
}

#[test]
fn train_index_retrieve_and_eval_from_the_command_line() {
    let home = temp_home();
    let store = recgpt_data::Store::path_in(&crate::common::real_import().0);
    std::fs::copy(&store, recgpt_data::Store::path_in(&home)).unwrap();

    let losses = json(&recgpt(
        &home,
        &["train", "--until", "2011-11-01", "--epochs", "1", "--json"],
    ));
    assert_eq!(losses.as_array().unwrap().len(), 1);
    assert!(home.join("model/model.json").is_file());
    assert!(
        home.join("categories.json").is_file(),
        "categories built on the way"
    );

    let index = json(&recgpt(&home, &["index", "build", "--json"]));
    assert_eq!(index["kind"], "qdrant-edge");
    assert_eq!(index["points"], 3_799);

    let r = json(&recgpt(
        &home,
        &["retrieve", "12347", "--k", "20", "--json"],
    ));
    let items = r["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(items
        .iter()
        .all(|i| i["title"].as_str().is_some_and(|t| !t.is_empty())));
    assert!(
        items.iter().any(|i| i["tag"].is_string()),
        "some items come from tag queries, with their tag"
    );
    let unknown = recgpt(&home, &["retrieve", "no-such-user"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-user"));

    let e = json(&recgpt(
        &home,
        &[
            "eval",
            "--split",
            "2011-11-01",
            "--epochs",
            "1",
            "--k",
            "10",
            "--json",
        ],
    ));
    assert_eq!(e["methods"].as_array().unwrap().len(), 6);
    assert!(home.join("eval/eval-2011-11-01.json").is_file());
    let svg = std::fs::read_to_string(home.join("eval/recall-2011-11-01.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("ThreeTower"));
}
