//! Replays the `store_action` fuzz corpus (fuzz/corpus/store_action) through the decoder, and keeps
//! the seed files in step with the encoding.

use std::path::PathBuf;

use swarm_core::action::{decode_actions, encode_actions, StoreAction};
use swarm_core::testing::{node, secret, service, task};
use swarm_core::{Object, ObjectKind, ObjectRef};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/store_action")
}

fn seeds() -> Vec<(&'static str, Vec<StoreAction>)> {
    let svc = service(1, "web", 3);
    vec![
        ("empty", vec![]),
        ("create_node", vec![StoreAction::Create(node(2).into())]),
        (
            "service_task_secret",
            vec![
                StoreAction::Create(svc.clone().into()),
                StoreAction::Update(Object::from(task(3, &svc, 1))),
                StoreAction::Create(secret(4, "pw", b"x").into()),
                StoreAction::Remove(ObjectRef {
                    kind: ObjectKind::Network,
                    id: swarm_core::testing::id(5),
                }),
            ],
        ),
    ]
}

#[test]
fn seed_files_match_current_encoding() {
    for (name, actions) in seeds() {
        let path = corpus().join(format!("seed_{name}"));
        let bytes = encode_actions(&actions);
        if std::env::var_os("SWARM_WRITE_SEEDS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with SWARM_WRITE_SEEDS=1 to create)",
                path.display()
            )
        });
        assert_eq!(
            on_disk, bytes,
            "{name}: encoding changed; re-create seeds with SWARM_WRITE_SEEDS=1"
        );
        assert_eq!(decode_actions(&on_disk).unwrap(), actions);
    }
}

#[test]
fn replay_corpus_without_panic() {
    let entries: Vec<_> = std::fs::read_dir(corpus())
        .expect("fuzz/corpus/store_action exists")
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!entries.is_empty(), "corpus is empty");
    for e in entries {
        let data = std::fs::read(e.path()).unwrap();
        if let Ok(actions) = decode_actions(&data) {
            assert_eq!(decode_actions(&encode_actions(&actions)).unwrap(), actions);
        }
    }
}
