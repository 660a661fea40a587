//! Splitting independent actions into proposals: at most 200 actions and 1.5 MiB each, order
//! kept, whatever the size of each action (tasks carry their service's spec, so a service with a
//! large spec makes large task actions).

use std::sync::Arc;

use swarm_core::action::{
    encode_actions, split_into_batches, MAX_ACTIONS_PER_BATCH, MAX_PROPOSAL_BYTES,
};
use swarm_core::testing::{service, task};
use swarm_core::{Object, StoreAction};

/// `n` task creations of a service whose spec carries `env_bytes` of environment.
fn creates(n: u128, env_bytes: usize) -> Vec<StoreAction> {
    let mut s = service(1, "web", n as u64);
    s.spec.task.container.env = vec![format!("PAD={}", "x".repeat(env_bytes))];
    (0..n)
        .map(|i| {
            let mut t = task(100 + i, &s, i as u64 + 1);
            t.spec = Arc::new(s.spec.task.clone());
            StoreAction::Create(Object::Task(Arc::new(t)))
        })
        .collect()
}

#[test]
fn proposals_respect_both_the_count_and_the_size_limit() {
    // (actions, env bytes per task, expected proposals)
    let cases: [(u128, usize, usize); 5] = [
        (0, 0, 0),
        (1, 0, 1),
        (200, 0, 1),
        (401, 0, 3),
        // ~64 KiB per task: 1.5 MiB holds 23 of them, far fewer than 200.
        (100, 64 * 1024, 5),
    ];
    for (n, env, want) in cases {
        let actions = creates(n, env);
        let batches = split_into_batches(actions.clone());
        assert_eq!(batches.len(), want, "{n} actions of ~{env} bytes");
        for b in &batches {
            assert!(!b.is_empty());
            assert!(b.len() <= MAX_ACTIONS_PER_BATCH);
            let bytes = encode_actions(b).len();
            assert!(bytes <= MAX_PROPOSAL_BYTES, "{bytes} bytes in one proposal");
        }
        let rejoined: Vec<StoreAction> = batches.into_iter().flatten().collect();
        assert_eq!(rejoined, actions, "order or content changed");
    }
}

#[test]
fn an_action_over_the_limit_alone_gets_its_own_proposal() {
    let mut actions = creates(3, 16);
    actions.insert(1, creates(1, MAX_PROPOSAL_BYTES + 1).remove(0));
    let sizes: Vec<usize> = split_into_batches(actions).iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![1, 1, 2]);
}

/// A task with every field the spec-less sizing walks set to something non-empty.
fn full_task(n: u128, spec: &Arc<swarm_core::TaskSpec>) -> swarm_core::Task {
    use swarm_core::objects::network::{Network, NetworkSpec};
    use swarm_core::objects::service::PortConfig;
    use swarm_core::objects::task::NetworkAttachment;
    use swarm_core::testing::{id, typical_task};
    use swarm_core::{TaskState, Version};
    let mut t = typical_task(n, id(7), Some(id(9)));
    t.spec = spec.clone();
    t.service_annotations
        .labels
        .insert("tier".into(), "front".into());
    t.status.state = TaskState::Running;
    t.status.message = "started".into();
    t.status.err = "none yet".into();
    t.status.container_id = "c0ffee".into();
    t.status.exit_code = Some(3);
    t.status.port_status = vec![PortConfig::default()];
    t.job_iteration = Some(Version(4));
    t.assigned_secrets = vec![id(11), id(12)];
    t.assigned_configs = vec![id(13)];
    t.networks = vec![NetworkAttachment {
        network: Arc::new(Network {
            id: id(14),
            meta: Default::default(),
            spec: NetworkSpec::default(),
        }),
        aliases: vec!["web".into(), "www".into()],
    }];
    t.ports = vec![PortConfig::default(), PortConfig::default()];
    t
}

/// The sizing that walks a shared spec once gives bincode's exact size of every action: tasks
/// with empty and with full fields, sharing a spec with the task before them or not, and the
/// other kinds of actions.
#[test]
fn encoded_size_is_bincodes_size_of_every_action() {
    use swarm_core::action::encoded_size;
    use swarm_core::testing::{id, typical_task};
    use swarm_core::ObjectKind;
    let plain = Arc::new(typical_task(1, id(7), None).spec.as_ref().clone());
    let mut big = plain.as_ref().clone();
    big.container.env.push(format!("PAD={}", "y".repeat(5000)));
    let big = Arc::new(big);
    let mut actions = vec![
        StoreAction::Create(Object::Task(Arc::new(typical_task(2, id(7), None)))),
        StoreAction::Update(Object::Task(Arc::new(full_task(3, &plain)))),
        StoreAction::Update(Object::Task(Arc::new(full_task(4, &plain)))),
        StoreAction::Create(Object::Task(Arc::new(full_task(5, &big)))),
        StoreAction::Create(Object::Task(Arc::new(full_task(6, &plain)))),
        StoreAction::Create(Object::Service(Arc::new(service(1, "web", 3)))),
        StoreAction::Remove(swarm_core::ObjectRef {
            kind: ObjectKind::Task,
            id: id(6),
        }),
    ];
    for a in &actions {
        assert_eq!(
            encoded_size(a),
            encode_actions(std::slice::from_ref(a)).len() as u64 - 8
        );
    }
    // Within one split the spec of a task after one sharing it is not walked again: the sizes
    // must still add up to the encoded proposals.
    actions.extend(actions.clone());
    for b in split_into_batches(actions) {
        let sum: u64 = b.iter().map(encoded_size).sum();
        assert_eq!(encode_actions(&b).len() as u64, 8 + sum);
    }
}

/// Tasks sharing one large spec (the orchestrators' output for a big service): its size is
/// taken once, and the proposals still respect the byte limit.
#[test]
fn tasks_sharing_a_large_spec_still_respect_the_size_limit() {
    let mut s = service(1, "web", 300);
    s.spec.task.container.env = vec![format!("PAD={}", "x".repeat(20 * 1024))];
    let spec = Arc::new(s.spec.task.clone());
    let actions: Vec<StoreAction> = (0..300u128)
        .map(|i| {
            let mut t = task(100 + i, &s, i as u64 + 1);
            t.spec = spec.clone();
            StoreAction::Create(Object::Task(Arc::new(t)))
        })
        .collect();
    let batches = split_into_batches(actions.clone());
    // ~20 KiB per task: about 75 per proposal, far fewer than 200.
    assert!(
        (4..=5).contains(&batches.len()),
        "{} proposals",
        batches.len()
    );
    for (i, b) in batches.iter().enumerate() {
        assert!(encode_actions(b).len() <= MAX_PROPOSAL_BYTES);
        // Each proposal but the last is full: the next action would not have fit.
        if let Some(next) = batches.get(i + 1) {
            let mut more = b.clone();
            more.push(next[0].clone());
            assert!(
                encode_actions(&more).len() > MAX_PROPOSAL_BYTES,
                "proposal {i} not full"
            );
        }
    }
    assert_eq!(batches.concat(), actions);
}
