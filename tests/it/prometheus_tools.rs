//! The support for checking Prometheus text-format files with their real consumers
//! (`tests/support/prom.rs`): promtool's lint, rule check and rule unit tests, and
//! node_exporter's textfile collector. Each check is shown to pass on a good input and to fail
//! on a bad one, so that a test of the product's metrics file that passes means something.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::prom::{self, NodeExporter};

/// What a good textfile looks like: HELP and TYPE for every family, base units, a `_total`
/// counter, and a label value that needs escaping.
const GOOD: &str = r#"# HELP onboard_users Providers in the pool, by Cognito status.
# TYPE onboard_users gauge
onboard_users{pool="eu-west-1_abc",status="CONFIRMED"} 12
onboard_users{pool="eu-west-1_abc",status="FORCE_CHANGE_PASSWORD"} 3
# HELP onboard_invitations_total Invitations sent since the state database was created.
# TYPE onboard_invitations_total counter
onboard_invitations_total{pool="eu-west-1_abc",source="a \"quoted\", comma\\separated list"} 15
# HELP onboard_last_success_timestamp_seconds When the last run finished without error.
# TYPE onboard_last_success_timestamp_seconds gauge
onboard_last_success_timestamp_seconds 1.7e+09
# HELP onboard_run_duration_seconds How long the last run took.
# TYPE onboard_run_duration_seconds gauge
onboard_run_duration_seconds 4.25
"#;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write a textfile");
}

#[test]
fn a_well_formed_textfile_passes_promtool() {
    if let Err(e) = prom::check_metrics(GOOD) {
        panic!("promtool rejected a good file:\n{e}");
    }
}

#[test]
fn lint_problems_fail_promtool() {
    let cases = [
        (
            "a counter without _total",
            "# HELP onboard_invitations Sent.\n# TYPE onboard_invitations counter\nonboard_invitations 1\n",
            "should have \"_total\" suffix",
        ),
        (
            "no HELP",
            "# TYPE onboard_users gauge\nonboard_users 1\n",
            "no help text",
        ),
        (
            "a unit that is not the base unit",
            "# HELP onboard_run_duration_milliseconds D.\n# TYPE onboard_run_duration_milliseconds gauge\nonboard_run_duration_milliseconds 4250\n",
            "use base unit \"seconds\"",
        ),
    ];
    for (what, text, says) in cases {
        let err =
            prom::check_metrics(text).expect_err(&format!("promtool accepted a file with {what}"));
        // promtool 2.42 exits 3 for lint problems and 1 for parse errors.
        assert!(
            err.contains("exited with code 3") && err.contains(says),
            "{what}: expected a lint problem saying {says:?}, got:\n{err}"
        );
    }
}

#[test]
fn syntax_errors_fail_promtool() {
    let cases = [
        (
            "an unterminated label value",
            "# HELP onboard_users U.\n# TYPE onboard_users gauge\nonboard_users{status=\"CONFIRMED} 1\n",
        ),
        (
            "a value that is no number",
            "# HELP onboard_users U.\n# TYPE onboard_users gauge\nonboard_users twelve\n",
        ),
        (
            "no newline at the end",
            "# HELP onboard_users U.\n# TYPE onboard_users gauge\nonboard_users 12",
        ),
        (
            "a family split in two",
            "# HELP onboard_users U.\n# TYPE onboard_users gauge\nonboard_users{a=\"1\"} 1\n\
             # HELP onboard_users U.\n# TYPE onboard_users gauge\nonboard_users{a=\"2\"} 2\n",
        ),
    ];
    for (what, text) in cases {
        let err =
            prom::check_metrics(text).expect_err(&format!("promtool accepted a file with {what}"));
        assert!(
            err.contains("exited with code 1") && err.contains("parsing error"),
            "{what}: expected a parse error, got:\n{err}"
        );
    }
}

#[test]
fn node_exporter_serves_a_valid_textfile() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "x.prom", GOOD);
    let ne = NodeExporter::start(dir.path());
    assert_eq!(ne.scrape_errors(), None, "{}", ne.log());
    let scrape = ne.scrape();
    assert_eq!(
        prom::samples(&scrape, "onboard_users"),
        vec![
            (
                labels(&[("pool", "eu-west-1_abc"), ("status", "CONFIRMED")]),
                12.0
            ),
            (
                labels(&[
                    ("pool", "eu-west-1_abc"),
                    ("status", "FORCE_CHANGE_PASSWORD")
                ]),
                3.0
            ),
        ]
    );
    assert_eq!(
        prom::samples(&scrape, "onboard_invitations_total"),
        vec![(
            labels(&[
                ("pool", "eu-west-1_abc"),
                ("source", r#"a "quoted", comma\separated list"#)
            ]),
            15.0
        )]
    );
    assert_eq!(
        prom::samples(&scrape, "onboard_last_success_timestamp_seconds"),
        vec![(BTreeMap::new(), 1.7e9)]
    );
    // What node_exporter serves is itself good text.
    if let Err(e) = prom::check_metrics(&scrape) {
        panic!("promtool rejected node_exporter's own output:\n{e}");
    }
}

#[test]
fn node_exporter_flags_an_invalid_textfile() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "x.prom", GOOD);
    write(
        dir.path(),
        "y.prom",
        "# HELP onboard_broken B.\n# TYPE onboard_broken gauge\nonboard_broken{status=\"x} 1\n",
    );
    let ne = NodeExporter::start(dir.path());
    assert_eq!(ne.textfile_scrape_error(), 1.0, "{}", ne.log());
    let errors = ne.scrape_errors().expect("the broken file reported");
    assert!(errors.contains("y.prom"), "{errors}");
    // The collector drops the broken file whole and still serves the good one.
    let scrape = ne.scrape();
    assert!(prom::samples(&scrape, "onboard_broken").is_empty());
    assert_eq!(prom::samples(&scrape, "onboard_users").len(), 2);
}

/// A gap between the two consumers: promtool 2.42 lints a repeated series as fine, and
/// node_exporter keeps the first sample, leaves `node_textfile_scrape_error` at 0, and only logs
/// the repeat. `scrape_errors` reads the log so that it is not missed.
#[test]
fn a_repeated_series_passes_promtool_but_not_scrape_errors() {
    let text = "# HELP onboard_users U.\n# TYPE onboard_users gauge\n\
                onboard_users{status=\"CONFIRMED\"} 1\nonboard_users{status=\"CONFIRMED\"} 2\n";
    assert!(prom::check_metrics(text).is_ok());
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "x.prom", text);
    let ne = NodeExporter::start(dir.path());
    assert_eq!(ne.textfile_scrape_error(), 0.0);
    let errors = ne.scrape_errors().expect("the repeated series reported");
    assert!(errors.contains("collected before"), "{errors}");
    assert_eq!(
        prom::samples(&ne.scrape(), "onboard_users"),
        vec![(labels(&[("status", "CONFIRMED")]), 1.0)]
    );
}

const RULES: &str = r#"groups:
  - name: onboard
    rules:
      - alert: OnboardStale
        expr: time() - onboard_last_success_timestamp_seconds > 2 * 3600
        labels:
          severity: warning
        annotations:
          summary: cognito-onboard has not succeeded for 2h
"#;

/// The job succeeds every minute for 30 minutes, then stops: the timestamp stays at 1800 s and
/// the alert fires once it is more than 2 h old, after 150 minutes.
const RULES_TEST: &str = r#"rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'onboard_last_success_timestamp_seconds{job="onboard"}'
        values: '0+60x30 1800x200'
    alert_rule_test:
      - eval_time: 149m
        alertname: OnboardStale
        exp_alerts: []
      - eval_time: 151m
        alertname: OnboardStale
        exp_alerts:
          - exp_labels:
              severity: warning
              job: onboard
            exp_annotations:
              summary: cognito-onboard has not succeeded for 2h
"#;

#[test]
fn promtool_checks_and_unit_tests_an_alerting_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yml");
    let test = dir.path().join("rules_test.yml");
    std::fs::write(&rules, RULES).unwrap();
    std::fs::write(&test, RULES_TEST).unwrap();
    if let Err(e) = prom::check_rules(&rules) {
        panic!("promtool rejected a good rule file:\n{e}");
    }
    if let Err(e) = prom::test_rules(&test) {
        panic!("the rule's unit test failed:\n{e}");
    }

    // A unit test that expects the alert too early fails.
    let early = dir.path().join("early_test.yml");
    std::fs::write(&early, RULES_TEST.replace("151m", "140m")).unwrap();
    let err = prom::test_rules(&early).expect_err("an alert expected before it fires");
    assert!(err.contains("FAILED"), "{err}");

    // A rule whose expression does not parse fails both the check and the unit test.
    std::fs::write(&rules, RULES.replace("> 2 * 3600", "> 2 *")).unwrap();
    let err = prom::check_rules(&rules).expect_err("a broken expression accepted");
    assert!(err.contains("could not parse expression"), "{err}");
    assert!(prom::test_rules(&test).is_err());
}

#[test]
fn samples_reads_labels_escapes_and_special_values() {
    let text = r#"# HELP m M.
# TYPE m gauge
m{a="x \"y\", z",b="back\\slash",c="new\nline",d="{braces} = "} 1
m { a = "spaced" , } -2.5e-3 1700000000000
m_total 7
m NaN
m{a="inf"} +Inf
mm 3
"#;
    let found = prom::samples(text, "m");
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(
        found[0],
        (
            labels(&[
                ("a", r#"x "y", z"#),
                ("b", r"back\slash"),
                ("c", "new\nline"),
                ("d", "{braces} = ")
            ]),
            1.0
        )
    );
    assert_eq!(found[1], (labels(&[("a", "spaced")]), -2.5e-3));
    assert!(found[2].0.is_empty() && found[2].1.is_nan());
    assert_eq!(found[3], (labels(&[("a", "inf")]), f64::INFINITY));
    assert_eq!(prom::samples(text, "m_total"), vec![(BTreeMap::new(), 7.0)]);
    assert!(prom::samples(text, "absent").is_empty());
}
