use std::collections::BTreeMap;

use super::*;

async fn fresh() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = crate::testing::database_url(&dir.path().display().to_string())
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("t.db").display()));
    let db = Db::connect(&url, 4).await.expect("connect");
    db.migrate().await.expect("migrate");
    (dir, db)
}

fn account(id: &str, phone: &str) -> AccountRow {
    AccountRow {
        id: id.into(),
        phone: phone.into(),
        name: "n".into(),
        identity_key: vec![7; 32],
        created_at: 1,
    }
}

fn upload(id: &str, account: &str) -> NewUpload {
    NewUpload {
        id: id.into(),
        account_id: account.into(),
        kind: "encrypted".into(),
        length: Some(10),
        hash_state: vec![1, 2, 3],
        declared_sha256: None,
        filename: None,
        content_type: None,
        metadata: None,
        now: 100,
        expires_at: 200,
        concat: None,
    }
}

#[tokio::test]
async fn duplicate_phone_is_a_conflict() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("first");
    let err = db
        .insert_account(&account("b", "+100"))
        .await
        .expect_err("second");
    assert!(matches!(err, DbError::Conflict), "{err:?}");
}

#[tokio::test]
async fn challenges_are_single_use() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    db.insert_challenge("h", "a", 1, 50).await.expect("insert");
    assert_eq!(
        db.take_challenge("h").await.expect("take"),
        Some(("a".into(), 1, 50))
    );
    assert_eq!(db.take_challenge("h").await.expect("take again"), None);
}

#[tokio::test]
async fn an_older_lease_is_fenced_off() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    db.insert_upload_if(&upload("u", "a"), 0, 0, |_| true)
        .await
        .expect("upload");
    let first = db
        .take_upload_lease("u", 0, 0)
        .await
        .expect("lease")
        .expect("row")
        .lease;
    let second = db
        .take_upload_lease("u", 0, 0)
        .await
        .expect("lease")
        .expect("row")
        .lease;
    assert!(second > first);
    let entries = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert!(
        !db.commit_upload_progress(
            "u",
            first,
            5,
            &[9],
            None,
            &entries(&[("tail", "stale")]),
            101,
            300
        )
        .await
        .expect("commit")
    );
    assert!(
        db.upload_manifest("u").await.expect("manifest").is_empty(),
        "a fenced-off commit records no manifest entries"
    );
    for (offset, pairs) in [
        (5, entries(&[("part/1", "a"), ("tail", "t1")])),
        (9, entries(&[("part/2", "b"), ("tail", "t2")])),
    ] {
        assert!(
            db.commit_upload_progress("u", second, offset, &[9], None, &pairs, 101, 300)
                .await
                .expect("commit")
        );
    }
    let row = db.upload("u").await.expect("read").expect("row");
    assert_eq!(
        (row.upload_offset, row.hash_state, row.expires_at),
        (9, vec![9], 300)
    );
    assert_eq!(
        db.upload_manifest("u").await.expect("manifest"),
        entries(&[("part/1", "a"), ("part/2", "b"), ("tail", "t2")]),
        "entries accumulate and a newer entry replaces one of the same name"
    );
}

/// Completes upload `id` (taking its lease) as 10 bytes of blob `beef`, its copy stored at
/// `k/<id>`.
async fn complete_as_beef(db: &Db, id: &str, now: i64) -> BlobCompletion {
    let lease = db
        .take_upload_lease(id, 0, 0)
        .await
        .expect("lease")
        .expect("row")
        .lease;
    db.complete_upload(id, lease, "beef", 10, &format!("k/{id}"), now)
        .await
        .expect("complete")
        .expect("not fenced off")
}

#[tokio::test]
async fn completion_dedups_blobs_and_usage_counts_active_uploads() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    for id in ["u1", "u2", "u3"] {
        db.insert_upload_if(&upload(id, "a"), 0, 0, |_| true)
            .await
            .expect("upload");
    }
    let usage = db.upload_usage("a", 150, 0).await.expect("usage");
    assert_eq!((usage.count, usage.bytes), (3, 30));
    let mut unused = Vec::new();
    for id in ["u1", "u2"] {
        let done = complete_as_beef(&db, id, 150).await;
        assert_eq!(done.storage_key, "k/u1", "the first copy stays the blob's");
        unused.extend(done.unused);
    }
    assert_eq!(unused, ["k/u2"], "the second copy is left to delete");
    let blob = db.blob("beef").await.expect("blob").expect("row");
    assert_eq!((blob.size, blob.storage_key.as_str()), (10, "k/u1"));
    assert_eq!(db.upload_usage("a", 150, 0).await.expect("usage").count, 1);
    assert_eq!(
        db.due_uploads(250, 10).await.expect("due"),
        vec![("u3".to_owned(), None)]
    );
    assert!(db.expire_upload("u3", 250).await.expect("expire"));
    assert_eq!(db.purge_finished_uploads(250).await.expect("purge"), 3);
}

#[tokio::test]
async fn parked_parts_count_until_they_expire_are_claimed_once_and_finals_never_count() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    for (id, concat) in [("p1", "partial"), ("p2", "partial"), ("f", "final;p1 p2")] {
        let new = NewUpload {
            concat: Some(concat.into()),
            ..upload(id, "a")
        };
        db.insert_upload_if(&new, 0, 0, |_| true)
            .await
            .expect("upload");
    }
    let usage = db.upload_usage("a", 150, 0).await.expect("usage");
    assert_eq!(
        (usage.count, usage.bytes),
        (2, 20),
        "the final is not counted"
    );
    let lease = db
        .take_upload_lease("p1", 0, 0)
        .await
        .expect("lease")
        .expect("row")
        .lease;
    assert!(
        !db.complete_partial_upload("p1", lease - 1, 10, "k/p1", 150, 400)
            .await
            .expect("fenced off")
    );
    assert!(
        db.complete_partial_upload("p1", lease, 10, "k/p1", 150, 400)
            .await
            .expect("park")
    );
    let row = db.upload("p1").await.expect("read").expect("row");
    assert_eq!(
        (
            row.state.as_str(),
            row.storage_key.as_deref(),
            row.expires_at
        ),
        ("parked", Some("k/p1"), 400)
    );
    let usage = db.upload_usage("a", 150, 0).await.expect("usage");
    assert_eq!(
        (usage.count, usage.bytes),
        (2, 20),
        "a parked part still holds its bytes"
    );

    let p1 = ["p1".to_owned()];
    assert!(
        !db.claim_parts("b", &p1, 150, 450).await.expect("claim"),
        "another account's part"
    );
    assert!(
        !db.claim_parts("a", &["p1".into(), "p2".into()], 150, 450)
            .await
            .expect("claim"),
        "p2 is not parked: all or none"
    );
    assert_eq!(
        db.upload("p1").await.expect("read").expect("row").state,
        "parked"
    );
    assert!(db.claim_parts("a", &p1, 150, 450).await.expect("claim"));
    assert!(
        !db.claim_parts("a", &p1, 150, 450).await.expect("claim"),
        "claimed once"
    );
    db.release_parts(&p1).await.expect("release");
    assert!(db.claim_parts("a", &p1, 150, 450).await.expect("claim"));
    let usage = db.upload_usage("a", 150, 0).await.expect("usage");
    assert_eq!(
        (usage.count, usage.bytes),
        (2, 20),
        "a joining part still counts"
    );

    let mut due = db.due_uploads(300, 10).await.expect("due");
    due.sort();
    assert_eq!(due, vec![("f".to_owned(), None), ("p2".to_owned(), None)]);
    assert_eq!(
        db.purge_finished_uploads(1000).await.expect("purge"),
        0,
        "a parked or joining part is expired (its bytes deleted) before its row goes"
    );
    assert_eq!(
        db.due_uploads(500, 10).await.expect("due")[2],
        ("p1".to_owned(), Some("k/p1".to_owned()))
    );
    for id in ["p1", "p2", "f"] {
        assert!(db.expire_upload(id, 500).await.expect("expire"));
    }
    assert_eq!(db.upload_usage("a", 150, 0).await.expect("usage").count, 0);
    assert_eq!(db.purge_finished_uploads(1000).await.expect("purge"), 3);
}

#[tokio::test]
async fn taking_the_lease_extends_only_a_live_upload() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    db.insert_upload_if(&upload("u", "a"), 0, 0, |_| true)
        .await
        .expect("upload");
    let row = db
        .take_upload_lease("u", 150, 400)
        .await
        .expect("lease")
        .expect("row");
    assert_eq!(row.expires_at, 400);
    let row = db
        .take_upload_lease("u", 150, 300)
        .await
        .expect("lease")
        .expect("row");
    assert_eq!(row.expires_at, 400, "never shortened");
    let row = db
        .take_upload_lease("u", 450, 900)
        .await
        .expect("lease")
        .expect("row");
    assert_eq!(row.expires_at, 400, "an expired upload stays expired");
}

#[tokio::test]
async fn blobs_expire_unless_touched_and_a_new_copy_revives_them() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    let complete = async |id: &str, now: i64| {
        db.insert_upload_if(&upload(id, "a"), 0, 0, |_| true)
            .await
            .expect("upload");
        complete_as_beef(&db, id, now).await
    };
    complete("u1", 100).await;
    assert!(db.touch_blob("beef", 200).await.expect("touch"));
    assert!(
        db.due_blobs(150, 10).await.expect("due").is_empty(),
        "touched"
    );
    let due = db.due_blobs(300, 10).await.expect("due");
    assert_eq!(due, [("beef".to_owned(), "k/u1".to_owned())]);
    assert!(
        !db.expire_blob("beef", "k/other", 300)
            .await
            .expect("expire")
    );
    assert!(db.expire_blob("beef", "k/u1", 300).await.expect("expire"));
    assert!(!db.expire_blob("beef", "k/u1", 300).await.expect("again"));
    assert!(
        !db.touch_blob("beef", 310).await.expect("touch"),
        "not live"
    );
    let row = db.blob("beef").await.expect("blob").expect("row");
    assert!(!row.is_live(310, 1000));
    assert_eq!(db.expired_blobs(10).await.expect("expired"), due);

    // A new copy arrives before the sweep deleted the old one: both end up right.
    let revived = complete("u2", 320).await;
    assert_eq!(revived.storage_key, "k/u2");
    assert_eq!(
        revived.unused,
        ["k/u1"],
        "the expired copy is left to delete"
    );
    db.forget_blob("beef", "k/u1").await.expect("forget");
    let row = db.blob("beef").await.expect("blob").expect("row");
    assert_eq!(
        (row.state.as_str(), row.storage_key.as_str()),
        ("live", "k/u2")
    );
    assert!(row.is_live(320, 1000) && !row.is_live(1320, 1000));

    // Expired and deleted, then revived: nothing is left to delete.
    assert!(db.expire_blob("beef", "k/u2", 400).await.expect("expire"));
    db.forget_blob("beef", "k/u2").await.expect("forget");
    assert_eq!(
        db.blob("beef").await.expect("blob").expect("row").state,
        "gone"
    );
    let revived = complete("u3", 500).await;
    assert_eq!(
        (revived.storage_key.as_str(), revived.unused.len()),
        ("k/u3", 0)
    );
}

#[tokio::test]
async fn media_jobs_are_queued_once_and_finished_once() {
    let (_dir, db) = fresh().await;
    assert!(db.enqueue_media("src", "a", 100).await.expect("enqueue"));
    assert!(
        !db.enqueue_media("src", "a", 101).await.expect("again"),
        "queued once"
    );
    let row = db.media("src").await.expect("media").expect("row");
    assert_eq!(
        (row.state.as_str(), row.attempts, row.updated_at),
        ("pending", 0, 100)
    );
    assert_eq!(
        db.count_media_attempt("src", 105).await.expect("attempt"),
        1
    );
    assert!(
        db.requeue_stale_media(105, 111, 10)
            .await
            .expect("stale")
            .is_empty()
    );
    assert_eq!(
        db.requeue_stale_media(110, 111, 10).await.expect("stale"),
        ["src"]
    );
    assert!(
        db.requeue_stale_media(110, 112, 10)
            .await
            .expect("stale")
            .is_empty(),
        "claimed once"
    );

    let thumb = RenditionRow {
        name: "crop-32".into(),
        mime: "image/webp".into(),
        width: 32,
        height: 32,
        size: 120,
        rendition_id: "r1".into(),
    };
    let ready = MediaOutcome::Ready {
        mime: "image/jpeg".into(),
        width: 800,
        height: 600,
        frames: 1,
        blurhash: "LKO2?U%2Tw=w]~RBVZRi};RPxuwH".into(),
        duration_ms: Some(2000),
        renditions: vec![thumb.clone()],
    };
    assert!(db.finish_media("src", &ready, 120).await.expect("finish"));
    let failed = MediaOutcome::Failed {
        code: "corrupt-media".into(),
        detail: "late duplicate".into(),
    };
    assert!(
        !db.finish_media("src", &failed, 121).await.expect("again"),
        "finished once"
    );
    let row = db.media("src").await.expect("media").expect("row");
    assert_eq!(
        (row.state.as_str(), row.width, row.code, row.duration_ms),
        ("ready", Some(800), None, Some(2000))
    );
    assert_eq!(
        db.media_renditions("src").await.expect("renditions"),
        [thumb]
    );
    assert!(
        db.requeue_stale_media(1000, 1000, 10)
            .await
            .expect("stale")
            .is_empty()
    );

    assert!(db.enqueue_media("bad", "a", 100).await.expect("enqueue"));
    assert!(db.finish_media("bad", &failed, 130).await.expect("fail"));
    let row = db.media("bad").await.expect("media").expect("row");
    assert_eq!(
        (row.state.as_str(), row.code.as_deref()),
        ("failed", Some("corrupt-media"))
    );
    assert!(
        db.media_renditions("bad")
            .await
            .expect("renditions")
            .is_empty()
    );
    assert!(db.media("never").await.expect("media").is_none());
}

#[tokio::test]
async fn a_blob_without_an_upload_is_recorded_like_one() {
    let (_dir, db) = fresh().await;
    let first = db.record_blob("r1", 120, "k/a", 100).await.expect("record");
    assert_eq!((first.storage_key.as_str(), first.unused.len()), ("k/a", 0));
    let again = db.record_blob("r1", 120, "k/b", 110).await.expect("again");
    assert_eq!(
        (again.storage_key.as_str(), again.unused.as_slice()),
        ("k/a", &["k/b".to_owned()][..])
    );
    let row = db.blob("r1").await.expect("blob").expect("row");
    assert_eq!((row.touched_at, row.state.as_str()), (110, "live"));
}

#[tokio::test]
async fn a_preview_is_queued_by_its_first_completion_and_forgotten_when_it_expires() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    let preview = |id: &str| NewUpload {
        kind: "preview".into(),
        ..upload(id, "a")
    };
    db.insert_upload_if(&upload("e1", "a"), 0, 0, |_| true)
        .await
        .expect("upload");
    assert!(
        !complete_as_beef(&db, "e1", 100).await.media_queued,
        "encrypted bytes are never processed"
    );
    for id in ["p1", "p2"] {
        db.insert_upload_if(&preview(id), 0, 0, |_| true)
            .await
            .expect("upload");
    }
    assert!(complete_as_beef(&db, "p1", 110).await.media_queued);
    let rendition = RenditionRow {
        name: "crop-32".into(),
        mime: "image/jpeg".into(),
        width: 32,
        height: 32,
        size: 5,
        rendition_id: "r1".into(),
    };
    db.record_blob("r1", 5, "k/r1", 110).await.expect("record");
    let ready = MediaOutcome::Ready {
        mime: "image/png".into(),
        width: 64,
        height: 64,
        frames: 1,
        blurhash: "L00000fQfQfQfQfQfQfQfQfQfQfQ".into(),
        duration_ms: None,
        renditions: vec![rendition],
    };
    assert!(db.finish_media("beef", &ready, 115).await.expect("finish"));

    assert!(
        !complete_as_beef(&db, "p2", 200).await.media_queued,
        "queued once"
    );
    let touched = |id: &'static str| {
        let db = db.clone();
        async move { db.blob(id).await.expect("blob").expect("row").touched_at }
    };
    assert_eq!(touched("r1").await, 200, "a re-upload keeps the renditions");
    assert!(db.touch_blob("beef", 250).await.expect("touch"));
    assert_eq!(touched("r1").await, 250, "so does a link");

    assert!(db.expire_blob("beef", "k/e1", 300).await.expect("expire"));
    assert!(db.media("beef").await.expect("media").is_none());
    assert!(
        db.media_renditions("beef")
            .await
            .expect("renditions")
            .is_empty()
    );
}

#[tokio::test]
async fn devices_get_numbers_never_reused_up_to_a_limit_and_removal_revokes_tokens() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    let first = db.device("a", 1).await.expect("device").expect("primary");
    assert_eq!(
        (first.name.as_str(), first.identity_key),
        ("primary", vec![7; 32])
    );
    assert_eq!(
        db.add_device("a", "laptop", &[8; 32], 10, 3)
            .await
            .expect("add"),
        Some(2)
    );
    assert_eq!(
        db.add_device("a", "tablet", &[9; 32], 11, 3)
            .await
            .expect("add"),
        Some(3)
    );
    assert_eq!(
        db.add_device("a", "one more", &[10; 32], 12, 3)
            .await
            .expect("add"),
        None,
        "at the limit"
    );
    db.insert_token("t3", "a", 3, 11, 1000)
        .await
        .expect("token");
    assert_eq!(
        db.token_device("t3", 20).await.expect("token"),
        Some(("a".into(), 3, 1000))
    );
    assert!(db.remove_device("a", 3, 20).await.expect("remove"));
    assert!(!db.remove_device("a", 3, 21).await.expect("again"));
    assert_eq!(
        db.token_device("t3", 22).await.expect("token"),
        None,
        "revoked"
    );
    assert!(db.device("a", 3).await.expect("device").is_none());
    assert_eq!(
        db.add_device("a", "new tablet", &[11; 32], 30, 3)
            .await
            .expect("add"),
        Some(4),
        "a removed device's number is not given again"
    );
    let numbers: Vec<i64> = db
        .devices("a")
        .await
        .expect("devices")
        .iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(numbers, [1, 2, 4]);
    db.insert_link_code("c", "a", 100).await.expect("code");
    assert_eq!(
        db.take_link_code("c").await.expect("take"),
        Some(("a".into(), 100))
    );
    assert_eq!(db.take_link_code("c").await.expect("again"), None);
}

/// A send of device 1 of account `a` under client id `c1`.
fn new_send<'a>(
    server_id: &'a str,
    now_ms: i64,
    payload: &'a [u8],
    digest: &'a str,
) -> NewSend<'a> {
    NewSend {
        account: "a",
        device: 1,
        client_id: "c1",
        server_id,
        now_ms,
        payload,
        digest,
    }
}

#[tokio::test]
async fn a_send_is_recorded_once_and_a_message_stored_once_per_device_in_order() {
    let (_dir, db) = fresh().await;
    let first = db
        .record_send(new_send("s1", 100, b"p1", "d1"))
        .await
        .expect("record");
    assert_eq!(
        (
            first.server_id.as_str(),
            first.delivered,
            first.digest.as_str()
        ),
        ("s1", false, "d1")
    );
    let again = db
        .record_send(new_send("s2", 200, b"p2", "d2"))
        .await
        .expect("again");
    assert_eq!(
        (
            again.server_id.as_str(),
            again.created_at,
            again.delivered,
            again.digest.as_str()
        ),
        ("s1", 100, false, "d1"),
        "a retry finds the first record"
    );
    // The outbox: a published send stays until a delivery worker stored it.
    assert_eq!(
        db.undelivered_sends(i64::MIN, 150, 10)
            .await
            .expect("undelivered"),
        [(100, b"p1".to_vec())]
    );
    assert!(
        db.undelivered_sends(i64::MIN, 50, 10)
            .await
            .expect("too new")
            .is_empty()
    );
    assert_eq!(
        db.deliver(&[(inbox_message("s1", 100), vec![copy("b", 1, b"x")])])
            .await
            .expect("deliver"),
        [[Some(1)]]
    );
    assert!(
        db.undelivered_sends(i64::MIN, 150, 10)
            .await
            .expect("none")
            .is_empty(),
        "delivered with its copies"
    );
    assert!(
        db.record_send(new_send("s3", 300, b"p3", "d1"))
            .await
            .expect("retry")
            .delivered,
        "a retry after delivery sees it delivered (and is not published again)"
    );
    assert_eq!(
        db.deliver(&[(
            inbox_message("s1", 100),
            vec![copy("b", 1, b"x"), copy("b", 2, b"x2")]
        )])
        .await
        .expect("again"),
        [[None, Some(1)]],
        "a redelivery stores only what was missing, and uses up no sequence number"
    );
    // Copies are stored whatever order they come in; each device counts on its own.
    assert_eq!(
        db.deliver(&[(
            inbox_message("s2", 101),
            vec![copy("b", 2, b"z"), copy("b", 1, b"y")]
        )])
        .await
        .expect("deliver"),
        [[Some(2), Some(2)]]
    );
    let rows = db.inbox_after("b", 1, 0, 10).await.expect("inbox");
    assert_eq!(
        rows.iter()
            .map(|r| (r.seq, r.body.clone()))
            .collect::<Vec<_>>(),
        [(1, b"x".to_vec()), (2, b"y".to_vec())]
    );
    assert_eq!(db.ack_inbox("b", 1, 1).await.expect("ack"), 1);
    assert_eq!(db.inbox_count("b", 1).await.expect("count"), 1);
    assert_eq!(
        db.inbox_after("b", 1, 0, 10).await.expect("inbox")[0].seq,
        2
    );
    assert_eq!(
        db.deliver(&[(inbox_message("s1", 100), vec![copy("b", 1, b"x")])])
            .await
            .expect("late"),
        [[None]],
        "an acknowledged message redelivered late is not stored again"
    );
    // One batch: two messages for one device take consecutive numbers in batch order, and a
    // message repeated inside the batch is stored once.
    assert_eq!(
        db.deliver(&[
            (inbox_message("s3", 102), vec![copy("b", 1, b"m3")]),
            (
                inbox_message("s4", 103),
                vec![copy("b", 1, b"m4"), copy("b", 2, b"m4")]
            ),
            (inbox_message("s3", 102), vec![copy("b", 1, b"m3")]),
        ])
        .await
        .expect("batch"),
        [vec![Some(3)], vec![Some(4), Some(3)], vec![None]]
    );
    assert_eq!(
        db.inbox_after("b", 1, 2, 10)
            .await
            .expect("inbox")
            .iter()
            .map(|r| (r.seq, r.server_id.clone(), r.body.clone()))
            .collect::<Vec<_>>(),
        [
            (3, "s3".to_owned(), b"m3".to_vec()),
            (4, "s4".to_owned(), b"m4".to_vec())
        ]
    );
    assert_eq!(db.purge_sends(150).await.expect("purge"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_number_each_device_without_gaps() {
    let (_dir, db) = fresh().await;
    let ids: Vec<Vec<String>> = (0..4)
        .map(|w| (0..25).map(|i| format!("w{w}-{i}")).collect())
        .collect();
    let workers = ids.iter().map(|ids| {
        let db = db.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            for pair in ids.chunks(2) {
                let batch: Vec<_> = pair
                    .iter()
                    .map(|id| {
                        (
                            inbox_message(id, 100),
                            vec![copy("b", 1, b"x"), copy("c", 1, b"x")],
                        )
                    })
                    .collect();
                db.deliver(&batch)
                    .await
                    .expect("a delivery waits for the others");
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        worker.await.expect("worker");
    }
    for account in ["b", "c"] {
        let seqs: Vec<i64> = db
            .inbox_after(account, 1, 0, 1000)
            .await
            .expect("inbox")
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "{account}");
    }
}

fn inbox_message(server_id: &str, sent_at: i64) -> NewInboxMessage<'_> {
    NewInboxMessage {
        server_id,
        sender_account: "a",
        sender_device: 1,
        sent_at,
        kind: "message",
        group: None,
    }
}

fn copy<'a>(account: &'a str, device: i64, body: &'a [u8]) -> InboxCopy<'a> {
    InboxCopy {
        account,
        device,
        body,
    }
}

fn device_keys<'a>(
    curve25519: &'a str,
    fallback: Option<(&'a str, &'a str, &'a str)>,
    one_time_keys: &'a [(&'a str, &'a str)],
) -> NewDeviceKeys<'a> {
    NewDeviceKeys {
        account: "a",
        device: 1,
        curve25519,
        ed25519: "ed",
        identity_signature: "sig",
        fallback,
        one_time_keys,
        now_ms: 1,
        max_one_time_keys: 3,
    }
}

#[tokio::test]
async fn one_time_keys_are_claimed_once_each_and_the_identity_stays_fixed() {
    let (_dir, db) = fresh().await;
    db.insert_account(&account("a", "+100"))
        .await
        .expect("account");
    assert_eq!(db.one_time_key_count("a", 1).await.expect("count"), None);
    assert!(db.claim_keys("a", true).await.expect("claim").is_empty());
    assert_eq!(
        db.publish_keys(device_keys("cv", None, &[("k1", "K1"), ("k2", "K2")]))
            .await
            .expect("publish"),
        Published::Stored {
            one_time_keys: 2,
            fallback_key: false
        }
    );
    assert_eq!(
        db.publish_keys(device_keys("other", None, &[]))
            .await
            .expect("publish"),
        Published::IdentityChanged
    );
    assert_eq!(
        db.publish_keys(device_keys("cv", None, &[("k3", "K3"), ("k4", "K4")]))
            .await
            .expect("publish"),
        Published::TooManyKeys { held: 2 },
        "over the limit stores none of them"
    );
    assert_eq!(
        db.publish_keys(device_keys(
            "cv",
            Some(("f1", "F1", "fs")),
            &[("k2", "K2"), ("k3", "K3")]
        ))
        .await
        .expect("publish"),
        Published::Stored {
            one_time_keys: 3,
            fallback_key: true
        },
        "an id held already is kept once"
    );
    assert_eq!(
        db.publish_keys(device_keys("cv", None, &[]))
            .await
            .expect("publish"),
        Published::Stored {
            one_time_keys: 3,
            fallback_key: true
        },
        "the fallback key stays when a publish brings none"
    );
    let mut claimed = Vec::new();
    for _ in 0..4 {
        let keys = db.claim_keys("a", true).await.expect("claim");
        assert_eq!(keys.len(), 1);
        assert_eq!(
            (
                keys[0].keys.login_key.clone(),
                keys[0].keys.fallback_key.as_deref()
            ),
            (vec![7; 32], Some("F1"))
        );
        claimed.push((keys[0].one_time_key.clone(), keys[0].left));
    }
    assert_eq!(
        claimed,
        [
            (Some(("k1".to_owned(), "K1".to_owned())), 2),
            (Some(("k2".to_owned(), "K2".to_owned())), 1),
            (Some(("k3".to_owned(), "K3".to_owned())), 0),
            (None, 0)
        ]
    );
    assert_eq!(db.one_time_key_count("a", 1).await.expect("count"), Some(0));
    assert!(db.remove_device("a", 1, 5).await.expect("remove"));
    assert!(
        db.claim_keys("a", true).await.expect("claim").is_empty(),
        "a removed device's keys are gone"
    );
}

#[tokio::test]
async fn workers_take_previews_round_robin_across_accounts() {
    let (_dir, db) = fresh().await;
    for (id, account, at) in [
        ("a1", "a", 100),
        ("a2", "a", 101),
        ("a3", "a", 102),
        ("b1", "b", 103),
    ] {
        assert!(db.enqueue_media(id, account, at).await.expect("enqueue"));
    }
    let mut order = Vec::new();
    for now in 200..204 {
        order.push(db.take_media(now, 0).await.expect("take").expect("one"));
    }
    assert_eq!(
        order,
        ["a1", "b1", "a2", "a3"],
        "b's one preview waits for one of a's, not three"
    );
    assert_eq!(
        db.take_media(205, 0).await.expect("take"),
        None,
        "all taken"
    );
    // One taken so long ago that its worker is presumed gone is taken again.
    assert_eq!(
        db.take_media(300, 201).await.expect("take").as_deref(),
        Some("a1")
    );
}

#[tokio::test]
async fn a_checkpoint_copies_the_log_into_the_database_file() {
    let (dir, db) = fresh().await;
    let file = dir.path().join("t.db");
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    db.checkpoint().await.expect("checkpoint");
    let before = size();
    for i in 0..300 {
        db.insert_account(&account(&format!("a{i}"), &format!("+1555{i:07}")))
            .await
            .expect("insert");
    }
    // The writes wait in the log (SQLite's own checkpoint is far off) until one is made.
    assert_eq!(size(), before);
    db.checkpoint().await.expect("checkpoint");
    if db.backend() == Backend::Sqlite {
        assert!(size() > before, "{} -> {}", before, size());
    }
}
