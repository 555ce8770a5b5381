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

/// `systemd-analyze verify` on the samples, installed as the README says, with the binary at
/// `ExecStart`'s path replaced by this build's.
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
    assert!(Path::new(&root.join("cognito-onboard.timer")).exists());
}
