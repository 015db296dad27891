//! The external programs some tests drive (the official SDKs in `.ci/run`'s
//! virtualenv and npm cache, the OpenAPI checkers): found through an
//! environment variable, skipped loudly without it, and required under CI.

use std::ffi::{OsStr, OsString};
use std::process::Output;

use serde_json::Value;

/// What the environment variable `var` names (a python, a node_modules
/// folder…), or `None` after a loud SKIPPED line when it is unset. Under CI
/// (`CI` set) a missing one fails the test instead: CI must run it.
pub fn required_under_ci(var: &str, test: &str, needs: &str) -> Option<OsString> {
    let found = std::env::var_os(var);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide {var} (see .ci/run)"
        );
        eprintln!("\n*** SKIPPED {test}: set {var} to {needs} ***\n");
    }
    found
}

/// Runs `program script args…`, requires it to exit 0 (showing what it
/// printed otherwise), and returns the JSON it wrote on stdout.
pub async fn run_json(
    program: impl AsRef<OsStr>,
    script: impl AsRef<OsStr>,
    args: &[&str],
) -> Value {
    let output = run(program, script, args).await;
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the script's stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Runs `program script args…` and requires it to exit 0.
pub async fn run(program: impl AsRef<OsStr>, script: impl AsRef<OsStr>, args: &[&str]) -> Output {
    let script = script.as_ref();
    let output = tokio::process::Command::new(program.as_ref())
        .arg(script)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{:?} does not start: {e}", program.as_ref()));
    assert!(
        output.status.success(),
        "{} failed:\n{}{}",
        script.to_string_lossy(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
