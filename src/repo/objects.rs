//! Checking repository objects against their names: which objects of a
//! split-stream are missing, unreadable or corrupt.

use std::fmt;
use std::fs::File;
use std::io;

use composefs::fsverity::{FsVerityHashValue, FsVerityHasher};
use composefs::repository::Repository;

use crate::repo::stream_check::{open_stream, Check};

/// What is wrong with one repository object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum ObjectProblem {
    /// The object file is not there.
    Missing,
    /// Its content does not hash to its name (fs-verity digest).
    Corrupt {
        /// The fs-verity digest its content has.
        actual: String,
    },
    /// Reading it failed (e.g. EIO from kernel fs-verity).
    Unreadable {
        /// The error.
        error: String,
    },
}

/// A damaged object and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedObject {
    /// Path inside the repository, `objects/XX/…`.
    pub path: String,
    /// What is wrong.
    #[serde(flatten)]
    pub problem: ObjectProblem,
}

impl fmt::Display for DamagedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            ObjectProblem::Missing => write!(f, "{} is missing", self.path),
            ObjectProblem::Corrupt { .. } => {
                write!(f, "{} has content that does not match its name", self.path)
            }
            ObjectProblem::Unreadable { error } => {
                write!(f, "{} cannot be read ({error})", self.path)
            }
        }
    }
}

pub(crate) fn object_path<ID: FsVerityHashValue>(id: &ID) -> String {
    format!("objects/{}", id.to_object_pathname())
}

/// Recompute the fs-verity digest of one object in userspace.
pub fn check_object<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    id: &ID,
) -> Option<DamagedObject> {
    let path = object_path(id);
    let fd = match rustix::fs::openat(
        repo.repo_fd(),
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => {
            return Some(DamagedObject {
                path,
                problem: ObjectProblem::Missing,
            })
        }
        Err(e) => {
            return Some(DamagedObject {
                path,
                problem: ObjectProblem::Unreadable {
                    error: e.to_string(),
                },
            })
        }
    };
    let mut hasher = FsVerityHasher::<ID, 12>::new();
    if let Err(e) = io::copy(&mut File::from(fd), &mut hasher) {
        return Some(DamagedObject {
            path,
            problem: ObjectProblem::Unreadable {
                error: e.to_string(),
            },
        });
    }
    let actual = hasher.digest();
    (actual != *id).then(|| DamagedObject {
        path,
        problem: ObjectProblem::Corrupt {
            actual: actual.to_hex(),
        },
    })
}

/// The first object of a split-stream that is not there (the stream's
/// own object, or one it references), by path; a stream that cannot be
/// opened counts as its own object missing. Only presence is checked (no
/// hashing): cheap enough to ask before every response.
pub fn first_missing<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    stream_name: &str,
    stream: &ID,
) -> Option<String> {
    let present = |id: &ID| {
        let path = object_path(id);
        rustix::fs::accessat(
            repo.repo_fd(),
            path.as_str(),
            rustix::fs::Access::EXISTS,
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|_| path)
    };
    if let Err(path) = present(stream) {
        return Some(path);
    }
    let Ok(mut reader) = open_stream(repo, stream_name, Some(stream), None, Check::Header) else {
        return Some(object_path(stream));
    };
    let mut missing = None;
    let _ = reader.get_object_refs(|id| {
        if missing.is_none() {
            missing = present(id).err();
        }
    });
    missing
}

/// Every damaged object of a split-stream: the stream object itself and the
/// objects it references.
pub fn damaged_objects<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    stream_name: &str,
    stream: &ID,
) -> Vec<DamagedObject> {
    let mut damaged: Vec<DamagedObject> = check_object(repo, stream).into_iter().collect();
    // Reading the object list needs a parseable stream header; a garbled one was reported above.
    if let Ok(mut reader) = open_stream(repo, stream_name, Some(stream), None, Check::Header) {
        let mut ids = Vec::new();
        let _ = reader.get_object_refs(|id| ids.push(id.clone()));
        damaged.extend(ids.iter().filter_map(|id| check_object(repo, id)));
    }
    damaged
}
