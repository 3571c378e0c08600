//! [`StoreSpec`]: which store the demo keeps sessions and users in, as given
//! on the command line (`--store`) or in `CLOAKROOM_STORE`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The forms `--store` accepts, for error messages and help text.
pub const ACCEPTED_FORMS: &str = "sqlite:PATH (e.g. sqlite:cloakroom-demo.db), memory:, file:DIR, postgres://…, mysql://…, redis://…, redis+cluster://h1:p1,h2:p2, memcache://host:port, mongodb://host:port/DB, dynamodb+http://host:port/TABLE or tiered:CACHE|DURABLE";

/// The default `--store` value.
pub const DEFAULT_STORE: &str = "sqlite:cloakroom-demo.db";

/// Where the demo keeps its sessions and users.
///
/// Parsed from `sqlite:PATH` or `memory:`. A `sqlite://PATH` URL (the form
/// sqlx and other tools use) is accepted too: the `//` is dropped, so
/// `sqlite://demo.db` is the relative path `demo.db` and
/// `sqlite:///var/lib/demo.db` the absolute path `/var/lib/demo.db`.
///
/// ```
/// use cloakroom_cli::StoreSpec;
///
/// let spec: StoreSpec = "sqlite:demo.db".parse()?;
/// assert_eq!(spec, StoreSpec::Sqlite("demo.db".into()));
/// assert_eq!("memory:".parse::<StoreSpec>()?, StoreSpec::Memory);
/// assert!("gopher://localhost".parse::<StoreSpec>().is_err());
/// # Ok::<(), cloakroom_cli::StoreSpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// One SQLite file holding both the sessions and the demo's users.
    Sqlite(PathBuf),
    /// Process memory: everything is lost when the demo stops.
    Memory,
    /// Any other store URL cloakroom knows (`postgres://…`, `redis://…`,
    /// `file:DIR`, `tiered:…`, …). Sessions live there; the demo's accounts
    /// are kept in memory.
    Url(String),
}

impl Default for StoreSpec {
    fn default() -> Self {
        Self::Sqlite(PathBuf::from("cloakroom-demo.db"))
    }
}

/// Why a `--store` value was refused. Every message names the accepted
/// forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreSpecError {
    /// The value is empty.
    #[error("the store is empty; expected {ACCEPTED_FORMS}")]
    Empty,
    /// `sqlite:` without a path.
    #[error("`sqlite:` needs a file path; expected {ACCEPTED_FORMS}")]
    MissingPath,
    /// `sqlite::memory:`: each SQLite connection would get its own empty
    /// database, so sessions and users would not be shared.
    #[error(
        "`sqlite::memory:` is not supported; use `memory:` for an in-memory store, or {ACCEPTED_FORMS}"
    )]
    SqliteInMemory,
    /// `memory:` followed by something.
    #[error("`memory:` takes no argument (got {0:?}); expected {ACCEPTED_FORMS}")]
    MemoryArgument(String),
    /// Anything else.
    #[error("unknown store {0:?}; expected {ACCEPTED_FORMS}")]
    Unknown(String),
    /// A known kind of store, but the URL is unusable.
    #[error("{0}; expected {ACCEPTED_FORMS}")]
    Invalid(String),
}

impl FromStr for StoreSpec {
    type Err = StoreSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(StoreSpecError::Empty);
        }
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return match path {
                "" => Err(StoreSpecError::MissingPath),
                ":memory:" => Err(StoreSpecError::SqliteInMemory),
                p => Ok(Self::Sqlite(PathBuf::from(p))),
            };
        }
        if let Some(rest) = s.strip_prefix("memory:") {
            return if rest.is_empty() {
                Ok(Self::Memory)
            } else {
                Err(StoreSpecError::MemoryArgument(rest.to_owned()))
            };
        }
        match cloakroom::store::StoreUrl::parse(s) {
            Ok(_) => Ok(Self::Url(s.trim().to_owned())),
            Err(cloakroom::store::StoreUrlError::UnknownScheme(_)) => {
                Err(StoreSpecError::Unknown(redact(s)))
            }
            Err(e) => Err(StoreSpecError::Invalid(e.to_string())),
        }
    }
}

/// `url` with any password replaced by `***`, for messages and logs. Each
/// part of a `tiered:A|B` URL is redacted on its own.
#[must_use]
pub fn redact(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("tiered:") {
        let parts: Vec<String> = rest.split('|').map(redact).collect();
        return format!("tiered:{}", parts.join("|"));
    }
    let Some(start) = url.find("://").map(|s| s + 3) else {
        return url.to_owned();
    };
    // The authority ends at the first '/' after the scheme; only an '@'
    // inside it separates credentials.
    let end = url[start..].find('/').map_or(url.len(), |e| start + e);
    match url[start..end].rfind('@') {
        Some(at) => match url[start..start + at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..start], &url[start + at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Memory => f.write_str("memory:"),
            Self::Url(url) => f.write_str(&redact(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StoreSpec, StoreSpecError> {
        s.parse()
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            parse("sqlite:cloakroom-demo.db"),
            Ok(StoreSpec::Sqlite("cloakroom-demo.db".into()))
        );
        assert_eq!(
            parse("sqlite:/tmp/x.db"),
            Ok(StoreSpec::Sqlite("/tmp/x.db".into()))
        );
        assert_eq!(
            parse("sqlite:dir with space/x.db"),
            Ok(StoreSpec::Sqlite("dir with space/x.db".into()))
        );
        assert_eq!(parse("sqlite://x.db"), Ok(StoreSpec::Sqlite("x.db".into())));
        assert_eq!(
            parse("sqlite:///var/x.db"),
            Ok(StoreSpec::Sqlite("/var/x.db".into()))
        );
    }

    #[test]
    fn memory() {
        assert_eq!(parse("memory:"), Ok(StoreSpec::Memory));
    }

    #[test]
    fn default_is_the_documented_file() {
        assert_eq!(parse(DEFAULT_STORE), Ok(StoreSpec::default()));
        assert_eq!(StoreSpec::default().to_string(), DEFAULT_STORE);
    }

    #[test]
    fn display_round_trips() {
        for s in ["sqlite:a.db", "sqlite:/abs/b.db", "memory:"] {
            assert_eq!(parse(s).map(|spec| spec.to_string()), Ok(s.to_owned()));
        }
    }

    #[test]
    fn rejects_other_values() {
        assert_eq!(parse(""), Err(StoreSpecError::Empty));
        assert_eq!(parse("  "), Err(StoreSpecError::Empty));
        assert_eq!(parse("sqlite:"), Err(StoreSpecError::MissingPath));
        assert_eq!(parse("sqlite://"), Err(StoreSpecError::MissingPath));
        assert_eq!(
            parse("sqlite::memory:"),
            Err(StoreSpecError::SqliteInMemory)
        );
        assert_eq!(
            parse("memory:big"),
            Err(StoreSpecError::MemoryArgument("big".into()))
        );
        for bad in ["memory", "sqlite", "x.db", "gopher://u@h/db"] {
            assert_eq!(
                parse(bad),
                Err(StoreSpecError::Unknown(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_error_names_the_accepted_forms() {
        for bad in [
            "",
            "sqlite:",
            "sqlite::memory:",
            "memory:x",
            "gopher://localhost",
            "file:",
        ] {
            let msg = parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains("sqlite:PATH"), "{bad}: {msg}");
            assert!(msg.contains("memory:"), "{bad}: {msg}");
        }
        assert_eq!(
            parse("gopher://u:secret@localhost")
                .err()
                .map(|e| e.to_string()),
            Some(format!(
                "unknown store \"gopher://u:***@localhost\"; expected {ACCEPTED_FORMS}"
            ))
        );
    }

    #[test]
    fn other_stores_by_url_without_printing_passwords() {
        for url in [
            "postgres://postgres@127.0.0.1/test",
            "mysql://root@127.0.0.1/test",
            "redis://127.0.0.1:6379/",
            "redis+cluster://127.0.0.1:7001,127.0.0.1:7002/",
            "memcache://127.0.0.1:11211",
            "mongodb://127.0.0.1:27017/cloakroom",
            "dynamodb+http://127.0.0.1:8000/cloakroom",
            "file:/tmp/sessions",
            "tiered:redis://127.0.0.1/|postgres://postgres@127.0.0.1/test",
        ] {
            assert_eq!(parse(url), Ok(StoreSpec::Url(url.into())), "{url}");
        }
        let spec = parse("postgres://app:hunter2@db/sessions").expect("a postgres URL");
        assert_eq!(spec.to_string(), "postgres://app:***@db/sessions");
        assert_eq!(
            redact("tiered:redis://127.0.0.1:6379/|postgres://app:pw@db:5432/x"),
            "tiered:redis://127.0.0.1:6379/|postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("redis://:pw@host/0"), "redis://:***@host/0");
        assert_eq!(redact("redis://host/a@b"), "redis://host/a@b");
    }
}
