//! `Accept-Language` (RFC 9110 §12.5.4): language ranges with weights.
//!
//! Ranges are ordered by their `q` (highest first, ties in the order sent);
//! `q=0` means "not acceptable": such a language is never chosen by a match,
//! by a prefix or by `*`. `*` stands for any language not listed. Malformed
//! entries (a bad tag, a `q` outside 0..1 or with more than three decimals)
//! are ignored, as the RFC's "ignore what you do not understand" asks;
//! at most [`MAX_RANGES`] are read.

use unic_langid::LanguageIdentifier;

/// Ranges read from one header at most.
pub const MAX_RANGES: usize = 32;

/// One acceptable language range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    Language(LanguageIdentifier),
    /// `*`: any language not otherwise named.
    Any,
}

/// What a requester accepts, best first, and what it refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    pub accepted: Vec<Range>,
    /// `q=0`: never to be chosen.
    pub refused: Vec<LanguageIdentifier>,
}

impl Preferences {
    /// One language, nothing refused (an explicit `locale`).
    pub fn only(locale: LanguageIdentifier) -> Self {
        Preferences {
            accepted: vec![Range::Language(locale)],
            refused: Vec::new(),
        }
    }

    /// Whether `locale` is refused: named with `q=0`, or its language is
    /// (`fr;q=0` refuses `fr-CA` too).
    pub fn refuses(&self, locale: &LanguageIdentifier) -> bool {
        self.refused.iter().any(|r| {
            r.language == locale.language
                && (r.region.is_none() || r.region == locale.region)
                && (r.script.is_none() || r.script == locale.script)
        })
    }
}

/// Parses an `Accept-Language` value.
pub fn parse(header: &str) -> Preferences {
    let mut weighted: Vec<(u16, usize, Range)> = Vec::new();
    let mut refused = Vec::new();
    for (order, item) in header.split(',').take(MAX_RANGES).enumerate() {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let mut q = Some(1000u16);
        for param in parts {
            let Some((k, v)) = param.split_once('=') else {
                q = None;
                continue;
            };
            // A weight is the only parameter the grammar has.
            q = if k.trim().eq_ignore_ascii_case("q") {
                q.and(weight(v.trim()))
            } else {
                None
            };
        }
        let Some(q) = q else { continue };
        let range = if tag == "*" {
            Range::Any
        } else {
            match tag.parse::<LanguageIdentifier>() {
                Ok(l) if !tag.is_empty() => Range::Language(l),
                _ => continue,
            }
        };
        match (q, range) {
            (0, Range::Language(l)) => refused.push(l),
            (0, Range::Any) => {}
            (q, range) => weighted.push((q, order, range)),
        }
    }
    weighted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Preferences {
        accepted: weighted.into_iter().map(|(_, _, r)| r).collect(),
        refused,
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn weight(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs(p: &Preferences) -> Vec<String> {
        p.accepted
            .iter()
            .map(|r| match r {
                Range::Language(l) => l.to_string(),
                Range::Any => "*".into(),
            })
            .collect()
    }

    #[test]
    fn weights_order_the_ranges_and_zero_refuses() {
        let p = parse("fr;q=0.5, ar, es;q=0.9, *;q=0.1, pt;q=0");
        assert_eq!(langs(&p), ["ar", "es", "fr", "*"]);
        assert!(p.refuses(&"pt-BR".parse().unwrap()));
        assert!(!p.refuses(&"es".parse().unwrap()));
        let p = parse("en;q=0.5, fr;q=0.5");
        assert_eq!(langs(&p), ["en", "fr"], "ties keep the order sent");
        let p = parse("de;q=1.5, fr;q=0.1234, es;q=abc, pt;level=1, ar;Q=0.3, xx-!!");
        assert_eq!(langs(&p), ["ar"]);
        assert_eq!(parse("").accepted, []);
        assert_eq!(parse(&"fr,".repeat(1000)).accepted.len(), MAX_RANGES);
    }
}
