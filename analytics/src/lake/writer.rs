//! Lake files land here: immutable Parquet files named by where their rows
//! came from, then the source partition's position.
//!
//! A batch is the rows read from one partition of a pipeline topic between two
//! offsets. Committing it writes one file per tenant and day,
//! `<table>/tenant=<dir>/day=<day>/p<partition>-<first offset>.parquet` (each
//! `put` is atomic: a reader sees a whole file or none), and only then
//! `_positions/<table>/p<partition>.json` with the next offset to read. So after
//! a crash at any moment, files whose first offset is at or past the stored
//! position are the torn rest of a batch that never committed:
//! [`LakeWriter::discard_from`] removes them before the partition is read again,
//! and the batch is rewritten under the same names. Records of the pipeline's
//! topics are each there once (the driver suppresses replays), so rows are
//! each in the lake once.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use veriflow_pipelines::time::format_rfc3339;

use super::error::LakeError;
use super::tables::LakeRow;
use super::{Location, tenant_dir};

/// The next offset of a partition to read, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Position {
    next_offset: i64,
}

/// Writes batches into one lake.
#[derive(Clone)]
pub struct LakeWriter {
    location: Location,
    properties: WriterProperties,
}

impl LakeWriter {
    /// See [`Location::parse`] for what `location` may be.
    pub fn open(location: &str) -> Result<LakeWriter, LakeError> {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        Ok(LakeWriter {
            location: Location::parse(location)?,
            properties,
        })
    }

    /// Where it writes, for logs.
    pub fn describe(&self) -> String {
        self.location.root.to_string()
    }

    /// The stored next offset of `partition` of `table`'s source, if any.
    pub async fn position(&self, table: &str, partition: i32) -> Result<Option<i64>, LakeError> {
        let path = self.position_path(table, partition)?;
        let bytes = match self.location.store.get(&path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let position: Position =
            serde_json::from_slice(&bytes).map_err(|e| LakeError::Position {
                path: path.to_string(),
                why: e.to_string(),
            })?;
        Ok(Some(position.next_offset))
    }

    /// Removes `table`'s files of `partition` whose first offset is `from` or
    /// later: what a batch that never committed left. Returns how many.
    pub async fn discard_from(
        &self,
        table: &str,
        partition: i32,
        from: i64,
    ) -> Result<usize, LakeError> {
        let prefix = self.location.path(table)?;
        let store = &self.location.store;
        let torn: Vec<_> = store
            .list(Some(&prefix))
            .try_filter(|meta| {
                let keep = meta
                    .location
                    .filename()
                    .and_then(file_origin)
                    .is_some_and(|(p, start)| p == partition && start >= from);
                futures::future::ready(keep)
            })
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for path in &torn {
            match store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(torn.len())
    }

    /// Commits one batch of `partition`: `rows` read from offset `first` up to
    /// (not including) `next`. Files first, then the position.
    pub async fn commit<R: LakeRow>(
        &self,
        partition: i32,
        first: i64,
        next: i64,
        rows: &[&R],
    ) -> Result<usize, LakeError> {
        let mut files: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            let day = day_of(row.at());
            files
                .entry((tenant_dir(row.tenant()), day))
                .or_default()
                .push(i);
        }
        let mut bytes_written = 0;
        let mut part: Vec<&R> = Vec::new();
        for ((tenant, day), indices) in &files {
            part.clear();
            part.extend(indices.iter().map(|&i| rows[i]));
            let bytes = self.parquet(&part)?;
            bytes_written += bytes.len();
            let path = self.location.path(&format!(
                "{}/tenant={tenant}/day={day}/{}",
                R::TABLE,
                file_name(partition, first)
            ))?;
            self.location
                .store
                .put(&path, PutPayload::from(bytes))
                .await?;
        }
        let position = serde_json::to_vec(&Position { next_offset: next })
            .map_err(|e| LakeError::Encode(e.to_string()))?;
        self.location
            .store
            .put(
                &self.position_path(R::TABLE, partition)?,
                PutPayload::from(position),
            )
            .await?;
        Ok(bytes_written)
    }

    fn parquet<R: LakeRow>(&self, rows: &[&R]) -> Result<Vec<u8>, LakeError> {
        let batch = R::to_batch(rows)?;
        let mut out = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut out, batch.schema(), Some(self.properties.clone()))
                .map_err(|e| LakeError::Encode(e.to_string()))?;
        writer
            .write(&batch)
            .map_err(|e| LakeError::Encode(e.to_string()))?;
        writer
            .close()
            .map_err(|e| LakeError::Encode(e.to_string()))?;
        Ok(out)
    }

    fn position_path(
        &self,
        table: &str,
        partition: i32,
    ) -> Result<object_store::path::Path, LakeError> {
        self.location
            .path(&format!("_positions/{table}/p{partition}.json"))
    }
}

/// `p<partition>-<first offset, 20 digits>.parquet`: sorts by offset.
fn file_name(partition: i32, first: i64) -> String {
    format!("p{partition}-{first:020}.parquet")
}

/// The partition and first offset a file name carries.
fn file_origin(name: &str) -> Option<(i32, i64)> {
    let rest = name.strip_prefix('p')?.strip_suffix(".parquet")?;
    let (partition, first) = rest.split_once('-')?;
    Some((partition.parse().ok()?, first.parse().ok()?))
}

/// `YYYY-MM-DD` (UTC) of an event time.
fn day_of(at: veriflow_pipelines::time::EventTime) -> String {
    let mut text = format_rfc3339(at);
    text.truncate(10);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_their_origin_and_sort_by_offset() {
        assert_eq!(file_origin(&file_name(3, 120)), Some((3, 120)));
        assert!(file_name(0, 9) < file_name(0, 10));
        assert_eq!(file_origin("p3-12.csv"), None);
        assert_eq!(file_origin("notes.parquet"), None);
        assert_eq!(day_of(0), "1970-01-01");
    }
}
