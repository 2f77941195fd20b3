//! Checkpoints in an S3-compatible object store (`checkpoint.dir = "s3://bucket/prefix"`).
//!
//! Credentials, region and endpoint come from the standard `AWS_*` environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT` for MinIO and the like, `AWS_ALLOW_HTTP=true` for plain HTTP).
//! A PUT is atomic per object, which is all a checkpoint needs.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use veriflow_pipelines::checkpoint::{CheckpointBackend, CheckpointError};

/// An `s3://bucket/prefix` URL opened: the bucket's store (credentials from the
/// `AWS_*` variables) and the key prefix without surrounding slashes. Checkpoints
/// and the lake both open their locations here.
pub struct S3Location {
    pub store: Arc<dyn ObjectStore>,
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| "expected s3://bucket/prefix".to_owned())?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("the URL names no bucket".into());
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(S3Location {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }
}

pub struct S3Backend {
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket, without a trailing slash ("" for the root).
    prefix: String,
    url: String,
    runtime: tokio::runtime::Runtime,
}

impl S3Backend {
    /// `url`: `s3://bucket` or `s3://bucket/some/prefix`.
    pub fn from_url(url: &str) -> Result<Self, CheckpointError> {
        let fail = |why: String| CheckpointError::Backend {
            store: url.to_owned(),
            why,
        };
        let S3Location { store, prefix, .. } = S3Location::parse(url).map_err(fail)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("starting the I/O runtime: {e}")))?;
        Ok(S3Backend {
            store,
            prefix,
            url: url.to_owned(),
            runtime,
        })
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> CheckpointError {
        CheckpointError::Backend {
            store: self.url.clone(),
            why: format!("{what}: {e}"),
        }
    }
}

impl CheckpointBackend for S3Backend {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.store.put(&self.path(key), payload))
            .map(|_| ())
            .map_err(|e| self.fail(&format!("put {key}"), e))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, CheckpointError> {
        self.runtime
            .block_on(async {
                let got = self.store.get(&self.path(key)).await?;
                got.bytes().await
            })
            .map(|b| b.to_vec())
            .map_err(|e| self.fail(&format!("get {key}"), e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, CheckpointError> {
        let dir = self.path(prefix.trim_end_matches('/'));
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        self.runtime
            .block_on(self.store.list(Some(&dir)).try_collect::<Vec<_>>())
            .map(|objects| {
                objects
                    .into_iter()
                    .map(|o| o.location.to_string())
                    .filter_map(|k| k.strip_prefix(&strip).map(str::to_owned))
                    .collect()
            })
            .map_err(|e| self.fail(&format!("list {prefix}"), e))
    }

    fn delete(&self, key: &str) -> Result<(), CheckpointError> {
        self.runtime
            .block_on(self.store.delete(&self.path(key)))
            .map_err(|e| self.fail(&format!("delete {key}"), e))
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
