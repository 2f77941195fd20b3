//! Checkpoints: a partition's operator state together with its source offset.
//!
//! Layout: `<topic>/<partition>/<next_offset:020>.vfck` under the store's root. The
//! offset is inside the state ([`PartitionState::next_offset`]), so state and position
//! can never disagree. Writes are atomic: a crash leaves either the old checkpoint or
//! the new one, never half of one (a local directory writes a temporary file, fsyncs
//! and renames; an object store's PUT is atomic per object).
//!
//! Where the bytes go is a [`CheckpointBackend`]: [`DirBackend`] here; an object
//! store (S3) lives with the other network clients in `veriflow-connectors`.
//!
//! File format (little endian): magic `VFCKPT\0\0`, `u32` format version, `u32`
//! CRC-32 of the payload, `u64` payload length, payload (postcard). A file of another
//! format version is refused with a message naming both versions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::partition::PartitionState;

const MAGIC: &[u8; 8] = b"VFCKPT\0\0";
/// Bump when [`PartitionState`] changes shape; add a migration or refuse old files.
pub const FORMAT_VERSION: u32 = 10;
const HEADER_LEN: usize = 8 + 4 + 4 + 8;
const EXTENSION: &str = ".vfck";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint store {store}: {why}")]
    Backend { store: String, why: String },
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

/// Named blobs: what a checkpoint store needs from its storage.
pub trait CheckpointBackend: Send + Sync {
    /// Writes `bytes` under `key`, atomically.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), CheckpointError>;
    fn get(&self, key: &str) -> Result<Vec<u8>, CheckpointError>;
    /// Keys starting with `prefix`, in any order.
    fn list(&self, prefix: &str) -> Result<Vec<String>, CheckpointError>;
    fn delete(&self, key: &str) -> Result<(), CheckpointError>;
    /// Where this is, for messages.
    fn describe(&self) -> String;
}

/// A local (or mounted shared) directory.
#[derive(Debug, Clone)]
pub struct DirBackend {
    dir: PathBuf,
}

impl DirBackend {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirBackend { dir: dir.into() }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { path, source }
}

impl CheckpointBackend for DirBackend {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        let path = self.dir.join(key);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let tmp = path.with_extension("vfck.tmp");
        {
            let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(bytes).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(&parent) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, CheckpointError> {
        let path = self.dir.join(key);
        fs::read(&path).map_err(io(&path))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, CheckpointError> {
        let dir = self.dir.join(prefix);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(CheckpointError::Io { path: dir, source }),
        };
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| format!("{prefix}{name}"))
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), CheckpointError> {
        let path = self.dir.join(key);
        fs::remove_file(&path).map_err(io(&path))
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Checkpoints of all partitions of one input topic.
#[derive(Clone)]
pub struct CheckpointStore {
    backend: Arc<dyn CheckpointBackend>,
    keep: usize,
}

impl CheckpointStore {
    /// A store in a local directory. `keep`: how many checkpoints per partition
    /// survive pruning (at least 1).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self::with_backend(Arc::new(DirBackend::new(dir)), keep)
    }

    pub fn with_backend(backend: Arc<dyn CheckpointBackend>, keep: usize) -> Self {
        CheckpointStore {
            backend,
            keep: keep.max(1),
        }
    }

    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    fn prefix(topic: &str, partition: i32) -> String {
        format!("{topic}/{partition}/")
    }

    /// Writes the state atomically, then prunes older checkpoints. Returns the size.
    pub fn save(&self, topic: &str, state: &PartitionState) -> Result<u64, CheckpointError> {
        let prefix = Self::prefix(topic, state.partition);
        let payload = postcard::to_stdvec(state).map_err(|e| CheckpointError::Corrupt {
            path: PathBuf::from(&prefix),
            why: format!("cannot encode state: {e}"),
        })?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        self.backend.put(
            &format!("{prefix}{:020}{EXTENSION}", state.next_offset),
            &bytes,
        )?;
        let files = self.list(&prefix)?;
        if files.len() > self.keep {
            for old in &files[..files.len() - self.keep] {
                self.backend.delete(old)?;
            }
        }
        Ok(bytes.len() as u64)
    }

    /// The newest checkpoint of a partition, or `None` if it has none.
    pub fn load_latest(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<PartitionState>, CheckpointError> {
        let files = self.list(&Self::prefix(topic, partition))?;
        let Some(key) = files.last() else {
            return Ok(None);
        };
        let bytes = self.backend.get(key)?;
        decode(
            Path::new(&format!("{}/{key}", self.backend.describe())),
            &bytes,
        )
        .map(Some)
    }

    /// Checkpoint keys of a partition, oldest first (names sort by offset).
    fn list(&self, prefix: &str) -> Result<Vec<String>, CheckpointError> {
        let mut keys: Vec<String> = self
            .backend
            .list(prefix)?
            .into_iter()
            .filter(|k| k.ends_with(EXTENSION))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<PartitionState, CheckpointError> {
    let corrupt = |why: &str| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why: why.to_owned(),
    };
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
    use crate::config::PipelineConfig;
    use crate::partition::{InputRecord, PartitionPipeline};

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
        let files = DirBackend::new(dir.path())
            .list("verifications/3/")
            .unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(store.load_latest("verifications", 4).unwrap().is_none());
    }

    #[test]
    fn refuses_other_versions_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path(), 2);
        store.save("t", &some_state()).unwrap();
        let mut keys = DirBackend::new(dir.path()).list("t/3/").unwrap();
        keys.sort();
        let path = dir.path().join(keys.pop().unwrap());
        let mut bytes = fs::read(&path).unwrap();
        let other = FORMAT_VERSION + 1;
        bytes[8..12].copy_from_slice(&other.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let err = store.load_latest("t", 3).unwrap_err();
        assert!(
            matches!(err, CheckpointError::UnsupportedVersion { found, .. } if found == other),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("reads version {FORMAT_VERSION}"))
        );
        bytes[8] = FORMAT_VERSION as u8;
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            store.load_latest("t", 3).unwrap_err(),
            CheckpointError::Corrupt { .. }
        ));
    }
}
