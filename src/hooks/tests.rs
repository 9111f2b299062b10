//! Unit tests of the session rules (writes, reads, buffered changes, semaphores) and of
//! merging KV changes. The HTTP layer and the runner are tested end to end in
//! `tests/cli_hooks.rs` with real python3 and bun.

use super::catalog::{CommandEntry, HookCatalog};
use super::session::{check_write, ApiError, Caller, Session};
use super::{merge_kv_changes, AllocationContext};
use crate::events::{KvChange, KvChanged, KvValue};
use crate::kv::secret::{self, SecretKey};
use crate::workspace::CommandEvent;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn key() -> SecretKey {
    SecretKey::generate(&mut StdRng::seed_from_u64(7))
}

fn allocation(ip: &str) -> AllocationContext {
    AllocationContext {
        alloc_id: format!("alloc-{ip}"),
        worker_ip: ip.to_string(),
        index: Some(0),
        disabled: false,
        current_version: "0.0.0".into(),
        new_version: "1.0.0".into(),
    }
}

fn entry(namespace: &str, key: &str) -> (String, String) {
    (namespace.to_string(), key.to_string())
}

/// A session of `api` (demanding `db`) on 127.9.0.1 with a few catalog values.
fn session(event: CommandEvent) -> (Session, Caller) {
    let sealed = secret::seal(
        &key(),
        "secrets/job/api",
        "pw",
        "old-secret",
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    let kv = BTreeMap::from([
        (entry("vars/job/api", "a"), KvValue::Plain("1".into())),
        (entry("vars/job/db", "answer"), KvValue::Plain("42".into())),
        (
            entry("vars/job/other", "answer"),
            KvValue::Plain("43".into()),
        ),
        (
            entry("secrets/job/api", "pw"),
            KvValue::Sealed(sealed.encode()),
        ),
    ]);
    let commands = vec![CommandEntry {
        job: "api".into(),
        name: "command_x".into(),
        event: event.as_str().into(),
        script: "_modules/command_x.py".into(),
        demand_job: "db".into(),
        demand_command: "command_schema".into(),
        demand_config: "{}".into(),
    }];
    let catalog = HookCatalog::with_kv(kv, commands);
    let allocations = [allocation("127.9.0.1"), allocation("127.9.0.2")];
    let session = Session::new(&catalog, "api", "command_x", event, &allocations, key());
    let token = session.admit(&allocations[0]);
    let caller = session.caller(&token).expect("the token was just issued");
    (session, caller)
}

#[test]
fn writes_go_only_to_the_jobs_own_vars_secrets_and_rollout_order() {
    use CommandEvent::*;
    let allowed = [
        (Cli, "vars/job/api", false),
        (PostBuild, "vars/job/api", false),
        (Cli, "secrets/job/api", true),
        (PreDeploy, "maand/job/api", false),
        (Cli, "maand/job/api", false),
    ];
    for (event, namespace, secret) in allowed {
        assert_eq!(
            check_write("api", event, namespace, secret),
            Ok(()),
            "{event} {namespace}"
        );
    }
    let refused = [
        (Cli, "vars/job/db", false),
        (Cli, "secrets/job/db", true),
        (Cli, "secrets/job/api", false),
        (Cli, "vars/job/api", true),
        (Cli, "maand/bucket", false),
        (Cli, "vars/bucket", false),
        (Cli, "vars/bucket/job/api", false),
        (Cli, "maand/job/api/worker/127.9.0.1", false),
        (PostDeploy, "maand/job/api", false),
        (PostBuild, "maand/job/api", false),
        (AfterAllocationStarted, "maand/job/api", false),
    ];
    for (event, namespace, secret) in refused {
        assert!(
            matches!(
                check_write("api", event, namespace, secret),
                Err(ApiError::Namespace(_))
            ),
            "{event} {namespace} must be refused"
        );
    }
    for (namespace, secret) in [("vars/job/api", false), ("secrets/job/api", true)] {
        assert_eq!(
            check_write("api", HealthCheck, namespace, secret),
            Err(ApiError::HealthCheckWrite)
        );
    }
}

#[test]
fn only_rollout_order_of_the_own_job_namespace_is_writable() {
    let (session, _) = session(CommandEvent::Cli);
    assert!(session
        .put("maand/job/api", "rollout_order", "127.9.0.2", false)
        .is_ok());
    assert!(matches!(
        session.put("maand/job/api", "version", "9", false),
        Err(ApiError::Namespace(_))
    ));
}

#[test]
fn reads_follow_the_read_scope_and_see_buffered_writes() {
    let (session, caller) = session(CommandEvent::Cli);
    assert_eq!(
        session.get(&caller, "vars/job/db", "answer"),
        Ok("42".into())
    );
    assert!(matches!(
        session.get(&caller, "vars/job/other", "answer"),
        Err(ApiError::Namespace(_))
    ));
    assert_eq!(
        session.get(&caller, "vars/job/api", "b"),
        Err(ApiError::NotFound)
    );
    session.put("vars/job/api", "b", "2", false).unwrap();
    assert_eq!(session.get(&caller, "vars/job/api", "b"), Ok("2".into()));
    assert!(session.delete("vars/job/api", "a", false).unwrap());
    assert_eq!(
        session.get(&caller, "vars/job/api", "a"),
        Err(ApiError::NotFound)
    );
    assert_eq!(
        session.get(&caller, "secrets/job/api", "pw"),
        Ok("old-secret".into())
    );
    let keys = session.keys(&caller, None).unwrap();
    assert_eq!(keys["vars/job/api"], ["b"]);
    assert_eq!(keys["secrets/job/api"], ["pw"]);
}

#[test]
fn changes_leave_out_writes_that_change_nothing_and_never_carry_plaintext() {
    let (session, _) = session(CommandEvent::Cli);
    session.put("vars/job/api", "a", "1", false).unwrap();
    session
        .put("secrets/job/api", "pw", "old-secret", true)
        .unwrap();
    session
        .delete("vars/job/api", "never-existed", false)
        .unwrap();
    assert!(session.changes().is_empty(), "{:?}", session.changes());

    session
        .put("secrets/job/api", "pw", "new-secret", true)
        .unwrap();
    session.put("vars/job/api", "a", "2", false).unwrap();
    let changes = session.changes();
    assert_eq!(changes.len(), 2);
    let secret_change = changes
        .iter()
        .find(|c| c.namespace == "secrets/job/api")
        .unwrap();
    match &secret_change.changes[..] {
        [KvChange::Put {
            key: name,
            value: KvValue::Sealed(text),
        }] => {
            assert_eq!(name, "pw");
            assert!(!text.contains("new-secret"));
            let sealed = secret::SealedSecret::decode(text).unwrap();
            assert_eq!(
                secret::open(&key(), "secrets/job/api", "pw", &sealed).unwrap(),
                "new-secret"
            );
        }
        other => panic!("unexpected secret change {other:?}"),
    }
}

#[test]
fn a_token_stops_working_when_its_process_is_dismissed() {
    let (session, caller) = session(CommandEvent::Cli);
    let token = session.admit(&allocation("127.9.0.2"));
    assert!(session.caller(&token).is_some());
    session.dismiss("alloc-127.9.0.2");
    assert!(session.caller(&token).is_none());
    assert!(session.caller("not-a-token").is_none());
    assert_eq!(caller.worker_ip, "127.9.0.1");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_full_semaphore_times_out_and_a_dismissed_holder_frees_its_slot() {
    runtime().block_on(async {
        let (session, first) = session(CommandEvent::Cli);
        let session = Arc::new(session);
        let second_token = session.admit(&allocation("127.9.0.2"));
        let second = session.caller(&second_token).unwrap();
        let forever = Duration::from_secs(3600);

        session.acquire(&first, "m", 1, forever).await.unwrap();
        assert_eq!(
            session
                .acquire(&second, "m", 1, Duration::from_millis(20))
                .await,
            Err(ApiError::SemaphoreTimeout)
        );
        assert!(matches!(
            session.acquire(&first, "m", 1, forever).await,
            Err(ApiError::SemaphoreConflict(_))
        ));
        assert!(matches!(
            session.acquire(&second, "m", 2, forever).await,
            Err(ApiError::SemaphoreConflict(_))
        ));

        let waiter = {
            let session = session.clone();
            let second = second.clone();
            tokio::spawn(async move { session.acquire(&second, "m", 1, forever).await })
        };
        while session.status("m").unwrap().waiting == 0 {
            tokio::task::yield_now().await;
        }
        session.dismiss(&first.alloc_id);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        let status = session.status("m").unwrap();
        assert_eq!(status.holders, std::slice::from_ref(&second.alloc_id));
        assert_eq!((status.waiting, status.available), (0, 0));

        assert!(matches!(
            session.release(&first, "m"),
            Err(ApiError::SemaphoreConflict(_))
        ));
        session.release(&second, "m").unwrap();
        assert_eq!(session.status("m").unwrap().available, 1);
    });
}

#[test]
fn semaphore_limits_are_enforced() {
    runtime().block_on(async {
        let (session, caller) = session(CommandEvent::Cli);
        let minute = Duration::from_secs(60);
        for capacity in [0, 65] {
            assert!(matches!(
                session.acquire(&caller, "m", capacity, minute).await,
                Err(ApiError::SemaphoreRequest(_))
            ));
        }
        assert!(matches!(
            session
                .acquire(&caller, "m", 1, Duration::from_secs(3601))
                .await,
            Err(ApiError::SemaphoreRequest(_))
        ));
        assert!(session.acquire(&caller, "m", 64, minute).await.is_ok());
    });
}

#[test]
fn closing_the_session_wakes_every_waiter() {
    runtime().block_on(async {
        let (session, first) = session(CommandEvent::Cli);
        let session = Arc::new(session);
        let token = session.admit(&allocation("127.9.0.2"));
        let second = session.caller(&token).unwrap();
        let forever = Duration::from_secs(3600);
        session.acquire(&first, "m", 1, forever).await.unwrap();
        let waiter = {
            let session = session.clone();
            tokio::spawn(async move { session.acquire(&second, "m", 1, forever).await })
        };
        while session.status("m").unwrap().waiting == 0 {
            tokio::task::yield_now().await;
        }
        session.close();
        assert!(matches!(
            waiter.await.unwrap(),
            Err(ApiError::SemaphoreConflict(_))
        ));
    });
}

#[test]
fn merged_changes_keep_the_last_change_of_each_key_per_namespace() {
    let put = |key: &str, value: &str| KvChange::Put {
        key: key.into(),
        value: KvValue::Plain(value.into()),
    };
    let merged = merge_kv_changes([
        KvChanged {
            namespace: "vars/job/a".into(),
            changes: vec![put("x", "1"), put("y", "1")],
        },
        KvChanged {
            namespace: "vars/job/b".into(),
            changes: vec![put("x", "1")],
        },
        KvChanged {
            namespace: "vars/job/a".into(),
            changes: vec![put("x", "2"), KvChange::Delete { key: "y".into() }],
        },
    ]);
    assert_eq!(
        merged,
        vec![
            KvChanged {
                namespace: "vars/job/a".into(),
                changes: vec![put("x", "2"), KvChange::Delete { key: "y".into() }],
            },
            KvChanged {
                namespace: "vars/job/b".into(),
                changes: vec![put("x", "1")],
            },
        ]
    );
}
