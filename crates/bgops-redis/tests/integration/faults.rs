//! The fault suite of issue 10 on Redis: garbage under every key kind (a script that
//! meets it answers Corrupt and writes nothing: no claim held by nobody, no lock held by
//! nobody, no task stuck claimed), cleanup of many expiring records, and a `begin` whose
//! answer was lost in an outage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bgops_core::{
    OperationOutcome, SagaEvent, SagaEventKind, SagaLease, SagaStatus, SagaStep, SagaWorkflow,
};
use bgops_redis::RedisStorage;
use bgops_storage::{
    BeginOutcome, BeginRequest, IdempotencyStore, LockStore, NewTask, SagaStore, StorageError,
    TaskStore,
};
use fred::clients::Client;
use fred::prelude::{Builder, ClientLike, Config};
use fred::types::{CustomCommand, Value};
use serde_json::json;

use crate::support::{delete_prefix, own_server, prefix, redis_url};

/// A plain fred client, to write garbage under our keys and look at what is stored.
async fn raw_client(url: &str) -> Client {
    let client = Builder::from_config(Config::from_url(url).expect("url"))
        .build()
        .expect("client");
    client.init().await.expect("connect");
    client
}

async fn cmd(client: &Client, name: &'static str, args: &[&str]) -> Value {
    let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    client
        .custom(CustomCommand::new_static(name, None, false), owned)
        .await
        .unwrap_or_else(|e| panic!("{name} {args:?}: {e}"))
}

/// Every key matching `pattern` (KEYS is fine here: a test's own prefix on a test server).
async fn keys_of(client: &Client, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = cmd(client, "KEYS", &[pattern])
        .await
        .into_array()
        .into_iter()
        .filter_map(|v| v.as_string())
        .collect();
    keys.sort();
    keys
}

async fn one_key(client: &Client, pattern: &str) -> String {
    let keys = keys_of(client, pattern).await;
    assert_eq!(keys.len(), 1, "{pattern}: {keys:?}");
    keys.into_iter().next().expect("one key")
}

/// Everything stored under `prefix`, in a canonical form (type and sorted content; not
/// `DUMP`, whose field order moves when Redis rehashes a hash on reads). Equal snapshots
/// before and after a call prove it wrote nothing.
async fn snapshot(client: &Client, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for key in keys_of(client, &format!("{prefix}:*")).await {
        let kind = cmd(client, "TYPE", &[&key])
            .await
            .as_string()
            .unwrap_or_default();
        let reply = match kind.as_str() {
            "string" => cmd(client, "GET", &[&key]).await,
            "hash" => cmd(client, "HGETALL", &[&key]).await,
            "list" => cmd(client, "LRANGE", &[&key, "0", "-1"]).await,
            "zset" => cmd(client, "ZRANGE", &[&key, "0", "-1", "WITHSCORES"]).await,
            _ => cmd(client, "SMEMBERS", &[&key]).await,
        };
        let mut content: Vec<String> = match reply {
            Value::Array(items) => items.iter().map(|v| format!("{v:?}")).collect(),
            other => vec![format!("{other:?}")],
        };
        if kind == "hash" {
            let mut pairs: Vec<String> = content.chunks(2).map(|p| p.join("=")).collect();
            pairs.sort();
            content = pairs;
        }
        content.insert(0, kind);
        out.insert(key, content);
    }
    out
}

fn assert_corrupt<T: std::fmt::Debug>(what: &str, result: Result<T, StorageError>, key: &str) {
    match result {
        Err(StorageError::Corrupt { key: got, .. }) => {
            assert_eq!(got, key, "{what}: Corrupt names the wrong key");
        }
        other => panic!("{what}: expected Corrupt naming {key}, got {other:?}"),
    }
}

/// Runs `call` against garbage and checks it answers Corrupt naming `key` and that nothing
/// under the prefix changed.
macro_rules! corrupt_and_unchanged {
    ($client:expr, $prefix:expr, $what:expr, $key:expr, $call:expr) => {{
        let before = snapshot($client, $prefix).await;
        assert_corrupt($what, $call, $key);
        let after = snapshot($client, $prefix).await;
        assert_eq!(before, after, "{}: a failed script wrote something", $what);
    }};
}

async fn storage(prefix: &str) -> RedisStorage {
    RedisStorage::builder(redis_url())
        .prefix(prefix)
        .pool_size(2)
        .build()
        .await
        .expect("connect")
}

fn begin(key: &str, token: &str) -> BeginRequest {
    BeginRequest::new("tenant", key, "op", token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_under_idempotency_keys_is_corrupt_and_writes_nothing() {
    let prefix = prefix();
    let store = storage(&prefix).await;
    let client = raw_client(&redis_url()).await;

    // A record that is not a hash.
    store.begin(begin("a", "tok-a")).await.expect("begin");
    let rec = one_key(&client, &format!("{prefix}:{{idem:*}}:rec:*")).await;
    let index = rec.split(":rec:").next().expect("tag").to_owned() + ":index";
    cmd(&client, "SET", &[&rec, "garbage"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "begin on a string",
        &rec,
        store.begin(begin("a", "tok-b")).await
    );
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "complete on a string",
        &rec,
        store
            .complete(
                "tenant",
                "a",
                "tok-a",
                OperationOutcome::succeeded(json!(1))
            )
            .await
    );
    assert_corrupt(
        "get on a string",
        store.get_idempotency("tenant", "a").await,
        &rec,
    );

    // A hash with fields we did not write.
    cmd(&client, "DEL", &[&rec]).await;
    cmd(
        &client,
        "HSET",
        &[&rec, "status", "completed", "expires", "soon"],
    )
    .await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "begin on a bad expiry",
        &rec,
        store.begin(begin("a", "tok-b")).await
    );
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "complete on a bad expiry",
        &rec,
        store
            .complete(
                "tenant",
                "a",
                "tok-a",
                OperationOutcome::succeeded(json!(1))
            )
            .await
    );
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "renew on a bad expiry",
        &rec,
        store
            .renew("tenant", "a", "tok-a", Duration::from_secs(1))
            .await
    );
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "release on a bad expiry",
        &rec,
        store.release("tenant", "a", "tok-a").await
    );
    cmd(
        &client,
        "HSET",
        &[
            &rec,
            "expires",
            "99999999999999",
            "status",
            "in_progress",
            "lease",
            "x",
        ],
    )
    .await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "begin on a bad lease",
        &rec,
        store.begin(begin("a", "tok-b")).await
    );
    cmd(
        &client,
        "HSET",
        &[
            &rec,
            "status",
            "completed",
            "completed",
            "x",
            "token",
            "tok-a",
        ],
    )
    .await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "repeated complete on a bad completion time",
        &rec,
        store
            .complete(
                "tenant",
                "a",
                "tok-a",
                OperationOutcome::succeeded(json!(1))
            )
            .await
    );

    // A corrupt bucket index: begin must not leave a claim held by nobody.
    cmd(&client, "DEL", &[&rec, &index]).await;
    cmd(&client, "SET", &[&index, "garbage"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "begin with a corrupt index",
        &index,
        store.begin(begin("a", "tok-c")).await
    );
    assert!(
        keys_of(&client, &rec).await.is_empty(),
        "no claim held by nobody"
    );
    // Cleanup skips the bucket, names it, and goes on with the others.
    for i in 0.. {
        let request = begin(&format!("short-{i}"), "tok").ttl(Duration::from_millis(50));
        match store.begin(request).await {
            Ok(_) => break,
            Err(StorageError::Corrupt { .. }) => {} // the same bucket: try another key
            Err(e) => panic!("begin in another bucket: {e:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    let sweep = store.purge_expired(1_000).await.expect("purge goes on");
    assert_eq!(sweep.corrupt, vec![index.clone()]);
    assert_eq!(sweep.done, 1, "the expired record of another bucket");

    // An index entry that is not one of our records is skipped and named, once.
    cmd(&client, "DEL", &[&index]).await;
    let foreign = format!("{}:rec:1:x:y", index.trim_end_matches(":index"));
    cmd(&client, "SET", &[&foreign, "not a hash"]).await;
    cmd(&client, "ZADD", &[&index, "1", &foreign]).await;
    let sweep = store.purge_expired(1_000).await.expect("purge");
    assert_eq!(sweep.corrupt, vec![foreign.clone()]);
    assert!(
        !sweep.more,
        "a corrupt entry does not make the cleanup spin"
    );
    let again = store.purge_expired(1_000).await.expect("purge");
    assert!(
        again.corrupt.is_empty(),
        "reported again only an hour later"
    );

    delete_prefix(&redis_url(), &prefix).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_under_lock_keys_is_corrupt_and_holds_no_lock() {
    let prefix = prefix();
    let store = storage(&prefix).await;
    let client = raw_client(&redis_url()).await;
    let lease = store
        .acquire_lock("l", Duration::from_secs(30))
        .await
        .expect("acquire")
        .expect("free");
    let lock = one_key(&client, &format!("{prefix}:{{lock:*}}:lock:l")).await;
    let fence = one_key(&client, &format!("{prefix}:{{lock:*}}:fence:l")).await;
    let held = one_key(&client, &format!("{prefix}:{{lock:*}}:held")).await;
    assert!(store.release_lock(&lease).await.expect("release"));

    // A fence counter that is not a number: no lock held by nobody.
    cmd(&client, "SET", &[&fence, "abc"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "acquire with a bad fence counter",
        &fence,
        store.acquire_lock("l", Duration::from_secs(30)).await
    );
    assert!(
        keys_of(&client, &lock).await.is_empty(),
        "no lock held by nobody"
    );

    // A held index that is not a sorted set.
    cmd(&client, "SET", &[&fence, "7"]).await;
    cmd(&client, "DEL", &[&held]).await;
    cmd(&client, "SET", &[&held, "garbage"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "acquire with a bad held index",
        &held,
        store.acquire_lock("l", Duration::from_secs(30)).await
    );
    assert!(
        keys_of(&client, &lock).await.is_empty(),
        "no lock held by nobody"
    );

    // A lock that is not a string.
    cmd(&client, "DEL", &[&held]).await;
    cmd(&client, "HSET", &[&lock, "x", "y"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "acquire on a hash",
        &lock,
        store.acquire_lock("l", Duration::from_secs(30)).await
    );

    delete_prefix(&redis_url(), &prefix).expect("cleanup");
}

fn leased_saga() -> SagaWorkflow {
    let mut saga = SagaWorkflow::new(
        "tenant",
        "flow",
        vec![SagaStep::new("s", "op", json!({}))],
        time::OffsetDateTime::now_utc(),
    );
    saga.lease = Some(SagaLease {
        owner: "me".to_owned(),
        fence: 1,
        expires_at: time::OffsetDateTime::now_utc(),
    });
    saga
}

fn event(saga: &SagaWorkflow) -> SagaEvent {
    SagaEvent {
        saga_id: saga.saga_id.as_str().into(),
        at: time::OffsetDateTime::now_utc(),
        fence: 1,
        status: SagaStatus::Running,
        kind: SagaEventKind::Resumed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_under_saga_keys_is_corrupt_and_writes_nothing() {
    let prefix = prefix();
    let store = storage(&prefix).await;
    let client = raw_client(&redis_url()).await;
    let saga = leased_saga();
    store
        .create_saga(&saga, Some(Duration::from_secs(30)), &[])
        .await
        .expect("create");
    let rec = format!("{prefix}:{{saga}}:s:{}", saga.saga_id);
    let hist = format!("{prefix}:{{saga}}:h:{}", saga.saga_id);
    let running = format!("{prefix}:{{saga}}:idx:st:running");
    let mut next = saga.clone();
    next.status = SagaStatus::Running;

    // A status index the save must move the saga into.
    cmd(&client, "SET", &[&running, "garbage"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "save into a corrupt index",
        &running,
        store
            .save_saga(&next, 1, &[event(&next)], Some(Duration::from_secs(30)))
            .await
    );
    cmd(&client, "DEL", &[&running]).await;

    // A history that is not a list.
    cmd(&client, "SET", &[&hist, "garbage"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "save with a corrupt history",
        &hist,
        store.save_saga(&next, 1, &[event(&next)], None).await
    );
    cmd(&client, "DEL", &[&hist]).await;

    // Fields the scripts compare.
    cmd(&client, "HSET", &[&rec, "version", "x"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "save on a bad version",
        &rec,
        store.save_saga(&next, 1, &[event(&next)], None).await
    );
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "acquire on a bad version",
        &rec,
        store
            .acquire_saga_lease(&saga.saga_id, "other", Duration::from_secs(1))
            .await
    );
    cmd(&client, "HSET", &[&rec, "version", "0", "lexp", "soon"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "acquire on a bad lease expiry",
        &rec,
        store
            .acquire_saga_lease(&saga.saga_id, "other", Duration::from_secs(1))
            .await
    );
    cmd(&client, "HSET", &[&rec, "lexp", "0", "doc", "{not json"]).await;
    assert_corrupt(
        "get on a bad document",
        store.get_saga(&saga.saga_id).await,
        &rec,
    );

    // The saga itself is not a hash.
    cmd(&client, "DEL", &[&rec]).await;
    cmd(&client, "SET", &[&rec, "garbage"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "create over a string",
        &rec,
        store
            .create_saga(&saga, Some(Duration::from_secs(30)), &[])
            .await
    );

    delete_prefix(&redis_url(), &prefix).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_under_task_keys_is_corrupt_and_leaves_no_task_stuck() {
    let prefix = prefix();
    let store = storage(&prefix).await;
    let client = raw_client(&redis_url()).await;
    let lease = Duration::from_secs(30);
    let submitted = store
        .submit_task(NewTask::new("q", "t", json!({"a": 1})).idempotency_key("k1"))
        .await
        .expect("submit");
    let id = submitted.task.task_id.clone();
    let claimed = store
        .claim_next_task("q", "w", lease)
        .await
        .expect("claim")
        .expect("a task");
    let attempt = claimed.lease.expect("lease").attempt;
    let rec = format!("{prefix}:{{task}}:t:{id}");
    let hist = format!("{prefix}:{{task}}:h:{id}");
    let meta = one_key(&client, &format!("{prefix}:{{task}}:queue:*")).await;
    let done = format!("{prefix}:{{task}}:done");

    // A field the finish reads: the task stays claimed with its lease, untouched.
    cmd(&client, "HSET", &[&rec, "attempts", "x"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "complete on bad attempts",
        &rec,
        store.complete_task(&id, attempt, json!(1)).await
    );
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "fail on bad attempts",
        &rec,
        store.fail_task(&id, attempt, "e", Duration::ZERO).await
    );
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "fail for good on bad attempts",
        &rec,
        store.fail_task_permanently(&id, attempt, "e").await
    );
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "release on bad attempts",
        &rec,
        store.release_task(&id, attempt).await
    );
    cmd(&client, "HSET", &[&rec, "attempts", "1"]).await;

    // The open attempt of the history.
    cmd(&client, "RPUSH", &[&hist, "{not json"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "complete on a bad history",
        &hist,
        store.complete_task(&id, attempt, json!(1)).await
    );
    cmd(&client, "RPOP", &[&hist]).await;

    // The queue's meta hash (the names of its indexes).
    let saved_meta = cmd(&client, "DUMP", &[&meta]).await;
    cmd(&client, "HDEL", &[&meta, "ready"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "complete with a broken queue",
        &meta,
        store.complete_task(&id, attempt, json!(1)).await
    );
    cmd(&client, "DEL", &[&meta]).await;
    let dump = saved_meta
        .as_bytes()
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    client
        .custom::<Value, Value>(
            CustomCommand::new_static("RESTORE", None, false),
            vec![
                Value::from(meta.clone()),
                Value::from(0),
                Value::Bytes(dump.into()),
            ],
        )
        .await
        .expect("restore");

    // The finished index the completion writes.
    cmd(&client, "SET", &[&done, "garbage"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "complete with a corrupt finished index",
        &done,
        store.complete_task(&id, attempt, json!(1)).await
    );
    cmd(&client, "DEL", &[&done]).await;

    // With the garbage gone the same claim completes: nothing was stuck half way.
    let receipt = store
        .complete_task(&id, attempt, json!("ok"))
        .await
        .expect("complete");
    assert_eq!(receipt.status, bgops_core::TaskStatus::Completed);

    // A key mapping that is not a string, a submission counter that is not a number.
    let keymap = one_key(&client, &format!("{prefix}:{{task}}:key:*")).await;
    cmd(&client, "DEL", &[&keymap]).await;
    cmd(&client, "HSET", &[&keymap, "x", "y"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "submit over a bad key mapping",
        &keymap,
        store
            .submit_task(NewTask::new("q", "t", json!({})).idempotency_key("k1"))
            .await
    );
    cmd(&client, "DEL", &[&keymap]).await;
    let seq = format!("{prefix}:{{task}}:seq");
    cmd(&client, "SET", &[&seq, "abc"]).await;
    corrupt_and_unchanged!(
        &client,
        &prefix,
        "submit with a bad counter",
        &seq,
        store.submit_task(NewTask::new("q", "t", json!({}))).await
    );
    cmd(&client, "SET", &[&seq, "10"]).await;

    // Sweeps skip a corrupt task, name it, and go on with the others.
    let good = store
        .submit_task(NewTask::new("q2", "t", json!({})))
        .await
        .expect("submit");
    let bad = store
        .submit_task(NewTask::new("q2", "t", json!({})))
        .await
        .expect("submit");
    let short = Duration::from_millis(50);
    for task in [&good.task, &bad.task] {
        store
            .claim_task(&task.task_id, "w", short)
            .await
            .expect("claim")
            .expect("claimable");
    }
    let bad_rec = format!("{prefix}:{{task}}:t:{}", bad.task.task_id);
    cmd(&client, "HSET", &[&bad_rec, "max", "many"]).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let sweep = store
        .requeue_expired_tasks(100)
        .await
        .expect("requeue goes on");
    assert_eq!(sweep.done, 1, "{sweep:?}");
    assert_eq!(sweep.corrupt, vec![bad_rec.clone()]);
    assert!(!sweep.more);
    let purged = store.purge_tasks(Duration::ZERO, 100).await.expect("purge");
    assert_eq!(purged.done, 1, "the completed task: {purged:?}");

    delete_prefix(&redis_url(), &prefix).expect("cleanup");
}

/// Issue 10 item 7: a `begin` sent before an outage lands after it. Its caller saw an
/// error; when it repeats the `begin` with the same token it gets `Started` again (not a
/// key blocked for a whole lease), and can finish or release the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_that_lands_after_an_outage_is_harmless_to_its_caller() {
    let server = own_server();
    let store = RedisStorage::builder(server.url())
        .prefix(prefix())
        .command_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect("connect");
    // Warm the script cache, so the stalled call is the begin itself.
    store.begin(begin("warm", "tok-warm")).await.expect("begin");

    server.pause().expect("pause");
    let lost = store.begin(begin("k", "tok-1")).await;
    assert!(
        matches!(&lost, Err(e) if e.is_transient()),
        "a stalled server is a transient error: {lost:?}"
    );
    server.resume().expect("resume");

    // Whether or not the stalled begin was applied, the same token gets the claim.
    let mut again = store.begin(begin("k", "tok-1")).await;
    for _ in 0..50 {
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = store.begin(begin("k", "tok-1")).await;
    }
    let Ok(BeginOutcome::Started(claimed)) = again else {
        panic!("expected Started for the same token, got {again:?}")
    };
    assert_eq!(claimed.token, "tok-1");
    assert!(matches!(
        store.begin(begin("k", "tok-2")).await,
        Ok(BeginOutcome::InProgress { .. })
    ));
    store
        .complete(
            "tenant",
            "k",
            "tok-1",
            OperationOutcome::succeeded(json!(1)),
        )
        .await
        .expect("complete");
    assert!(matches!(
        store.begin(begin("k", "tok-2")).await,
        Ok(BeginOutcome::Completed(_))
    ));
}

/// Issue 10 item 6: many short-lived records are all cleaned up (Redis expires the records,
/// the purge empties the indexes in bounded batches) and the server is empty after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_many_expiring_records_empties_the_server() {
    const RECORDS: usize = 50_000;
    const CONCURRENCY: usize = 64;
    let server = own_server();
    let store = Arc::new(
        RedisStorage::builder(server.url())
            .pool_size(4)
            .build()
            .await
            .expect("connect"),
    );
    let ttl = Duration::from_secs(1);
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in (t..RECORDS).step_by(CONCURRENCY) {
                    let request = begin(&format!("k{i}"), "tok").ttl(ttl);
                    store.begin(request).await.expect("begin");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    let client = raw_client(server.url()).await;
    assert!(cmd(&client, "DBSIZE", &[]).await.as_u64().unwrap_or(0) > 0);
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;

    let mut purged = 0;
    loop {
        let sweep = store.purge_expired(10_000).await.expect("purge");
        assert!(sweep.corrupt.is_empty());
        purged += sweep.done;
        if !sweep.more {
            break;
        }
    }
    assert_eq!(purged, RECORDS as u64);
    assert_eq!(cmd(&client, "DBSIZE", &[]).await.as_u64(), Some(0));
}

/// Issue 9 defect 2 and issue 10 (Redis paused longer than the lease): the holder's
/// completion after the pause lands, since nobody took over; the in-flight record did not
/// vanish with its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_after_a_pause_longer_than_the_lease_lands() {
    let server = own_server();
    let store = RedisStorage::builder(server.url())
        .prefix(prefix())
        .command_timeout(Duration::from_secs(5))
        .build()
        .await
        .expect("connect");
    let lease = Duration::from_millis(200);
    let Ok(BeginOutcome::Started(claimed)) = store.begin(begin("k", "tok-1").lease(lease)).await
    else {
        panic!("expected Started")
    };
    server.pause().expect("pause");
    tokio::time::sleep(lease * 3).await;
    server.resume().expect("resume");
    let receipt = store
        .complete(
            "tenant",
            "k",
            &claimed.token,
            OperationOutcome::succeeded(json!(1)),
        )
        .await
        .expect("the late completion lands");
    assert_eq!(receipt.expires_at, claimed.expires_at);
    assert!(matches!(
        store.begin(begin("k", "tok-2")).await,
        Ok(BeginOutcome::Completed(_))
    ));
}
