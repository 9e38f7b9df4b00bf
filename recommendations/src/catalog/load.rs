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

use super::{
    Book, Catalog,
    load_error::{CatalogError, Location, Problem},
    parse_category,
};

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
mod tests;
