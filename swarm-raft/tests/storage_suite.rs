//! openraft's storage conformance suite (`openraft::testing::Suite::test_all`) over the real WAL,
//! `raft-state` file and sealed snapshot files, each test in a fresh temporary data directory.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use swarm_core::SharedStore;
use swarm_raft::files::RaftStateFile;
use swarm_raft::log_store::LogStore;
use swarm_raft::state_machine::StateMachine;
use swarm_raft::testing::test_kdf;
use swarm_raft::types::StorageError;
use swarm_raft::{Keyring, TypeConfig, Wal, WalOptions};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = Arc::new(Keyring::load(dir.path(), None, None, test_kdf()).expect("keys"));
        // Small segments so the suite crosses segment boundaries.
        let opts = WalOptions {
            segment_bytes: 512,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(&dir.path().join("wal"), keys.clone(), opts, None).expect("wal");
        let log = LogStore::new(
            wal,
            dir.path().to_path_buf(),
            RaftStateFile::default(),
            keys.clone(),
        );
        let sm =
            StateMachine::open(&dir.path().join("snap"), keys, SharedStore::default()).expect("sm");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
