//! Plural categories (CLDR cardinal rules), from the number as it is shown.
//!
//! Why not Fluent's own: its selection goes through `intl_pluralrules`, whose
//! Arabic rules compare the integer where CLDR says `n % 100` (103 minutes
//! came out `other`, CLDR says `few`), and it reads the operands from the raw
//! `f64` rather than from the number as displayed. The shipped locales' rules
//! are written out here from CLDR's `plurals.xml` and tested against its own
//! samples; other languages fall back to `intl_pluralrules`.

use intl_pluralrules::{PluralCategory, PluralRuleType, PluralRules, operands::PluralOperands};
use unic_langid::LanguageIdentifier;

/// CLDR's plural operands of a decimal as written (`"103"`, `"1.50"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Operands {
    /// The absolute value.
    pub n: f64,
    /// The integer digits.
    pub i: u64,
    /// Visible fraction digits, with trailing zeros.
    pub v: u32,
    /// The visible fraction digits as an integer, with trailing zeros.
    pub f: u64,
}

impl Operands {
    /// From plain ASCII decimal text (an optional `-`, digits, optionally `.`
    /// and digits); `None` for anything else or integers beyond `u64`.
    pub fn of(text: &str) -> Option<Operands> {
        let body = text.strip_prefix('-').unwrap_or(text);
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 18 {
            return None;
        }
        Some(Operands {
            n: body.parse().ok()?,
            i: int.parse().ok()?,
            v: frac.len() as u32,
            f: if frac.is_empty() {
                0
            } else {
                frac.parse().ok()?
            },
        })
    }

    /// `n` is a whole number in `lo..=hi` (CLDR range relations on `n`
    /// match integers only).
    fn n_in(&self, lo: f64, hi: f64) -> bool {
        self.n.fract() == 0.0 && (lo..=hi).contains(&self.n)
    }

    /// `n % m` is a whole number in `lo..=hi`.
    fn n_mod_in(&self, m: u64, lo: u64, hi: u64) -> bool {
        self.n.fract() == 0.0 && (lo..=hi).contains(&(self.i % m))
    }
}

/// The categories' names as Fluent variant keys use them.
pub fn name(c: PluralCategory) -> &'static str {
    match c {
        PluralCategory::ZERO => "zero",
        PluralCategory::ONE => "one",
        PluralCategory::TWO => "two",
        PluralCategory::FEW => "few",
        PluralCategory::MANY => "many",
        PluralCategory::OTHER => "other",
    }
}

/// The cardinal category of `op` in `locale`.
pub fn cardinal(locale: &LanguageIdentifier, op: &Operands) -> PluralCategory {
    use PluralCategory::*;
    // `e = 0 and i != 0 and i % 1000000 = 0 and v = 0`: the "millions" many
    // of the Romance languages (CLDR 38+); compact exponents never occur here.
    let millions = op.i != 0 && op.i.is_multiple_of(1_000_000) && op.v == 0;
    match locale.language.as_str() {
        // one: i = 1 and v = 0
        "en" => {
            if op.i == 1 && op.v == 0 {
                ONE
            } else {
                OTHER
            }
        }
        // one: n = 1
        "es" => {
            if op.n == 1.0 {
                ONE
            } else if millions {
                MANY
            } else {
                OTHER
            }
        }
        // one: i = 0,1
        "fr" => {
            if op.i <= 1 {
                ONE
            } else if millions {
                MANY
            } else {
                OTHER
            }
        }
        // pt: one: i = 0..1; pt-PT: one: i = 1 and v = 0
        "pt" => {
            let portugal = locale.region.is_some_and(|r| r.as_str() == "PT");
            if (!portugal && op.i <= 1) || (portugal && op.i == 1 && op.v == 0) {
                ONE
            } else if millions {
                MANY
            } else {
                OTHER
            }
        }
        // zero: n = 0; one: n = 1; two: n = 2; few: n % 100 = 3..10;
        // many: n % 100 = 11..99
        "ar" => {
            if op.n_in(0.0, 0.0) {
                ZERO
            } else if op.n_in(1.0, 1.0) {
                ONE
            } else if op.n_in(2.0, 2.0) {
                TWO
            } else if op.n_mod_in(100, 3, 10) {
                FEW
            } else if op.n_mod_in(100, 11, 99) {
                MANY
            } else {
                OTHER
            }
        }
        _ => fallback(locale, op),
    }
}

/// Languages veriflow does not ship: `intl_pluralrules`, or `other`.
fn fallback(locale: &LanguageIdentifier, op: &Operands) -> PluralCategory {
    let Ok(rules) = PluralRules::create(locale.clone(), PluralRuleType::CARDINAL) else {
        return PluralCategory::OTHER;
    };
    // w and t: the fraction digits without their trailing zeros.
    let (mut t, mut zeros) = (op.f, 0usize);
    while t != 0 && t.is_multiple_of(10) {
        t /= 10;
        zeros += 1;
    }
    let operands = PluralOperands {
        n: op.n,
        i: op.i,
        v: op.v as usize,
        w: if op.f == 0 { 0 } else { op.v as usize - zeros },
        f: op.f,
        t,
    };
    rules.select(operands).unwrap_or(PluralCategory::OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CLDR `plurals.xml` samples (cardinal; compact-exponent samples left
    /// out, they never reach an SMS): `~` ranges step by the last digit.
    const SAMPLES: &[(&str, &str, &str)] = &[
        ("en", "one", "1"),
        (
            "en",
            "other",
            "0, 2~16, 100, 1000, 10000, 100000, 1000000, 0.0~1.5, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0",
        ),
        ("es", "one", "1, 1.0, 1.00, 1.000, 1.0000"),
        ("es", "many", "1000000"),
        (
            "es",
            "other",
            "0, 2~16, 100, 1000, 10000, 100000, 0.0~0.9, 1.1~1.6, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0",
        ),
        ("fr", "one", "0, 1, 0.0~1.5"),
        ("fr", "many", "1000000"),
        (
            "fr",
            "other",
            "2~17, 100, 1000, 10000, 100000, 2.0~3.5, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0",
        ),
        ("pt", "one", "0, 1, 0.0~1.5"),
        ("pt", "many", "1000000"),
        (
            "pt",
            "other",
            "2~17, 100, 1000, 10000, 100000, 2.0~3.5, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0",
        ),
        ("ar", "zero", "0, 0.0, 0.00, 0.000, 0.0000"),
        ("ar", "one", "1, 1.0, 1.00, 1.000, 1.0000"),
        ("ar", "two", "2, 2.0, 2.00, 2.000, 2.0000"),
        (
            "ar",
            "few",
            "3~10, 103~110, 1003, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 103.0, 1003.0",
        ),
        (
            "ar",
            "many",
            "11~26, 111, 1011, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 111.0, 1011.0",
        ),
        (
            "ar",
            "other",
            "100~102, 200~202, 300~302, 400~402, 500~502, 600, 1000, 10000, 100000, 1000000, 0.1~0.9, 1.1~1.7, 10.1, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0",
        ),
    ];

    /// `2~16` or `0.0~1.5`: every value from one end to the other, stepping
    /// by one unit of the last written digit.
    fn expand(sample: &str) -> Vec<String> {
        let Some((lo, hi)) = sample.split_once('~') else {
            return vec![sample.to_owned()];
        };
        let decimals = lo.split_once('.').map_or(0, |(_, f)| f.len());
        let scale = 10f64.powi(decimals as i32);
        let (a, b) = (
            (lo.parse::<f64>().unwrap() * scale).round() as i64,
            (hi.parse::<f64>().unwrap() * scale).round() as i64,
        );
        (a..=b)
            .map(|x| format!("{:.*}", decimals, x as f64 / scale))
            .collect()
    }

    #[test]
    fn every_shipped_locale_gives_cldrs_own_samples() {
        let mut checked = 0;
        for (locale, category, samples) in SAMPLES {
            let l: LanguageIdentifier = locale.parse().unwrap();
            for sample in samples.split(", ").flat_map(expand) {
                let op = Operands::of(&sample).unwrap();
                assert_eq!(name(cardinal(&l, &op)), *category, "{locale} {sample}");
                checked += 1;
            }
        }
        assert!(checked > 200, "{checked}");
    }

    #[test]
    fn operands_read_the_number_as_written() {
        assert_eq!(
            Operands::of("1.50"),
            Some(Operands {
                n: 1.5,
                i: 1,
                v: 2,
                f: 50
            })
        );
        assert_eq!(Operands::of("-3").unwrap().i, 3);
        assert_eq!(Operands::of("1e5"), None);
        assert_eq!(Operands::of(""), None);
    }
}
