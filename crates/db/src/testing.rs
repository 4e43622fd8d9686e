//! Test support: which database a test runs against. `SEALPOST_TEST_DATABASE=postgres` (with
//! `SEALPOST_TEST_POSTGRES_URL`, a URL that may create databases) gives each test a database of
//! its own on that server; unset or `sqlite`, tests use SQLite. A requested PostgreSQL that
//! cannot be reached is a failure, never a skip.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::process::Command;

/// A database URL for the test keyed by `key` (the same key gives the same database, so a test
/// can restart its server), or `None` for the embedded SQLite default.
///
/// # Panics
/// When PostgreSQL is requested but not configured or reachable.
pub fn database_url(key: &str) -> Option<String> {
    match std::env::var("SEALPOST_TEST_DATABASE").as_deref() {
        Err(_) | Ok("" | "sqlite") => None,
        Ok("postgres") => Some(postgres_database(key)),
        Ok(other) => panic!("SEALPOST_TEST_DATABASE={other:?}: use sqlite or postgres"),
    }
}

fn postgres_database(key: &str) -> String {
    let admin = std::env::var("SEALPOST_TEST_POSTGRES_URL")
        .expect("SEALPOST_TEST_DATABASE=postgres needs SEALPOST_TEST_POSTGRES_URL");
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let name = format!("sealpost_test_{:016x}", hasher.finish());
    let out = Command::new("psql")
        .arg(&admin)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql must be installed to create test databases");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("already exists"),
        "cannot create test database {name}: {stderr}"
    );
    let (server, _) = admin
        .rsplit_once('/')
        .expect("SEALPOST_TEST_POSTGRES_URL ends in /DATABASE");
    format!("{server}/{name}")
}
