//! A query's answer in the formats clients ask for: a text table (the CLI),
//! CSV, JSON (an array of objects), the Arrow IPC stream and Parquet.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::sql::{QueryResult, SqlError};

/// How an answer is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// Aligned text with a header, as psql prints it.
    Table,
    Csv,
    /// An array of objects, one per row (nulls left out, as Arrow writes them).
    Json,
    ArrowStream,
    Parquet,
}

impl ResultFormat {
    /// The `Content-Type` of an encoded answer.
    pub fn media_type(self) -> &'static str {
        match self {
            ResultFormat::Table => "text/plain; charset=utf-8",
            ResultFormat::Csv => "text/csv; charset=utf-8",
            ResultFormat::Json => "application/json",
            ResultFormat::ArrowStream => "application/vnd.apache.arrow.stream",
            ResultFormat::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The format an HTTP `Accept` header prefers (highest `q`, then first
    /// named); JSON when the header is absent. `None`: nothing acceptable.
    pub fn from_accept(accept: Option<&str>) -> Option<ResultFormat> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Some(ResultFormat::Json);
        };
        let mut best: Option<(ResultFormat, f32)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/json" | "application/*" | "*/*" => ResultFormat::Json,
                "text/csv" => ResultFormat::Csv,
                "text/plain" | "text/*" => ResultFormat::Table,
                "application/vnd.apache.arrow.stream" => ResultFormat::ArrowStream,
                "application/vnd.apache.parquet" | "application/x-parquet" => ResultFormat::Parquet,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((format, q));
            }
        }
        best.map(|(f, _)| f)
    }

    /// `table`, `csv`, `json`, `arrow`, `parquet`.
    pub fn from_name(name: &str) -> Option<ResultFormat> {
        Some(match name {
            "table" => ResultFormat::Table,
            "csv" => ResultFormat::Csv,
            "json" => ResultFormat::Json,
            "arrow" => ResultFormat::ArrowStream,
            "parquet" => ResultFormat::Parquet,
            _ => return None,
        })
    }
}

impl QueryResult {
    /// The answer encoded as `format`.
    pub fn encode(&self, format: ResultFormat) -> Result<Vec<u8>, SqlError> {
        let failed =
            |e: &dyn std::fmt::Display| SqlError::new("XX000", format!("encoding the result: {e}"));
        let mut out = Vec::new();
        match format {
            ResultFormat::Table => {
                let table = arrow::util::pretty::pretty_format_batches(&self.with_header())
                    .map_err(|e| failed(&e))?;
                out.extend_from_slice(table.to_string().as_bytes());
                out.push(b'\n');
            }
            ResultFormat::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in self.with_header() {
                    writer.write(&batch).map_err(|e| failed(&e))?;
                }
            }
            ResultFormat::Json => {
                let mut writer = arrow::json::ArrayWriter::new(&mut out);
                let batches: Vec<&RecordBatch> = self.batches.iter().collect();
                writer.write_batches(&batches).map_err(|e| failed(&e))?;
                writer.finish().map_err(|e| failed(&e))?;
                if out.is_empty() {
                    out.extend_from_slice(b"[]");
                }
            }
            ResultFormat::ArrowStream => {
                let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &self.schema)
                    .map_err(|e| failed(&e))?;
                for batch in &self.batches {
                    writer.write(batch).map_err(|e| failed(&e))?;
                }
                writer.finish().map_err(|e| failed(&e))?;
            }
            ResultFormat::Parquet => {
                let mut writer =
                    parquet::arrow::ArrowWriter::try_new(&mut out, self.schema.clone(), None)
                        .map_err(|e| failed(&e))?;
                for batch in &self.batches {
                    writer.write(batch).map_err(|e| failed(&e))?;
                }
                writer.close().map_err(|e| failed(&e))?;
            }
        }
        Ok(out)
    }

    /// The batches, or one empty batch so a header is printed for no rows.
    fn with_header(&self) -> Vec<RecordBatch> {
        if self.batches.is_empty() {
            vec![RecordBatch::new_empty(SchemaRef::clone(&self.schema))]
        } else {
            self.batches.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_the_first_format_we_have() {
        assert_eq!(ResultFormat::from_accept(None), Some(ResultFormat::Json));
        assert_eq!(
            ResultFormat::from_accept(Some("text/csv;q=0.9, application/json")),
            Some(ResultFormat::Json)
        );
        assert_eq!(
            ResultFormat::from_accept(Some("text/csv, application/json")),
            Some(ResultFormat::Csv)
        );
        assert_eq!(
            ResultFormat::from_accept(Some("image/png, application/vnd.apache.arrow.stream")),
            Some(ResultFormat::ArrowStream)
        );
        assert_eq!(ResultFormat::from_accept(Some("image/png")), None);
        assert_eq!(ResultFormat::from_accept(Some("text/csv;q=0")), None);
        assert_eq!(
            ResultFormat::from_accept(Some("*/*")),
            Some(ResultFormat::Json)
        );
    }
}
