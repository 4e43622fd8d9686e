//! Staging and publishing, written once and run against the store under test: files by
//! default, a bucket of its own on a real S3 server with `SEALPOST_TEST_BLOB_STORE=s3` (see
//! `sealpost_store::testing`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sealpost_store::{BlobId, BlobStore, ByteStream, Manifest, StagedWriter, StoreError, testing};
use tokio::task::JoinHandle;

const MIB: usize = 1 << 20;

const MAX: u64 = 20 * MIB as u64;

struct TestStore {
    _dir: tempfile::TempDir,
    url: String,
    store: Arc<dyn BlobStore>,
}

async fn store() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = testing::blob_store_url(&dir.path().display().to_string())
        .unwrap_or_else(|| format!("file://{}", dir.path().display()));
    let store = sealpost_store::open(&url).await.expect("open store");
    TestStore {
        _dir: dir,
        url,
        store,
    }
}

fn id(byte: u8) -> BlobId {
    BlobId::from_digest(&[byte; 32])
}

async fn collect(stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// Writes `bytes` and makes them durable in a blocking thread; returns the manifest entries.
async fn write_sync(mut writer: Writer, bytes: Vec<u8>) -> (Writer, Manifest) {
    tokio::task::spawn_blocking(move || {
        writer.write_all(&bytes).expect("write");
        let manifest = writer.sync().expect("sync");
        (writer, manifest)
    })
    .await
    .expect("join")
}

fn merged(a: &Manifest, b: &Manifest) -> Manifest {
    let mut m = a.clone();
    m.extend(b.clone());
    m
}

#[tokio::test]
async fn staged_bytes_resume_at_the_committed_offset_and_publish() {
    let TestStore {
        _dir: _keep,
        store,
        url,
    } = store().await;
    let w = store
        .open_staged("u1", 0, 100, &Manifest::new())
        .await
        .expect("stage");
    let (w, committed) = write_sync(w, b"hello".to_vec()).await;
    // Written and made durable, but never committed: a crash before the commit.
    let (w, _) = write_sync(w, b", uncommitted tail".to_vec()).await;
    drop(w);
    let w = store
        .open_staged("u1", 5, 100, &committed)
        .await
        .expect("reopen");
    let (w, more) = write_sync(w, b"!!".to_vec()).await;
    drop(w);
    let manifest = merged(&committed, &more);
    let key = store
        .publish("u1", &id(1), 7, &manifest)
        .await
        .expect("publish");
    assert_eq!(
        collect(store.read(&key, 0..7).await.expect("read")).await,
        b"hello!!"
    );
    assert_eq!(
        collect(store.read(&key, 2..6).await.expect("range")).await,
        b"llo!"
    );
    let again = store
        .publish("u1", &id(1), 7, &manifest)
        .await
        .expect("publish is idempotent");
    assert_eq!(again, key);
    assert!(
        matches!(
            store.open_staged("u1", 7, 100, &manifest).await,
            Err(StoreError::NotFound)
        ),
        "a published upload's staged bytes are gone, not recreated empty"
    );
    let left = staged(&url).await;
    assert!(left.is_empty(), "nothing staged is left: {left:?}");
}

/// Staged keys the store at `url` still holds.
async fn staged(url: &str) -> Vec<String> {
    testing::contents(url).await.staged
}

#[tokio::test]
async fn offsets_past_the_staged_bytes_and_bad_ids_are_refused() {
    let TestStore {
        _dir: _keep,
        store,
        url,
    } = store().await;
    assert!(matches!(
        store.open_staged("u2", 3, 100, &Manifest::new()).await,
        Err(StoreError::NotFound)
    ));
    let w = store
        .open_staged("u2", 0, 100, &Manifest::new())
        .await
        .expect("stage");
    let (w, manifest) = write_sync(w, b"ab".to_vec()).await;
    drop(w);
    assert!(matches!(
        store.open_staged("u2", 3, 100, &manifest).await,
        Err(StoreError::SizeMismatch { .. })
    ));
    assert!(matches!(
        store.open_staged("../x", 0, 100, &Manifest::new()).await,
        Err(StoreError::InvalidId(_))
    ));
    let missing = format!("02/02/{}", id(2));
    assert!(matches!(
        store.read(&missing, 0..1).await,
        Err(StoreError::NotFound)
    ));
    store
        .delete(&missing)
        .await
        .expect("deleting a missing blob is fine");
    store.discard_staged("u2").await.expect("discard");
    assert!(staged(&url).await.is_empty());
    store.check().await.expect("ready");
}

#[tokio::test]
async fn uploads_of_several_parts_publish_exactly_the_committed_bytes() {
    let TestStore {
        _dir: _keep,
        store,
        url,
    } = store().await;
    let data: Vec<u8> = (0..12 * MIB + 3)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    let mut manifest = Manifest::new();
    let mut offset = 0;
    // Uneven requests: part boundaries fall inside them.
    for size in [3 * MIB, 4 * MIB + 1, 5 * MIB + 2] {
        let w = store
            .open_staged("u3", offset as u64, MAX, &manifest)
            .await
            .expect("open");
        let (w, m) = write_sync(w, data[offset..offset + size].to_vec()).await;
        drop(w);
        manifest.extend(m);
        offset += size;
    }
    let key = store
        .publish("u3", &id(3), data.len() as u64, &manifest)
        .await
        .expect("publish");
    let stored = collect(store.read(&key, 0..data.len() as u64).await.expect("read")).await;
    assert!(stored == data, "the blob is exactly the uploaded bytes");
    let end = data.len() as u64;
    assert_eq!(
        collect(store.read(&key, end - 10..end).await.expect("range")).await,
        data[data.len() - 10..]
    );
    assert!(staged(&url).await.is_empty());
}

type Writer = Box<dyn StagedWriter>;

/// Writer A commits 1 MiB of `a`; then writer B starts opening the upload at A's committed
/// offset, as a newer request does after taking the lease.
async fn a_then_b(
    store: &Arc<dyn BlobStore>,
    upload: &'static str,
) -> (Writer, Manifest, JoinHandle<Result<Writer, StoreError>>) {
    let a = store
        .open_staged(upload, 0, MAX, &Manifest::new())
        .await
        .expect("open A");
    let (a, committed_a) = write_sync(a, vec![b'a'; MIB]).await;
    let opening_b = {
        let (store, committed) = (store.clone(), committed_a.clone());
        tokio::spawn(async move { store.open_staged(upload, MIB as u64, MAX, &committed).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    (a, committed_a, opening_b)
}

/// Writer A commits 1 MiB, then loses the upload to writer B, which resumes from A's committed
/// offset. A's late writes must never end up in the blob: the file store makes B wait until A
/// is gone (an exclusive lock); on S3, A's temporary objects are its own, and a part it
/// overwrites no longer has the ETag B committed, so publishing refuses instead.
#[tokio::test]
async fn a_fenced_off_writer_cannot_corrupt_an_upload() {
    let TestStore {
        _dir: _keep,
        store,
        url,
    } = store().await;
    let (a, committed_a, opening_b) = a_then_b(&store, "u4").await;
    let mut expected = vec![b'a'; MIB];
    expected.extend(vec![b'b'; MIB]);
    let committed_b = if testing::on_s3() {
        let b = opening_b.await.expect("join").expect("B opens at once");
        let (b, committed_b) = write_sync(b, vec![b'b'; MIB]).await;
        // A, late, makes its own bytes for the part in progress durable.
        let (a, _) = write_sync(a, vec![b'x'; MIB]).await;
        drop((a, b));
        committed_b
    } else {
        assert!(
            !opening_b.is_finished(),
            "the file store makes B wait for A"
        );
        let (a, _) = write_sync(a, vec![b'x'; 2 * MIB]).await;
        drop(a);
        let b = opening_b.await.expect("join").expect("open B");
        let (b, committed_b) = write_sync(b, vec![b'b'; MIB]).await;
        drop(b);
        committed_b
    };
    let key = store
        .publish(
            "u4",
            &id(4),
            2 * MIB as u64,
            &merged(&committed_a, &committed_b),
        )
        .await
        .expect("publish");
    let stored = collect(store.read(&key, 0..2 * MIB as u64).await.expect("read")).await;
    assert!(stored == expected, "A's late bytes are not in the blob");
    assert!(staged(&url).await.is_empty());

    if !testing::on_s3() {
        return;
    }
    // On S3, A can also finish a whole part after B uploaded the same part number.
    let (a, committed_a, opening_b) = a_then_b(&store, "u5").await;
    let b = opening_b.await.expect("join").expect("B opens at once");
    let (b, committed_b) = write_sync(b, vec![b'b'; 5 * MIB]).await;
    let (a, _) = write_sync(a, vec![b'x'; 5 * MIB]).await;
    drop((a, b));
    assert!(
        matches!(
            store
                .publish(
                    "u5",
                    &id(5),
                    6 * MIB as u64,
                    &merged(&committed_a, &committed_b)
                )
                .await,
            Err(StoreError::Conflict)
        ),
        "a part overwritten by the fenced-off writer is detected, not published"
    );
    store.discard_staged("u5").await.expect("discard");
    assert!(staged(&url).await.is_empty());
}

#[tokio::test]
async fn concurrent_readiness_checks_of_stores_sharing_a_place_all_pass() {
    let t = store().await;
    let other = sealpost_store::open(&t.url).await.expect("second store");
    let checks = (0..64).map(|i| {
        let store = if i % 2 == 0 {
            t.store.clone()
        } else {
            other.clone()
        };
        tokio::spawn(async move { store.check().await })
    });
    for check in futures_util::future::join_all(checks).await {
        check.expect("task").expect("ready");
    }
}
