//! The shipped Fluent messages and rendering with tenant overrides.
//!
//! Each service (`login`, `signup`, …) is one Fluent message of that name in
//! `locales/<locale>/sms.ftl`. Rendering walks the negotiated chain of locales
//! (request → … → `en`) and uses, at each step, the tenant's override if it has
//! one, else the shipped message; the first locale that has the message wins, so
//! a missing translation falls back instead of showing a key. Bidi isolation marks
//! are off: they would turn every text into UCS-2 and cost segments.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use fluent::concurrent::FluentBundle;
use fluent::{FluentArgs, FluentError, FluentResource};
use fluent_langneg::{NegotiationStrategy, negotiate_languages};
use fluent_syntax::ast;
use unic_langid::LanguageIdentifier;

use super::negotiate::{Preferences, Range};
use super::{numbers, select};

type Bundle = FluentBundle<Arc<FluentResource>>;

/// The built-in locales, embedded so the binary works from any directory.
const BUILTIN: [(&str, &str); 5] = [
    ("en", include_str!("../../../locales/en/sms.ftl")),
    ("es", include_str!("../../../locales/es/sms.ftl")),
    ("fr", include_str!("../../../locales/fr/sms.ftl")),
    ("pt", include_str!("../../../locales/pt/sms.ftl")),
    ("ar", include_str!("../../../locales/ar/sms.ftl")),
];

pub const DEFAULT_LOCALE: &str = "en";
const MAX_OVERRIDE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// No locale in the chain has the message, shipped or overridden.
    UnknownService {
        service: String,
        available: Vec<String>,
    },
    /// The message needs variables the request did not give.
    MissingVariables(Vec<String>),
    /// Any other resolution error (a tenant override referencing an unknown term).
    Format(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ltr,
    Rtl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Shipped with veriflow (`locales/`).
    Shipped,
    /// The tenant's override.
    Tenant,
}

#[derive(Debug)]
pub struct Rendered {
    pub text: String,
    pub locale: LanguageIdentifier,
    pub direction: Direction,
    pub origin: Origin,
}

struct Locale {
    source: String,
    resource: Arc<FluentResource>,
    bundle: Bundle,
    services: BTreeSet<String>,
}

pub struct Catalog {
    locales: BTreeMap<LanguageIdentifier, Locale>,
    default: LanguageIdentifier,
}

impl Catalog {
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::from_sources(
            BUILTIN
                .iter()
                .map(|(l, s)| (l.to_string(), format!("locales/{l}/sms.ftl"), s.to_string()))
                .collect(),
        )
    }

    /// Loads `<dir>/<locale>/sms.ftl` for every locale directory; `en` must be there.
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let read_err = |path: &Path, source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
            let entry = entry.map_err(|e| read_err(dir, e))?;
            let file = entry.path().join("sms.ftl");
            if !file.is_file() {
                continue;
            }
            let locale = entry.file_name().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&file).map_err(|e| read_err(&file, e))?;
            sources.push((locale, file.display().to_string(), text));
        }
        Catalog::from_sources(sources)
    }

    fn from_sources(sources: Vec<(String, String, String)>) -> Result<Catalog, CatalogError> {
        let mut locales = BTreeMap::new();
        for (locale, path, text) in sources {
            let invalid = |message: String| CatalogError::Invalid {
                path: path.clone(),
                message,
            };
            let id: LanguageIdentifier = locale
                .parse()
                .map_err(|_| invalid(format!("{locale:?} is not a BCP 47 locale")))?;
            let resource = parse(&text).map_err(|errors| invalid(errors.join("; ")))?;
            let services = message_ids(&resource);
            let mut bundle = new_bundle(&id);
            bundle
                .add_resource(resource.clone())
                .map_err(|e| invalid(fluent_errors(&e).join("; ")))?;
            locales.insert(
                id,
                Locale {
                    source: text,
                    resource,
                    bundle,
                    services,
                },
            );
        }
        let default: LanguageIdentifier = DEFAULT_LOCALE.parse().unwrap_or_default();
        if !locales.contains_key(&default) {
            return Err(CatalogError::Invalid {
                path: "locales".into(),
                message: format!("the fallback locale {DEFAULT_LOCALE:?} is missing"),
            });
        }
        Ok(Catalog { locales, default })
    }

    pub fn locales(&self) -> Vec<String> {
        self.locales.keys().map(|l| l.to_string()).collect()
    }

    /// Every shipped service and the locales that have it.
    pub fn services(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (locale, l) in &self.locales {
            for service in &l.services {
                out.entry(service.clone())
                    .or_default()
                    .push(locale.to_string());
            }
        }
        out
    }

    /// The shipped Fluent text of one message (its lines in the .ftl file).
    pub fn shipped_source(&self, service: &str, locale: &LanguageIdentifier) -> Option<String> {
        let l = self.locales.get(locale)?;
        if !l.services.contains(service) {
            return None;
        }
        message_source(&l.source, service)
    }

    /// The fallback chain for what the requester accepts: best matches first,
    /// in the order of preference, refused languages left out, the default
    /// locale last (always: a text must be sent). `extra` are locales the
    /// tenant has overrides in.
    pub fn negotiate(
        &self,
        preferences: &Preferences,
        extra: &[LanguageIdentifier],
    ) -> Vec<LanguageIdentifier> {
        let mut available: Vec<LanguageIdentifier> = self.locales.keys().cloned().collect();
        for l in extra {
            if !available.contains(l) {
                available.push(l.clone());
            }
        }
        available.retain(|l| !preferences.refuses(l));
        let mut chain: Vec<LanguageIdentifier> = Vec::new();
        for range in &preferences.accepted {
            let matched: Vec<LanguageIdentifier> = match range {
                Range::Language(l) => negotiate_languages(
                    std::slice::from_ref(l),
                    &available,
                    None,
                    NegotiationStrategy::Filtering,
                )
                .into_iter()
                .cloned()
                .collect(),
                // Any language not named: the default first, then the rest.
                Range::Any => {
                    let mut any: Vec<LanguageIdentifier> = available
                        .iter()
                        .filter(|a| {
                            !preferences.accepted.iter().any(
                                |r| matches!(r, Range::Language(l) if l.language == a.language),
                            )
                        })
                        .cloned()
                        .collect();
                    any.sort_by_key(|l| *l != self.default);
                    any
                }
            };
            for l in matched {
                if !chain.contains(&l) {
                    chain.push(l);
                }
            }
        }
        if !chain.contains(&self.default) {
            chain.push(self.default.clone());
        }
        chain
    }

    /// Renders `service` along `chain`, preferring the tenant's overrides
    /// (`(locale, Fluent source)`) at each step.
    pub fn render(
        &self,
        service: &str,
        chain: &[LanguageIdentifier],
        overrides: &[(LanguageIdentifier, String)],
        args: &FluentArgs,
    ) -> Result<Rendered, RenderError> {
        for locale in chain {
            if let Some((_, source)) = overrides.iter().find(|(l, _)| l == locale) {
                let decided = select::decide(source, service, locale, args);
                let bundle = self
                    .override_bundle(locale, decided.as_deref().unwrap_or(source))
                    .map_err(RenderError::Format)?;
                if bundle.has_message(service) {
                    return format(&bundle, service, args).map(|text| Rendered {
                        text,
                        locale: locale.clone(),
                        direction: direction(locale),
                        origin: Origin::Tenant,
                    });
                }
            }
            if let Some(l) = self.locales.get(locale)
                && l.services.contains(service)
            {
                let decided = match select::decide(&l.source, service, locale, args) {
                    Some(source) => {
                        let mut bundle = new_bundle(locale);
                        let resource = parse(&source).map_err(RenderError::Format)?;
                        bundle
                            .add_resource(resource)
                            .map_err(|e| RenderError::Format(fluent_errors(&e)))?;
                        Some(bundle)
                    }
                    None => None,
                };
                let bundle = decided.as_ref().unwrap_or(&l.bundle);
                return format(bundle, service, args).map(|text| Rendered {
                    text,
                    locale: locale.clone(),
                    direction: direction(locale),
                    origin: Origin::Shipped,
                });
            }
        }
        Err(RenderError::UnknownService {
            service: service.to_string(),
            available: self.services().into_keys().collect(),
        })
    }

    /// Checks a tenant override: valid Fluent, at most 4 KiB, defining the message
    /// `service` (with a value) and no other message, and rendering with sample
    /// variables without unknown references.
    pub fn validate_override(
        &self,
        service: &str,
        locale: &LanguageIdentifier,
        source: &str,
    ) -> Result<(), Vec<String>> {
        if source.len() > MAX_OVERRIDE_BYTES {
            return Err(vec![format!(
                "the override is {} bytes; at most {MAX_OVERRIDE_BYTES} are allowed",
                source.len()
            )]);
        }
        let resource = parse(source)?;
        let ids = message_ids(&resource);
        let mut errors = Vec::new();
        if !ids.contains(service) {
            errors.push(format!(
                "the source does not define the message `{service}`"
            ));
        }
        for other in ids.iter().filter(|id| *id != service) {
            errors.push(format!(
                "the source defines message `{other}`; an override of `{service}` may only \
                 define `{service}` (and terms)"
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let bundle = self.override_bundle(locale, source)?;
        let Some(message) = bundle.get_message(service) else {
            return Err(vec![format!("message `{service}` is missing")]);
        };
        let Some(pattern) = message.value() else {
            return Err(vec![format!(
                "message `{service}` has no value, only attributes"
            )]);
        };
        let mut sample = FluentArgs::new();
        sample.set("code", "123456");
        sample.set("app_name", "App");
        sample.set("minutes", 10);
        let mut format_errors = Vec::new();
        bundle.format_pattern(pattern, Some(&sample), &mut format_errors);
        let unknown: Vec<String> = format_errors
            .iter()
            .filter(|e| variable_name(e).is_none())
            .map(|e| e.to_string())
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(unknown)
        }
    }

    /// The shipped resource of `locale` (for its terms) with the override on top.
    fn override_bundle(
        &self,
        locale: &LanguageIdentifier,
        source: &str,
    ) -> Result<Bundle, Vec<String>> {
        let resource = parse(source)?;
        let mut bundle = new_bundle(locale);
        if let Some(shipped) = self.locales.get(locale) {
            bundle
                .add_resource(shipped.resource.clone())
                .map_err(|e| fluent_errors(&e))?;
        }
        bundle.add_resource_overriding(resource);
        Ok(bundle)
    }
}

fn new_bundle(locale: &LanguageIdentifier) -> Bundle {
    let mut bundle = FluentBundle::new_concurrent(vec![locale.clone()]);
    bundle.set_use_isolating(false);
    bundle.set_formatter(Some(numbers::format_value));
    bundle
}

fn parse(source: &str) -> Result<Arc<FluentResource>, Vec<String>> {
    let depth = select::depth(source);
    if depth > select::MAX_DEPTH {
        return Err(vec![format!(
            "placeables nest {depth} deep; at most {} are allowed",
            select::MAX_DEPTH
        )]);
    }
    match FluentResource::try_new(source.to_string()) {
        Ok(resource) => Ok(Arc::new(resource)),
        Err((_, errors)) => Err(errors
            .iter()
            .map(|e| {
                let line = source[..e.pos.start.min(source.len())]
                    .matches('\n')
                    .count()
                    + 1;
                format!("line {line}: {e}")
            })
            .collect()),
    }
}

fn message_ids(resource: &FluentResource) -> BTreeSet<String> {
    resource
        .entries()
        .filter_map(|entry| match entry {
            ast::Entry::Message(m) => Some(m.id.name.to_string()),
            _ => None,
        })
        .collect()
}

fn format(bundle: &Bundle, service: &str, args: &FluentArgs) -> Result<String, RenderError> {
    let pattern = bundle
        .get_message(service)
        .and_then(|m| m.value())
        .ok_or_else(|| RenderError::Format(vec![format!("message `{service}` has no value")]))?;
    let mut errors = Vec::new();
    let text: Cow<str> = bundle.format_pattern(pattern, Some(args), &mut errors);
    if errors.is_empty() {
        return Ok(text.into_owned());
    }
    if errors.iter().all(|e| variable_name(e).is_some()) {
        let missing: BTreeSet<String> = errors.iter().filter_map(variable_name).collect();
        Err(RenderError::MissingVariables(missing.into_iter().collect()))
    } else {
        Err(RenderError::Format(fluent_errors(&errors)))
    }
}

/// The variable an "unknown variable" error names.
fn variable_name(error: &FluentError) -> Option<String> {
    use fluent::resolver::errors::{ReferenceKind, ResolverError};
    match error {
        FluentError::ResolverError(ResolverError::Reference(ReferenceKind::Variable { id })) => {
            Some(id.clone())
        }
        _ => None,
    }
}

fn fluent_errors(errors: &[FluentError]) -> Vec<String> {
    errors.iter().map(|e| e.to_string()).collect()
}

pub fn direction(locale: &LanguageIdentifier) -> Direction {
    match locale.character_direction() {
        unic_langid::CharacterDirection::RTL => Direction::Rtl,
        _ => Direction::Ltr,
    }
}

/// The lines of message `id` in a Fluent source: its `id =` line and the
/// indented continuation lines after it.
fn message_source(source: &str, id: &str) -> Option<String> {
    let mut lines = source.lines();
    let first = lines.find(|l| {
        l.strip_prefix(id)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })?;
    let mut out = vec![first];
    for line in lines {
        if line.is_empty() || line.starts_with(' ') {
            out.push(line);
        } else {
            break;
        }
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    Some(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lid(s: &str) -> LanguageIdentifier {
        s.parse().unwrap()
    }

    fn args(minutes: i64) -> FluentArgs<'static> {
        let mut a = FluentArgs::new();
        a.set("code", "012345");
        a.set("app_name", "Acme");
        a.set("minutes", minutes);
        a
    }

    #[test]
    fn builtin_catalog_has_every_service_in_every_locale() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.locales(), ["ar", "en", "es", "fr", "pt"]);
        let services = c.services();
        assert_eq!(
            services.keys().collect::<Vec<_>>(),
            ["login", "password-reset", "signup", "transaction", "verify"]
        );
        for locales in services.values() {
            assert_eq!(locales.len(), 5);
        }
    }

    #[test]
    fn negotiation_chains_end_in_english() {
        let c = Catalog::builtin().unwrap();
        let chain = |header: &str| {
            c.negotiate(&super::super::negotiate::parse(header), &[])
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(chain("pt-BR"), ["pt", "en"]);
        assert_eq!(chain("de-DE"), ["en"]);
        assert_eq!(chain("es-MX, fr"), ["es", "fr", "en"]);
        assert_eq!(chain(""), ["en"]);
        assert_eq!(chain("fr;q=0.2, es;q=0.8"), ["es", "fr", "en"], "q orders");
        assert_eq!(
            chain("fr;q=0, *"),
            ["en", "ar", "es", "pt"],
            "q=0 refuses, * takes the rest"
        );
        assert_eq!(
            chain("fr-CA;q=0.9, fr;q=0"),
            ["en"],
            "a refused language matches nothing"
        );
        assert_eq!(
            chain("ar, en;q=0"),
            ["ar", "en"],
            "the default stays the last resort"
        );
    }

    #[test]
    fn message_source_takes_continuation_lines() {
        let c = Catalog::builtin().unwrap();
        let src = c.shipped_source("verify", &lid("en")).unwrap();
        assert!(src.starts_with("verify = "), "{src}");
        assert!(src.ends_with("    }."), "{src}");
        assert_eq!(src.lines().count(), 4);
        let ftl = "a = x\n    continued\n\nb = y\n";
        assert_eq!(message_source(ftl, "a").unwrap(), "a = x\n    continued");
        assert_eq!(message_source(ftl, "b").unwrap(), "b = y");
        assert!(message_source(ftl, "c").is_none());
    }

    #[test]
    fn missing_variables_are_named() {
        let c = Catalog::builtin().unwrap();
        let mut a = FluentArgs::new();
        a.set("code", "1");
        let err = c.render("verify", &[lid("en")], &[], &a).unwrap_err();
        assert_eq!(
            err,
            RenderError::MissingVariables(vec!["app_name".into(), "minutes".into()])
        );
        let ok = c.render("verify", &[lid("en")], &[], &args(10)).unwrap();
        assert_eq!(
            ok.text,
            "Acme: your verification code is 012345. It expires in 10 minutes."
        );
    }

    fn minutes(locale: &str, n: f64) -> String {
        let c = Catalog::builtin().unwrap();
        let mut a = FluentArgs::new();
        a.set("code", "012345");
        a.set("app_name", "Acme");
        a.set("minutes", n);
        c.render("verify", &[lid(locale)], &[], &a).unwrap().text
    }

    #[test]
    fn shipped_texts_take_cldrs_plural_form_and_the_locales_digits() {
        // 103 is `few` in Arabic (n % 100 = 3..10), 111 `many`, 100 `other`.
        assert!(
            minutes("ar", 103.0).contains("١٠٣ دقائق"),
            "{}",
            minutes("ar", 103.0)
        );
        assert!(
            minutes("ar", 111.0).contains("١١١ دقيقة"),
            "{}",
            minutes("ar", 111.0)
        );
        assert!(minutes("ar", 2.0).contains("دقيقتين"));
        assert!(minutes("ar", 0.0).contains("أقل من دقيقة"));
        assert!(
            minutes("ar", 2.5).contains("٢٫٥ دقيقة"),
            "2.5 is `other`: {}",
            minutes("ar", 2.5)
        );
        // French: 1,5 is singular (i = 1), written with a comma.
        assert!(
            minutes("fr", 1.5).contains("1,5 minute."),
            "{}",
            minutes("fr", 1.5)
        );
        assert!(minutes("fr", 2.0).contains("2 minutes"));
        assert!(
            minutes("es", 1.5).contains("1,5 minutos"),
            "{}",
            minutes("es", 1.5)
        );
        assert!(
            minutes("pt", 1.0).contains("1 minuto"),
            "{}",
            minutes("pt", 1.0)
        );
        assert!(
            minutes("en", 1.5).contains("1.5 minutes"),
            "{}",
            minutes("en", 1.5)
        );
        assert!(
            minutes("en", 1.0).contains("1 minute."),
            "{}",
            minutes("en", 1.0)
        );
        // The code is text: never localized.
        assert!(minutes("ar", 10.0).contains("012345"));
    }

    #[test]
    fn overrides_select_on_numbers_and_number_options_too() {
        let c = Catalog::builtin().unwrap();
        let source = "verify = { NUMBER($minutes, minimumFractionDigits: 1) ->\n    [0] now\n    [one] { NUMBER($minutes, minimumFractionDigits: 1) } minute\n   *[other] { $minutes } minutes\n}";
        assert_eq!(c.validate_override("verify", &lid("en"), source), Ok(()));
        let render = |n: f64| {
            let mut a = FluentArgs::new();
            a.set("minutes", n);
            c.render(
                "verify",
                &[lid("en")],
                &[(lid("en"), source.to_owned())],
                &a,
            )
            .unwrap()
            .text
        };
        assert_eq!(render(0.0), "now", "an exact numeric key wins");
        // 1.0 has a visible fraction digit: `other` in English.
        assert_eq!(render(1.0), "1 minutes");
        assert_eq!(render(3.0), "3 minutes");
    }

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("verify = ".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just(" $minutes ".to_owned()),
                Just(" -> ".to_owned()),
                Just("\n  [one] x\n".to_owned()),
                Just("\n *[other] y\n".to_owned()),
                Just("-term = t\n".to_owned()),
                Just("{ -term }".to_owned()),
                Just("\"\\u0000{\"".to_owned()),
                Just("NUMBER(".to_owned()),
                Just(")".to_owned()),
                "\\PC{0,4}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1500))]

            /// Any source up to the override limit is accepted or refused
            /// with reasons; an accepted one renders with any number.
            #[test]
            fn any_override_validates_or_is_refused_never_panics(
                pieces in prop::collection::vec(piece(), 0..200),
                n in prop_oneof![Just(f64::MAX), Just(-0.0), -1e18f64..1e18],
            ) {
                let c = Catalog::builtin().unwrap();
                let source: String = pieces.concat().chars().take(4096).collect();
                if c.validate_override("verify", &lid("ar"), &source).is_ok() {
                    let mut a = FluentArgs::new();
                    a.set("minutes", n);
                    a.set("code", "1");
                    a.set("app_name", "A");
                    let _ = c.render("verify", &[lid("ar")], &[(lid("ar"), source)], &a);
                }
            }

            /// Nesting of any depth within 4 KiB is refused past the limit
            /// before any parser recurses into it.
            #[test]
            fn deep_placeables_are_refused(depth in 1usize..2000) {
                let c = Catalog::builtin().unwrap();
                let source = format!("verify = {}$minutes{}", "{ ".repeat(depth), " }".repeat(depth));
                let result = c.validate_override("verify", &lid("en"), &source);
                if depth > select::MAX_DEPTH {
                    prop_assert!(result.is_err());
                }
            }
        }
    }
}
