//! Autolock at the raft layer: the DEK that seals the log and snapshots is wrapped by the KEK; with
//! autolock on, the KEK is stretched from the cluster unlock key and never stored, so a restarted
//! manager cannot open its log until it is given the key ([`crate::StartError::Locked`]).
//!
//! Turning autolock on or off, or rotating the unlock key, re-wraps the keys in the key file while
//! the node keeps running (the log is not rewritten). Turning it on also rotates the DEK (it sat on
//! disk next to a stored KEK): new records are sealed with a fresh DEK at once, a snapshot is taken,
//! and the old DEK is retired once the log below that snapshot has been purged.

use crate::error::KeyChangeError;
use crate::node::RaftNode;
use swarm_secrets::UnlockKey;

impl RaftNode {
    /// Turns autolock on, or rotates the unlock key if it is on already.
    pub async fn set_unlock_key(&self, key: &UnlockKey) -> Result<(), KeyChangeError> {
        // Stretching the key (argon2id, ~200 ms) and the fsync of the key file block: keep them off
        // the async runtime's worker threads.
        let (keys, key, kdf) = (self.inner.keys.clone(), key.clone(), self.inner.config.kdf);
        let disk = keys.disk().clone();
        crate::state_machine::off_thread(disk, move || keys.set_unlock_key(&key, kdf))
            .await
            .map_err(|e| KeyChangeError::Interrupted(e.to_string()))??;
        self.rotate_dek_if_requested().await
    }

    /// Turns autolock off: the KEK is stored in the key file again.
    pub async fn disable_autolock(&self) -> Result<(), KeyChangeError> {
        let keys = self.inner.keys.clone();
        crate::state_machine::off_thread(keys.disk().clone(), move || keys.disable_autolock())
            .await
            .map_err(|e| KeyChangeError::Interrupted(e.to_string()))?
    }

    /// Starts sealing with a fresh DEK and takes a snapshot with it (the old DEK is retired once the
    /// log it sealed is purged).
    pub async fn rotate_dek(&self) -> Result<(), KeyChangeError> {
        self.inner.keys.request_dek_rotation()?;
        self.rotate_dek_if_requested().await
    }

    async fn rotate_dek_if_requested(&self) -> Result<(), KeyChangeError> {
        if !self.inner.keys.needs_dek_rotation() {
            return Ok(());
        }
        let last = self.wal().log_state().1.map_or(0, |l| l.index);
        self.inner.keys.begin_dek_rotation(last)?;
        if let Err(e) = self.inner.raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "could not trigger the snapshot that completes a DEK rotation");
        }
        Ok(())
    }
}
