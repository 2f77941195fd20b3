//! Checkpoints: a partition's operator state together with its source offset.
//!
//! Layout: `<dir>/<topic>/<partition>/<next_offset:020>.vfck`. The offset is inside
//! the state ([`PartitionState::next_offset`]), so state and position can never
//! disagree. A file is written to a temporary name, fsynced and renamed, so a crash
//! leaves either the old checkpoint or the new one, never half of one.
//!
//! File format (little endian): magic `VFCKPT\0\0`, `u32` format version, `u32`
//! CRC-32 of the payload, `u64` payload length, payload (postcard). A file of another
//! format version is refused with a message naming both versions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::partition::PartitionState;

const MAGIC: &[u8; 8] = b"VFCKPT\0\0";
/// Bump when [`PartitionState`] changes shape; add a migration or refuse old files.
pub const FORMAT_VERSION: u32 = 6;
const HEADER_LEN: usize = 8 + 4 + 4 + 8;
const EXTENSION: &str = "vfck";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} has format version {found}; this build of veriflow reads version {supported}. \
         Run the veriflow version that wrote it to drain, or move the checkpoint directory aside to start from the committed offsets"
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("checkpoint {path} is corrupt: {why}")]
    Corrupt { path: PathBuf, why: String },
}

/// Checkpoints of all partitions of one input topic, in a local directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    keep: usize,
}

impl CheckpointStore {
    /// `keep`: how many checkpoints per partition survive pruning (at least 1).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        CheckpointStore {
            dir: dir.into(),
            keep: keep.max(1),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.dir.join(topic).join(partition.to_string())
    }

    /// Writes the state atomically, then prunes older checkpoints. Returns the size.
    pub fn save(&self, topic: &str, state: &PartitionState) -> Result<u64, CheckpointError> {
        let dir = self.partition_dir(topic, state.partition);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let payload = postcard::to_stdvec(state).map_err(|e| CheckpointError::Corrupt {
            path: dir.clone(),
            why: format!("cannot encode state: {e}"),
        })?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);

        let name = format!("{:020}.{EXTENSION}", state.next_offset);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        {
            let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(&bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        self.prune(&dir)?;
        Ok(bytes.len() as u64)
    }

    /// The newest checkpoint of a partition, or `None` if it has none.
    pub fn load_latest(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<PartitionState>, CheckpointError> {
        let dir = self.partition_dir(topic, partition);
        let files = list_checkpoints(&dir)?;
        let Some(path) = files.last() else {
            return Ok(None);
        };
        read_checkpoint(path).map(Some)
    }

    fn prune(&self, dir: &Path) -> Result<(), CheckpointError> {
        let files = list_checkpoints(dir)?;
        if files.len() > self.keep {
            for old in &files[..files.len() - self.keep] {
                fs::remove_file(old).map_err(|source| CheckpointError::Io {
                    path: old.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

/// Checkpoint files of a partition directory, oldest first (names sort by offset).
fn list_checkpoints(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == EXTENSION))
        .collect();
    files.sort();
    Ok(files)
}

pub fn read_checkpoint(path: &Path) -> Result<PartitionState, CheckpointError> {
    let corrupt = |why: &str| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why: why.to_owned(),
    };
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(corrupt("not a veriflow checkpoint (bad magic)"));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let crc = word(12);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[16..24]);
    let len = u64::from_le_bytes(len_bytes) as usize;
    let payload = bytes
        .get(HEADER_LEN..)
        .filter(|p| p.len() == len)
        .ok_or_else(|| corrupt("truncated"))?;
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    postcard::from_bytes(payload).map_err(|e| corrupt(&format!("cannot decode state: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{InputRecord, PartitionPipeline, PipelineConfig};

    fn some_state() -> PartitionState {
        let cfg = PipelineConfig {
            limits: crate::ValidationLimits {
                max_future_skew_ms: None,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut p = PartitionPipeline::new(3);
        let payload = br#"{"event_id":"e1","type":"verification.requested","verification_id":"v1","tenant_id":"t1","occurred_at":"2026-01-01T00:00:00Z","phone_number":"+5511999990000","country":"BR","channel":"sms","service":"login"}"#;
        let mut out = Vec::new();
        p.process(
            &cfg,
            InputRecord {
                offset: 41,
                key: Some(b"t1"),
                payload,
            },
            0,
            &mut out,
        );
        assert!(out.is_empty());
        p.snapshot()
    }

    #[test]
    fn round_trips_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path(), 2);
        let mut state = some_state();
        for offset in [42, 50, 60] {
            state.next_offset = offset;
            store.save("verifications", &state).unwrap();
        }
        let loaded = store.load_latest("verifications", 3).unwrap().unwrap();
        assert_eq!(loaded, state);
        assert_eq!(
            list_checkpoints(&dir.path().join("verifications/3"))
                .unwrap()
                .len(),
            2
        );
        assert!(store.load_latest("verifications", 4).unwrap().is_none());
    }

    #[test]
    fn refuses_other_versions_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path(), 2);
        store.save("t", &some_state()).unwrap();
        let path = list_checkpoints(&dir.path().join("t/3"))
            .unwrap()
            .pop()
            .unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[8] = 9;
        fs::write(&path, &bytes).unwrap();
        let err = store.load_latest("t", 3).unwrap_err();
        assert!(
            matches!(err, CheckpointError::UnsupportedVersion { found: 9, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("reads version 6"));
        bytes[8] = 6;
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            store.load_latest("t", 3).unwrap_err(),
            CheckpointError::Corrupt { .. }
        ));
    }
}
