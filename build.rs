//! Build script: stamps the commit into `--version`. Must not do anything else (no code
//! generation, no network).

use std::process::Command;

fn main() {
    // A build outside a git checkout (a source tarball, a container build without .git) can
    // pass the commit in COGNITO_ONBOARD_COMMIT.
    println!("cargo:rerun-if-env-changed=COGNITO_ONBOARD_COMMIT");
    let commit = std::env::var("COGNITO_ONBOARD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=COGNITO_ONBOARD_COMMIT={commit}");
    // A new commit moves the branch's ref, not HEAD itself.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
        println!("cargo:rerun-if-changed={dir}/packed-refs");
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}
