//! The book catalog: books grouped by category, and random recommendations
//! drawn from it in time and memory proportional to the number asked for.

mod live;
mod load;
mod load_error;

use std::fmt;

use rand::{Rng, seq::IndexedRandom};

pub use live::LiveCatalog;
pub use load_error::{CatalogError, Location, Problem};

/// The catalog compiled into the binary: 72 real books, the tutorial's nine
/// among them with their original ids 1 to 9.
pub const BUILTIN_CSV: &str = include_str!("../../data/catalog.csv");

pub use protobufs::Category;

/// The error of parsing a [`Category`] name; it lists the valid names
/// (from [`Category::ALL`]).
#[derive(Debug)]
pub struct UnknownCategory(pub String);

impl fmt::Display for UnknownCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown category {:?}; expected one of {}",
            self.0,
            Category::list(Category::name)
        )
    }
}

impl std::error::Error for UnknownCategory {}

/// The category named `name` (see [`Category::from_name`]).
pub fn parse_category(name: &str) -> Result<Category, UnknownCategory> {
    Category::from_name(name).ok_or_else(|| UnknownCategory(name.to_owned()))
}

/// A book of the catalog.
///
/// Its title and author share one allocation: a catalog of a million books
/// is a million of these, and each allocation costs its own header and
/// rounding (see [`Catalog`] for the memory bound this keeps).
#[derive(Clone, PartialEq, Eq)]
pub struct Book {
    /// Unique, positive id.
    pub id: i32,
    /// The category it is filed under.
    pub category: Category,
    /// The title, then the author.
    text: Box<str>,
    /// Where the title ends in `text`.
    title_len: usize,
}

impl Book {
    /// A book; `title` and `author` are kept as given.
    pub fn new(id: i32, title: &str, author: &str, category: Category) -> Self {
        let mut text = String::with_capacity(title.len() + author.len());
        text.push_str(title);
        text.push_str(author);
        Self {
            id,
            category,
            text: text.into_boxed_str(),
            title_len: title.len(),
        }
    }

    /// Title as printed on the cover.
    pub fn title(&self) -> &str {
        &self.text[..self.title_len]
    }

    /// Author or authors.
    pub fn author(&self) -> &str {
        &self.text[self.title_len..]
    }
}

impl fmt::Debug for Book {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Book")
            .field("id", &self.id)
            .field("title", &self.title())
            .field("author", &self.author())
            .field("category", &self.category)
            .finish()
    }
}

/// An immutable catalog, shared by every request.
///
/// Invariants (checked when it is built): at least one book, ids unique and
/// positive, titles and authors not blank.
///
/// Memory: 32 bytes per book plus one allocation for its title and author;
/// the benchmark suite measures the peak while loading a million books
/// (docs/benchmarks/history.md, "The allocator").
#[derive(Debug)]
pub struct Catalog {
    by_category: [Box<[Book]>; 3],
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn builtin() -> Result<Self, CatalogError> {
        load::from_csv(BUILTIN_CSV.as_bytes(), "the built-in catalog")
    }

    /// Loads a catalog file: CSV when the name ends in `.csv`, JSON when it
    /// ends in `.json` (see the docs for both formats). Refuses what is not
    /// a regular file (a FIFO, a device) and files over `max_bytes`.
    pub fn from_path(path: &std::path::Path, max_bytes: u64) -> Result<Self, CatalogError> {
        load::from_path(path, max_bytes)
    }

    /// Groups already validated books by category, in order.
    fn from_groups(groups: [Vec<Book>; 3]) -> Self {
        Self {
            // Shrinking a large allocation moves no books (realloc remaps).
            by_category: groups.map(Vec::into_boxed_slice),
        }
    }

    /// Every book of `category`, in catalog order.
    pub fn books(&self, category: Category) -> &[Book] {
        &self.by_category[category.index()]
    }

    /// The number of books in the whole catalog.
    pub fn len(&self) -> usize {
        self.by_category.iter().map(|books| books.len()).sum()
    }

    /// Always false: a catalog holds at least one book.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `count` distinct books of `category`, chosen uniformly at random
    /// without replacement. Fewer when the category is smaller.
    ///
    /// Costs O(`count`²) at worst and never depends on the catalog size, so
    /// callers bound `count` (the services cap it at 100).
    pub fn recommend<'a, R: Rng + ?Sized>(
        &'a self,
        category: Category,
        count: usize,
        rng: &mut R,
    ) -> impl ExactSizeIterator<Item = &'a Book> + use<'a, R> {
        let books = self.books(category);
        books.sample(rng, count.min(books.len()))
    }
}

/// Parses a CSV catalog held in memory (tests of other modules).
#[cfg(test)]
pub(crate) fn load_csv_for_tests(text: &str) -> Catalog {
    match load::from_csv(text.as_bytes(), "test catalog") {
        Ok(catalog) => catalog,
        Err(err) => panic!("invalid test catalog: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;

    use super::*;

    #[test]
    fn builtin_catalog_holds_the_tutorials_nine_books_and_more() {
        let catalog = Catalog::builtin().expect("the built-in catalog is valid");

        assert!(catalog.len() >= 60, "only {} books", catalog.len());
        let mystery: Vec<_> = catalog.books(Category::Mystery).iter().take(3).collect();
        assert_eq!(mystery[0].id, 1);
        assert_eq!(mystery[0].title(), "The Maltese Falcon");
        assert_eq!(mystery[2].title(), "The Hound of the Baskervilles");
        let sci_fi = &catalog.books(Category::ScienceFiction)[0];
        assert_eq!(
            (sci_fi.id, sci_fi.title()),
            (4, "The Hitchhiker's Guide to the Galaxy")
        );
        let self_help = &catalog.books(Category::SelfHelp)[2];
        assert_eq!(
            (self_help.id, self_help.title()),
            (9, "Man's Search for Meaning")
        );
    }

    #[test]
    fn recommendations_are_distinct_books_of_the_category() {
        let catalog = Catalog::builtin().expect("the built-in catalog is valid");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);

        for _ in 0..100 {
            let books: Vec<&Book> = catalog.recommend(Category::SelfHelp, 5, &mut rng).collect();
            let ids: HashSet<i32> = books.iter().map(|b| b.id).collect();
            assert_eq!(ids.len(), 5, "duplicates in {books:?}");
            assert!(books.iter().all(|b| b.category == Category::SelfHelp));
        }
    }

    #[test]
    fn asking_for_more_than_the_category_holds_returns_all_of_it() {
        let catalog = Catalog::builtin().expect("the built-in catalog is valid");
        let size = catalog.books(Category::Mystery).len();

        let count = catalog
            .recommend(Category::Mystery, size + 50, &mut rand::rng())
            .len();

        assert_eq!(count, size);
    }

    #[test]
    fn every_book_can_be_recommended() {
        let catalog = Catalog::builtin().expect("the built-in catalog is valid");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut seen = HashSet::new();

        for _ in 0..2_000 {
            seen.extend(
                catalog
                    .recommend(Category::Mystery, 3, &mut rng)
                    .map(|b| b.id),
            );
        }

        assert_eq!(seen.len(), catalog.books(Category::Mystery).len());
    }

    #[test]
    fn an_unknown_category_lists_the_valid_names() {
        let error = parse_category("romance").expect_err("not a category");

        assert_eq!(
            error.to_string(),
            r#"unknown category "romance"; expected one of mystery, science_fiction, self_help"#
        );
        assert_eq!(parse_category(" Self-Help").ok(), Some(Category::SelfHelp));
    }
}
