//! Where received files may land: every path a peer names is resolved below the node's
//! `files_dir`, lexically (no file system access here). Relative paths are taken from
//! `files_dir`; absolute paths must already lie inside it; `..` may not climb out of it.
//! The shell adds the one check that needs the file system (a symbolic link inside
//! `files_dir` pointing out of it).

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// A path a peer may not write (refused before anything is written: nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("forbidden_path: {path:?} {why}; files land only below {root:?}")]
pub struct ForbiddenPath {
    /// The path as the peer wrote it.
    pub path: String,
    /// Why it is refused.
    pub why: &'static str,
    /// The node's `files_dir`.
    pub root: String,
}

impl ForbiddenPath {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        "forbidden_path"
    }
}

/// Resolves `requested` below `root` (an absolute, normalised directory).
pub fn resolve_under(root: &Path, requested: &str) -> Result<PathBuf, ForbiddenPath> {
    let refuse = |why| ForbiddenPath {
        path: requested.to_owned(),
        why,
        root: root.display().to_string(),
    };
    let path = Path::new(requested);
    let relative = if path.is_absolute() {
        path.strip_prefix(root)
            .map_err(|_| refuse("is outside the files directory"))?
    } else {
        path
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(refuse("climbs out of the files directory"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("is outside the files directory"));
            }
        }
    }
    if parts.is_empty() {
        return Err(refuse("names no file"));
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        PathBuf::from("/srv/nk/files")
    }

    #[test]
    fn relative_and_inside_paths_resolve_below_the_root() {
        let ok = |p: &str| resolve_under(&root(), p).map(|p| p.display().to_string());
        assert_eq!(ok("a.bin"), Ok("/srv/nk/files/a.bin".into()));
        assert_eq!(ok("./d/e/../f.bin"), Ok("/srv/nk/files/d/f.bin".into()));
        assert_eq!(ok("/srv/nk/files/x/y"), Ok("/srv/nk/files/x/y".into()));
    }

    #[test]
    fn escapes_and_outside_paths_are_forbidden() {
        let why = |p: &str| resolve_under(&root(), p).map_err(|e| e.why);
        assert_eq!(
            why("/root/.ssh/authorized_keys"),
            Err("is outside the files directory")
        );
        assert_eq!(
            why("/srv/nk/filesX/a"),
            Err("is outside the files directory")
        );
        assert_eq!(why("../a"), Err("climbs out of the files directory"));
        assert_eq!(why("d/../../a"), Err("climbs out of the files directory"));
        assert_eq!(
            why("/srv/nk/files/../x"),
            Err("climbs out of the files directory")
        );
        assert_eq!(why(""), Err("names no file"));
        assert_eq!(why("d/.."), Err("names no file"));
        let e = resolve_under(&root(), "/etc/passwd").expect_err("outside");
        assert_eq!(e.code(), "forbidden_path");
        assert_eq!(
            e.to_string(),
            "forbidden_path: \"/etc/passwd\" is outside the files directory; files land only below \"/srv/nk/files\""
        );
    }
}
