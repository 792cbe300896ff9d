//! What the judge's verdicts add up to, per stage: pass rates with 95% intervals, failures by
//! rubric point, agreement with the rule filters (a confusion table), and, on labelled cases,
//! the accuracy and false-pass rate of the rules, the judge and both together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use recgpt_llm::TokenUse;
use recgpt_retrieval::metrics::Rate;

use super::{Graded, Grading, Stage};

/// The judge's report over some cases.
#[derive(Debug, Clone, Serialize)]
pub struct JudgeReport {
    pub model_id: String,
    pub prompt_version: String,
    /// Where the cases came from (a labelled file and its half, or the results store).
    pub cases: String,
    pub stages: Vec<StageReport>,
    /// What judging cost on this machine: wall seconds and tokens, in all and per output.
    pub seconds: f64,
    pub tokens: TokenUse,
    pub seconds_per_output: f64,
    pub prompt_tokens_per_output: f64,
    pub generated_tokens_per_output: f64,
    /// CPU threads the backend used, where it says.
    pub threads: Option<usize>,
    pub graded: Vec<Graded>,
}

/// One stage's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub stage: Stage,
    /// Outputs judged, by who wrote them (`model`, `template`, `fallback`).
    pub by_source: BTreeMap<String, usize>,
    /// Outputs the judge passes.
    pub judge_pass: Rate,
    /// Outputs failed at each rubric point (of all judged); `unparsable` for answers that did
    /// not parse.
    pub failed: BTreeMap<String, Rate>,
    /// Where the rule filters' verdicts are known: rules × judge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Confusion>,
    /// Where cases are labelled: each filter against the labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Calibration>,
}

/// Two binary verdicts side by side: rules (rows) × judge (columns).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub both_pass: usize,
    /// The rules keep it, the judge fails it.
    pub rules_only: usize,
    /// The rules reject it, the judge passes it.
    pub judge_only: usize,
    pub both_fail: usize,
}

impl Confusion {
    pub fn n(&self) -> usize {
        self.both_pass + self.rules_only + self.judge_only + self.both_fail
    }
}

/// The filters against the labels, on the labelled cases.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Labelled cases, and the share a person passed.
    pub label_pass: Rate,
    /// The judge alone; the rules alone (where known); an output kept only when both pass.
    pub judge: Agreement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Agreement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub both: Option<Agreement>,
    /// Of the cases both the label and the judge fail, those where they name the same point.
    pub same_point: Rate,
}

/// One filter's verdicts against the labels.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// Outputs the filter passes.
    pub pass: Rate,
    /// Verdicts equal to the label.
    pub accuracy: Rate,
    /// Of the outputs a person failed, the share the filter passes (what slips through).
    pub false_pass: Rate,
    /// Of the outputs a person passed, the share the filter fails (what is lost).
    pub false_fail: Rate,
}

impl Agreement {
    /// `pairs`: (filter passes, label passes).
    fn of(pairs: &[(bool, bool)]) -> Self {
        let count = |f: &dyn Fn(&(bool, bool)) -> bool| pairs.iter().filter(|p| f(p)).count();
        let label_fail = count(&|p| !p.1);
        let label_pass = pairs.len() - label_fail;
        Self {
            pass: Rate::wilson(count(&|p| p.0), pairs.len()),
            accuracy: Rate::wilson(count(&|p| p.0 == p.1), pairs.len()),
            false_pass: Rate::wilson(count(&|p| p.0 && !p.1), label_fail),
            false_fail: Rate::wilson(count(&|p| !p.0 && p.1), label_pass),
        }
    }
}

impl StageReport {
    /// The figures of `stage` over its graded cases (`None` when it has none).
    pub fn of(stage: Stage, graded: &[&Graded]) -> Option<Self> {
        if graded.is_empty() {
            return None;
        }
        let n = graded.len();
        let mut by_source = BTreeMap::new();
        for g in graded {
            *by_source.entry(g.case.source.clone()).or_default() += 1;
        }
        let passed = graded.iter().filter(|g| g.verdict.pass).count();
        let mut failed = BTreeMap::new();
        for point in stage.points() {
            let k = graded
                .iter()
                .filter(|g| g.verdict.failed.as_deref() == Some(point.name))
                .count();
            failed.insert(point.name.to_string(), Rate::wilson(k, n));
        }
        let unparsable = graded.iter().filter(|g| g.verdict.unparsable).count();
        failed.insert("unparsable".into(), Rate::wilson(unparsable, n));

        let with_rules: Vec<(bool, bool)> = graded
            .iter()
            .filter_map(|g| g.case.rules.map(|r| (r, g.verdict.pass)))
            .collect();
        let rules = (!with_rules.is_empty()).then(|| {
            let mut c = Confusion::default();
            for (rules, judge) in with_rules {
                match (rules, judge) {
                    (true, true) => c.both_pass += 1,
                    (true, false) => c.rules_only += 1,
                    (false, true) => c.judge_only += 1,
                    (false, false) => c.both_fail += 1,
                }
            }
            c
        });
        Some(Self {
            stage,
            by_source,
            judge_pass: Rate::wilson(passed, n),
            failed,
            rules,
            labels: calibration(graded),
        })
    }
}

/// The filters against the labels of the labelled cases (`None` when none is labelled).
fn calibration(graded: &[&Graded]) -> Option<Calibration> {
    let labelled: Vec<(&Graded, bool)> = graded
        .iter()
        .filter_map(|g| g.case.label.as_ref().map(|l| (*g, l.pass)))
        .collect();
    if labelled.is_empty() {
        return None;
    }
    let judge: Vec<(bool, bool)> = labelled
        .iter()
        .map(|(g, label)| (g.verdict.pass, *label))
        .collect();
    // the rules' and both filters' figures need the rules' verdict on every labelled case
    let rules: Option<Vec<(bool, bool)>> = labelled
        .iter()
        .map(|(g, label)| g.case.rules.map(|r| (r, *label)))
        .collect();
    let both: Option<Vec<(bool, bool)>> = labelled
        .iter()
        .map(|(g, label)| g.case.rules.map(|r| (r && g.verdict.pass, *label)))
        .collect();
    let both_fail: Vec<&Graded> = labelled
        .iter()
        .filter(|(g, label)| !label && !g.verdict.pass)
        .map(|(g, _)| *g)
        .collect();
    let same = both_fail
        .iter()
        .filter(|g| {
            let label = g.case.label.as_ref().and_then(|l| l.point.as_deref());
            label.is_some() && label == g.verdict.failed.as_deref()
        })
        .count();
    Some(Calibration {
        label_pass: Rate::wilson(labelled.iter().filter(|(_, l)| *l).count(), labelled.len()),
        judge: Agreement::of(&judge),
        rules: rules.as_deref().map(Agreement::of),
        both: both.as_deref().map(Agreement::of),
        same_point: Rate::wilson(same, both_fail.len()),
    })
}

impl JudgeReport {
    /// The report of a grading.
    pub fn new(
        model_id: &str,
        prompt_version: &str,
        cases: &str,
        grading: Grading,
        threads: Option<usize>,
    ) -> Self {
        let stages = Stage::ALL
            .into_iter()
            .filter_map(|stage| {
                let of: Vec<&Graded> = grading
                    .graded
                    .iter()
                    .filter(|g| g.case.stage == stage)
                    .collect();
                StageReport::of(stage, &of)
            })
            .collect();
        let n = grading.graded.len().max(1) as f64;
        Self {
            model_id: model_id.into(),
            prompt_version: prompt_version.into(),
            cases: cases.into(),
            stages,
            seconds: grading.seconds,
            seconds_per_output: grading.seconds / n,
            prompt_tokens_per_output: grading.tokens.prompt as f64 / n,
            generated_tokens_per_output: grading.tokens.generated as f64 / n,
            tokens: grading.tokens,
            threads,
            graded: grading.graded,
        }
    }

    /// The floors `floors` breaks, as lines naming stage, filter, figure, value and floor.
    pub fn floor_failures(&self, floors: &JudgeFloors) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stages {
            let name = s.stage.name();
            let Some(c) = &s.labels else {
                out.push(format!("{name}: no labelled case to check floors on"));
                continue;
            };
            let (filter, a) = match floors.filter {
                Filter::Judge => ("judge", Some(&c.judge)),
                Filter::Both => ("rules and judge", c.both.as_ref()),
            };
            let Some(a) = a else {
                out.push(format!("{name}: the rules' verdicts are not known"));
                continue;
            };
            if a.accuracy.rate < floors.accuracy_min {
                out.push(format!(
                    "{name}: {filter} accuracy {:.3} < {}",
                    a.accuracy.rate, floors.accuracy_min
                ));
            }
            if a.false_pass.n > 0 && a.false_pass.rate > floors.false_pass_max {
                out.push(format!(
                    "{name}: {filter} false-pass rate {:.3} > {}",
                    a.false_pass.rate, floors.false_pass_max
                ));
            }
        }
        out
    }
}

/// What a filter must reach against the labels, per stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeFloors {
    /// The filter checked: the judge alone, or the rules and the judge together (an output
    /// kept only when both pass it, as the batch job would keep it).
    pub filter: Filter,
    pub accuracy_min: f64,
    pub false_pass_max: f64,
}

/// A filter of outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Judge,
    Both,
}

/// The report as a table.
pub fn table(r: &JudgeReport) -> String {
    let pct = |x: &Rate| {
        format!(
            "{:5.1}% [{:4.1}, {:5.1}] n={}",
            100.0 * x.rate,
            100.0 * x.low,
            100.0 * x.high,
            x.n
        )
    };
    let mut out = format!(
        "judge {} ({}), cases: {}\n",
        r.model_id, r.prompt_version, r.cases
    );
    for s in &r.stages {
        out.push_str(&format!(
            "\n{}: {:?}\n  judge pass      {}\n",
            s.stage.name(),
            s.by_source,
            pct(&s.judge_pass)
        ));
        for (point, rate) in &s.failed {
            if rate.k > 0 {
                out.push_str(&format!("  fails {point:<10}{}\n", pct(rate)));
            }
        }
        if let Some(c) = &s.rules {
            out.push_str(&format!(
                "  rules × judge   both pass {}, rules only {}, judge only {}, both fail {}\n",
                c.both_pass, c.rules_only, c.judge_only, c.both_fail
            ));
        }
        if let Some(c) = &s.labels {
            out.push_str(&format!("  labels pass     {}\n", pct(&c.label_pass)));
            let rows = [
                ("rules", c.rules.as_ref()),
                ("judge", Some(&c.judge)),
                ("both", c.both.as_ref()),
            ];
            for (name, a) in rows {
                if let Some(a) = a {
                    out.push_str(&format!(
                        "  {name:<6} pass {}  accuracy {}  false-pass {}\n",
                        pct(&a.pass),
                        pct(&a.accuracy),
                        pct(&a.false_pass)
                    ));
                }
            }
        }
    }
    out.push_str(&format!(
        "\ncost: {:.1} s, {:.2} s/output, {:.0} prompt + {:.0} generated tokens/output\n",
        r.seconds, r.seconds_per_output, r.prompt_tokens_per_output, r.generated_tokens_per_output
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::case;
    use super::super::{Label, Verdict};
    use super::*;

    fn graded(rules: bool, judge: bool, label: bool, point: Option<&str>) -> Graded {
        let mut case = case(Stage::Explanations);
        case.rules = Some(rules);
        case.label = Some(Label {
            pass: label,
            point: point.map(String::from),
            note: String::new(),
        });
        Graded {
            case,
            verdict: Verdict {
                pass: judge,
                failed: (!judge).then(|| "true".to_string()),
                reason: "r".into(),
                unparsable: false,
            },
        }
    }

    #[test]
    fn confusion_and_calibration_by_hand() {
        let all = [
            graded(true, true, true, None),
            graded(true, false, false, Some("true")),
            graded(true, true, false, Some("clear")),
            graded(false, false, false, Some("relevant")),
            graded(false, true, true, None),
        ];
        let refs: Vec<&Graded> = all.iter().collect();
        let s = StageReport::of(Stage::Explanations, &refs).unwrap();
        assert_eq!((s.judge_pass.k, s.judge_pass.n), (3, 5));
        assert_eq!(s.failed["true"].k, 2);
        let c = s.rules.unwrap();
        assert_eq!(
            (c.both_pass, c.rules_only, c.judge_only, c.both_fail),
            (2, 1, 1, 1)
        );
        let l = s.labels.unwrap();
        assert_eq!((l.label_pass.k, l.label_pass.n), (2, 5));
        // judge: right on 1, 2, 4, 5; passes one of the three fails
        assert_eq!(l.judge.accuracy.k, 4);
        assert_eq!((l.judge.false_pass.k, l.judge.false_pass.n), (1, 3));
        assert_eq!((l.judge.false_fail.k, l.judge.false_fail.n), (0, 2));
        // rules: keep 1, 2, 3 → right on 1 and 4 only... and 5 is a label pass the rules fail
        let r = l.rules.unwrap();
        assert_eq!(r.accuracy.k, 2);
        assert_eq!(r.false_pass.k, 2);
        // both: pass 1 and 3 → right on 1, 2 and 4; 3 slips through, 5 is lost
        let b = l.both.unwrap();
        assert_eq!((b.pass.k, b.accuracy.k, b.false_pass.k), (2, 3, 1));
        assert_eq!(b.false_fail.k, 1);
        // both failed by label and judge: cases 2 (same point) and 4 (different)
        assert_eq!((l.same_point.k, l.same_point.n), (1, 2));
    }

    #[test]
    fn floors_name_the_stage_and_figure() {
        let all = [
            graded(true, true, false, Some("true")),
            graded(true, true, true, None),
        ];
        let grading = Grading {
            graded: all.to_vec(),
            tokens: TokenUse::default(),
            seconds: 1.0,
        };
        let r = JudgeReport::new("m", "judge@0", "test", grading, None);
        let mut floors = JudgeFloors {
            filter: Filter::Judge,
            accuracy_min: 0.75,
            false_pass_max: 0.5,
        };
        let failures = r.floor_failures(&floors);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].starts_with("explanations: judge accuracy 0.500"));
        assert!(failures[1].contains("false-pass rate 1.000 > 0.5"));
        // both cases pass the rules too, so the rules and judge together fail the same way
        floors.filter = Filter::Both;
        let failures = r.floor_failures(&floors);
        assert!(failures[0].starts_with("explanations: rules and judge accuracy 0.500"));
        assert!(table(&r).contains("false-pass"));
    }
}
