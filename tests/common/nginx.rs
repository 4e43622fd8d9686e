//! nginx in a child process with a throw-away prefix directory: the shipped caching proxy
//! (deploy/nginx/sealpost.conf) in front of a server, or any other site. Used by
//! tests/nginx.rs and benches/download_throughput.rs.
//!
//! The binary: `SEALPOST_TEST_NGINX`, else `nginx` on the PATH or in /usr/sbin (Debian:
//! nginx-light). A missing binary is a failure, never a skip.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx; stopped (with its workers) when dropped.
pub struct Nginx {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers; killing the master outright would leave
    /// the workers running.
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The nginx binary to run.
pub fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SEALPOST_TEST_NGINX") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .expect(
            "nginx is missing: install it (Debian: apt-get install nginx-light) or point \
             SEALPOST_TEST_NGINX at the binary",
        )
}

/// The shipped proxy configuration (deploy/nginx/sealpost.conf) on `127.0.0.1:port`, with its
/// `(host)` lines pointed at `origin` (HOST:PORT, every upstream: a node of every role), the
/// cache directory `cache` and the access log `log`.
pub fn caching_proxy_site(origin: &str, port: u16, cache: &Path, log: &Path) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/sealpost.conf"),
    )
    .expect("deploy/nginx/sealpost.conf");
    let mut site = shipped;
    for (from, to) in [
        ("server media:8080;".to_owned(), format!("server {origin};")),
        (
            "server chat-1:8080;".to_owned(),
            format!("server {origin};"),
        ),
        (
            "server chat-2:8080;".to_owned(),
            format!("server {origin};"),
        ),
        (
            "/var/cache/nginx/sealpost".to_owned(),
            cache.display().to_string(),
        ),
        (
            "/var/log/nginx/access.log".to_owned(),
            log.display().to_string(),
        ),
        (
            "listen 8080;".to_owned(),
            format!("listen 127.0.0.1:{port};"),
        ),
    ] {
        assert_eq!(
            site.matches(&from).count(),
            1,
            "the (host) lines of deploy/nginx/sealpost.conf changed: {from}"
        );
        site = site.replace(&from, &to);
    }
    site
}

impl Nginx {
    /// The shipped caching proxy in front of `origin` (HOST:PORT).
    pub async fn caching_proxy(origin: &str) -> Self {
        Self::start(|port, dir| {
            caching_proxy_site(origin, port, &dir.join("cache"), &dir.join("access.log"))
        })
        .await
    }

    /// Runs the http-context `site(port, prefix dir)` on a free port of 127.0.0.1; returns once
    /// it accepts connections.
    pub async fn start(site: impl FnOnce(u16, &Path) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        std::fs::write(root.join("site.conf"), site(port, root)).expect("site config");
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let path = |name: &str| root.join(name).display().to_string();
        let main = format!(
            "{user}worker_processes auto;\npid {pid};\nerror_log {log} warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
             keepalive_requests 100000;\n  client_body_temp_path {t1};\n  proxy_temp_path {t2};\n\
             fastcgi_temp_path {t3};\n  uwsgi_temp_path {t4};\n  scgi_temp_path {t5};\n\
             include {site};\n}}\n",
            user = if is_root { "user root;\n" } else { "" },
            pid = path("nginx.pid"),
            log = path("error.log"),
            t1 = path("body"),
            t2 = path("proxy"),
            t3 = path("fastcgi"),
            t4 = path("uwsgi"),
            t5 = path("scgi"),
            site = path("site.conf"),
        );
        std::fs::write(root.join("nginx.conf"), main).expect("main config");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(root)
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            let log = std::fs::read_to_string(nginx.dir.path().join("error.log"));
            assert!(Instant::now() < deadline, "nginx did not start: {log:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    /// `path` on this nginx.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the shipped site logged so far (one line a request).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}
