//! Plural selection done by veriflow, before Fluent formats.
//!
//! A select on a number (`{ $minutes -> [few] … *[other] … }`, or on
//! `NUMBER($minutes, …)`) is decided here, with [`super::plural`]'s CLDR
//! rules and the number as [`super::numbers`] writes it, and the selector is
//! replaced by what was decided: the exact numeric key when one matches
//! (`[0]`), else the category's name, which Fluent matches by string. Fluent
//! then only picks the variant. Everything else is Fluent's.

use fluent::FluentArgs;
use fluent::FluentValue;
use fluent::types::{FluentNumber, FluentNumberOptions};
use fluent_syntax::ast::{self, Expression, InlineExpression, Pattern, PatternElement, VariantKey};
use unic_langid::LanguageIdentifier;

use super::numbers::plain_decimal;
use super::plural::{Operands, cardinal, name};

/// Placeables may nest this deep in a source (shipped texts use 2): parsers
/// and resolvers recurse, and must be bounded by the input, not the stack.
pub const MAX_DEPTH: usize = 8;

/// The deepest nesting of `{ }` in Fluent `source` (string literals inside
/// placeables may hold braces).
pub fn depth(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' => {
                depth += 1;
                max = max.max(depth);
            }
            '}' => depth = depth.saturating_sub(1),
            '"' if depth > 0 => {
                // A string literal runs to the next unescaped quote (or line end).
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    max
}

/// `source` with the selects of message `id` decided for `args` in
/// `locale`; `None` when nothing needed deciding (or it does not parse:
/// the caller's own parse reports that).
pub fn decide(
    source: &str,
    id: &str,
    locale: &LanguageIdentifier,
    args: &FluentArgs,
) -> Option<String> {
    let mut resource = fluent_syntax::parser::parse(source.to_owned()).ok()?;
    let mut changed = false;
    for entry in &mut resource.body {
        if let ast::Entry::Message(m) = entry
            && m.id.name == id
            && let Some(pattern) = &mut m.value
        {
            changed |= pattern_selects(pattern, locale, args);
        }
    }
    changed.then(|| fluent_syntax::serializer::serialize(&resource))
}

fn pattern_selects(
    pattern: &mut Pattern<String>,
    locale: &LanguageIdentifier,
    args: &FluentArgs,
) -> bool {
    let mut changed = false;
    for element in &mut pattern.elements {
        if let PatternElement::Placeable { expression } = element {
            changed |= expression_selects(expression, locale, args);
        }
    }
    changed
}

fn expression_selects(
    expression: &mut Expression<String>,
    locale: &LanguageIdentifier,
    args: &FluentArgs,
) -> bool {
    match expression {
        Expression::Select { selector, variants } => {
            let mut changed = false;
            if let Some(number) = selected_number(selector, args) {
                *selector = decided(&number, variants, locale);
                changed = true;
            }
            for v in variants {
                changed |= pattern_selects(&mut v.value, locale, args);
            }
            changed
        }
        Expression::Inline(InlineExpression::Placeable { expression }) => {
            expression_selects(expression, locale, args)
        }
        Expression::Inline(_) => false,
    }
}

/// The number a selector selects on: a numeric variable, `NUMBER()` of one
/// (with its options), or a number literal.
fn selected_number(selector: &InlineExpression<String>, args: &FluentArgs) -> Option<FluentNumber> {
    match selector {
        InlineExpression::VariableReference { id } => match args.get(&id.name)? {
            FluentValue::Number(n) => Some(n.clone()),
            _ => None,
        },
        InlineExpression::NumberLiteral { value } => value.parse().ok(),
        InlineExpression::FunctionReference { id, arguments } if id.name == "NUMBER" => {
            let mut n = selected_number(arguments.positional.first()?, args)?;
            n.options = options(&n.options, &arguments.named);
            Some(n)
        }
        _ => None,
    }
}

/// `NUMBER()`'s digit options, over the value's own.
fn options(
    base: &FluentNumberOptions,
    named: &[ast::NamedArgument<String>],
) -> FluentNumberOptions {
    let mut o = base.clone();
    for arg in named {
        let value = match &arg.value {
            InlineExpression::NumberLiteral { value } => value.parse::<usize>().ok(),
            _ => None,
        };
        match arg.name.name.as_str() {
            "minimumFractionDigits" => o.minimum_fraction_digits = value,
            "maximumFractionDigits" => o.maximum_fraction_digits = value,
            "minimumIntegerDigits" => o.minimum_integer_digits = value,
            _ => {}
        }
    }
    o
}

/// The selector that makes Fluent pick what CLDR says.
fn decided(
    number: &FluentNumber,
    variants: &[ast::Variant<String>],
    locale: &LanguageIdentifier,
) -> InlineExpression<String> {
    let Some(plain) = plain_decimal(number) else {
        return InlineExpression::StringLiteral {
            value: "other".into(),
        };
    };
    let value: f64 = plain.parse().unwrap_or(number.value);
    for v in variants {
        if let VariantKey::NumberLiteral { value: key } = &v.key
            && key.parse::<f64>().ok() == Some(value)
        {
            return InlineExpression::NumberLiteral { value: key.clone() };
        }
    }
    let category = Operands::of(&plain).map_or("other", |op| name(cardinal(locale, &op)));
    InlineExpression::StringLiteral {
        value: category.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_placeables_not_braces_in_strings() {
        assert_eq!(depth("a = b"), 0);
        assert_eq!(depth("a = { $x -> [one] { $x } *[other] x }"), 2);
        assert_eq!(depth(r#"a = { "{{{" }"#), 1);
        assert_eq!(depth(r#"a = { "\"{" }"#), 1);
        assert_eq!(
            depth(&format!("a = {}{}", "{".repeat(500), "}".repeat(500))),
            500
        );
    }
}
