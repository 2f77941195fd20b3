//! What an SMS text costs: GSM-7 or UCS-2, and how many segments.
//!
//! GSM 03.38: a text made only of the default alphabet is sent in 7-bit septets,
//! 160 per single message or 153 per part of a concatenated one (the UDH takes 7
//! septets); extension-table characters (`^{}\[~]|€` and form feed) cost two
//! septets (escape + char) and are never split across parts. Any other character
//! forces UCS-2: 70 UTF-16 units in one message, 67 per part, and a surrogate pair
//! (emoji) is never split.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum Encoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SmsCost {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) the text occupies.
    pub units: usize,
    pub segments: usize,
    /// Units per segment at this length (160/153 or 70/67).
    pub units_per_segment: usize,
}

const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// Septets for one character in GSM-7, or `None` if it needs UCS-2.
fn gsm_septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

pub fn cost(text: &str) -> SmsCost {
    let septets: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    match septets {
        Some(units) => segmented(Encoding::Gsm7, &units, 160, 153),
        None => {
            let units: Vec<usize> = text.chars().map(char::len_utf16).collect();
            segmented(Encoding::Ucs2, &units, 70, 67)
        }
    }
}

/// Packs indivisible characters of the given widths into segments.
fn segmented(encoding: Encoding, widths: &[usize], single: usize, part: usize) -> SmsCost {
    let units: usize = widths.iter().sum();
    if units <= single {
        return SmsCost {
            encoding,
            units,
            segments: 1,
            units_per_segment: single,
        };
    }
    let mut segments = 1;
    let mut used = 0;
    for &w in widths {
        if used + w > part {
            segments += 1;
            used = 0;
        }
        used += w;
    }
    SmsCost {
        encoding,
        units,
        segments,
        units_per_segment: part,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, encoding: Encoding, units: usize, segments: usize) {
        let c = cost(text);
        assert_eq!(
            (c.encoding, c.units, c.segments),
            (encoding, units, segments),
            "{text:?}"
        );
    }

    #[test]
    fn gsm7_boundaries() {
        check("", Encoding::Gsm7, 0, 1);
        check("Your code is 123456", Encoding::Gsm7, 19, 1);
        check(&"a".repeat(160), Encoding::Gsm7, 160, 1);
        check(&"a".repeat(161), Encoding::Gsm7, 161, 2);
        check(&"a".repeat(306), Encoding::Gsm7, 306, 2);
        check(&"a".repeat(307), Encoding::Gsm7, 307, 3);
        // Accented Latin letters of the default alphabet stay GSM-7.
        check("Código: é à ñ ü Ç Ø", Encoding::Ucs2, 19, 1); // 'ó' is not in GSM-7
        check("Code: é à ñ ü Ç Ø", Encoding::Gsm7, 17, 1);
    }

    #[test]
    fn extension_characters_cost_two_and_are_not_split() {
        check("€", Encoding::Gsm7, 2, 1);
        check(&"€".repeat(80), Encoding::Gsm7, 160, 1);
        // 152 plain septets then '€' (2) does not fit in the first 153-septet part.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        check(&text, Encoding::Gsm7, 164, 2);
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(153));
        check(&text, Encoding::Gsm7, 307, 3);
    }

    #[test]
    fn ucs2_boundaries() {
        check("رمزك هو 123456", Encoding::Ucs2, 14, 1);
        check(&"ж".repeat(70), Encoding::Ucs2, 70, 1);
        check(&"ж".repeat(71), Encoding::Ucs2, 71, 2);
        check(&"ж".repeat(134), Encoding::Ucs2, 134, 2);
        check(&"ж".repeat(135), Encoding::Ucs2, 135, 3);
        // An emoji is two UTF-16 units and is never split across parts.
        check("😀", Encoding::Ucs2, 2, 1);
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        check(&text, Encoding::Ucs2, 78, 2);
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(67));
        check(&text, Encoding::Ucs2, 135, 3);
    }
}
