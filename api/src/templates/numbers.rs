//! Numbers in SMS texts, written the way each locale writes them (CLDR
//! decimal format: separators, grouping, digits), and the decimal form the
//! plural rules read, so that what is shown and what decides the plural form
//! are the same number.
//!
//! Fluent's own formatting is Rust's `Display` (`1.5` in every language); the
//! bundle's formatter hook calls [`format_value`] instead. Honoured `NUMBER()`
//! options: `minimumFractionDigits`, `maximumFractionDigits` (default 3),
//! `minimumIntegerDigits`, `useGrouping`.

use fluent::FluentValue;
use fluent::types::FluentNumber;
use intl_memoizer::Memoizable;
use unic_langid::LanguageIdentifier;

/// Largest magnitude formatted digit by digit; beyond it (never an SMS
/// variable's size) the value is written in Rust's exponent form.
const MAX_PLAIN: f64 = 1e15;

/// How one locale writes decimal numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberFormat {
    decimal: &'static str,
    group: &'static str,
    /// Digits before the first separator needed for grouping to start (CLDR
    /// `minimumGroupingDigits`): 2 in Spanish, so `1234` but `12.345`.
    min_grouping: usize,
    /// Native digits, when the locale's default numbering system is not Latin.
    digits: Option<[char; 10]>,
}

const LATIN: NumberFormat = NumberFormat {
    decimal: ".",
    group: ",",
    min_grouping: 1,
    digits: None,
};

impl NumberFormat {
    /// CLDR's default decimal format for `locale`'s language.
    pub fn of(locale: &LanguageIdentifier) -> NumberFormat {
        match locale.language.as_str() {
            "es" => NumberFormat {
                decimal: ",",
                group: ".",
                min_grouping: 2,
                digits: None,
            },
            // U+202F NARROW NO-BREAK SPACE groups in French.
            "fr" => NumberFormat {
                decimal: ",",
                group: "\u{202f}",
                min_grouping: 1,
                digits: None,
            },
            "pt" if locale.region.is_some_and(|r| r.as_str() == "PT") => NumberFormat {
                decimal: ",",
                group: "\u{a0}",
                min_grouping: 2,
                digits: None,
            },
            "pt" | "de" | "it" | "nl" | "id" | "tr" => NumberFormat {
                decimal: ",",
                group: ".",
                min_grouping: 1,
                digits: None,
            },
            // Arabic: Arabic-Indic digits and separators (CLDR's default
            // numbering system for `ar`), except where the region writes Latin.
            "ar" if !locale
                .region
                .is_some_and(|r| ["DZ", "EH", "LY", "MA", "TN"].contains(&r.as_str())) =>
            {
                NumberFormat {
                    decimal: "\u{66b}",
                    group: "\u{66c}",
                    min_grouping: 1,
                    digits: Some(['٠', '١', '٢', '٣', '٤', '٥', '٦', '٧', '٨', '٩']),
                }
            }
            _ => LATIN,
        }
    }

    /// `value` as this locale writes it.
    pub fn format(&self, number: &FluentNumber) -> String {
        let Some(plain) = plain_decimal(number) else {
            return number.value.to_string();
        };
        let (sign, rest) = match plain.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", plain.as_str()),
        };
        let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
        let mut out = String::with_capacity(plain.len() + 8);
        out.push_str(sign);
        let group = number.options.use_grouping && int.len() >= 3 + self.min_grouping;
        for (i, c) in int.chars().enumerate() {
            if group && i > 0 && (int.len() - i).is_multiple_of(3) {
                out.push_str(self.group);
            }
            out.push(self.digit(c));
        }
        if !frac.is_empty() {
            out.push_str(self.decimal);
            out.extend(frac.chars().map(|c| self.digit(c)));
        }
        out
    }

    fn digit(&self, c: char) -> char {
        match (self.digits, c.to_digit(10)) {
            (Some(digits), Some(d)) => digits[d as usize],
            _ => c,
        }
    }
}

/// The number as plain ASCII decimal text after the `NUMBER()` options
/// (rounding to the maximum fraction digits, padding to the minimums):
/// what is shown, before localization, and what plural rules read. `None`
/// for values too large or not finite.
pub fn plain_decimal(number: &FluentNumber) -> Option<String> {
    let value = number.value;
    if !value.is_finite() || value.abs() >= MAX_PLAIN {
        return None;
    }
    let o = &number.options;
    let min_fd = o.minimum_fraction_digits.unwrap_or(0).min(20);
    let max_fd = o.maximum_fraction_digits.unwrap_or(3).clamp(min_fd, 20);
    let mut text = format!("{value:.max_fd$}");
    if let Some(dot) = text.find('.') {
        let keep = dot + 1 + min_fd;
        while text.len() > keep && text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    if text == "-0" || text.starts_with("-0.") && text[3..].bytes().all(|b| b == b'0') {
        text.remove(0);
    }
    if let Some(min_int) = o.minimum_integer_digits {
        let min_int = min_int.min(20);
        let negative = text.starts_with('-');
        let body = text.trim_start_matches('-');
        let int_len = body.find('.').unwrap_or(body.len());
        if int_len < min_int {
            let padded = format!("{}{}", "0".repeat(min_int - int_len), body);
            text = if negative {
                format!("-{padded}")
            } else {
                padded
            };
        }
    }
    Some(text)
}

impl Memoizable for NumberFormat {
    type Args = ();
    type Error = ();

    fn construct(lang: LanguageIdentifier, _: ()) -> Result<Self, ()> {
        Ok(NumberFormat::of(&lang))
    }
}

/// The bundles' formatter: numbers in the bundle's locale, everything else
/// as Fluent writes it.
pub fn format_value(
    value: &FluentValue,
    intls: &intl_memoizer::concurrent::IntlLangMemoizer,
) -> Option<String> {
    match value {
        FluentValue::Number(n) => intls
            .with_try_get::<NumberFormat, _, _>((), |f| f.format(n))
            .ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent::types::FluentNumberOptions;

    fn num(value: f64) -> FluentNumber {
        FluentNumber::new(value, FluentNumberOptions::default())
    }

    fn fmt(locale: &str, n: &FluentNumber) -> String {
        NumberFormat::of(&locale.parse().unwrap()).format(n)
    }

    #[test]
    fn each_locale_writes_its_own_separators_and_digits() {
        assert_eq!(fmt("en", &num(1.5)), "1.5");
        assert_eq!(fmt("fr", &num(1.5)), "1,5");
        assert_eq!(fmt("es", &num(1.5)), "1,5");
        assert_eq!(fmt("pt", &num(1.5)), "1,5");
        assert_eq!(fmt("ar", &num(1.5)), "١٫٥");
        assert_eq!(fmt("ar-MA", &num(1.5)), "1.5");
        assert_eq!(fmt("en", &num(1234567.25)), "1,234,567.25");
        assert_eq!(fmt("fr", &num(1234567.25)), "1\u{202f}234\u{202f}567,25");
        assert_eq!(
            fmt("es", &num(1234.0)),
            "1234",
            "Spanish groups from 5 digits"
        );
        assert_eq!(fmt("es", &num(12345.0)), "12.345");
        assert_eq!(fmt("pt", &num(12345.0)), "12.345");
        assert_eq!(fmt("ar", &num(103.0)), "١٠٣");
        assert_eq!(fmt("en", &num(-0.0)), "0");
        assert_eq!(
            fmt("en", &num(2.0 / 3.0)),
            "0.667",
            "three fraction digits at most"
        );
    }

    #[test]
    fn number_options_shape_the_decimal() {
        let with = |min_fd, max_fd, min_int, grouping| {
            FluentNumber::new(
                1234.5,
                FluentNumberOptions {
                    minimum_fraction_digits: min_fd,
                    maximum_fraction_digits: max_fd,
                    minimum_integer_digits: min_int,
                    use_grouping: grouping,
                    ..FluentNumberOptions::default()
                },
            )
        };
        assert_eq!(
            plain_decimal(&with(Some(2), None, None, true)).unwrap(),
            "1234.50"
        );
        assert_eq!(
            plain_decimal(&with(None, Some(0), None, true)).unwrap(),
            "1234"
        );
        assert_eq!(
            plain_decimal(&with(None, None, Some(6), true)).unwrap(),
            "001234.5"
        );
        assert_eq!(fmt("en", &with(None, None, None, false)), "1234.5");
        assert_eq!(plain_decimal(&num(f64::NAN)), None);
        assert_eq!(plain_decimal(&num(1e300)), None);
    }
}
