//! The bookstore's categories: the one list that catalog files, both gRPC
//! contracts, the site's URLs and pages, and every error message naming the
//! valid values derive from.

use std::fmt;

use crate::{legacy, v1};

/// A category of the bookstore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// Detective and crime fiction.
    Mystery,
    /// Science fiction.
    ScienceFiction,
    /// Self-help and personal development.
    SelfHelp,
}

impl Category {
    /// Every category, in the order of the tutorial's enum (and of the site's
    /// navigation).
    pub const ALL: [Category; 3] = [
        Category::Mystery,
        Category::ScienceFiction,
        Category::SelfHelp,
    ];

    /// The name in catalog files: `mystery`, `science_fiction`, `self_help`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Mystery => "mystery",
            Category::ScienceFiction => "science_fiction",
            Category::SelfHelp => "self_help",
        }
    }

    /// The site's URL segment: `mystery`, `science-fiction`, `self-help`.
    pub fn slug(self) -> &'static str {
        match self {
            Category::Mystery => "mystery",
            Category::ScienceFiction => "science-fiction",
            Category::SelfHelp => "self-help",
        }
    }

    /// The name shown to people.
    pub fn title(self) -> &'static str {
        match self {
            Category::Mystery => "Mystery",
            Category::ScienceFiction => "Science fiction",
            Category::SelfHelp => "Self-help",
        }
    }

    /// Its position in [`Category::ALL`], for tables indexed by category.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The category named `name` ([`Category::name`] or [`Category::slug`]),
    /// in any case, with `-` or `_` between words, spaces around.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::ALL.into_iter().find(|category| {
            let wanted = category.name().as_bytes();
            name.len() == wanted.len()
                && name.bytes().zip(wanted).all(|(given, &wanted)| {
                    given.to_ascii_lowercase() == wanted || (given == b'-' && wanted == b'_')
                })
        })
    }

    /// The category whose URL segment is exactly `slug`.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|category| category.slug() == slug)
    }

    /// The v1 API's value.
    pub fn to_v1(self) -> v1::Category {
        match self {
            Category::Mystery => v1::Category::Mystery,
            Category::ScienceFiction => v1::Category::ScienceFiction,
            Category::SelfHelp => v1::Category::SelfHelp,
        }
    }

    /// The category of a v1 value; none for `CATEGORY_UNSPECIFIED`.
    pub fn from_v1(category: v1::Category) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.to_v1() == category)
    }

    /// The tutorial's contract's value.
    pub fn to_legacy(self) -> legacy::BookCategory {
        match self {
            Category::Mystery => legacy::BookCategory::Mystery,
            Category::ScienceFiction => legacy::BookCategory::ScienceFiction,
            Category::SelfHelp => legacy::BookCategory::SelfHelp,
        }
    }

    /// The category of a value of the tutorial's contract.
    pub fn from_legacy(category: legacy::BookCategory) -> Self {
        match category {
            legacy::BookCategory::Mystery => Category::Mystery,
            legacy::BookCategory::ScienceFiction => Category::ScienceFiction,
            legacy::BookCategory::SelfHelp => Category::SelfHelp,
        }
    }

    /// Every category's name, by `name_of`, comma-separated: for messages
    /// that list the valid values.
    pub fn list(name_of: impl Fn(Category) -> &'static str) -> String {
        Self::ALL.map(name_of).join(", ")
    }
}

impl fmt::Display for Category {
    /// The name in catalog files.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_slug_and_contract_value_round_trips() {
        for category in Category::ALL {
            assert_eq!(Category::from_name(category.name()), Some(category));
            assert_eq!(Category::from_name(category.slug()), Some(category));
            assert_eq!(Category::from_slug(category.slug()), Some(category));
            assert_eq!(Category::from_v1(category.to_v1()), Some(category));
            assert_eq!(Category::from_legacy(category.to_legacy()), category);
            assert_eq!(Category::ALL[category.index()], category);
        }
        assert_eq!(Category::from_v1(v1::Category::Unspecified), None);
    }

    #[test]
    fn names_are_read_in_any_case_with_either_separator() {
        assert_eq!(
            Category::from_name(" Science-Fiction "),
            Some(Category::ScienceFiction)
        );
        assert_eq!(Category::from_name("SELF_HELP"), Some(Category::SelfHelp));
        assert_eq!(Category::from_name("romance"), None);
        assert_eq!(Category::from_name("science fiction"), None);
        assert_eq!(Category::from_slug("Mystery"), None);
    }

    #[test]
    fn lists_name_every_category_in_order() {
        assert_eq!(
            Category::list(|c| c.to_v1().as_str_name()),
            "CATEGORY_MYSTERY, CATEGORY_SCIENCE_FICTION, CATEGORY_SELF_HELP"
        );
        assert_eq!(
            Category::list(Category::name),
            "mystery, science_fiction, self_help"
        );
    }
}
