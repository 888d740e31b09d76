//! JSON Lines: one object per row, keys the column names, nulls as null.

use crate::tables::{Table, Value};
use anyhow::Result;
use std::io::{BufWriter, Write};
use std::path::Path;

pub(crate) fn write(path: &Path, t: &Table) -> Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for row in &t.rows {
        let mut obj = serde_json::Map::with_capacity(row.len());
        for (col, v) in t.columns.iter().zip(row) {
            let j = match v {
                Value::I(n) => serde_json::Value::from(*n),
                Value::U(n) => serde_json::Value::from(*n),
                Value::F(x) => serde_json::Value::from(*x),
                Value::B(b) => serde_json::Value::from(*b),
                Value::S(s) => serde_json::Value::from(s.as_str()),
                Value::Null => serde_json::Value::Null,
            };
            obj.insert(col.name.to_string(), j);
        }
        serde_json::to_writer(&mut out, &obj)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
