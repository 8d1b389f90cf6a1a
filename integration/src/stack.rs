//! The containers stack the end-to-end tests drive: whichever `skopeo` and
//! `podman` come first on PATH (the host's, or Debian trixie's through
//! `scripts/trixie-stack.sh`'s wrappers), named for the summary.

use std::process::Command;

/// The environment variable that names the stack, overriding what is found.
pub const STACK_ENV: &str = "CFS_E2E_STACK";

/// A tool's version as `--version` prints it, e.g. `1.18.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(String);

impl Version {
    /// The last word of `TOOL --version` ("skopeo version 1.18.0"), if the tool runs.
    pub fn of(tool: &str) -> Option<Self> {
        let out = Command::new(tool).arg("--version").output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let word = text.split_whitespace().last()?;
        out.status.success().then(|| Self(word.to_string()))
    }

    /// Is this at least `major.minor`? (Unparsable versions are not.)
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self.0.split(['.', '-', '+']).map(str::parse::<u32>);
        match (parts.next(), parts.next()) {
            (Some(Ok(a)), Some(Ok(b))) => (a, b) >= (major, minor),
            _ => false,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which skopeo and podman the tests run against, and what to call them.
#[derive(Debug, Clone)]
pub struct Stack {
    /// `$CFS_E2E_STACK`; else `NAME` when `skopeo` on PATH links to an
    /// `in-NAME` wrapper (`trixie`); else the host's `VERSION_CODENAME`.
    pub name: String,
    /// `skopeo --version`, if there is a skopeo.
    pub skopeo: Option<Version>,
    /// `podman --version`, if there is a podman.
    pub podman: Option<Version>,
}

impl Stack {
    /// The stack on PATH now.
    pub fn detect() -> Self {
        let name = std::env::var(STACK_ENV)
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(wrapped_stack)
            .or_else(host_codename)
            .unwrap_or_else(|| "host".to_string());
        Self {
            name,
            skopeo: Version::of("skopeo"),
            podman: Version::of("podman"),
        }
    }

    /// Does this stack's skopeo reach `major.minor`?
    pub fn skopeo_at_least(&self, major: u32, minor: u32) -> bool {
        self.skopeo
            .as_ref()
            .is_some_and(|v| v.at_least(major, minor))
    }

    /// `trixie: skopeo 1.18.0, podman 5.4.2`.
    pub fn describe(&self) -> String {
        let version = |v: &Option<Version>| v.as_ref().map_or("missing".into(), Version::to_string);
        format!(
            "{}: skopeo {}, podman {}",
            self.name,
            version(&self.skopeo),
            version(&self.podman)
        )
    }
}

/// `trixie` when the first `skopeo` on PATH is a link to scripts/in-trixie.
fn wrapped_stack() -> Option<String> {
    let paths = std::env::var_os("PATH")?;
    let skopeo = std::env::split_paths(&paths)
        .map(|d| d.join("skopeo"))
        .find(|p| p.is_file())?;
    let target = std::fs::canonicalize(skopeo).ok()?;
    let name = target.file_name()?.to_str()?.strip_prefix("in-")?;
    Some(name.to_string())
}

fn host_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn versions_compare_by_major_and_minor() {
        for (v, major, minor, want) in [
            ("1.18.0", 1, 18, true),
            ("1.9.3", 1, 18, false),
            ("1.20.1-dev", 1, 18, true),
            ("2.0", 1, 18, true),
            ("0.99.0", 1, 0, false),
            ("dev", 1, 0, false),
        ] {
            assert_eq!(Version(v.into()).at_least(major, minor), want, "{v}");
        }
    }
}
