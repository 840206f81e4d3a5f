//! Reading config text: YAML syntax and types (serde-saphyr), the schema version, files named
//! by the config, then the semantic checks of [`crate::validate`].

use crate::diagnostic::{Diagnostic, Diagnostics, LoadError};
use crate::source_map::{DocPath, SourceMap};
use crate::{Config, SCHEMA_VERSION, SharedConfig, SharedDocument, validate};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Reads and validates a config file. Certificate files it names are read relative to it and
/// inlined, so the result is self-contained.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, Some(path)).map_err(LoadError::Invalid)
}

/// Parses and validates config text. `file` names the source in diagnostics and is the base
/// for relative file names in it.
pub fn parse(text: &str, file: Option<&Path>) -> Result<Config, Diagnostics> {
    let fail = |items| Diagnostics {
        file: file.map(Path::to_path_buf),
        items,
    };
    let mut config: Config = typed(text).map_err(|d| fail(vec![d]))?;
    let map = SourceMap::new(text);
    let base = file.and_then(Path::parent).unwrap_or(Path::new("."));
    let mut items = inline_certificate_files(&mut config.shared, base, &map);
    if items.is_empty() {
        items = validate::config(&config, &map);
    }
    if items.is_empty() {
        Ok(config)
    } else {
        Err(fail(items))
    }
}

/// What an operator hands in: a whole config file, or only its shared part (`schema` +
/// `shared`), which is all that `tandemctl apply` and the console commit.
#[derive(Clone, Debug)]
pub enum Document {
    Full(Box<Config>),
    Shared(SharedConfig),
}

impl Document {
    pub fn shared(&self) -> &SharedConfig {
        match self {
            Document::Full(c) => &c.shared,
            Document::Shared(s) => s,
        }
    }
}

/// Parses and validates either form of [`Document`], telling them apart by the `node` key.
pub fn parse_document(text: &str, file: Option<&Path>) -> Result<Document, Diagnostics> {
    #[derive(Deserialize)]
    struct Probe {
        node: Option<serde::de::IgnoredAny>,
    }
    let has_node = serde_saphyr::from_str::<Probe>(text)
        .map(|p| p.node.is_some())
        .unwrap_or(true);
    if has_node {
        return parse(text, file).map(|c| Document::Full(Box::new(c)));
    }
    let fail = |items| Diagnostics {
        file: file.map(Path::to_path_buf),
        items,
    };
    let mut doc: SharedDocument = typed(text).map_err(|d| fail(vec![d]))?;
    let map = SourceMap::new(text);
    let base = file.and_then(Path::parent).unwrap_or(Path::new("."));
    let mut items = inline_certificate_files(&mut doc.shared, base, &map);
    if items.is_empty() {
        items = validate::shared(&doc.shared, &map);
    }
    if items.is_empty() {
        Ok(Document::Shared(doc.shared))
    } else {
        Err(fail(items))
    }
}

/// Parses and validates a stored or replicated shared document (`schema` + `shared`).
pub fn parse_shared_document(text: &str) -> Result<SharedDocument, Diagnostics> {
    let fail = |items| Diagnostics { file: None, items };
    let doc: SharedDocument = typed(text).map_err(|d| fail(vec![d]))?;
    let items = validate::shared(&doc.shared, &SourceMap::new(text));
    if items.is_empty() {
        Ok(doc)
    } else {
        Err(fail(items))
    }
}

/// Syntax, schema version and types; the first error found.
fn typed<T: DeserializeOwned>(text: &str) -> Result<T, Diagnostic> {
    check_schema(text)?;
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| from_parse_error(&e, if path == "." { "" } else { &path }))
}

/// The schema version decides how the rest is read, so it is checked first and alone.
fn check_schema(text: &str) -> Result<(), Diagnostic> {
    #[derive(Deserialize)]
    struct SchemaOnly {
        schema: Option<u32>,
    }
    let found: SchemaOnly = serde_saphyr::from_str(text).map_err(|e| from_parse_error(&e, ""))?;
    let map = SourceMap::new(text);
    let at = DocPath::root().key("schema");
    let (line, column) = map.locate(&at);
    let problem = |message: String, hint: &str| Diagnostic {
        path: at.to_string(),
        line,
        column,
        message,
        hint: hint.to_owned(),
    };
    match found.schema {
        None => Err(problem(
            "the document has no `schema` version".to_owned(),
            &format!("add `schema: {SCHEMA_VERSION}` at the top"),
        )),
        Some(SCHEMA_VERSION) => Ok(()),
        Some(v) if v > SCHEMA_VERSION => Err(problem(
            format!(
                "schema {v} was written by newer firmware; this firmware reads schema {SCHEMA_VERSION}"
            ),
            "upgrade this box's firmware, or export the config from the newer box in its previous schema",
        )),
        Some(v) => Err(problem(
            format!("schema {v} is too old for this firmware, which reads schema {SCHEMA_VERSION}"),
            "load it on firmware of the version before this one and save it again",
        )),
    }
}

fn from_parse_error(e: &serde_saphyr::Error, path: &str) -> Diagnostic {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let rendered = e.without_snippet().to_string();
    // serde-saphyr puts the position around its message; the diagnostic carries it apart.
    let mut message = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    if let Some((prefix, rest)) = message.split_once(": ")
        && prefix.starts_with("line ")
    {
        message = rest;
    }
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
    .to_owned();
    let hint = hint_for(&message);
    Diagnostic {
        path: path.to_owned(),
        line,
        column,
        message,
        hint: hint.to_owned(),
    }
}

fn hint_for(message: &str) -> &'static str {
    const HINTS: [(&str, &str); 8] = [
        (
            "unknown field",
            "remove it or correct its spelling (docs/config.md lists every setting)",
        ),
        ("missing field", "add the missing setting here"),
        ("unknown variant", "use one of the values listed"),
        (
            "socket address",
            "write an address and port like `10.0.0.10:443` or `[2001:db8::10]:443`",
        ),
        (
            "sequence",
            "write a list: `[a, b]`, or one `- item` per line",
        ),
        (
            "invalid type",
            "write a value of the expected kind (docs/config.md)",
        ),
        (
            "invalid value",
            "write a value of the expected kind (docs/config.md)",
        ),
        ("duplicate", "keep only one of the repeated keys"),
    ];
    HINTS
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map(|(_, hint)| *hint)
        .unwrap_or("fix the YAML at this position (indentation, quotes, `key: value` form)")
}

fn inline_certificate_files(
    shared: &mut SharedConfig,
    base: &Path,
    map: &SourceMap,
) -> Vec<Diagnostic> {
    let mut items = Vec::new();
    let certs = DocPath::root().key("shared").key("certificates");
    for (i, cert) in shared.certificates.iter_mut().enumerate() {
        let at = certs.index(i);
        for (file, pem, key) in [
            (cert.cert_file.take(), &mut cert.cert_pem, "cert_file"),
            (cert.key_file.take(), &mut cert.key_pem, "key_file"),
        ] {
            let Some(file) = file else { continue };
            let full: PathBuf = base.join(&file);
            match std::fs::read_to_string(&full) {
                Ok(text) if pem.is_none() => *pem = Some(text),
                Ok(_) => items.push(at_path(
                    map,
                    &at.key(key),
                    format!("both `{key}` and its inline PEM are given"),
                    "keep one of them",
                )),
                Err(e) => items.push(at_path(
                    map,
                    &at.key(key),
                    format!("cannot read `{}`: {e}", full.display()),
                    "check the file name (relative to the config file) and its permissions",
                )),
            }
        }
    }
    items
}

pub(crate) fn at_path(map: &SourceMap, path: &DocPath, message: String, hint: &str) -> Diagnostic {
    let (line, column) = map.locate(path);
    Diagnostic {
        path: path.to_string(),
        line,
        column,
        message,
        hint: hint.to_owned(),
    }
}
