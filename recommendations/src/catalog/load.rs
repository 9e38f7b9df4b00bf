//! Reading a catalog from CSV or JSON, and the errors that name the file,
//! the line or record, and the problem.
//!
//! Bounded: only a regular file is read (a FIFO or a device could block or
//! never end), and no more than the size cap. Records are validated as
//! they are read, and only the books are kept, so the peak is the catalog
//! itself plus an index of ids (see [`Catalog`]).

use std::{borrow::Cow, collections::HashMap, fmt, io, path::Path};

use service_kit::files::{self, FileError};

use serde::{
    Deserialize,
    de::{self, SeqAccess, Visitor},
};

use super::{Book, Catalog, UnknownCategory, parse_category};

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

/// One book as written in a file, before validation. CSV fields are
/// borrowed from the reader's buffer; JSON strings are owned.
#[derive(Deserialize)]
struct Record<'a> {
    id: i32,
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    author: Cow<'a, str>,
    #[serde(borrow)]
    category: Cow<'a, str>,
}

const COLUMNS: [&str; 4] = ["id", "title", "author", "category"];

pub(super) fn from_path(path: &Path, max_bytes: u64) -> Result<Catalog, CatalogError> {
    let name = path.display().to_string();
    let fail = |problem| CatalogError {
        source_name: name.clone(),
        location: None,
        problem,
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let open = || -> Result<_, CatalogError> {
        let file = files::open_regular(path, max_bytes, " (see --catalog-max-bytes)")
            .map_err(|e| fail(e.into()))?;
        Ok(io::BufReader::with_capacity(64 * 1024, file))
    };
    match extension.as_deref() {
        Some("csv") => from_csv(open()?, &name),
        Some("json") => from_json(open()?, &name),
        _ => Err(fail(Problem::UnknownFormat)),
    }
}

pub(super) fn from_csv<R: io::Read>(input: R, name: &str) -> Result<Catalog, CatalogError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader.headers().map_err(|e| csv_failure(e, name))?.clone();
    if let Some(missing) = COLUMNS
        .into_iter()
        .find(|c| !headers.iter().any(|h| h == *c))
    {
        return Err(CatalogError {
            source_name: name.to_owned(),
            location: Some(Location::Line(1)),
            problem: Problem::MissingColumn(missing),
        });
    }

    let mut builder = Builder::new(name, false);
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_failure(e, name))?
    {
        let line = record.position().map_or(0, csv::Position::line);
        let row: Record<'_> = record
            .deserialize(Some(&headers))
            .map_err(|e| builder.fail(Location::Line(line), Problem::Malformed(e.to_string())))?;
        builder.add(line, row)?;
    }
    builder.finish()
}

fn csv_failure(err: csv::Error, name: &str) -> CatalogError {
    let location = err.position().map(|p| Location::Line(p.line()));
    let problem = match err.into_kind() {
        csv::ErrorKind::Io(err) => io_problem(err),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => Problem::Malformed(format!("expected {expected_len} fields, found {len}")),
        csv::ErrorKind::Utf8 { err, .. } => Problem::Malformed(format!("invalid UTF-8: {err}")),
        other => Problem::Malformed(format!("{other:?}")),
    };
    CatalogError {
        source_name: name.to_owned(),
        location,
        problem,
    }
}

/// An I/O error, or the size cap passed while reading.
fn io_problem(err: io::Error) -> Problem {
    match FileError::from_read(err) {
        FileError::Io(err) => Problem::Io(err),
        other => Problem::File(other),
    }
}

pub(super) fn from_json<R: io::Read>(input: R, name: &str) -> Result<Catalog, CatalogError> {
    let mut builder = Builder::new(name, true);
    let mut invalid = None;
    let mut deserializer = serde_json::Deserializer::from_reader(input);
    let parsed = de::Deserializer::deserialize_seq(
        &mut deserializer,
        Books {
            builder: &mut builder,
            invalid: &mut invalid,
        },
    )
    .and_then(|()| deserializer.end());
    // An invalid book stops the parse: its error is the one to report.
    if let Some(invalid) = invalid {
        return Err(invalid);
    }
    parsed.map_err(|err| json_failure(err, name))?;
    builder.finish()
}

fn json_failure(err: serde_json::Error, name: &str) -> CatalogError {
    let location = (err.line() > 0).then(|| Location::LineColumn(err.line(), err.column()));
    if err.is_io() {
        let problem = io_problem(err.into());
        return CatalogError {
            source_name: name.to_owned(),
            location: None,
            problem,
        };
    }
    // serde_json appends " at line L column C"; the location says it already.
    let message = err.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    CatalogError {
        source_name: name.to_owned(),
        location,
        problem: Problem::Malformed(message),
    }
}

/// The top-level JSON array, each book validated as it is read. A book
/// that is well-formed but invalid stops the parse, its error in `invalid`.
struct Books<'b, 'n> {
    builder: &'b mut Builder<'n>,
    invalid: &'b mut Option<CatalogError>,
}

impl<'de> Visitor<'de> for Books<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of books")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0u64;
        while let Some(record) = seq.next_element::<Record<'_>>()? {
            index += 1;
            if let Err(invalid) = self.builder.add(index, record) {
                *self.invalid = Some(invalid);
                return Err(de::Error::custom("an invalid book"));
            }
        }
        Ok(())
    }
}

/// Builds a [`Catalog`] from records as they are read, checking its
/// invariants on each.
struct Builder<'n> {
    name: &'n str,
    /// CSV lines or JSON record numbers, which [`Builder::location`] tells
    /// apart.
    json: bool,
    groups: [Vec<Book>; 3],
    /// Where each id was first used. (`u32`: 19 bytes an id in the table,
    /// rather than 35 with `u64`; a line past 4 billion is reported as
    /// that.)
    first_use: HashMap<i32, u32>,
}

impl<'n> Builder<'n> {
    fn new(name: &'n str, json: bool) -> Self {
        Self {
            name,
            json,
            groups: Default::default(),
            first_use: HashMap::new(),
        }
    }

    fn location(&self, at: u64) -> Location {
        if self.json {
            Location::Record(usize::try_from(at).unwrap_or(usize::MAX))
        } else {
            Location::Line(at)
        }
    }

    fn fail(&self, location: Location, problem: Problem) -> CatalogError {
        CatalogError {
            source_name: self.name.to_owned(),
            location: Some(location),
            problem,
        }
    }

    /// Adds the book read at `at` (a CSV line or JSON record number).
    fn add(&mut self, at: u64, row: Record<'_>) -> Result<(), CatalogError> {
        let here = self.location(at);
        if row.id <= 0 {
            return Err(self.fail(here, Problem::BadId(row.id)));
        }
        if let Some(first) = self
            .first_use
            .insert(row.id, u32::try_from(at).unwrap_or(u32::MAX))
        {
            let first = self.location(u64::from(first));
            return Err(self.fail(here, Problem::DuplicateId { id: row.id, first }));
        }
        for (field, value) in [("title", &row.title), ("author", &row.author)] {
            if value.trim().is_empty() {
                return Err(self.fail(here, Problem::Blank(field)));
            }
        }
        let category = parse_category(&row.category).map_err(|e| self.fail(here, e.into()))?;
        self.groups[category.index()].push(Book::new(row.id, &row.title, &row.author, category));
        Ok(())
    }

    fn finish(self) -> Result<Catalog, CatalogError> {
        if self.groups.iter().all(Vec::is_empty) {
            return Err(CatalogError {
                source_name: self.name.to_owned(),
                location: None,
                problem: Problem::Empty,
            });
        }
        drop(self.first_use);
        Ok(Catalog::from_groups(self.groups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Category;

    fn csv_error(text: &str) -> String {
        match from_csv(text.as_bytes(), "books.csv") {
            Ok(catalog) => panic!("expected an error, loaded {} books", catalog.len()),
            Err(err) => err.to_string(),
        }
    }

    fn json_error(text: &str) -> String {
        match from_json(text.as_bytes(), "books.json") {
            Ok(catalog) => panic!("expected an error, loaded {} books", catalog.len()),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn a_valid_csv_file_loads_in_order() {
        let text = "id,title,author,category\n\
                    10,\"Hello, World\",A. Author,mystery\n\
                    11,Second,B. Author,Mystery\n";

        let catalog = from_csv(text.as_bytes(), "books.csv").expect("valid catalog");

        let titles: Vec<_> = catalog
            .books(Category::Mystery)
            .iter()
            .map(Book::title)
            .collect();
        assert_eq!(titles, ["Hello, World", "Second"]);
    }

    #[test]
    fn a_duplicate_id_names_both_lines() {
        let text = "id,title,author,category\n1,A,X,mystery\n2,B,X,mystery\n1,C,X,self_help\n";

        assert_eq!(
            csv_error(text),
            "books.csv, line 4: duplicate id 1 (first used at line 2)"
        );
    }

    #[test]
    fn a_non_numeric_id_names_its_line() {
        let error = csv_error("id,title,author,category\n1,A,X,mystery\nseven,B,X,mystery\n");

        assert!(error.starts_with("books.csv, line 3: "), "{error}");
        assert!(error.contains("invalid digit"), "{error}");
    }

    #[test]
    fn a_missing_field_names_its_line() {
        let error = csv_error("id,title,author,category\n1,A,X\n");

        assert_eq!(error, "books.csv, line 2: expected 4 fields, found 3");
    }

    #[test]
    fn a_missing_column_is_reported_on_the_header() {
        let error = csv_error("id,title,category\n1,A,mystery\n");

        assert!(
            error.starts_with("books.csv, line 1: missing column \"author\""),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_category_lists_the_valid_ones() {
        let error = csv_error("id,title,author,category\n1,A,X,romance\n");

        assert_eq!(
            error,
            "books.csv, line 2: unknown category \"romance\"; \
             expected one of mystery, science_fiction, self_help"
        );
    }

    #[test]
    fn blank_titles_and_bad_ids_are_rejected() {
        assert_eq!(
            csv_error("id,title,author,category\n1,  ,X,mystery\n"),
            "books.csv, line 2: title must not be empty"
        );
        assert_eq!(
            csv_error("id,title,author,category\n0,A,X,mystery\n"),
            "books.csv, line 2: id must be a positive integer, got 0"
        );
    }

    #[test]
    fn an_empty_catalog_is_rejected() {
        assert_eq!(
            csv_error("id,title,author,category\n"),
            "books.csv: the catalog holds no books"
        );
        assert_eq!(json_error("[]"), "books.json: the catalog holds no books");
    }

    #[test]
    fn a_valid_json_file_loads() {
        let text = r#"[{"id": 5, "title": "T", "author": "A", "category": "science_fiction"}]"#;

        let catalog = from_json(text.as_bytes(), "books.json").expect("valid catalog");

        assert_eq!(catalog.books(Category::ScienceFiction)[0].id, 5);
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let error = json_error("[\n {\"id\": 1,\n  \"title\": }\n]");

        assert!(
            error.starts_with("books.json, line 3, column 12: "),
            "{error}"
        );
    }

    #[test]
    fn json_problems_name_the_record() {
        let text = r#"[{"id": 1, "title": "A", "author": "X", "category": "mystery"},
                       {"id": 1, "title": "B", "author": "X", "category": "mystery"}]"#;

        assert_eq!(
            json_error(text),
            "books.json, record 2: duplicate id 1 (first used at record 1)"
        );
    }

    #[test]
    fn a_missing_file_and_an_unknown_extension_are_reported() {
        let missing = from_path(Path::new("/nonexistent/books.csv"), u64::MAX)
            .map(|_| ())
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("/nonexistent/books.csv: cannot read it: ")
        );

        let unknown = from_path(Path::new("books.txt"), u64::MAX)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "books.txt: unknown format: the file name must end in .csv or .json"
        );
    }

    fn path_error(path: &Path, max_bytes: u64) -> String {
        match from_path(path, max_bytes) {
            Ok(catalog) => panic!("expected an error, loaded {} books", catalog.len()),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn what_is_not_a_regular_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let fifo = dir.path().join("books.csv");
        service_kit::testing::make_fifo(&fifo);
        // Opening a FIFO for reading would wait for a writer: this returns.
        assert_eq!(
            path_error(&fifo, u64::MAX),
            format!("{}: not a regular file (a FIFO)", fifo.display())
        );

        let zero = dir.path().join("zero.csv");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("a symlink");
        assert_eq!(
            path_error(&zero, u64::MAX),
            format!(
                "{}: not a regular file (a character device)",
                zero.display()
            )
        );

        let directory = dir.path().join("books.json");
        std::fs::create_dir(&directory).expect("a directory");
        assert_eq!(
            path_error(&directory, u64::MAX),
            format!("{}: not a regular file (a directory)", directory.display())
        );
    }

    #[test]
    fn a_file_over_the_cap_is_refused_and_one_at_the_cap_loads() {
        let text = "id,title,author,category\n1,A,X,mystery\n";
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("books.csv");
        std::fs::write(&path, text).expect("written");
        let size = text.len() as u64;

        assert_eq!(
            path_error(&path, size - 1),
            format!(
                "{}: {size} bytes, over the limit of {} (see --catalog-max-bytes)",
                path.display(),
                size - 1
            )
        );
        assert_eq!(from_path(&path, size).map(|c| c.len()).ok(), Some(1));
    }

    #[test]
    fn a_json_array_is_checked_book_by_book_and_to_its_end() {
        let blank = r#"[{"id": 1, "title": "A", "author": "X", "category": "mystery"},
                        {"id": 2, "title": " ", "author": "X", "category": "mystery"},
                        {"id": 3, "title": "C", "author": "X", "category": "romance"}]"#;
        assert_eq!(
            json_error(blank),
            "books.json, record 2: title must not be empty"
        );

        let trailing = r#"[{"id": 1, "title": "A", "author": "X", "category": "mystery"}] []"#;
        assert!(
            json_error(trailing).starts_with("books.json, line 1, column "),
            "{}",
            json_error(trailing)
        );
        assert!(json_error(r#"{"id": 1}"#).contains("an array of books"));
    }

    #[test]
    fn titles_and_authors_are_kept_apart() {
        let catalog = from_csv(
            "id,title,author,category\n3,Dune,Frank Herbert,science_fiction\n".as_bytes(),
            "books.csv",
        )
        .expect("valid catalog");

        let book = &catalog.books(Category::ScienceFiction)[0];
        assert_eq!((book.title(), book.author()), ("Dune", "Frank Herbert"));
    }
}
