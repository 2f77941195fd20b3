//! InfluxDB line protocol: points and their exact text encoding.
//!
//! `measurement,tag=v,tag=v field=1.5,count=3i 1700000000000` with the escaping
//! rules of the spec: commas and spaces in measurements; commas, equals signs and
//! spaces in tag keys, tag values and field keys; quotes and backslashes in string
//! field values. Tags are written sorted by key (InfluxDB's recommendation, and it
//! makes the encoding of a point unique); empty tag values are left out (the
//! protocol has no empty tag).

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    Text(String),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
    /// Unix milliseconds (written with `precision=ms`).
    pub timestamp_ms: i64,
}

impl Point {
    pub fn new(measurement: impl Into<String>, timestamp_ms: i64) -> Point {
        Point {
            measurement: measurement.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp_ms,
        }
    }

    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Point {
        self.tags.push((key.into(), value.into()));
        self
    }

    pub fn field(mut self, key: impl Into<String>, value: FieldValue) -> Point {
        self.fields.push((key.into(), value));
        self
    }

    /// Appends this point's line (with a trailing newline) to `out`. A point
    /// without a finite field writes nothing: the protocol needs one field.
    pub fn write_line(&self, out: &mut String) {
        let fields: Vec<&(String, FieldValue)> = self
            .fields
            .iter()
            .filter(|(_, v)| !matches!(v, FieldValue::Float(f) if !f.is_finite()))
            .collect();
        if fields.is_empty() {
            return;
        }
        escape(out, &self.measurement, &[',', ' ']);
        let mut tags: Vec<&(String, String)> =
            self.tags.iter().filter(|(_, v)| !v.is_empty()).collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in tags {
            out.push(',');
            escape(out, k, &[',', '=', ' ']);
            out.push('=');
            escape(out, v, &[',', '=', ' ']);
        }
        for (i, (k, v)) in fields.into_iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            escape(out, k, &[',', '=', ' ']);
            out.push('=');
            match v {
                FieldValue::Float(f) => {
                    let _ = write!(out, "{f:?}");
                }
                FieldValue::Int(i) => {
                    let _ = write!(out, "{i}i");
                }
                FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                FieldValue::Text(s) => {
                    out.push('"');
                    escape(out, s, &['"', '\\']);
                    out.push('"');
                }
            }
        }
        let _ = writeln!(out, " {}", self.timestamp_ms);
    }
}

/// Backslash-escapes `specials`; newlines cannot be escaped in line protocol, so
/// they become spaces.
fn escape(out: &mut String, s: &str, specials: &[char]) {
    for c in s.chars() {
        if c == '\n' || c == '\r' {
            out.push(' ');
            continue;
        }
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: &Point) -> String {
        let mut s = String::new();
        p.write_line(&mut s);
        s
    }

    #[test]
    fn encodes_with_sorted_tags_and_typed_fields() {
        let p = Point::new("veriflow_kpi", 1_700_000_000_000)
            .tag("tenant", "acme")
            .tag("country", "BR")
            .tag("provider", "")
            .field("requests", FieldValue::Int(12))
            .field("conversion_rate", FieldValue::Float(0.5))
            .field("ok", FieldValue::Bool(true));
        assert_eq!(
            line(&p),
            "veriflow_kpi,country=BR,tenant=acme requests=12i,conversion_rate=0.5,ok=true 1700000000000\n"
        );
    }

    #[test]
    fn escapes_special_characters() {
        let p = Point::new("my kpi,x", 1)
            .tag("a b", "c,d=e")
            .field("msg", FieldValue::Text("say \"hi\" \\ now\nplease".into()));
        assert_eq!(
            line(&p),
            "my\\ kpi\\,x,a\\ b=c\\,d\\=e msg=\"say \\\"hi\\\" \\\\ now please\" 1\n"
        );
    }

    #[test]
    fn non_finite_floats_are_left_out() {
        let p = Point::new("m", 1)
            .field("a", FieldValue::Float(f64::NAN))
            .field("b", FieldValue::Float(1.0));
        assert_eq!(line(&p), "m b=1.0 1\n");
        assert_eq!(
            line(&Point::new("m", 1).field("a", FieldValue::Float(f64::INFINITY))),
            ""
        );
    }
}
