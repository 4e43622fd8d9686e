//! The `sealpost` command line: migrate, openapi, configuration errors, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn sealpost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sealpost"))
}

#[test]
fn migrate_creates_the_embedded_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sealpost()
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("sealpost.db").exists());
    let again = sealpost()
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(again.status.success(), "migrations are idempotent");
}

#[test]
fn openapi_prints_the_generated_document() {
    let out = sealpost().arg("openapi").output().expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        sealpost::openapi::spec_json()
    );
}

#[test]
fn bad_configuration_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&[&str], &str); 5] = [
        (
            &["serve", "--config", "/nonexistent/sealpost.toml"],
            "does not exist",
        ),
        (
            &["serve", "--blob-store", "s3://?region=us-east-1"],
            "needs a bucket",
        ),
        (
            &["serve", "--blob-store", "ftp://host/x"],
            "unsupported blob store scheme",
        ),
        (
            &["serve", "--database-url", "mysql://x"],
            "unsupported database URL scheme",
        ),
        (&["serve", "--listen", "not-an-address"], "invalid value"),
    ];
    for (args, message) in cases {
        let out = sealpost()
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = sealpost()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("listening on"));
    let line = listening.expect("listening line");
    assert!(line.starts_with('{'), "JSON log lines: {line}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().expect("wait").success());
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}
