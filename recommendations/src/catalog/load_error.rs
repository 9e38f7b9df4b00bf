//! What can be wrong with a catalog file, and where: the error a person
//! reads at start, naming the file, the line or record, and the problem.

use std::{fmt, io};

use service_kit::files::FileError;

use super::UnknownCategory;

/// Where in a catalog file a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// A CSV line, counting the header as line 1.
    Line(u64),
    /// A position in a JSON document.
    LineColumn(usize, usize),
    /// The n-th book of a JSON array, from 1.
    Record(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "line {line}"),
            Location::LineColumn(line, column) => write!(f, "line {line}, column {column}"),
            Location::Record(index) => write!(f, "record {index}"),
        }
    }
}

/// What is wrong with a catalog.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The file cannot be read.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    /// Not a regular file, or over the size cap.
    #[error(transparent)]
    File(#[from] FileError),
    /// The file name says neither CSV nor JSON.
    #[error("unknown format: the file name must end in .csv or .json")]
    UnknownFormat,
    /// A CSV header without a required column.
    #[error("missing column {0:?}; the header must name the columns id,title,author,category")]
    MissingColumn(&'static str),
    /// Malformed CSV or JSON, or a field of the wrong type.
    #[error("{0}")]
    Malformed(String),
    /// No books at all.
    #[error("the catalog holds no books")]
    Empty,
    /// An id of zero or less.
    #[error("id must be a positive integer, got {0}")]
    BadId(i32),
    /// Two books share an id.
    #[error("duplicate id {id} (first used at {first})")]
    DuplicateId {
        /// The repeated id.
        id: i32,
        /// Where the id was first used.
        first: Location,
    },
    /// A required text field is blank.
    #[error("{0} must not be empty")]
    Blank(&'static str),
    /// A category that does not exist.
    #[error(transparent)]
    UnknownCategory(#[from] UnknownCategory),
}

/// A catalog that cannot be used, with the file, the place in it, and the
/// problem, e.g. `books.csv, line 12: duplicate id 7 (first used at line 3)`.
#[derive(Debug)]
pub struct CatalogError {
    /// The file path, or "the built-in catalog".
    pub source_name: String,
    /// Where in the file, when the problem has a place.
    pub location: Option<Location>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source_name)?;
        if let Some(location) = self.location {
            write!(f, ", {location}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for CatalogError {}
