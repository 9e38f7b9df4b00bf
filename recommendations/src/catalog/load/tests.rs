//! Loading catalogs, good and bad: every problem named with its file and place.

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
