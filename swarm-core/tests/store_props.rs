//! Property tests of the store: determinism, snapshot round trips, indexes against brute force,
//! monotonic versions, atomicity of failed batches, and refused batches given back unchanged.
//!
//! Random operation sequences run over a small id and name space so that conflicts (duplicate ids,
//! taken names, stale versions, secrets in use, states going backwards) are common: the properties
//! must hold on the failing paths as much as on the happy ones.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use swarm_core::action::{Batch, StoreAction};
use swarm_core::objects::node::NodeAvailability;
use swarm_core::objects::service::{FileTarget, SecretReference};
use swarm_core::testing::{id, node, secret, service, task};
use swarm_core::{
    store::TaskCounts, Id, Node, Object, ObjectKind, ObjectRef, Secret, Service, Store,
    StoreObject, Task, TaskState, Timestamp, Version,
};

#[derive(Debug, Clone)]
enum Op {
    CreateNode(u8),
    UpdateNode(u8, u8, bool),
    RemoveNode(u8),
    CreateService(u8, u8, Option<u8>),
    UpdateService(u8, u64, Option<u8>, bool),
    RemoveService(u8),
    CreateTask(u8, u8, u8),
    UpdateTask(u8, u8, Option<u8>, u8, bool),
    RemoveTask(u8),
    CreateSecret(u8, u8),
    RemoveSecret(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..5).prop_map(Op::CreateNode),
        (0u8..5, 0u8..3, any::<bool>()).prop_map(|(a, b, c)| Op::UpdateNode(a, b, c)),
        (0u8..5).prop_map(Op::RemoveNode),
        (0u8..5, 0u8..4, proptest::option::of(0u8..3))
            .prop_map(|(a, b, c)| Op::CreateService(a, b, c)),
        (
            0u8..5,
            0u64..5,
            proptest::option::of(0u8..3),
            prop::bool::weighted(0.1)
        )
            .prop_map(|(a, b, c, d)| Op::UpdateService(a, b, c, d)),
        (0u8..5).prop_map(Op::RemoveService),
        (0u8..20, 0u8..5, 1u8..4).prop_map(|(a, b, c)| Op::CreateTask(a, b, c)),
        (
            0u8..20,
            0u8..14,
            proptest::option::of(0u8..5),
            0u8..14,
            prop::bool::weighted(0.1)
        )
            .prop_map(|(a, b, c, d, e)| Op::UpdateTask(a, b, c, d, e)),
        (0u8..20).prop_map(Op::RemoveTask),
        (0u8..3, 0u8..3).prop_map(|(a, b)| Op::CreateSecret(a, b)),
        (0u8..3).prop_map(Op::RemoveSecret),
    ]
}

fn nid(n: u8) -> u128 {
    1 + n as u128
}
fn sid(n: u8) -> u128 {
    100 + n as u128
}
fn tid(n: u8) -> u128 {
    1000 + n as u128
}
fn secid(n: u8) -> u128 {
    5000 + n as u128
}

fn with_secret(mut s: Service, sec: Option<u8>) -> Service {
    if let Some(x) = sec {
        s.spec.task.container.secrets = vec![SecretReference {
            secret_id: id(secid(x)),
            secret_name: format!("sec{x}"),
            target: FileTarget {
                name: format!("sec{x}"),
                ..Default::default()
            },
        }];
    }
    s
}

fn remove(kind: ObjectKind, n: u128) -> StoreAction {
    StoreAction::Remove(ObjectRef { kind, id: id(n) })
}

/// Turns an op into an action, reading current versions from `st` (so updates are usually fresh;
/// `stale` ones deliberately carry an old version).
fn to_action(st: &Store, op: &Op) -> Option<StoreAction> {
    let upd = |o: Object| Some(StoreAction::Update(o));
    match *op {
        Op::CreateNode(n) => Some(StoreAction::Create(node(nid(n)).into())),
        Op::UpdateNode(n, avail, stale) => {
            let mut x = (**st.get::<Node>(&id(nid(n)))?).clone();
            x.spec.availability = [
                NodeAvailability::Active,
                NodeAvailability::Pause,
                NodeAvailability::Drain,
            ][avail as usize % 3];
            if stale {
                x.meta.version.0 = x.meta.version.0.saturating_sub(1);
            }
            upd(x.into())
        }
        Op::RemoveNode(n) => Some(remove(ObjectKind::Node, nid(n))),
        Op::CreateService(n, name, sec) => Some(StoreAction::Create(
            with_secret(service(sid(n), &format!("svc{name}"), 1), sec).into(),
        )),
        Op::UpdateService(n, replicas, sec, stale) => {
            let cur = st.get::<Service>(&id(sid(n)))?;
            let mut x = with_secret((**cur).clone(), sec);
            if sec.is_none() {
                x.spec.task.container.secrets.clear();
            }
            x.spec.mode = swarm_core::ServiceMode::Replicated { replicas };
            if stale {
                x.meta.version.0 += 1;
            }
            upd(x.into())
        }
        Op::RemoveService(n) => Some(remove(ObjectKind::Service, sid(n))),
        Op::CreateTask(t, s, slot) => {
            let svc = st
                .get::<Service>(&id(sid(s)))
                .map(|s| (**s).clone())
                .unwrap_or_else(|| service(sid(s), "gone", 1));
            Some(StoreAction::Create(task(tid(t), &svc, slot as u64).into()))
        }
        Op::UpdateTask(t, state, node, desired, stale) => {
            let mut x = (**st.get::<Task>(&id(tid(t)))?).clone();
            x.status.state = TaskState::ALL[state as usize % 14];
            x.node_id = node.map(|n| id(nid(n)));
            x.desired_state = TaskState::ALL[desired as usize % 14];
            // Job tasks carry an iteration: the per-iteration counts see some.
            x.job_iteration = (t % 3 == 0).then_some(Version(u64::from(state % 2)));
            if stale {
                x.meta.version.0 = 0;
            }
            upd(x.into())
        }
        Op::RemoveTask(t) => Some(remove(ObjectKind::Task, tid(t))),
        Op::CreateSecret(n, name) => Some(StoreAction::Create(
            secret(secid(n), &format!("secname{name}"), b"s3cr3t").into(),
        )),
        Op::RemoveSecret(n) => Some(remove(ObjectKind::Secret, secid(n))),
    }
}

fn ids<'a, T: StoreObject>(it: impl Iterator<Item = &'a std::sync::Arc<T>>) -> BTreeSet<Id> {
    it.map(|o| o.id()).collect()
}

/// Every index agrees with a scan of the table.
fn check_indexes(st: &Store) -> Result<(), TestCaseError> {
    let tasks: Vec<_> = st.iter::<Task>().cloned().collect();
    let mut by_service: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
    let mut by_node: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
    let mut by_slot: BTreeMap<(Id, u64), BTreeSet<Id>> = BTreeMap::new();
    let mut by_desired: BTreeMap<TaskState, BTreeSet<Id>> = BTreeMap::new();
    for t in &tasks {
        by_service.entry(t.service_id).or_default().insert(t.id);
        if let Some(n) = t.node_id {
            by_node.entry(n).or_default().insert(t.id);
        }
        by_slot
            .entry((t.service_id, t.slot))
            .or_default()
            .insert(t.id);
        by_desired.entry(t.desired_state).or_default().insert(t.id);
    }
    for n in 0..5u8 {
        let s = id(sid(n));
        prop_assert_eq!(
            ids(st.tasks_by_service(&s)),
            by_service.remove(&s).unwrap_or_default()
        );
        let nd = id(nid(n));
        prop_assert_eq!(
            ids(st.tasks_by_node(&nd)),
            by_node.remove(&nd).unwrap_or_default()
        );
        for slot in 1..4 {
            prop_assert_eq!(
                ids(st.tasks_by_slot(&s, slot)),
                by_slot.remove(&(s, slot)).unwrap_or_default()
            );
        }
    }
    for n in 0..5u8 {
        let s = id(sid(n));
        for iteration in [None, Some(Version(0)), Some(Version(1))] {
            let mut want = TaskCounts::default();
            for t in tasks.iter().filter(|t| t.service_id == s) {
                if iteration.is_some() && t.job_iteration != iteration {
                    continue;
                }
                let state = t.status.state;
                want.running += u64::from(state == TaskState::Running);
                want.completed += u64::from(state == TaskState::Complete);
            }
            prop_assert_eq!(st.task_counts(&s, iteration), want);
        }
    }
    for state in TaskState::ALL {
        prop_assert_eq!(
            ids(st.tasks_by_desired_state(state)),
            by_desired.remove(&state).unwrap_or_default()
        );
    }
    for sec in 0..3u8 {
        let want: BTreeSet<Id> = st
            .iter::<Service>()
            .filter(|s| {
                s.spec
                    .task
                    .container
                    .secrets
                    .iter()
                    .any(|r| r.secret_id == id(secid(sec)))
            })
            .map(|s| s.id)
            .collect();
        prop_assert_eq!(ids(st.services_by_secret(&id(secid(sec)))), want);
    }
    for s in st.iter::<Service>() {
        prop_assert_eq!(
            st.get_by_name::<Service>(&s.spec.annotations.name)
                .map(|x| x.id),
            Some(s.id)
        );
    }
    for s in st.iter::<Secret>() {
        prop_assert_eq!(
            st.get_by_name::<Secret>(&s.spec.annotations.name)
                .map(|x| x.id),
            Some(s.id)
        );
    }
    Ok(())
}

fn versions(st: &Store) -> BTreeMap<Id, u64> {
    let mut m = BTreeMap::new();
    m.extend(st.iter::<Node>().map(|o| (o.id, o.meta.version.0)));
    m.extend(st.iter::<Service>().map(|o| (o.id, o.meta.version.0)));
    m.extend(st.iter::<Task>().map(|o| (o.id, o.meta.version.0)));
    m.extend(st.iter::<Secret>().map(|o| (o.id, o.meta.version.0)));
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_properties(batches in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..40)) {
        let mut a = Store::new();
        let mut b = Store::new();
        let mut index = 0u64;
        for ops in &batches {
            index += 1;
            let actions: Vec<StoreAction> = ops.iter().filter_map(|o| to_action(&a, o)).collect();
            let batch = Batch { index, timestamp: Timestamp::from_secs(index), actions };
            let before_bytes = a.snapshot().encode();
            let before_versions = versions(&a);
            let before_index = a.index();
            let ra = a.apply(batch.clone());
            // The other replica applies through `apply_or_give_back`: same outcome, and a refused
            // batch comes back exactly as proposed.
            let proposed = batch.actions.clone();
            let rb = match b.apply_or_give_back(batch) {
                Ok(()) => Ok(()),
                Err(r) => {
                    prop_assert_eq!(&r.actions, &proposed, "refused actions given back as proposed");
                    Err(r.error)
                }
            };
            prop_assert_eq!(&ra, &rb, "same input, same outcome");
            match ra {
                Err(_) => {
                    prop_assert_eq!(a.snapshot().encode(), before_bytes, "failed batch changed the store");
                    prop_assert_eq!(a.index(), before_index);
                }
                Ok(()) => {
                    prop_assert_eq!(a.index(), index);
                    let after = versions(&a);
                    for (k, v) in &before_versions {
                        if let Some(nv) = after.get(k) {
                            prop_assert!(nv >= v, "version went backwards");
                        }
                    }
                    for v in after.values() {
                        prop_assert!(*v <= index);
                    }
                }
            }
            check_indexes(&a)?;
        }
        let bytes = a.snapshot().encode();
        prop_assert_eq!(&bytes, &b.snapshot().encode(), "replicas diverged");
        let mut c = Store::new();
        c.restore(swarm_core::StoreSnapshot::decode(&bytes, 1 << 24).unwrap());
        prop_assert_eq!(c.snapshot().encode(), bytes, "snapshot round trip");
        check_indexes(&c)?;
    }
}

/// A snapshot not written by our encoder (tasks out of order, one id twice) restores as `put` of
/// each task in turn would: the last copy of an id wins and every index agrees with the table.
#[test]
fn restore_of_unordered_snapshot_keeps_last_copy_and_consistent_indexes() {
    let mut st = Store::new();
    let mut snap = st.snapshot();
    let a = swarm_core::testing::service(sid(0), "a", 1);
    let b = swarm_core::testing::service(sid(1), "b", 1);
    let t1 = swarm_core::testing::task(tid(1), &a, 1);
    let t2 = swarm_core::testing::task(tid(2), &a, 2);
    let t1_moved = swarm_core::testing::task(tid(1), &b, 3);
    snap.tasks = vec![t2.into(), t1.into(), t1_moved.into()];
    st.restore(snap);
    assert_eq!(st.iter::<Task>().count(), 2);
    assert_eq!(ids(st.tasks_by_service(&id(sid(0)))), [id(tid(2))].into());
    assert_eq!(ids(st.tasks_by_service(&id(sid(1)))), [id(tid(1))].into());
    assert_eq!(ids(st.tasks_by_slot(&id(sid(1)), 3)), [id(tid(1))].into());
    assert!(st.tasks_by_slot(&id(sid(0)), 1).next().is_none());
    check_indexes(&st).unwrap();
}
