//! Finding, reading and merging configuration: file, then `TURINGWATCH_<SECTION>_<KEY>` overrides.
//!
//! Order of precedence for the file: `--config PATH`, else `$TURINGWATCH_CONFIG`, else
//! `/etc/turingwatch/turingwatch.toml` if it exists, else built-in defaults. Environment overrides
//! are applied on top, one key at a time, so an error names the variable that caused it.

use crate::model::Config;
use crate::validate::{validate, Problem};
use crate::ConfigError;
use std::path::{Path, PathBuf};

/// The system-wide config file, read when nothing else is named.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/turingwatch/turingwatch.toml";

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "TURINGWATCH_";

/// Sections that environment variables may override (`TURINGWATCH_<SECTION>_<KEY>`).
pub const SECTIONS: &[&str] = &[
    "store",
    "slurm",
    "accounting",
    "scrape",
    "distributor",
    "ingest",
    "analysis",
    "findings",
    "mail",
    "web",
    "gpu",
    "energy",
    "log",
];

/// Where the effective configuration came from, for `turingwatch config` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file (named by flag, by `$TURINGWATCH_CONFIG`, or the system path).
    File(PathBuf),
    /// No file: built-in defaults.
    Defaults,
}

/// A loaded, validated configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub source: Source,
    /// Environment variables that overrode file values.
    pub overrides: Vec<String>,
}

/// Decides which file to read: the flag, else `$TURINGWATCH_CONFIG`, else the system file if present.
pub fn resolve_path(flag: Option<&Path>, env_value: Option<String>) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(path.to_path_buf());
    }
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(value));
    }
    let system = Path::new(SYSTEM_CONFIG_PATH);
    system.exists().then(|| system.to_path_buf())
}

/// Loads the configuration as the binary does: file resolution, environment overrides, validation.
pub fn load(flag: Option<&Path>) -> Result<Loaded, ConfigError> {
    let path = resolve_path(flag, std::env::var("TURINGWATCH_CONFIG").ok());
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_from(path.as_deref(), &vars)
}

/// Loads from an explicit file (or none) and an explicit environment; pure apart from reading the file.
pub fn load_from(path: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            load_text(Some((&text, path)), env)
        }
        None => load_text(None, env),
    }
}

/// Loads from config text (named by `path` in messages) and an environment. Pure.
pub fn load_text(file: Option<(&str, &Path)>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let (mut table, source) = match file {
        Some((text, path)) => (parse_file_text(text, path)?, Source::File(path.to_path_buf())),
        None => (toml::Table::new(), Source::Defaults),
    };
    let overrides = apply_env(&mut table, env)?;
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|err: toml::de::Error| ConfigError::Invalid(vec![Problem::new("", "", err.message().to_string())]))?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(Loaded { config, source, overrides })
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Parses the file text, checking it against the model so that errors carry a line number.
fn parse_file_text(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    let located = |err: toml::de::Error| {
        let line = err.span().map(|span| line_of(text, span.start));
        let snippet = line.and_then(|l| text.lines().nth(l - 1)).map(|s| s.trim().to_string());
        ConfigError::Parse { path: path.to_path_buf(), line, message: err.message().trim().to_string(), snippet }
    };
    // Parse once into the typed model: unknown keys and wrong types are found with their spans.
    toml::from_str::<Config>(text).map_err(located)?;
    toml::from_str::<toml::Table>(text).map_err(located)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Applies `TURINGWATCH_<SECTION>_<KEY>=value` variables; returns the names applied.
///
/// A value is read as a TOML value when it parses as one (`5`, `true`, `["a", "b"]`), else as a
/// string. For list keys a plain string is split on commas (`TURINGWATCH_WEB_ADMINS=alice,bob`).
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<Vec<String>, ConfigError> {
    let mut applied = Vec::new();
    let mut sorted: Vec<&(String, String)> = env.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let Some(section) = SECTIONS.iter().find(|s| lower.starts_with(&format!("{s}_"))) else {
            continue;
        };
        let key = &lower[section.len() + 1..];
        let parsed = env_value(section, key, value);
        // Check this one override alone against the model so the error names the variable.
        let mut single = toml::Table::new();
        let mut inner = toml::Table::new();
        inner.insert(key.to_string(), parsed.clone());
        single.insert(section.to_string(), toml::Value::Table(inner));
        if let Err(err) = toml::Value::Table(single).try_into::<Config>() {
            return Err(ConfigError::Env { var: name.clone(), message: err.message().trim().to_string() });
        }
        let entry = table.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(section_table) = entry {
            section_table.insert(key.to_string(), parsed);
        }
        applied.push(name.clone());
    }
    Ok(applied)
}

fn env_value(section: &str, key: &str, value: &str) -> toml::Value {
    let is_list = default_is_list(section, key);
    if let Ok(mut table) = format!("v = {value}").parse::<toml::Table>() {
        if let Some(v) = table.remove("v") {
            if !is_list || v.is_array() {
                return v;
            }
        }
    }
    if is_list {
        let items = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| toml::Value::String(s.to_string()))
            .collect();
        return toml::Value::Array(items);
    }
    toml::Value::String(value.to_string())
}

/// Whether `[section] key` holds a list in the model (looked up in the serialised defaults).
fn default_is_list(section: &str, key: &str) -> bool {
    let Ok(toml::Value::Table(defaults)) = toml::Value::try_from(Config::default()) else {
        return false;
    };
    matches!(defaults.get(section).and_then(|s| s.get(key)), Some(toml::Value::Array(_)))
}
