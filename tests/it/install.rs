//! What installing the tool gives an operator: `--version` with the commit, completions and
//! the man page from the binary itself, and scheduler samples checked by the scheduler's own
//! tools.

use std::path::Path;
use std::process::Command;

use cognito_onboard::error::exit;

use crate::support::{self, binary};

const SUBCOMMANDS: [&str; 8] = [
    "check",
    "run",
    "status",
    "doctor",
    "reissue",
    "reset",
    "completions",
    "man",
];

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = binary(["--version"]).expect(exit::OK);
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(support::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        out.stdout().trim(),
        format!(
            "cognito-onboard {} (commit {commit})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_binary_and_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = binary(["completions", shell]).expect(exit::OK);
        for sub in SUBCOMMANDS {
            assert!(out.stdout().contains(sub), "{shell} completions lack {sub}");
        }
    }
    binary(["completions", "tcsh"]).expect(exit::USAGE);
    let man = binary(["man"]).expect(exit::OK);
    assert!(
        man.stdout().contains(".TH cognito-onboard 1"),
        "not a man page"
    );
    for sub in SUBCOMMANDS {
        assert!(
            man.stdout()
                .contains(&format!(".SH \"COGNITO ONBOARD {}\"", sub.to_uppercase())),
            "the man page has no section for {sub}"
        );
    }
}

/// `systemd-analyze verify` on the samples, installed as docs/scheduling.md says, with the binary
/// at `ExecStart`'s path replaced by this build's.
fn verify_units(service: &str, timer: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_cognito-onboard");
    std::fs::write(
        dir.path().join("cognito-onboard.service"),
        service.replace("/usr/local/bin/cognito-onboard", bin),
    )
    .unwrap();
    std::fs::write(dir.path().join("cognito-onboard.timer"), timer).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("cognito-onboard.service"))
        .arg(dir.path().join("cognito-onboard.timer"))
        .output()
        .expect("systemd-analyze (Debian's systemd package) runs");
    (
        out.status.success() && out.stderr.is_empty(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_systemd_samples_pass_systemd_analyze_verify() {
    let root = support::root().join("samples/systemd");
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
    let (service, timer) = (
        read("cognito-onboard.service"),
        read("cognito-onboard.timer"),
    );
    let (ok, stderr) = verify_units(&service, &timer);
    assert!(ok, "systemd-analyze verify: {stderr}");
    // The check can fail: a timer with no valid schedule is refused.
    let (ok, stderr) = verify_units(&service, &timer.replace("hourly", "now and then"));
    assert!(!ok, "a broken timer passed: {stderr}");
    // The service runs `run` on the state directory systemd makes for it.
    assert!(service.contains("ExecStart=/usr/local/bin/cognito-onboard run "));
    assert!(service.contains("StateDirectory=cognito-onboard"));
    // A failed run starts the notifier, whose instance systemd-analyze verifies as well.
    assert!(service.contains("OnFailure=cognito-onboard-failed@%n.service"));
    let dir = tempfile::tempdir().unwrap();
    let notifier = read("cognito-onboard-failed@.service");
    let verify_notifier = |text: &str| {
        std::fs::write(dir.path().join("cognito-onboard-failed@.service"), text).unwrap();
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(
                dir.path()
                    .join("cognito-onboard-failed@cognito-onboard.service.service"),
            )
            .output()
            .unwrap()
    };
    let out = verify_notifier(&notifier);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify_notifier(&notifier.replace("ExecStart=/bin/sh", "ExecStart=/bin/no-such-sh"));
    assert!(!out.status.success(), "a notifier that cannot start passed");
}

/// The exit codes a scheduler counts as success, and those it retries, by the samples' own
/// words: systemd's `SuccessExitStatus=`, the CronJob's `podFailurePolicy`.
fn systemd_successes(service: &str) -> Vec<u8> {
    let mut ok = vec![exit::OK];
    for line in service.lines() {
        if let Some(codes) = line.strip_prefix("SuccessExitStatus=") {
            ok.extend(codes.split_whitespace().map(|c| c.parse::<u8>().unwrap()));
        }
    }
    ok.sort();
    ok
}

/// Every exit code means the same to systemd and to Kubernetes: 0 and 4 (another run holds the
/// state) are not failures; 1, 2, 3 and 5 are, and tell someone (systemd's OnFailure=, the
/// Job's failed condition); of those, only 1 (aborted: credentials, a throttled pool) is worth
/// a retry, so 2, 3 and 5 fail the Job at once.
#[test]
fn systemd_and_kubernetes_say_the_same_thing_about_each_exit_code() {
    let root = support::root().join("samples");
    let service = std::fs::read_to_string(root.join("systemd/cognito-onboard.service")).unwrap();
    assert_eq!(systemd_successes(&service), [exit::OK, exit::LOCKED]);
    let docs = yaml_documents(&root.join("kubernetes/cronjob.yaml"));
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").unwrap();
    let job = &cron["spec"]["jobTemplate"]["spec"];
    let container = job["template"]["spec"]["containers"][0]["name"].clone();
    let mut by_action: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for rule in job["podFailurePolicy"]["rules"].as_array().unwrap() {
        let Some(codes) = rule.get("onExitCodes") else {
            // A node drained or the pod preempted: never the run's failure.
            assert_eq!(rule["action"], "Ignore");
            assert_eq!(rule["onPodConditions"][0]["type"], "DisruptionTarget");
            continue;
        };
        assert_eq!(codes["containerName"], container);
        assert_eq!(codes["operator"], "In");
        by_action
            .entry(rule["action"].as_str().unwrap().to_string())
            .or_default()
            .extend(
                codes["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u8),
            );
    }
    let not_failures: Vec<u8> = [exit::OK]
        .into_iter()
        .chain(by_action["Ignore"].iter().copied())
        .collect();
    assert_eq!(not_failures, systemd_successes(&service), "{by_action:?}");
    assert_eq!(
        by_action["FailJob"],
        [exit::USAGE, exit::ROWS_FAILED, exit::CAPPED]
    );
    assert!(
        !by_action.values().flatten().any(|c| *c == exit::ABORTED),
        "exit 1 counts against backoffLimit and is retried"
    );
    assert!(job["backoffLimit"].as_u64().unwrap() >= 1);
    // The rules take effect only with pods that are never restarted in place, and the Job ends
    // before the next hourly tick however often exit 4 is ignored.
    assert_eq!(job["template"]["spec"]["restartPolicy"], "Never");
    assert!(job["activeDeadlineSeconds"].as_u64().unwrap() < 3600);
    // SIGTERM ends a run within 20 s: the grace period covers it.
    assert!(
        job["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap()
            >= 25
    );
}

/// The CronJob's termination message is the run's line (`--termination-log` at the path the
/// container declares), with the logs as the fallback for a run that stops before it writes.
/// Every document is read by the Kubernetes Python client's models, which refuse a key they do
/// not know (a misspelt field is silently dropped by a lenient reader, not by the API server).
#[test]
fn the_kubernetes_sample_is_what_the_kubernetes_api_models_accept() {
    let path = support::root().join("samples/kubernetes/cronjob.yaml");
    let docs = yaml_documents(&path);
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").unwrap();
    let container = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let log = option_value(container, "--termination-log");
    assert_eq!(container["terminationMessagePath"], log);
    assert_eq!(
        container["terminationMessagePolicy"],
        "FallbackToLogsOnError"
    );
    let check = |text: &str| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Command::new(support::python())
            .args([
                "-c",
                "import sys, yaml, kubernetes.client as k\n\
                 for d in yaml.safe_load_all(open(sys.argv[1])):\n    \
                     getattr(k, 'V1' + d['kind']).model_validate(d)",
            ])
            .arg(file.path())
            .output()
            .expect("the venv's python (make venv)")
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let out = check(&text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(&text.replace("terminationMessagePolicy:", "terminationMessagePolicey:"));
    assert!(!out.status.success(), "a misspelt field passed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("terminationMessagePolicey"));
}

/// The cron sample is quiet on success and loud on failure by its own means: `-q`, stdout to
/// /dev/null, MAILTO; the tool's behaviour under those is tested in `monitoring`.
#[test]
fn the_cron_sample_mails_only_what_goes_wrong() {
    let text =
        std::fs::read_to_string(support::root().join("samples/cron/cognito-onboard")).unwrap();
    assert!(text.lines().any(|l| l.starts_with("MAILTO=")));
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit() || c == '*'))
        .collect();
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        // minute hour day month weekday user command (cron.d's format)
        let fields: Vec<&str> = job.split_whitespace().collect();
        assert!(fields.len() > 6, "{job}");
        assert_eq!(fields[5], "cognito-onboard", "the user field: {job}");
        assert!(job.contains("cognito-onboard -q "), "{job}");
        assert!(job.trim_end().ends_with(">/dev/null"), "{job}");
        assert!(job.contains("--metrics-file "), "{job}");
    }
}

/// The value a container's `args` give `option`.
fn option_value<'a>(container: &'a serde_json::Value, option: &str) -> &'a str {
    let args = container["args"].as_array().unwrap();
    let at = args
        .iter()
        .position(|a| a == option)
        .unwrap_or_else(|| panic!("no {option}"));
    args[at + 1].as_str().unwrap()
}

/// Every document of a YAML file, as JSON, read by PyYAML from the project's venv.
fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(support::python())
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .expect("the venv's python (make venv)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_kubernetes_cronjob_never_overlaps_keeps_its_state_in_dynamodb_and_runs_as_a_user() {
    let docs = yaml_documents(&support::root().join("samples/kubernetes/cronjob.yaml"));
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let cron = kind("CronJob");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let container = &pod["containers"][0];
    let state = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "COGNITO_ONBOARD_STATE")
        .expect("the state's path is set")["value"]
        .as_str()
        .unwrap()
        .to_string();
    // The state is a DynamoDB table, which outlives the pod and is shared with the help desk;
    // the reports are on the mount of the persistent volume claim the file defines.
    assert!(state.starts_with("dynamodb://"), "{state}");
    let reports = option_value(container, "--report-dir");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| reports.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("the reports are on a mounted volume");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"],
        kind("PersistentVolumeClaim")["metadata"]["name"]
    );
    // The settings and the CSV it ships are ones the tool accepts.
    let input = &kind("ConfigMap")["data"];
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.toml");
    let csv = dir.path().join("providers.csv");
    std::fs::write(&settings, input["settings.toml"].as_str().unwrap()).unwrap();
    std::fs::write(&csv, input["providers.csv"].as_str().unwrap()).unwrap();
    binary(["--config"])
        .arg(&settings)
        .arg("check")
        .arg(&csv)
        .expect(exit::OK);
}

#[test]
fn the_container_recipe_builds_in_two_stages_and_runs_as_a_user_with_a_data_volume() {
    // Not built here: the machines have no container daemon and no image registry. What can be
    // checked without one is checked.
    let text = std::fs::read_to_string(support::root().join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "a build stage and a small runtime stage");
    assert!(from[1].contains("-slim"), "{}", from[1]);
    let user = instructions
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(instructions.contains(&"VOLUME [\"/data\"]"));
    assert!(instructions.contains(&"ENV COGNITO_ONBOARD_STATE=dynamodb://cognito-onboard"));
    let ignore = std::fs::read_to_string(support::root().join(".dockerignore")).unwrap();
    for kept_out in ["target", ".venv", ".git"] {
        assert!(ignore.lines().any(|l| l == kept_out), "{kept_out}");
    }
}
