//! Test support: which blob store a test runs against, and what a store holds.
//!
//! `SEALPOST_TEST_BLOB_STORE=s3` (with `SEALPOST_TEST_S3_ENDPOINT` and the standard AWS
//! credential variables) gives each test a bucket of its own on that S3 server; unset or `fs`,
//! tests use files in their data directory. A requested S3 server that cannot be reached is a
//! failure, never a skip.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::S3Store;

/// A blob store URL for the test keyed by `key` (the same key gives the same bucket, so a test
/// can restart its server or run two nodes on one store), or `None` for the file store default.
///
/// # Panics
/// When S3 is requested but not configured or reachable.
pub fn blob_store_url(key: &str) -> Option<String> {
    match std::env::var("SEALPOST_TEST_BLOB_STORE").as_deref() {
        Err(_) | Ok("" | "fs") => None,
        Ok("s3") => Some(s3_bucket(key)),
        Ok(other) => panic!("SEALPOST_TEST_BLOB_STORE={other:?}: use fs or s3"),
    }
}

/// True when tests run on S3.
pub fn on_s3() -> bool {
    std::env::var("SEALPOST_TEST_BLOB_STORE").as_deref() == Ok("s3")
}

fn s3_bucket(key: &str) -> String {
    let endpoint = std::env::var("SEALPOST_TEST_S3_ENDPOINT")
        .expect("SEALPOST_TEST_BLOB_STORE=s3 needs SEALPOST_TEST_S3_ENDPOINT");
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let bucket = format!("sealpost-test-{:016x}", hasher.finish());
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let url = format!("s3://{bucket}?endpoint={endpoint}&region={region}");
    let create = url.clone();
    // Own thread and runtime: callers may be inside a runtime that must not block.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let store = S3Store::open(&create).await.expect("S3 client");
            store.create_bucket().await
        })
    })
    .join()
    .expect("bucket thread")
    .unwrap_or_else(|e| panic!("cannot create test bucket {bucket} at {endpoint}: {e}"));
    url
}

/// What a store holds: published blobs, and the staged bytes of unfinished uploads (files,
/// objects and multipart uploads), by key.
#[derive(Debug, Default)]
pub struct Contents {
    /// Keys of stored blobs.
    pub blobs: Vec<String>,
    /// Keys of staged bytes.
    pub staged: Vec<String>,
}

/// Lists what the store at `url` holds.
///
/// # Panics
/// When the store cannot be listed.
pub async fn contents(url: &str) -> Contents {
    if url.starts_with("s3://") {
        let store = S3Store::open(url).await.expect("S3 client");
        return store.contents().await.expect("list bucket");
    }
    let root = std::path::PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    let mut contents = Contents::default();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let key = path
                .strip_prefix(&root)
                .expect("under root")
                .display()
                .to_string();
            if key.starts_with(".staging/") {
                contents.staged.push(key);
            } else {
                contents.blobs.push(key);
            }
        }
    }
    contents
}

/// Every object the S3 store at `url` holds (blobs and staged bytes), with its bytes: what
/// an operator of the bucket can read. Multipart uploads in progress, whose parts S3 does not
/// serve, are listed (`multipart:KEY`) with no bytes. (A file store's objects are files.)
///
/// # Panics
/// When `url` is not an S3 store's, or the store cannot be read.
pub async fn objects(url: &str) -> Vec<(String, Vec<u8>)> {
    assert!(url.starts_with("s3://"), "{url} is not an S3 store");
    let listed = contents(url).await;
    let store = S3Store::open(url).await.expect("S3 client");
    let mut objects = Vec::new();
    for key in listed.blobs.into_iter().chain(listed.staged) {
        let bytes = if key.starts_with("multipart:") {
            Vec::new()
        } else {
            store.object(&key).await.expect("read object")
        };
        objects.push((key, bytes));
    }
    objects
}
