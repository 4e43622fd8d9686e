//! A tansu Kafka-protocol broker of a test's own, keeping its data in SQLite so it can be
//! restarted (or killed) and come back with its topics, records and committed offsets.
//!
//! The binary: `SEALPOST_TEST_TANSU`, else `tansu` on the PATH or in `~/.cargo/bin`
//! (`scripts/test.sh` installs it with `cargo install`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker on 127.0.0.1.
pub struct Broker {
    child: Child,
    dir: PathBuf,
    /// HOST:PORT of its Kafka listener.
    pub address: String,
}

impl Broker {
    /// Starts a broker keeping its data in `dir`, on a free port.
    pub fn start(dir: &Path) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let child = spawn(dir, &address);
        Self {
            child,
            dir: dir.to_path_buf(),
            address,
        }
    }

    /// Kills the broker with `kill -9`, waits `down`, and starts it again on the same address
    /// over the same data.
    pub fn restart(&mut self, down: Duration) {
        self.child.kill().expect("kill -9 the broker");
        self.child.wait().expect("reaped");
        std::thread::sleep(down);
        self.child = spawn(&self.dir, &self.address);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, address: &str) -> Child {
    let url = format!("tcp://{address}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tansu.log"))
        .expect("tansu.log");
    let child = Command::new(tansu_binary())
        .current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tansu");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on {address} within 30 s; see {}",
            dir.join("tansu.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// The tansu binary to run.
fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SEALPOST_TEST_TANSU") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|dir| dir.join("tansu"))
        .find(|candidate| candidate.is_file())
        .expect(
            "tansu is missing: install it (cargo install tansu@0.6.0 --locked --features \
             dynostore,libsql, as scripts/test.sh does) or point SEALPOST_TEST_TANSU at the binary",
        )
}
