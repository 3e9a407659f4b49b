//! Spool round trips on a real filesystem: enqueue/claim/complete/defer/fail, restart recovery,
//! retry schedule with controlled time, concurrency and the worker wake-up.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use mailtap::queue::{MailId, MailMeta, MailState, QueueConfig, QueueError, RcptStatus, Spool};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Rec {
    from: String,
    to: Vec<String>,
    n: u32,
}

fn rec(n: u32) -> Rec {
    Rec {
        from: "lilei@example.com".into(),
        to: vec!["a@example.org".into(), "b@example.net".into()],
        n,
    }
}

fn message(n: u32) -> Vec<u8> {
    format!("Subject: test {n}\r\n\r\nbody {n}\r\n.\r\n").into_bytes()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

fn open(dir: &Path) -> Spool<Rec> {
    Spool::open(dir, QueueConfig::default()).unwrap()
}

fn in_dir(dir: &Path, state: &str, id: &MailId) -> bool {
    dir.join("spool")
        .join(state)
        .join(id.as_str())
        .join("meta.json")
        .is_file()
}

fn rc(addr: &str, st: RcptStatus) -> (String, RcptStatus) {
    (addr.to_string(), st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_claim_complete_round_trip() {
    // Guards: an enqueued mail is inspectable on disk, claimed once, and completes to delivered/.
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let id = spool.enqueue_at(&rec(1), &message(1), t0()).await.unwrap();
    let mail_dir = tmp.path().join("spool/active").join(id.as_str());
    assert_eq!(fs::read(mail_dir.join("message.eml")).unwrap(), message(1));
    let on_disk: MailMeta<Rec> =
        serde_json::from_slice(&fs::read(mail_dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(on_disk.record, rec(1));
    assert_eq!(on_disk.state, MailState::Active);

    let claimed = spool.claim_due(t0(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    assert_eq!(claimed[0].message, message(1));
    assert_eq!(claimed[0].meta.record, rec(1));
    assert!(spool.claim_due(t0(), 10).await.unwrap().is_empty());
    assert_eq!(spool.next_due(), None);

    let per = [
        rc("a@example.org", RcptStatus::Delivered),
        rc(
            "b@example.net",
            RcptStatus::Failed("550 5.1.1 no such user".into()),
        ),
    ];
    spool.complete(&id, &per).await.unwrap();
    assert!(in_dir(tmp.path(), "delivered", &id));
    assert!(!in_dir(tmp.path(), "active", &id));
    let meta = spool.get(&id).await.unwrap().unwrap();
    assert_eq!(meta.state, MailState::Delivered);
    assert_eq!(meta.attempts, 1);
    assert_eq!(meta.recipients["b@example.net"], per[1].1);
    assert_eq!(spool.list(MailState::Delivered).len(), 1);
    assert!(matches!(
        spool.complete(&id, &per).await,
        Err(QueueError::Finished(_))
    ));
    let eml = spool.message_path(&id).unwrap();
    assert_eq!(fs::read(eml).unwrap(), message(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_schedule_then_give_up_with_controlled_time() {
    // Guards: defer follows 60 s doubling, is not claimable early, and fails past 2 days.
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let id = spool.enqueue_at(&rec(2), &message(2), t0()).await.unwrap();
    let mut now = t0();
    let mut expected_delay = 60;
    for attempt in 1..=4u32 {
        let c = spool.claim_due(now, 1).await.unwrap();
        assert_eq!(c.len(), 1, "attempt {attempt}");
        let deferred = rc(
            "a@example.org",
            RcptStatus::Deferred("451 4.7.1 later".into()),
        );
        let st = spool
            .defer(&id, &[deferred], "451 4.7.1 later", now)
            .await
            .unwrap();
        assert_eq!(st, MailState::Deferred);
        assert!(in_dir(tmp.path(), "deferred", &id));
        let due = now + TimeDelta::seconds(expected_delay);
        assert_eq!(spool.next_due(), Some(due));
        let early = due - TimeDelta::seconds(1);
        assert!(spool.claim_due(early, 1).await.unwrap().is_empty());
        now = due;
        expected_delay *= 2;
    }
    let c = spool.claim_due(now, 1).await.unwrap();
    assert_eq!(c[0].meta.attempts, 4);
    let late = t0() + TimeDelta::days(2);
    let st = spool.defer(&id, &[], "421 still down", late).await.unwrap();
    assert_eq!(st, MailState::Failed);
    assert!(in_dir(tmp.path(), "failed", &id));
    let meta = spool.get(&id).await.unwrap().unwrap();
    assert!(meta
        .last_error
        .unwrap()
        .contains("gave up after 5 attempts"));
    assert!(matches!(
        &meta.recipients["a@example.org"],
        RcptStatus::Failed(_)
    ));
    assert_eq!(spool.next_due(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_makes_lost_claims_due_and_keeps_schedule() {
    // Guards: claims do not survive a restart; deferred mail keeps its next attempt.
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c);
    {
        let spool = open(tmp.path());
        a = spool.enqueue_at(&rec(1), &message(1), t0()).await.unwrap();
        b = spool.enqueue_at(&rec(2), &message(2), t0()).await.unwrap();
        c = spool.enqueue_at(&rec(3), &message(3), t0()).await.unwrap();
        assert_eq!(spool.claim_due(t0(), 3).await.unwrap().len(), 3);
        spool.defer(&c, &[], "421", t0()).await.unwrap();
        // a and b stay claimed when the process "dies" here.
        assert!(matches!(
            Spool::<Rec>::open(tmp.path(), QueueConfig::default()),
            Err(QueueError::Locked { .. })
        ));
    }
    let spool = open(tmp.path());
    assert_eq!(spool.recovery_report().loaded, [2, 1, 0, 0]);
    let got: HashSet<MailId> = spool
        .claim_due(t0(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(got, HashSet::from([a, b]));
    assert_eq!(spool.next_due(), Some(t0() + TimeDelta::seconds(60)));
    let later = spool
        .claim_due(t0() + TimeDelta::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].id, c);
    assert_eq!(later[0].meta.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_cleans_tmp_finishes_moves_and_keeps_corrupt_entries() {
    // Guards: recovery removes uncommitted work, trusts meta.json state, never deletes mail.
    let tmp = tempfile::tempdir().unwrap();
    let id;
    {
        let spool = open(tmp.path());
        id = spool.enqueue_at(&rec(1), &message(1), t0()).await.unwrap();
        spool.claim_due(t0(), 1).await.unwrap();
        spool.complete(&id, &[]).await.unwrap();
    }
    let spool_dir = tmp.path().join("spool");
    // Simulate a crash after the meta.json commit but before the directory move.
    fs::rename(
        spool_dir.join("delivered").join(id.as_str()),
        spool_dir.join("active").join(id.as_str()),
    )
    .unwrap();
    fs::create_dir_all(spool_dir.join("tmp/half-written")).unwrap();
    fs::write(spool_dir.join("tmp/half-written/message.eml"), b"Subj").unwrap();
    fs::write(
        spool_dir
            .join("active")
            .join(id.as_str())
            .join("meta.json.tmp"),
        b"{",
    )
    .unwrap();
    fs::create_dir_all(spool_dir.join("active/bogus")).unwrap();
    fs::create_dir_all(spool_dir.join("deferred/..x")).unwrap();

    let spool = open(tmp.path());
    let rep = spool.recovery_report();
    assert_eq!(rep.tmp_removed, 1);
    assert_eq!(rep.moved, 1);
    assert_eq!(rep.loaded, [0, 0, 1, 0]);
    assert_eq!(rep.corrupt.len(), 2, "{:?}", rep.corrupt);
    assert!(in_dir(tmp.path(), "delivered", &id));
    assert!(!spool_dir
        .join("delivered")
        .join(id.as_str())
        .join("meta.json.tmp")
        .exists());
    assert!(spool_dir.join("active/bogus").is_dir());
    assert_eq!(fs::read_dir(spool_dir.join("tmp")).unwrap().count(), 0);
    assert!(spool
        .claim_due(t0() + TimeDelta::days(9), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_contract_fail_and_update_record() {
    // Guards: complete/defer need the claim; fail and update_record work as documented.
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let a = spool.enqueue_at(&rec(1), &message(1), t0()).await.unwrap();
    let b = spool.enqueue_at(&rec(2), &message(2), t0()).await.unwrap();
    assert!(matches!(
        spool.complete(&a, &[]).await,
        Err(QueueError::NotClaimed(_))
    ));
    assert!(matches!(
        spool.defer(&a, &[], "x", t0()).await,
        Err(QueueError::NotClaimed(_))
    ));
    let unknown = MailId::parse("nope").unwrap();
    assert!(spool.get(&unknown).await.unwrap().is_none());
    assert!(matches!(
        spool.fail(&unknown, "x").await,
        Err(QueueError::NotFound(_))
    ));

    // update_record on an unclaimed mail leaves it claimable; on a claimed one keeps the claim.
    spool.update_record(&a, &rec(10)).await.unwrap();
    let claimed = spool.claim_due(t0(), 1).await.unwrap();
    assert_eq!(claimed[0].id, a);
    assert_eq!(claimed[0].meta.record, rec(10));
    spool.update_record(&a, &rec(11)).await.unwrap();
    assert!(spool
        .list(MailState::Active)
        .iter()
        .any(|s| s.id == a && s.claimed));
    spool.release(&a).unwrap();
    assert!(matches!(spool.release(&a), Err(QueueError::NotClaimed(_))));

    // fail on an unclaimed mail: no attempt counted, moved to failed/.
    spool.fail(&b, "rejected: invalid recipient").await.unwrap();
    assert!(in_dir(tmp.path(), "failed", &b));
    let mb = spool.get(&b).await.unwrap().unwrap();
    assert_eq!((mb.state, mb.attempts), (MailState::Failed, 0));
    assert_eq!(
        mb.last_error.as_deref(),
        Some("rejected: invalid recipient")
    );
    assert!(matches!(
        spool.update_record(&b, &rec(3)).await,
        Err(QueueError::Finished(_))
    ));

    // fail by the claimer counts as an attempt.
    let c = spool.claim_due(t0(), 5).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].meta.record, rec(11));
    spool.fail(&a, "554 5.7.1 refused").await.unwrap();
    assert_eq!(spool.get(&a).await.unwrap().unwrap().attempts, 1);
    assert_eq!(spool.list(MailState::Failed).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_due_and_claims_are_ordered_by_due_time() {
    // Guards: next_due is the earliest unclaimed due time and claims come earliest first.
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    assert_eq!(spool.next_due(), None);
    let offsets = [30, 5, 20, 10];
    let mut ids = Vec::new();
    for (i, off) in offsets.iter().enumerate() {
        let at = t0() + TimeDelta::seconds(*off);
        ids.push(
            spool
                .enqueue_at(&rec(i as u32), &message(0), at)
                .await
                .unwrap(),
        );
    }
    assert_eq!(spool.next_due(), Some(t0() + TimeDelta::seconds(5)));
    assert!(spool.claim_due(t0(), 10).await.unwrap().is_empty());
    let first = spool
        .claim_due(t0() + TimeDelta::seconds(12), 10)
        .await
        .unwrap();
    let order: Vec<u32> = first.iter().map(|m| m.meta.record.n).collect();
    assert_eq!(order, vec![1, 3]);
    assert_eq!(spool.next_due(), Some(t0() + TimeDelta::seconds(20)));
    let rest = spool
        .claim_due(t0() + TimeDelta::seconds(99), 1)
        .await
        .unwrap();
    assert_eq!(rest[0].meta.record.n, 2);
    let listed: Vec<MailId> = spool
        .list(MailState::Active)
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        listed,
        vec![
            ids[1].clone(),
            ids[3].clone(),
            ids[2].clone(),
            ids[0].clone()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_are_all_durable_and_distinct() {
    // Guards: 64 concurrent producers (group commit) lose nothing and never share an id.
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let mut tasks = Vec::new();
    for p in 0..64u32 {
        let s = spool.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for k in 0..8u32 {
                let n = p * 100 + k;
                ids.push((s.enqueue(&rec(n), &message(n)).await.unwrap(), n));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<&MailId> = all.iter().map(|(id, _)| id).collect();
    assert_eq!(distinct.len(), 64 * 8);
    drop(spool);
    let reopened = open(tmp.path());
    assert_eq!(reopened.recovery_report().loaded[0], 64 * 8);
    for (id, n) in &all {
        let dir = tmp.path().join("spool/active").join(id.as_str());
        assert_eq!(&fs::read(dir.join("message.eml")).unwrap(), &message(*n));
        let meta: MailMeta<Rec> =
            serde_json::from_slice(&fs::read(dir.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta.record.n, *n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wakes_a_waiting_worker() {
    // Guards: a worker waiting on notified() wakes on enqueue without polling.
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let worker_spool = spool.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let worker = tokio::spawn(async move {
        let wake = worker_spool.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        assert!(worker_spool
            .claim_due(Utc::now(), 1)
            .await
            .unwrap()
            .is_empty());
        let _ = ready_tx.send(());
        wake.await;
        worker_spool.claim_due(Utc::now(), 1).await.unwrap().len()
    });
    ready_rx.await.unwrap();
    spool.enqueue(&rec(1), &message(1)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), worker).await;
    assert_eq!(got.unwrap().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_mail_is_skipped_not_hammered() {
    // Guards: a claimed mail whose files vanished is skipped and not handed out again.
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let bad = spool.enqueue_at(&rec(1), &message(1), t0()).await.unwrap();
    let good = spool.enqueue_at(&rec(2), &message(2), t0()).await.unwrap();
    fs::remove_file(spool.message_path(&bad).unwrap()).unwrap();
    let got = spool.claim_due(t0(), 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, good);
    assert!(spool.claim_due(t0(), 10).await.unwrap().is_empty());
    assert!(spool.list(MailState::Active).iter().all(|s| s.claimed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_keeps_a_change_made_during_the_claim() {
    // Guards the claim-time metadata cache: a change between claim and completion (here
    // update_record) is what the completion builds on, in memory and on disk after reopening.
    let tmp = tempfile::tempdir().unwrap();
    let id = {
        let spool = open(tmp.path());
        let id = spool.enqueue_at(&rec(1), &message(1), t0()).await.unwrap();
        let claimed = spool.claim_due(t0(), 1).await.unwrap();
        assert_eq!(claimed[0].meta.record, rec(1));
        spool.update_record(&id, &rec(7)).await.unwrap();
        spool
            .complete(&id, &[rc("a@example.org", RcptStatus::Delivered)])
            .await
            .unwrap();
        let meta = spool.get(&id).await.unwrap().unwrap();
        assert_eq!((meta.state, meta.record), (MailState::Delivered, rec(7)));
        id
    };
    let spool = open(tmp.path());
    let meta = spool.get(&id).await.unwrap().unwrap();
    assert_eq!((meta.state, meta.record), (MailState::Delivered, rec(7)));
    assert_eq!(meta.recipients["a@example.org"], RcptStatus::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_applied_in_the_background_keeps_every_completion_readable() {
    // Guards the background apply: completions past several journal seals (1 MiB each) read
    // back right away, the sealed segments are gone once applied, and every meta.json on disk
    // says delivered after the spool closes.
    let tmp = tempfile::tempdir().unwrap();
    let big = |n: u32| Rec {
        from: "x".repeat(40_000),
        ..rec(n)
    };
    let mut ids = Vec::new();
    {
        let spool = open(tmp.path());
        for n in 0..80 {
            ids.push(spool.enqueue_at(&big(n), &message(n), t0()).await.unwrap());
        }
        let claimed = spool.claim_due(t0(), 100).await.unwrap();
        assert_eq!(claimed.len(), 80);
        for c in &claimed {
            spool
                .complete(&c.id, &[rc("a@example.org", RcptStatus::Delivered)])
                .await
                .unwrap();
            let meta = spool.get(&c.id).await.unwrap().unwrap();
            assert_eq!(meta.state, MailState::Delivered);
            assert_eq!(meta.record, big(c.meta.record.n));
        }
        for id in &ids {
            let meta = spool.get(id).await.unwrap().unwrap();
            assert_eq!(meta.recipients["a@example.org"], RcptStatus::Delivered);
        }
        assert_eq!(spool.count(MailState::Delivered), 80);
    }
    let names: Vec<String> = fs::read_dir(tmp.path().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("journal.")),
        "{names:?}"
    );
    assert_eq!(
        fs::metadata(tmp.path().join("spool/journal"))
            .unwrap()
            .len(),
        0
    );
    for id in &ids {
        let on_disk: MailMeta<Rec> = serde_json::from_slice(
            &fs::read(
                tmp.path()
                    .join("spool/delivered")
                    .join(id.as_str())
                    .join("meta.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(on_disk.state, MailState::Delivered);
    }
    let spool = open(tmp.path());
    assert_eq!(spool.recovery_report().journaled, 0);
    assert_eq!(spool.recovery_report().loaded, [0, 0, 80, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_finished_mail_is_removed_and_nothing_else() {
    // Guards keep_finished_secs: delivered and failed mail older than the limit leaves disk and
    // index (oldest first, at most `max` per call, even with its outcome still only in the
    // journal); younger finished mail and unfinished mail stay; a restart applies no record
    // of a removed mail.
    let tmp = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        keep_finished_secs: 3600,
        give_up_after_secs: 3600,
        ..QueueConfig::default()
    };
    let (old_a, old_b, young, waiting);
    {
        let spool: Spool<Rec> = Spool::open(tmp.path(), config.clone()).unwrap();
        old_a = spool.enqueue_at(&rec(1), &message(1), t0()).await.unwrap();
        old_b = spool
            .enqueue_at(&rec(2), &message(2), t0() + TimeDelta::seconds(1))
            .await
            .unwrap();
        waiting = spool.enqueue_at(&rec(3), &message(3), t0()).await.unwrap();
        young = spool
            .enqueue_at(&rec(4), &message(4), t0() + TimeDelta::hours(2))
            .await
            .unwrap();
        let claimed = spool
            .claim_due(t0() + TimeDelta::hours(3), 10)
            .await
            .unwrap();
        for c in &claimed {
            if c.id == old_b {
                spool.fail(&c.id, "550 no").await.unwrap();
            } else if c.id != waiting {
                spool
                    .complete(&c.id, &[rc("a@example.org", RcptStatus::Delivered)])
                    .await
                    .unwrap();
            } else {
                spool.release(&c.id).unwrap();
            }
        }
        let now = t0() + TimeDelta::hours(2) + TimeDelta::minutes(30);
        assert_eq!(spool.purge_finished(now, 1).await.unwrap(), 1);
        assert!(
            spool.get(&old_a).await.unwrap().is_none(),
            "oldest goes first"
        );
        assert_eq!(spool.purge_finished(now, 10).await.unwrap(), 1);
        assert!(spool.get(&old_b).await.unwrap().is_none());
        assert_eq!(spool.purge_finished(now, 10).await.unwrap(), 0);
        assert_eq!(spool.count(MailState::Delivered), 1);
        assert_eq!(spool.count(MailState::Failed), 0);
        assert_eq!(spool.count(MailState::Active), 1);
        assert!(spool.get(&young).await.unwrap().is_some());
        assert!(spool.get(&waiting).await.unwrap().is_some());
        for id in [&old_a, &old_b] {
            for state in ["active", "deferred", "delivered", "failed"] {
                assert!(!tmp
                    .path()
                    .join("spool")
                    .join(state)
                    .join(id.as_str())
                    .exists());
            }
        }
    }
    let spool: Spool<Rec> = Spool::open(tmp.path(), config).unwrap();
    let rep = spool.recovery_report();
    assert!(rep.corrupt.is_empty(), "{:?}", rep.corrupt);
    assert_eq!(rep.loaded, [1, 0, 1, 0]);
    let forever: Spool<Rec> = {
        drop(spool);
        Spool::open(
            tmp.path(),
            QueueConfig {
                keep_finished_secs: 0,
                ..QueueConfig::default()
            },
        )
        .unwrap()
    };
    assert_eq!(
        forever
            .purge_finished(t0() + TimeDelta::days(3650), 10)
            .await
            .unwrap(),
        0
    );
}
