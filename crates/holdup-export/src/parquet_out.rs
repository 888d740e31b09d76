//! Parquet through the `parquet` crate's column writers (no arrow: it would
//! more than double the build). One row group per table; zstd pages.

use crate::tables::{Table, Type, Value};
use crate::{EXPORT_VERSION, EXPORT_VERSION_KEY, HEADER_KEY, TABLE_KEY};
use anyhow::{bail, Result};
use holdup_record::RecordingHeader;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::Arc;

fn schema_of(t: &Table) -> String {
    let mut s = format!("message {} {{\n", t.name);
    for c in &t.columns {
        let (rep, ty) = match c.ty {
            Type::I64 => ("REQUIRED", "INT64"),
            Type::U64 => ("REQUIRED", "INT64 (INTEGER(64,false))"),
            Type::F64 => ("REQUIRED", "DOUBLE"),
            Type::Bool => ("REQUIRED", "BOOLEAN"),
            Type::Str => ("REQUIRED", "BYTE_ARRAY (STRING)"),
            Type::OptStr => ("OPTIONAL", "BYTE_ARRAY (STRING)"),
            Type::OptU64 => ("OPTIONAL", "INT64 (INTEGER(64,false))"),
        };
        // `ty` may carry an annotation after the physical type; the name goes between.
        let (phys, ann) = ty.split_once(' ').unwrap_or((ty, ""));
        s.push_str(&format!("  {rep} {phys} {} {ann};\n", c.name));
    }
    s.push('}');
    s
}

pub(crate) fn write(path: &Path, header: &RecordingHeader, t: &Table) -> Result<()> {
    let schema = Arc::new(parse_message_type(&schema_of(t))?);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(HEADER_KEY.into(), serde_json::to_string(header)?),
            KeyValue::new(TABLE_KEY.into(), t.name.to_string()),
            KeyValue::new(EXPORT_VERSION_KEY.into(), EXPORT_VERSION.to_string()),
        ]))
        .build();
    let file = std::fs::File::create(path)?;
    let mut w = SerializedFileWriter::new(file, schema, Arc::new(props))?;
    let mut rg = w.next_row_group()?;
    for (i, c) in t.columns.iter().enumerate() {
        let Some(mut col) = rg.next_column()? else {
            bail!(
                "the Parquet schema of {} has fewer columns than the table",
                t.name
            );
        };
        let cells = t.rows.iter().map(|r| &r[i]);
        match c.ty {
            Type::I64 => {
                let v: Vec<i64> = cells.map(|v| v.as_i64()).collect();
                col.typed::<Int64Type>().write_batch(&v, None, None)?;
            }
            Type::U64 => {
                // Unsigned 64-bit: stored bit for bit in INT64, annotated unsigned.
                let v: Vec<i64> = cells.map(|v| v.as_i64()).collect();
                col.typed::<Int64Type>().write_batch(&v, None, None)?;
            }
            Type::OptU64 => {
                let (mut v, mut def) = (Vec::new(), Vec::new());
                for cell in cells {
                    if matches!(cell, Value::Null) {
                        def.push(0);
                    } else {
                        def.push(1);
                        v.push(cell.as_i64());
                    }
                }
                col.typed::<Int64Type>().write_batch(&v, Some(&def), None)?;
            }
            Type::F64 => {
                let v: Vec<f64> = cells
                    .map(|v| match v {
                        Value::F(x) => *x,
                        _ => f64::NAN,
                    })
                    .collect();
                col.typed::<DoubleType>().write_batch(&v, None, None)?;
            }
            Type::Bool => {
                let v: Vec<bool> = cells.map(|v| matches!(v, Value::B(true))).collect();
                col.typed::<BoolType>().write_batch(&v, None, None)?;
            }
            Type::Str | Type::OptStr => {
                let (mut v, mut def) = (Vec::new(), Vec::new());
                for cell in cells {
                    match cell {
                        Value::S(s) => {
                            def.push(1);
                            v.push(ByteArray::from(s.as_str()));
                        }
                        _ => def.push(0),
                    }
                }
                let def = (c.ty == Type::OptStr).then_some(def);
                col.typed::<ByteArrayType>()
                    .write_batch(&v, def.as_deref(), None)?;
            }
        }
        col.close()?;
    }
    rg.close()?;
    w.close()?;
    Ok(())
}
