//! SECURITY.md requirements 10, 11 and 20, checked over the whole
//! workspace's source:
//!
//! - every `#[instrument]` / `#[tracing::instrument]` says `skip_all`
//!   (tracing records every argument by default: a token, a key, a URL);
//! - no public type whose field holds a secret in a plain type (a field
//!   named like a password, passphrase, secret, token, PEM, private key,
//!   credential, URL or route, typed `String`, `Vec<u8>`, `[u8; N]`, ...)
//!   derives `Debug`: such a type needs a hand-written, redacting `Debug`
//!   (or the secret needs a `secrecy` type, whose `Debug` is redacted).
//!
//! The source is parsed with `syn`, so attributes spread over lines and
//! nested modules are seen. Self-tests prove each check can fail.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Field names (fragments, lower case) that suggest a secret.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "token",
    "pem",
    "private",
    "credential",
    "url",
    "uri",
    "dsn",
    "route",
];

/// Field names that match [`SECRET_NAMES`] but are public by definition:
/// an OAuth redirect URI is registered at the IdP and shown in the
/// browser's address bar (RFC 6749 §3.1.2), so it may be printed.
const PUBLIC_NAMES: &[&str] = &["redirect_uri"];

/// Types whose `Debug` prints their content.
const PLAIN_TYPES: &[&str] = &[
    "String",
    "str",
    "Vec",
    "u8",
    "Box",
    "Cow",
    "Zeroizing",
    "Bytes",
];

/// Where one finding is.
#[derive(Debug)]
struct Finding {
    file: PathBuf,
    what: String,
}

struct Guard<'a> {
    file: &'a Path,
    findings: Vec<Finding>,
}

impl Guard<'_> {
    fn flag(&mut self, what: String) {
        self.findings.push(Finding {
            file: self.file.to_owned(),
            what,
        });
    }

    /// True if `attrs` derive `Debug`.
    fn derives_debug(attrs: &[syn::Attribute]) -> bool {
        attrs.iter().any(|a| {
            a.path().is_ident("derive")
                && matches!(&a.meta, syn::Meta::List(l) if l.tokens.to_string().split([',', ' ', ':']).any(|t| t == "Debug"))
        })
    }

    /// The identifiers a type is made of (`Option<Vec<u8>>` → Option, Vec, u8).
    fn type_words(ty: &syn::Type) -> Vec<String> {
        let text = quote_type(ty);
        text.split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn check_fields(&mut self, owner: &str, fields: &syn::Fields) {
        for (i, field) in fields.iter().enumerate() {
            // A tuple field is named after its variant or struct
            // (`Passphrase(String)`).
            let name = field.ident.as_ref().map_or_else(
                || format!("{}.{i}", owner.rsplit("::").next().unwrap_or(owner)),
                ToString::to_string,
            );
            let lower = name.to_lowercase();
            if !SECRET_NAMES.iter().any(|s| lower.contains(s))
                || PUBLIC_NAMES.iter().any(|p| lower.contains(p))
            {
                continue;
            }
            let words = Self::type_words(&field.ty);
            if words.iter().any(|w| PLAIN_TYPES.contains(&w.as_str())) {
                self.flag(format!(
                    "pub {owner} derives Debug and its field `{name}` holds a secret in a plain type ({})",
                    words.join(" ")
                ));
            }
        }
    }
}

/// A type as text, without needing `syn`'s printing feature.
fn quote_type(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .iter()
            .map(|s| {
                let args = match &s.arguments {
                    syn::PathArguments::AngleBracketed(a) => a
                        .args
                        .iter()
                        .map(|arg| match arg {
                            syn::GenericArgument::Type(t) => quote_type(t),
                            _ => String::new(),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                };
                format!("{}<{args}>", s.ident)
            })
            .collect::<Vec<_>>()
            .join("::"),
        syn::Type::Reference(r) => quote_type(&r.elem),
        syn::Type::Array(a) => format!("[{}]", quote_type(&a.elem)),
        syn::Type::Slice(s) => format!("[{}]", quote_type(&s.elem)),
        syn::Type::Tuple(t) => t.elems.iter().map(quote_type).collect::<Vec<_>>().join(","),
        syn::Type::Paren(p) => quote_type(&p.elem),
        syn::Type::Group(g) => quote_type(&g.elem),
        _ => "?".to_owned(),
    }
}

impl<'ast> Visit<'ast> for Guard<'_> {
    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        let is_instrument = attr
            .path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "instrument");
        if is_instrument {
            let skips_all = match &attr.meta {
                syn::Meta::List(l) => l
                    .tokens
                    .to_string()
                    .split([',', ' ', '(', ')'])
                    .any(|t| t == "skip_all"),
                _ => false,
            };
            if !skips_all {
                self.flag("an #[instrument] without skip_all".to_owned());
            }
        }
        syn::visit::visit_attribute(self, attr);
    }

    fn visit_item_struct(&mut self, item: &'ast syn::ItemStruct) {
        if matches!(item.vis, syn::Visibility::Public(_)) && Self::derives_debug(&item.attrs) {
            self.check_fields(&item.ident.to_string(), &item.fields);
        }
        syn::visit::visit_item_struct(self, item);
    }

    fn visit_item_enum(&mut self, item: &'ast syn::ItemEnum) {
        if matches!(item.vis, syn::Visibility::Public(_)) && Self::derives_debug(&item.attrs) {
            for variant in &item.variants {
                self.check_fields(
                    &format!("{}::{}", item.ident, variant.ident),
                    &variant.fields,
                );
            }
        }
        syn::visit::visit_item_enum(self, item);
    }
}

/// Findings in one source text.
fn scan_source(file: &Path, text: &str) -> Vec<Finding> {
    let parsed =
        syn::parse_file(text).unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
    let mut guard = Guard {
        file,
        findings: Vec::new(),
    };
    guard.visit_file(&parsed);
    guard.findings
}

/// Every `.rs` file of the workspace (and the fuzz crate), build output excluded.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "corpus" && name != "artifacts"
            {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn workspace_has_no_instrument_without_skip_all_and_no_debug_secret() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut findings = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        findings.extend(scan_source(file.strip_prefix(root).unwrap(), &text));
    }
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings
            .iter()
            .map(|f| format!("{}: {}", f.file.display(), f.what))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The guard finds what it looks for (so the test above can fail).
#[test]
fn guard_catches_what_it_looks_for() {
    let bad = r#"
        mod inner {
            #[tracing::instrument(name = "x", fields(a = 1))]
            async fn leaks(token: &str) {}
            #[instrument]
            fn bare() {}
            #[tracing::instrument(
                skip_all,
                name = "fine"
            )]
            fn fine(token: &str) {}
        }
        #[derive(Debug, Clone)]
        pub struct Options { pub route: String, pub max: u64 }
        #[derive(Clone, Debug)]
        pub enum Source { Passphrase(String), Key { key_id: u32 } }
        #[derive(Debug)]
        pub struct Safe { pub refresh_token: SecretString, pub jti: String }
        #[derive(Debug)]
        struct Private { password: String }
        #[derive(Debug)]
        pub struct Login { pub redirect_uri: String, pub jwks_uri: String }
    "#;
    let findings = scan_source(Path::new("bad.rs"), bad);
    let text: Vec<&str> = findings.iter().map(|f| f.what.as_str()).collect();
    assert_eq!(
        text.iter()
            .filter(|t| t.contains("without skip_all"))
            .count(),
        2,
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("Options") && t.contains("route")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("Source::Passphrase")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("Login") && t.contains("jwks_uri")),
        "{text:?}"
    );
    assert!(
        !text.iter().any(|t| t.contains("`redirect_uri`")),
        "{text:?}"
    );
    assert_eq!(findings.len(), 5, "{text:?}");
}
