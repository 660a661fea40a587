//! Store behaviour: versions, names, references, atomicity, transactions, watches, snapshots.

use std::future::Future;
use std::sync::Arc;

use swarm_core::action::{Batch, StoreAction};
use swarm_core::objects::service::{FileTarget, SecretReference};
use swarm_core::testing::{id, node, secret, service, task};
use swarm_core::{
    Event, LocalProposer, ManualClock, Object, ObjectKind, ObjectRef, Service, SharedStore, Store,
    StoreError, Task, TaskState, Timestamp, WatchFilter,
};

fn batch(index: u64, actions: Vec<StoreAction>) -> Batch {
    Batch {
        index,
        timestamp: Timestamp::from_secs(index),
        actions,
    }
}

fn create(o: impl Into<Object>) -> StoreAction {
    StoreAction::Create(o.into())
}

fn update(o: impl Into<Object>) -> StoreAction {
    StoreAction::Update(o.into())
}

fn using_secret(n: u128, name: &str, secret_id: u128) -> Service {
    let mut s = service(n, name, 1);
    s.spec.task.container.secrets.push(SecretReference {
        secret_id: id(secret_id),
        secret_name: "pw".into(),
        target: FileTarget {
            name: "pw".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o444,
        },
    });
    s
}

#[test]
fn create_sets_meta_and_indexes() {
    let mut st = Store::new();
    let svc = service(1, "web", 2);
    st.apply(batch(
        5,
        vec![create(svc.clone()), create(task(10, &svc, 1))],
    ))
    .unwrap();
    let got = st.get::<Service>(&id(1)).unwrap();
    assert_eq!(got.meta.version.0, 5);
    assert_eq!(got.meta.created_at, Timestamp::from_secs(5));
    assert_eq!(st.get_by_name::<Service>("WEB").unwrap().id, id(1));
    assert_eq!(st.tasks_by_service(&id(1)).count(), 1);
    assert_eq!(st.tasks_by_slot(&id(1), 1).count(), 1);
    assert_eq!(st.tasks_by_desired_state(TaskState::Running).count(), 1);
    assert_eq!(st.index(), 5);
    let full = id(1);
    let prefix = &full.as_str()[..20];
    assert_eq!(st.find_by_id_prefix::<Service>(prefix).count(), 1);
    assert_eq!(st.find_by_name_prefix::<Service>("w").count(), 1);
    assert_eq!(st.find_by_name_prefix::<Service>("x").count(), 0);
}

#[test]
fn store_errors_table() {
    let svc = service(1, "web", 1);
    let sec = secret(2, "pw", b"x");
    // Each case: actions applied after the base state, expected error.
    let mut renamed = service(3, "WEB", 1);
    renamed.meta = Default::default();
    // Stored at index 1, so its version is 1; an update based on version 0 is stale.
    let stale = svc.clone();
    let mut backwards = task(10, &svc, 1);
    backwards.meta.version.0 = 1;
    backwards.status.state = TaskState::New;
    let cases: Vec<(&str, Vec<StoreAction>, StoreError)> = vec![
        (
            "duplicate id",
            vec![create(service(1, "other", 1))],
            StoreError::AlreadyExists {
                kind: ObjectKind::Service,
                id: id(1),
            },
        ),
        (
            "name taken, case-insensitively",
            vec![create(renamed)],
            StoreError::NameConflict {
                kind: ObjectKind::Service,
                name: "WEB".into(),
            },
        ),
        (
            "stale version",
            vec![update(stale)],
            StoreError::VersionConflict {
                kind: ObjectKind::Service,
                id: id(1),
                current: 1,
                given: 0,
            },
        ),
        (
            "missing object",
            vec![StoreAction::Remove(ObjectRef {
                kind: ObjectKind::Node,
                id: id(99),
            })],
            StoreError::NotFound {
                kind: ObjectKind::Node,
                id: id(99),
            },
        ),
        (
            "task state backwards",
            vec![update(backwards)],
            StoreError::StateRegression {
                id: id(10),
                from: TaskState::Pending,
                to: TaskState::New,
            },
        ),
        (
            "secret in use",
            vec![
                create(using_secret(4, "db", 2)),
                StoreAction::Remove(ObjectRef {
                    kind: ObjectKind::Secret,
                    id: id(2),
                }),
            ],
            StoreError::InUse {
                kind: ObjectKind::Secret,
                name: "pw".into(),
                services: vec!["db".into()],
            },
        ),
    ];
    for (name, actions, want) in cases {
        let mut st = Store::new();
        st.apply(batch(
            1,
            vec![
                create(svc.clone()),
                create(sec.clone()),
                create(task(10, &svc, 1)),
            ],
        ))
        .unwrap();
        let before = st.snapshot().encode();
        // A valid action first, so the test also proves the rollback of earlier actions.
        let mut all = vec![create(node(50))];
        all.extend(actions);
        let err = st.apply(batch(2, all)).unwrap_err();
        assert_eq!(err, want, "case {name}");
        assert_eq!(st.snapshot().encode(), before, "case {name}: store changed");
        assert_eq!(st.index(), 1, "case {name}");
    }
}

#[test]
fn in_use_message_matches_docker() {
    let e = StoreError::InUse {
        kind: ObjectKind::Secret,
        name: "my_secret".into(),
        services: vec!["a".into()],
    };
    assert_eq!(
        e.to_string(),
        "secret 'my_secret' is in use by the following service: a"
    );
    let e = StoreError::InUse {
        kind: ObjectKind::Secret,
        name: "my_secret".into(),
        services: vec!["a".into(), "b".into()],
    };
    assert_eq!(
        e.to_string(),
        "secret 'my_secret' is in use by the following services: a, b"
    );
}

#[test]
fn removing_reference_frees_secret_even_with_previous_spec() {
    let mut st = Store::new();
    let svc = using_secret(1, "db", 2);
    st.apply(batch(
        1,
        vec![create(secret(2, "pw", b"x")), create(svc.clone())],
    ))
    .unwrap();
    let mut upd = (**st.get::<Service>(&id(1)).unwrap()).clone();
    upd.previous_spec = Some(upd.spec.clone());
    upd.spec.task.container.secrets.clear();
    st.apply(batch(2, vec![update(upd)])).unwrap();
    st.apply(batch(
        3,
        vec![StoreAction::Remove(ObjectRef {
            kind: ObjectKind::Secret,
            id: id(2),
        })],
    ))
    .unwrap();
    assert_eq!(st.count::<swarm_core::Secret>(), 0);
}

#[test]
fn tx_merges_writes_and_checks_like_apply() {
    let shared = SharedStore::default();
    let clock = ManualClock::new(Timestamp::from_secs(100));
    let p = LocalProposer::new(shared.clone(), Arc::new(clock));
    p.propose_now(vec![create(service(1, "web", 1))]).unwrap();
    let (_, actions) = shared
        .prepare(|tx| -> Result<(), StoreError> {
            let svc = tx.get::<Service>(&id(1)).unwrap();
            let mut t = task(10, &svc, 1);
            tx.create(t.clone())?;
            t.status.state = TaskState::Assigned;
            t.node_id = Some(id(50));
            tx.update(t)?;
            assert_eq!(tx.tasks_by_service(&id(1)).len(), 1);
            assert_eq!(tx.tasks_by_node(&id(50)).len(), 1);
            // A name already taken in the committed store.
            let err = tx.create(service(2, "Web", 1)).unwrap_err();
            assert!(matches!(err, StoreError::NameConflict { .. }));
            // Create + remove cancel out.
            tx.create(node(60))?;
            tx.remove(ObjectKind::Node, &id(60))?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        actions.len(),
        1,
        "create+update merged, create+remove cancelled"
    );
    p.propose_now(actions).unwrap();
    shared.view(|st| {
        let t = st.get::<Task>(&id(10)).unwrap();
        assert_eq!(t.status.state, TaskState::Assigned);
        assert_eq!(st.tasks_by_node(&id(50)).count(), 1);
        assert_eq!(st.count::<swarm_core::Node>(), 0);
    });
}

#[test]
fn tx_refuses_removing_secret_in_use_with_docker_message() {
    let shared = SharedStore::default();
    let p = LocalProposer::new(shared.clone(), Arc::new(ManualClock::default()));
    p.propose_now(vec![
        create(secret(2, "my_secret_data", b"x")),
        create(using_secret(1, "redis", 2)),
    ])
    .unwrap();
    let err = shared
        .prepare(|tx| tx.remove(ObjectKind::Secret, &id(2)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret 'my_secret_data' is in use by the following service: redis"
    );
    // Removing the service in the same transaction frees the secret.
    let (_, actions) = shared
        .prepare(|tx| {
            tx.remove(ObjectKind::Service, &id(1))?;
            tx.remove(ObjectKind::Secret, &id(2))
        })
        .unwrap();
    p.propose_now(actions).unwrap();
}

#[test]
fn view_and_watch_has_no_gap_and_filters() {
    let shared = SharedStore::default();
    let p = LocalProposer::new(shared.clone(), Arc::new(ManualClock::default()));
    let svc = service(1, "web", 1);
    p.propose_now(vec![create(svc.clone())]).unwrap();
    let (n, w) = shared.view_and_watch(WatchFilter::kinds(&[ObjectKind::Task]), |st| {
        st.count::<Service>()
    });
    assert_eq!(n, 1);
    p.propose_now(vec![create(node(5))]).unwrap();
    assert!(w.try_recv().unwrap().is_none(), "node events filtered out");
    let idx = p.propose_now(vec![create(task(10, &svc, 1))]).unwrap();
    let evs = w.drain().unwrap();
    assert_eq!(evs.len(), 2);
    assert!(matches!(&evs[0], Event::Created(Object::Task(t)) if t.id == id(10)));
    assert_eq!(evs[1], Event::Commit { index: idx });
}

#[test]
fn lagging_watcher_is_closed() {
    let shared = SharedStore::default();
    let p = LocalProposer::new(shared.clone(), Arc::new(ManualClock::default()));
    let w = shared.watch(WatchFilter::all().with_limit(3));
    for i in 0..3 {
        p.propose_now(vec![create(node(i))]).unwrap();
    }
    assert_eq!(w.drain(), Err(swarm_core::store::WatchError::Lagged));
}

#[test]
fn recv_wakes_async_waiter() {
    let shared = SharedStore::default();
    let p = LocalProposer::new(shared.clone(), Arc::new(ManualClock::default()));
    let w = shared.watch(WatchFilter::all());
    let handle = std::thread::spawn(move || {
        let mut fut = Box::pin(w.recv());
        // Minimal executor: park until woken.
        let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            if let std::task::Poll::Ready(ev) = fut.as_mut().poll(&mut cx) {
                return ev;
            }
            std::thread::park();
        }
    });
    p.propose_now(vec![create(node(1))]).unwrap();
    let ev = handle.join().unwrap().unwrap();
    assert!(matches!(ev, Event::Created(Object::Node(_))));
}

struct ThreadWaker(std::thread::Thread);
impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn snapshot_restore_round_trip_rebuilds_indexes() {
    let mut st = Store::new();
    let svc = using_secret(1, "db", 2);
    let mut t = task(10, &svc, 3);
    t.node_id = Some(id(5));
    st.apply(batch(
        7,
        vec![
            create(secret(2, "pw", b"x")),
            create(svc.clone()),
            create(node(5)),
            create(t),
        ],
    ))
    .unwrap();
    let bytes = st.snapshot().encode();
    let mut st2 = Store::new();
    let w = st2.watch(WatchFilter::all());
    st2.restore(swarm_core::StoreSnapshot::decode(&bytes, 1 << 20).unwrap());
    assert_eq!(w.drain().unwrap(), vec![Event::Reset { index: 7 }]);
    assert_eq!(st2.snapshot().encode(), bytes);
    assert_eq!(st2.tasks_by_node(&id(5)).count(), 1);
    assert_eq!(st2.tasks_by_slot(&id(1), 3).count(), 1);
    assert_eq!(st2.services_by_secret(&id(2)).count(), 1);
    assert!(swarm_core::StoreSnapshot::decode(&bytes[..bytes.len() - 1], 1 << 20).is_err());
    assert!(swarm_core::StoreSnapshot::decode(&bytes, 16).is_err());
    // A snapshot of the previous object layout (format 1) or an unknown one is refused by name
    // before its body is decoded.
    for (format, want) in [
        (1u32, "format 1 (written before"),
        (2, "format 2 (written before"),
        (3, "format 3 (written before"),
        (9, "format 9 is not supported"),
    ] {
        let mut old = bytes.clone();
        old[..4].copy_from_slice(&format.to_le_bytes());
        match swarm_core::StoreSnapshot::decode(&old, 1 << 20) {
            Err(StoreError::Snapshot(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("format {format}: {other:?}"),
        }
    }
}

#[test]
fn stale_batch_index_refused() {
    let mut st = Store::new();
    st.apply(batch(3, vec![create(node(1))])).unwrap();
    assert_eq!(
        st.apply(batch(3, vec![create(node(2))])),
        Err(StoreError::StaleIndex {
            current: 3,
            given: 3
        })
    );
}

#[test]
fn actions_decode_refuses_garbage_and_oversize() {
    let actions = vec![create(node(1)), create(secret(2, "pw", b"hunter2"))];
    let bytes = swarm_core::action::encode_actions(&actions);
    assert_eq!(swarm_core::action::decode_actions(&bytes).unwrap(), actions);
    assert!(swarm_core::action::decode_actions(&bytes[..bytes.len() / 2]).is_err());
    // A length prefix claiming 2^60 elements must not allocate.
    let mut evil = vec![0u8; 8];
    evil[7] = 0x10;
    assert!(swarm_core::action::decode_actions(&evil).is_err());
}

#[test]
fn store_and_commit_errors_round_trip_through_bincode() {
    // A refusal on a raft leader travels back to the replica that forwarded the proposal.
    let cases = vec![
        StoreError::AlreadyExists {
            kind: ObjectKind::Task,
            id: id(7),
        },
        StoreError::VersionConflict {
            kind: ObjectKind::Service,
            id: id(7),
            current: 3,
            given: 2,
        },
        StoreError::InUse {
            kind: ObjectKind::Secret,
            name: "s".into(),
            services: vec!["a".into()],
        },
        StoreError::StateRegression {
            id: id(7),
            from: TaskState::Running,
            to: TaskState::New,
        },
        StoreError::StaleIndex {
            current: 5,
            given: 5,
        },
    ];
    for e in cases {
        let c = swarm_core::CommitError::Rejected(e);
        let bytes = bincode::serialize(&c).unwrap();
        assert_eq!(
            bincode::deserialize::<swarm_core::CommitError>(&bytes).unwrap(),
            c
        );
    }
}
