//! Reading a catalog from CSV or JSON, and the errors that name the file,
//! the line or record, and the problem.

use std::{collections::HashMap, fmt, fs::File, io, path::Path};

use serde::Deserialize;

use super::{Book, Catalog, Category, UnknownCategory};

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
    /// The file cannot be opened or read.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
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

/// One book as written in a file, before validation.
#[derive(Deserialize)]
struct Record {
    id: i32,
    title: String,
    author: String,
    category: String,
}

const COLUMNS: [&str; 4] = ["id", "title", "author", "category"];

pub(super) fn from_path(path: &Path) -> Result<Catalog, CatalogError> {
    let name = path.display().to_string();
    let fail = |location, problem| CatalogError {
        source_name: name.clone(),
        location,
        problem,
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let open = || {
        File::open(path)
            .map(io::BufReader::new)
            .map_err(|e| fail(None, e.into()))
    };
    match extension.as_deref() {
        Some("csv") => from_csv(open()?, &name),
        Some("json") => from_json(open()?, &name),
        _ => Err(fail(None, Problem::UnknownFormat)),
    }
}

pub(super) fn from_csv<R: io::Read>(input: R, name: &str) -> Result<Catalog, CatalogError> {
    let fail = |location, problem| CatalogError {
        source_name: name.to_owned(),
        location,
        problem,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader.headers().map_err(|e| csv_failure(e, name))?.clone();
    if let Some(missing) = COLUMNS
        .into_iter()
        .find(|c| !headers.iter().any(|h| h == *c))
    {
        return Err(fail(
            Some(Location::Line(1)),
            Problem::MissingColumn(missing),
        ));
    }

    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_failure(e, name))?
    {
        let line = Location::Line(record.position().map_or(0, csv::Position::line));
        let row: Record = record
            .deserialize(Some(&headers))
            .map_err(|e| fail(Some(line), Problem::Malformed(e.to_string())))?;
        rows.push((line, row));
    }
    validate(rows, name)
}

fn csv_failure(err: csv::Error, name: &str) -> CatalogError {
    let location = err.position().map(|p| Location::Line(p.line()));
    let problem = match err.into_kind() {
        csv::ErrorKind::Io(err) => Problem::Io(err),
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

pub(super) fn from_json<R: io::Read>(input: R, name: &str) -> Result<Catalog, CatalogError> {
    let records: Vec<Record> = serde_json::from_reader(input).map_err(|err| {
        let location = (err.line() > 0).then(|| Location::LineColumn(err.line(), err.column()));
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
    })?;
    let rows = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| (Location::Record(i + 1), r))
        .collect();
    validate(rows, name)
}

/// Checks the invariants of [`Catalog`] and builds it.
fn validate(rows: Vec<(Location, Record)>, name: &str) -> Result<Catalog, CatalogError> {
    let fail = |location, problem| CatalogError {
        source_name: name.to_owned(),
        location,
        problem,
    };
    if rows.is_empty() {
        return Err(fail(None, Problem::Empty));
    }
    let mut first_use: HashMap<i32, Location> = HashMap::with_capacity(rows.len());
    let mut books = Vec::with_capacity(rows.len());
    for (location, row) in rows {
        let at = |problem| fail(Some(location), problem);
        if row.id <= 0 {
            return Err(at(Problem::BadId(row.id)));
        }
        if let Some(first) = first_use.insert(row.id, location) {
            return Err(at(Problem::DuplicateId { id: row.id, first }));
        }
        for (field, value) in [("title", &row.title), ("author", &row.author)] {
            if value.trim().is_empty() {
                return Err(at(Problem::Blank(field)));
            }
        }
        let category: Category = row
            .category
            .parse()
            .map_err(|e: UnknownCategory| at(e.into()))?;
        books.push(Book {
            id: row.id,
            title: row.title,
            author: row.author,
            category,
        });
    }
    Ok(Catalog::from_books(books))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .map(|b| b.title.as_str())
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
        let missing = from_path(Path::new("/nonexistent/books.csv"))
            .map(|_| ())
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("/nonexistent/books.csv: cannot read it: ")
        );

        let unknown = from_path(Path::new("books.txt")).map(|_| ()).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "books.txt: unknown format: the file name must end in .csv or .json"
        );
    }
}
