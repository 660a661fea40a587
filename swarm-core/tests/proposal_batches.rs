//! Splitting independent actions into proposals: at most 200 actions and 1.5 MiB each, order
//! kept, whatever the size of each action (tasks carry their service's spec, so a service with a
//! large spec makes large task actions).

use std::sync::Arc;

use swarm_core::action::{
    encode_actions, encoded_size, split_into_batches, MAX_ACTIONS_PER_BATCH, MAX_PROPOSAL_BYTES,
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

/// Tasks sharing one large spec (the orchestrators' output for a big service): every proposal
/// respects the byte limit and is full (the next action would not have fit).
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

/// The size the split counts ([`encoded_size`]) is the length of the encoding, action by action,
/// over every decodable entry of the `store_action` fuzz corpus (every object kind and shape the
/// fuzzer reached) and the fixtures above; a new field serialized in a way the counter
/// mishandled would show here.
#[test]
fn the_counted_size_is_the_encoded_length() {
    let corpus =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/store_action");
    let mut checked = 0;
    let svc = service(7, "api", 2);
    let fixtures = vec![
        StoreAction::Create(swarm_core::testing::node_with_labels(8, &[("zone", "a")]).into()),
        StoreAction::Update(svc.clone().into()),
        StoreAction::Create(
            swarm_core::testing::typical_task(9, svc.id, Some(swarm_core::testing::id(8))).into(),
        ),
        StoreAction::Create(swarm_core::testing::secret(10, "pw", b"hunter2").into()),
        StoreAction::Create(swarm_core::testing::config(11, "cfg", b"x=1").into()),
    ];
    let mut lists: Vec<Vec<StoreAction>> = vec![creates(3, 100), creates(1, 64 * 1024), fixtures];
    for entry in std::fs::read_dir(corpus).expect("the fuzz corpus is in the tree") {
        let bytes = std::fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        if let Ok(actions) = swarm_core::action::decode_actions(&bytes) {
            lists.push(actions);
        }
    }
    for actions in &lists {
        for a in actions {
            let encoded = encode_actions(std::slice::from_ref(a)).len() as u64 - 8;
            assert_eq!(encoded_size(a), Some(encoded), "{a:?}");
            checked += 1;
        }
        let whole = encode_actions(actions).len() as u64;
        assert_eq!(encoded_size(actions), Some(whole));
    }
    assert!(checked >= 13, "only {checked} actions checked");
}
