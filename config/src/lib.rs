//! turingwatch-config: the typed configuration shared by every part of turingwatch.
//!
//! A TOML file (see `config/turingwatch.example.toml`, which documents every key) plus
//! `TURINGWATCH_<SECTION>_<KEY>` environment overrides becomes one [`Config`]. Missing keys take
//! the defaults of the original turingopt; unknown keys, bad values and impossible combinations
//! are refused at start with a message naming the key, the value and what is allowed.
//!
//! ```
//! let loaded = turingwatch_config::load_from(None, &[]).unwrap();
//! assert_eq!(loaded.config.scrape.interval.as_secs(), 20);
//! ```

mod duration;
mod load;
mod model;
mod validate;

pub use duration::{parse_span, Span};
pub use load::{load, load_from, load_text, resolve_path, Loaded, Source, ENV_PREFIX, SECTIONS, SYSTEM_CONFIG_PATH};
pub use model::*;
pub use validate::{parse_cidr, parse_time_of_day, validate, Problem, WEEKDAYS};

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{}", ParseDisplay { path, line: *line, message, snippet })]
    Parse { path: PathBuf, line: Option<usize>, message: String, snippet: Option<String> },
    /// An environment override is not valid for its key.
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// Values parse but are not usable; every problem found is listed.
    #[error("{}", ProblemsDisplay(.0))]
    Invalid(Vec<Problem>),
}

struct ParseDisplay<'a> {
    path: &'a PathBuf,
    line: Option<usize>,
    message: &'a str,
    snippet: &'a Option<String>,
}

impl fmt::Display for ParseDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        write!(f, ": {}", self.message.replace('\n', " "))?;
        if let Some(snippet) = self.snippet {
            write!(f, " (in `{snippet}`)")?;
        }
        Ok(())
    }
}

struct ProblemsDisplay<'a>(&'a [Problem]);

impl fmt::Display for ProblemsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: ")?;
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl Config {
    /// The effective configuration as TOML, as `turingwatch config` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|err| format!("# cannot render config: {err}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("twcfg-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("turingwatch.toml");
        std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
        path
    }

    #[test]
    fn example_file_parses_and_equals_the_defaults() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("turingwatch.example.toml");
        let loaded = load_from(Some(&path), &[]).unwrap();
        assert_eq!(loaded.config, Config::default());
    }

    #[test]
    fn energy_factors_per_partition_are_read_and_nonsense_is_refused() {
        let path = PathBuf::from("/x.toml");
        let text = "[energy]\npue = 1.2\n[energy.partitions.gpu]\nwatts_per_core = 15.0\n";
        let loaded = load_text(Some((text, &path)), &[]).unwrap();
        assert_eq!(loaded.config.energy.pue, 1.2);
        assert_eq!(loaded.config.energy.partitions["gpu"].watts_per_core, Some(15.0));
        for bad in ["[energy]\npue = 0.5\n", "[energy.partitions.gpu]\nwatts_per_gpu = -3.0\n"] {
            let err = load_text(Some((bad, &path)), &[]).unwrap_err().to_string();
            assert!(err.contains("energy."), "{bad}: {err}");
        }
    }

    #[test]
    fn example_file_documents_every_key() {
        let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("turingwatch.example.toml"))
            .unwrap();
        let example: toml::Table = text.parse().unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (section, keys) in defaults.as_table().unwrap() {
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    example.get(section).and_then(|s| s.get(key)).is_some(),
                    "[{section}] {key} missing from turingwatch.example.toml"
                );
            }
        }
    }

    #[test]
    fn unknown_key_is_one_line_naming_key_and_line() {
        let path = write_temp("unknown", "[web]\nbind = \"127.0.0.1:9000\"\nbindd = \"x\"\n");
        let err = load_from(Some(&path), &[]).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("bindd") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let path = write_temp("duration", "[scrape]\ninterval = \"20 parsecs\"\n");
        let err = load_from(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.contains("interval") && err.contains("\"20s\""), "{err}");
    }

    #[test]
    fn impossible_combination_is_refused() {
        let path = write_temp("combo", "[scrape]\ninterval = \"20m\"\ntime_per_node = \"15m\"\n");
        let err = load_from(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.contains("scrape.time_per_node"), "{err}");
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let path = write_temp("env", "[web]\nbind = \"127.0.0.1:9000\"\n");
        let env = vec![
            ("TURINGWATCH_WEB_BIND".to_string(), "0.0.0.0:8081".to_string()),
            ("TURINGWATCH_WEB_ADMINS".to_string(), "alice, bob".to_string()),
            ("TURINGWATCH_SCRAPE_CONCURRENT_NODES".to_string(), "8".to_string()),
            ("TURINGWATCH_PRELOAD_STATS".to_string(), "1".to_string()),
        ];
        let loaded = load_from(Some(&path), &env).unwrap();
        assert_eq!(loaded.config.web.bind, "0.0.0.0:8081");
        assert_eq!(loaded.config.web.admins, ["alice", "bob"]);
        assert_eq!(loaded.config.scrape.concurrent_nodes, 8);
        assert_eq!(loaded.overrides.len(), 3);
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let env = vec![("TURINGWATCH_WEB_BINDD".to_string(), "x".to_string())];
        let err = load_from(None, &env).unwrap_err().to_string();
        assert!(err.contains("TURINGWATCH_WEB_BINDD"), "{err}");
    }

    #[test]
    fn printed_config_parses_back_to_itself() {
        let mut config = Config::default();
        config.mail.cc = vec!["a@b.c".into()];
        let text = config.to_toml();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn explicit_flag_beats_environment_path() {
        let flag = PathBuf::from("/a.toml");
        assert_eq!(resolve_path(Some(&flag), Some("/b.toml".into())), Some(flag));
        assert_eq!(resolve_path(None, Some("/b.toml".into())), Some(PathBuf::from("/b.toml")));
    }
}
