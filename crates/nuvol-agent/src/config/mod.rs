//! Sectioned configuration: a TOML file with one table per component
//! (`[gossip]`, `[rpc]`, `[catalog]`, ...), overridden by command-line
//! flags.
//!
//! Each setting is declared once, in a [`settings!`](crate::settings) block:
//! its field name is the TOML key, the block names its flag (serf's names,
//! with double dashes) and its default, and its doc comment is both the
//! `--help` text and what `nuvol.example.toml` documents. From that one
//! declaration the macro derives the typed struct, the clap arguments
//! (grouped under the section's heading in `--help`), the file parser
//! (unknown keys refused) and the merge (flags win; lists and tags extend
//! the file's). A section's [`Validate`] impl then checks values across
//! keys.
//!
//! Errors are one line naming `section.key` (and the flag) and what is wrong
//! ([`ConfigError`]); loading has no side effects, so a bad configuration
//! writes nothing anywhere.

mod values;

pub use clap::{Arg, ArgMatches};
pub use toml::Table;
pub use values::{Addr, BadValue, Listen, Secret, Setting, Tags};

use std::path::{Path, PathBuf};

/// What a config file or the flags got wrong. Every variant is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown section [{section}] (sections: {known})")]
    UnknownSection { section: String, known: String },
    #[error("{key}: {message}")]
    Misplaced { key: String, message: String },
    #[error("{section}.{key}: unknown key (keys of [{section}]: {known})")]
    UnknownKey {
        section: &'static str,
        key: String,
        known: String,
    },
    #[error("invalid {setting}: {message}")]
    Invalid { setting: String, message: String },
    #[error("{0}")]
    Flags(String),
}

impl ConfigError {
    /// A bad value of `key` in section `S`, named as `section.key (--flag)`.
    pub fn invalid<S: Section>(key: &str, message: impl std::fmt::Display) -> ConfigError {
        let flag = S::keys()
            .iter()
            .find(|k| k.name == key)
            .map(|k| k.flag)
            .unwrap_or("");
        ConfigError::Invalid {
            setting: setting_name(S::NAME, key, flag),
            message: message.to_string(),
        }
    }
}

fn setting_name(section: &str, key: &str, flag: &str) -> String {
    if flag.is_empty() {
        format!("{section}.{key}")
    } else {
        format!("{section}.{key} (--{flag})")
    }
}

/// One declared setting, for documentation and checks.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The TOML key.
    pub name: &'static str,
    /// The flag, without its dashes.
    pub flag: &'static str,
    /// The doc comment.
    pub doc: &'static str,
}

/// A config section: implemented by [`settings!`](crate::settings).
pub trait Section: Validate + Sized + Send + 'static {
    /// The TOML table name, e.g. `gossip`.
    const NAME: &'static str;
    /// The `--help` heading, e.g. `Gossip`.
    const TITLE: &'static str;
    fn keys() -> &'static [Key];
    /// The flags, to add to the `nuvol agent` command.
    fn args() -> Vec<Arg>;
    /// Merge the file's table (if the file has this section) with the flags
    /// and validate.
    fn load(file: Option<&Table>, flags: &ArgMatches) -> Result<Self, ConfigError>;
}

/// Checks across the keys of a section, after merging.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// A section with no settings, for components that need none.
#[derive(Debug, Clone, Default)]
pub struct NoSettings;

/// The parsed config file: its tables by section name.
#[derive(Debug, Default)]
pub struct ConfigFile {
    path: Option<PathBuf>,
    tables: Table,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Parse TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<ConfigFile, ConfigError> {
        let shown = path.map(Path::to_owned).unwrap_or_else(|| "<text>".into());
        let tables: Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            ConfigError::Syntax {
                path: shown.clone(),
                message: match line {
                    Some(l) => format!("line {l}: {}", e.message()),
                    None => e.message().to_owned(),
                },
            }
        })?;
        let mut tables = tables;
        for (k, v) in tables.iter_mut() {
            // `[[name]]`: an array of tables, for sections with several
            // entries (`[[vip]]`). Kept under ARRAY_KEY in a table, so
            // that every section is still a table; such a section reads
            // its entries with `entries()`.
            if let Some(a) = v.as_array() {
                if !a.is_empty() && a.iter().all(toml::Value::is_table) {
                    let mut t = Table::new();
                    t.insert(ARRAY_KEY.to_owned(), v.clone());
                    *v = toml::Value::Table(t);
                    continue;
                }
            }
            if !v.is_table() {
                return Err(ConfigError::Misplaced {
                    key: k.clone(),
                    message: format!(
                        "settings belong in a section; {}",
                        old_key_hint(k).unwrap_or_else(|| "see nuvol.example.toml".into())
                    ),
                });
            }
        }
        Ok(ConfigFile {
            path: path.map(Path::to_owned),
            tables,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The table of section `name`, if the file has one.
    pub fn section(&self, name: &str) -> Option<&Table> {
        self.tables.get(name).and_then(toml::Value::as_table)
    }

    /// Refuse sections nobody declared.
    pub fn check_sections(&self, known: &[&str]) -> Result<(), ConfigError> {
        for name in self.tables.keys() {
            if !known.contains(&name.as_str()) {
                return Err(ConfigError::UnknownSection {
                    section: name.clone(),
                    known: known.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// Where a key of nuvol's earlier flat config file went.
fn old_key_hint(key: &str) -> Option<String> {
    let to = match key {
        "node_name" => "[gossip] node",
        "bind"
        | "advertise"
        | "encrypt_key"
        | "keyring_file"
        | "tags_file"
        | "profile"
        | "protocol"
        | "reconnect_interval"
        | "reconnect_timeout"
        | "tombstone_timeout"
        | "disable_coordinates" => "[gossip]",
        "snapshot_path" => "[gossip] snapshot",
        "join" | "retry_join" | "retry_interval" | "retry_max" => "[join]",
        "replay_on_join" => "[join] replay",
        "rejoin_after_leave" => "[join] rejoin",
        "rpc_addr" => "[rpc] addr",
        "rpc_auth" => "[rpc] auth",
        "event_handlers" => "[handlers] event_handler",
        "data_dir" | "log_level" | "leave_on_terminate" | "skip_leave_on_interrupt" => "[agent]",
        "http_addr" => "[api] addr",
        "dns_addr" => "[dns] addr",
        "domain" => "[dns] domain",
        "services_dir" | "cloud" => "[catalog]",
        "catalog_remove_after" => "[catalog] remove_after",
        "mdns" => "[mdns] announce",
        "mdns_import" => "[mdns] import",
        _ => return None,
    };
    Some(format!("it is now {to}"))
}

/// Where a section written as `[[name]]` keeps its entries (not a valid
/// bare TOML key, so no user key collides with it).
pub const ARRAY_KEY: &str = "[[entries]]";

/// The entries of a section that may be written as `[[name]]` (several
/// tables) or `[name]` (one): each entry's table, in order.
pub fn entries(section: &str, table: Option<&Table>) -> Result<Vec<Table>, ConfigError> {
    let Some(t) = table else {
        return Ok(Vec::new());
    };
    match t.get(ARRAY_KEY) {
        None => Ok(vec![t.clone()]),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_table().cloned().ok_or_else(|| ConfigError::Misplaced {
                    key: section.to_owned(),
                    message: "every [[entry]] must be a table".into(),
                })
            })
            .collect(),
        Some(_) => Err(ConfigError::Misplaced {
            key: section.to_owned(),
            message: "expected [[entries]]".into(),
        }),
    }
}

/// Reads a section's table key by key; what is left over is unknown.
#[doc(hidden)]
pub struct SectionFile {
    section: &'static str,
    table: Table,
}

impl SectionFile {
    pub fn new(
        section: &'static str,
        table: Option<&Table>,
        keys: &[Key],
    ) -> Result<SectionFile, ConfigError> {
        let table = table.cloned().unwrap_or_default();
        if table.contains_key(ARRAY_KEY) {
            return Err(ConfigError::Misplaced {
                key: section.to_owned(),
                message: format!("[{section}] is one table: write [{section}], not [[{section}]]"),
            });
        }
        if let Some(k) = table
            .keys()
            .find(|k| !keys.iter().any(|d| d.name == k.as_str()))
        {
            return Err(ConfigError::UnknownKey {
                section,
                key: k.clone(),
                known: keys.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(SectionFile { section, table })
    }

    pub fn take<T: Setting>(
        &mut self,
        key: &'static str,
        flag: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(v) => T::from_toml(v).map(Some).map_err(|e| ConfigError::Invalid {
                setting: setting_name(self.section, key, flag),
                message: e.0,
            }),
        }
    }
}

/// The clap argument of a setting of type `T`.
#[doc(hidden)]
pub fn arg<T: Setting>(
    id: &'static str,
    flag: &'static str,
    doc: &'static str,
    heading: &'static str,
    env: Option<&'static str>,
) -> Arg {
    let help: String = doc.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let mut a = Arg::new(id)
        .long(flag)
        .help(help.trim().to_owned())
        .help_heading(heading)
        .value_name(T::VALUE_NAME);
    a = if T::REPEATED {
        a.action(clap::ArgAction::Append)
    } else {
        a.action(clap::ArgAction::Set)
    };
    if T::SWITCH {
        // `--replay` alone means true; `--replay=false` is accepted too.
        a = a.num_args(0..=1).default_missing_value("true");
    }
    if let Some(e) = env {
        a = a.env(e).hide_env_values(true);
    }
    a
}

/// The flags' value of a setting (`None` when not given).
#[doc(hidden)]
pub fn flag_value<T: Setting>(
    m: &ArgMatches,
    id: &'static str,
    section: &'static str,
    key: &'static str,
    flag: &'static str,
) -> Result<Option<T>, ConfigError> {
    // Matches from a command that lacks this argument (a test building
    // only some sections) simply have no value for it.
    let Ok(Some(values)) = m.try_get_raw(id) else {
        return Ok(None);
    };
    let mut out: Option<T> = None;
    for v in values {
        let text = v.to_str().ok_or_else(|| ConfigError::Invalid {
            setting: setting_name(section, key, flag),
            message: "not valid UTF-8".into(),
        })?;
        let parsed = T::from_flag(text).map_err(|e| ConfigError::Invalid {
            setting: setting_name(section, key, flag),
            message: e.0,
        })?;
        out = T::merge(out, Some(parsed));
    }
    Ok(out)
}

/// Declare a config section: its struct, and for every setting the TOML key
/// (the field name), the flag, the default and the doc comment, once.
///
/// ```ignore
/// nuvol_agent::settings! {
///     /// The example component.
///     pub struct ExampleConfig in "example", "Example" {
///         /// Greeting it serves.
///         greeting: String = "hello".into(), flag "example-greeting";
///     }
/// }
/// impl nuvol_agent::config::Validate for ExampleConfig {
///     fn validate(&self) -> Result<(), nuvol_agent::config::ConfigError> { Ok(()) }
/// }
/// ```
#[macro_export]
macro_rules! settings {
    (
        $(#[doc = $sdoc:literal])*
        $vis:vis struct $Name:ident in $section:literal, $title:literal {
            $(
                $(#[doc = $doc:literal])+
                $field:ident : $ty:ty = $default:expr, flag $flag:literal $(, env $env:literal)? ;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone)]
        $vis struct $Name {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl $crate::config::Section for $Name {
            const NAME: &'static str = $section;
            const TITLE: &'static str = $title;

            fn keys() -> &'static [$crate::config::Key] {
                &[$($crate::config::Key {
                    name: stringify!($field),
                    flag: $flag,
                    doc: concat!($($doc, "\n"),+),
                }),*]
            }

            fn args() -> Vec<$crate::config::Arg> {
                vec![$(
                    $crate::config::arg::<$ty>(
                        concat!($section, ".", stringify!($field)),
                        $flag,
                        concat!($($doc, "\n"),+),
                        $title,
                        None$(.or(Some($env)))?,
                    )
                ),*]
            }

            #[allow(unused_mut, unused_variables)]
            fn load(
                file: Option<&$crate::config::Table>,
                flags: &$crate::config::ArgMatches,
            ) -> Result<Self, $crate::config::ConfigError> {
                let mut file = $crate::config::SectionFile::new($section, file, Self::keys())?;
                let cfg = $Name {
                    $($field: {
                        let from_file = file.take::<$ty>(stringify!($field), $flag)?;
                        let from_flags = $crate::config::flag_value::<$ty>(
                            flags,
                            concat!($section, ".", stringify!($field)),
                            $section,
                            stringify!($field),
                            $flag,
                        )?;
                        <$ty as $crate::config::Setting>::merge(from_file, from_flags)
                            .unwrap_or_else(|| $default)
                    },)*
                };
                $crate::config::Validate::validate(&cfg)?;
                Ok(cfg)
            }
        }
    };
}

impl Validate for NoSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl Section for NoSettings {
    const NAME: &'static str = "";
    const TITLE: &'static str = "";
    fn keys() -> &'static [Key] {
        &[]
    }
    fn args() -> Vec<Arg> {
        Vec::new()
    }
    fn load(_file: Option<&Table>, _flags: &ArgMatches) -> Result<Self, ConfigError> {
        Ok(NoSettings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    crate::settings! {
        /// A test section.
        pub struct Demo in "demo", "Demo" {
            /// A name.
            name: String = "x".into(), flag "demo-name";
            /// A period.
            every: Duration = Duration::from_secs(30), flag "demo-every";
            /// A switch.
            on: bool = false, flag "demo-on";
            /// A list.
            join: Vec<String> = Vec::new(), flag "demo-join";
            /// Tags.
            tags: Tags = Tags::default(), flag "demo-tag";
            /// Optional.
            maybe: Option<u32> = None, flag "demo-maybe", env "NUVOL_TEST_DEMO_MAYBE";
        }
    }

    impl Validate for Demo {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.name.is_empty() {
                return Err(ConfigError::invalid::<Demo>("name", "must not be empty"));
            }
            Ok(())
        }
    }

    fn load(file: &str, args: &[&str]) -> Result<Demo, ConfigError> {
        let cmd = clap::Command::new("t").args(Demo::args());
        let m = cmd
            .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
            .map_err(|e| ConfigError::Invalid {
                setting: "flags".into(),
                message: e.to_string(),
            })?;
        let f = ConfigFile::parse(file, None)?;
        Demo::load(f.section("demo"), &m)
    }

    #[test]
    fn defaults_file_and_flags() {
        let d = load("", &[]).unwrap();
        assert_eq!(d.name, "x");
        assert_eq!(d.every, Duration::from_secs(30));
        assert!(!d.on && d.join.is_empty() && d.maybe.is_none());

        let d = load(
            "[demo]\nname = 'file'\nevery = '1m'\njoin = ['a']\ntags = { role = 'web' }\n",
            &[
                "--demo-name",
                "flag",
                "--demo-join",
                "b",
                "--demo-tag",
                "dc=bcn",
                "--demo-on",
            ],
        )
        .unwrap();
        assert_eq!(d.name, "flag", "flags win");
        assert_eq!(d.every, Duration::from_secs(60));
        assert_eq!(d.join, ["a", "b"], "lists extend");
        assert_eq!(d.tags.0.len(), 2, "tags extend");
        assert!(d.on);
        let d = load("[demo]\non = true\n", &["--demo-on=false"]).unwrap();
        assert!(!d.on);
    }

    #[test]
    fn array_sections() {
        let f = ConfigFile::parse("[[vip]]\na = 1\n[[vip]]\na = 2\n", None).unwrap();
        let e = entries("vip", f.section("vip")).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].get("a").and_then(toml::Value::as_integer), Some(2));
        let f = ConfigFile::parse("[vip]\na = 1\n", None).unwrap();
        assert_eq!(entries("vip", f.section("vip")).unwrap().len(), 1);
        assert!(entries("vip", None).unwrap().is_empty());
        // A one-table section written as an array says so.
        let err = load("[[demo]]\nname = 'a'\n", &[]).unwrap_err().to_string();
        assert_eq!(err, "demo: [demo] is one table: write [demo], not [[demo]]");
    }

    #[test]
    fn errors_name_the_setting() {
        let e = |file: &str, args: &[&str]| load(file, args).unwrap_err().to_string();
        assert_eq!(
            e("[demo]\nnmae = 'a'\n", &[]),
            "demo.nmae: unknown key (keys of [demo]: name, every, on, join, tags, maybe)"
        );
        assert_eq!(
            e("[demo]\nevery = 'soon'\n", &[]),
            "invalid demo.every (--demo-every): invalid duration \"soon\" (examples: 5s, 1m30s, 500ms)"
        );
        assert_eq!(
            e("[demo]\nevery = 5\n", &[]),
            "invalid demo.every (--demo-every): expected a duration string such as \"30s\", found an integer"
        );
        assert_eq!(
            e("", &["--demo-maybe", "x"]),
            "invalid demo.maybe (--demo-maybe): invalid number \"x\" (0 to 4294967295)"
        );
        assert_eq!(
            e("[demo]\nname = ''\n", &[]),
            "invalid demo.name (--demo-name): must not be empty"
        );
        assert!(e("[demo\n", &[]).starts_with("config file <text>: line 1:"));
        assert_eq!(
            e("node_name = 'a'\n", &[]),
            "node_name: settings belong in a section; it is now [gossip] node"
        );
        assert_eq!(
            e("[demo]\ntags = ['a']\n", &[]),
            "invalid demo.tags (--demo-tag): expected a table of strings, found an array"
        );
        assert_eq!(
            e("", &["--demo-tag", "novalue"]),
            "invalid demo.tags (--demo-tag): invalid tag \"novalue\": expected KEY=VALUE"
        );
    }

    #[test]
    fn unknown_sections_are_refused() {
        let f = ConfigFile::parse("[demo]\n[bogus]\n", None).unwrap();
        assert_eq!(
            f.check_sections(&["demo"]).unwrap_err().to_string(),
            "unknown section [bogus] (sections: demo)"
        );
    }

    #[test]
    fn help_groups_flags_under_the_section() {
        let mut cmd = clap::Command::new("t").args(Demo::args());
        let help = cmd.render_help().to_string();
        assert!(help.contains("Demo:\n"), "{help}");
        assert!(help.contains("--demo-every <DURATION>"), "{help}");
        assert!(help.contains("A period."), "{help}");
    }
}
