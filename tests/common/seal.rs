//! The `seal` CLI (built from crates/client) as a user runs it: helpers for tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The `seal` binary next to this test's directory (`cargo test --workspace` builds it).
pub fn seal_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("seal");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p sealpost-client` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

pub fn seal(config: &Path, server: &str) -> Command {
    let mut command = Command::new(seal_bin());
    command
        .env("SEAL_CONFIG_DIR", config)
        .env("SEAL_SERVER", server)
        .stdin(Stdio::null());
    command
}

/// Runs a command off the async executor (the server under test runs on it).
pub async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run seal"))
        .await
        .expect("join")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Registers `phone` with `seal register` (which logs in too).
pub async fn register_as(server: &str, config: &Path, phone: &str) {
    let mut register = seal(config, server);
    register.args(["register", "--phone", phone, "--name", "Cli"]);
    let out = run(register).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A `seal` user: a config dir of their own, registered with a fresh phone number.
pub struct CliUser {
    pub dir: tempfile::TempDir,
    pub phone: String,
}

impl CliUser {
    /// The config dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Registers a new `seal` user at `server`.
pub async fn cli_user(server: &str) -> CliUser {
    let user = CliUser {
        dir: tempfile::tempdir().expect("config dir"),
        phone: super::phone(),
    };
    register_as(server, user.path(), &user.phone).await;
    user
}

/// Runs `seal listen --count N --json` against `server`; the JSON lines it printed.
pub async fn listen(config: &Path, server: &str, count: u32) -> Vec<serde_json::Value> {
    listen_with(config, server, count, &[]).await
}

/// `seal listen --count N --json` with more arguments.
pub async fn listen_with(
    config: &Path,
    server: &str,
    count: u32,
    more: &[&str],
) -> Vec<serde_json::Value> {
    let mut listen = seal(config, server);
    listen.args(["listen", "--json", "--count", &count.to_string()]);
    listen.args(more);
    let out = tokio::time::timeout(Duration::from_secs(120), run(listen))
        .await
        .expect("seal listen took what it waited for");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
