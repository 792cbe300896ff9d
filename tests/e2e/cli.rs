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
