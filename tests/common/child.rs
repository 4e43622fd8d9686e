//! The server as a child process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// A `sealpost serve` child process on the test backends (to kill with `kill -9`).
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts a server with `data_dir` on a free port.
    pub fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, "127.0.0.1:0", &[])
    }

    /// Starts a server with `data_dir` listening on `listen`, with extra environment `env`
    /// (`SEALPOST__…` settings).
    pub fn start_with(data_dir: &std::path::Path, listen: &str, env: &[(&str, &str)]) -> Self {
        let bus = sealpost_bus::testing::bus_url(&data_dir.display().to_string());
        Self::start_on_bus(data_dir, listen, env, &bus)
    }

    /// Like `start_with`, on the bus at `bus` instead of the test's own.
    pub fn start_on_bus(
        data_dir: &std::path::Path,
        listen: &str,
        env: &[(&str, &str)],
        bus: &str,
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sealpost"));
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().copied());
        let key = data_dir.display().to_string();
        if let Some(url) = sealpost_db::testing::database_url(&key) {
            command.args(["--database-url", &url]);
        }
        if let Some(url) = sealpost_store::testing::blob_store_url(&key) {
            command.args(["--blob-store", &url]);
        }
        command.args(["--bus", bus]);
        let mut child = command
            .env("SEALPOST__UPLOADS__CHECKPOINT_BYTES", "65536")
            .env("SEALPOST__LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sealpost");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .expect("line");
            if let Some(at) = line.find("http://127.0.0.1:") {
                let rest = &line[at..];
                let end = rest
                    .find(|c: char| c == '"' || c.is_whitespace())
                    .unwrap_or(rest.len());
                break rest[..end].to_owned();
            }
        };
        // The rest of the log goes to `server.log` in the data dir (to read after a failure).
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))
            .ok();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(file) = log.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
            }
        });
        Self { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
