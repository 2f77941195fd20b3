//! Query results → InfluxDB points (the output convention of the crate docs).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMillisecondType};
use veriflow_connectors::influx::{FieldValue, Point};

enum Kind {
    Time,
    Tag,
    Int,
    Float,
    Bool,
}

fn kind(name: &str, t: &DataType) -> Result<Kind, String> {
    if name == "time" {
        return match t {
            DataType::Timestamp(_, _) | DataType::Int64 | DataType::Date32 | DataType::Date64 => {
                Ok(Kind::Time)
            }
            other => Err(format!(
                "column `time` must be a timestamp or Unix ms, not {other}"
            )),
        };
    }
    Ok(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _) => {
            Kind::Tag
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Kind::Int,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => Kind::Float,
        DataType::Boolean => Kind::Bool,
        DataType::Null => Kind::Float, // an all-null column: no values to write
        other => {
            return Err(format!(
                "column `{name}` has type {other}, which is not a tag or field"
            ));
        }
    })
}

/// The points of a query's result, and the names of its integer fields.
pub fn from_batches(
    measurement: &str,
    batches: &[RecordBatch],
) -> Result<(Vec<Point>, Vec<String>), String> {
    let mut points = Vec::new();
    let mut int_fields = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let schema = batch.schema();
        let kinds: Vec<Kind> = schema
            .fields()
            .iter()
            .map(|f| kind(f.name(), f.data_type()))
            .collect::<Result<_, _>>()?;
        if b == 0 {
            int_fields = schema
                .fields()
                .iter()
                .zip(&kinds)
                .filter(|(_, k)| matches!(k, Kind::Int))
                .map(|(f, _)| f.name().clone())
                .collect();
        }
        let cast_to = |i: usize, t: &DataType| cast(batch.column(i), t).map_err(|e| e.to_string());
        let mut columns = Vec::with_capacity(kinds.len());
        for (i, k) in kinds.iter().enumerate() {
            let target = match k {
                Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, None),
                Kind::Tag => DataType::Utf8,
                Kind::Int => DataType::Int64,
                Kind::Float => DataType::Float64,
                Kind::Bool => DataType::Boolean,
            };
            columns.push(cast_to(i, &target)?);
        }
        for row in 0..batch.num_rows() {
            let mut p = Point::new(measurement, 0);
            let mut has_time = false;
            for ((field, k), col) in schema.fields().iter().zip(&kinds).zip(&columns) {
                if col.is_null(row) {
                    continue;
                }
                let name = field.name().clone();
                match k {
                    Kind::Time => {
                        p.timestamp_ms = col.as_primitive::<TimestampMillisecondType>().value(row);
                        has_time = true;
                    }
                    Kind::Tag => p
                        .tags
                        .push((name, col.as_string::<i32>().value(row).to_string())),
                    Kind::Int => p.fields.push((
                        name,
                        FieldValue::Int(col.as_primitive::<Int64Type>().value(row)),
                    )),
                    Kind::Float => p.fields.push((
                        name,
                        FieldValue::Float(col.as_primitive::<Float64Type>().value(row)),
                    )),
                    Kind::Bool => p
                        .fields
                        .push((name, FieldValue::Bool(col.as_boolean().value(row)))),
                }
            }
            if has_time && !p.fields.is_empty() {
                points.push(p);
            }
        }
    }
    Ok((points, int_fields))
}
