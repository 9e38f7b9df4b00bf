//! The book categories as the site shows them: URL slug and display name.

use protobufs::v1;

/// A category of the bookstore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Mystery.
    Mystery,
    /// Science fiction.
    ScienceFiction,
    /// Self-help.
    SelfHelp,
}

impl Category {
    /// Every category, in the navigation's order.
    pub const ALL: [Category; 3] = [
        Category::Mystery,
        Category::ScienceFiction,
        Category::SelfHelp,
    ];

    /// The URL segment: `mystery`, `science-fiction`, `self-help`.
    pub fn slug(self) -> &'static str {
        match self {
            Category::Mystery => "mystery",
            Category::ScienceFiction => "science-fiction",
            Category::SelfHelp => "self-help",
        }
    }

    /// The name shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Category::Mystery => "Mystery",
            Category::ScienceFiction => "Science fiction",
            Category::SelfHelp => "Self-help",
        }
    }

    /// The category with this URL segment.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.slug() == slug)
    }

    /// The v1 API's value.
    pub fn to_v1(self) -> v1::Category {
        match self {
            Category::Mystery => v1::Category::Mystery,
            Category::ScienceFiction => v1::Category::ScienceFiction,
            Category::SelfHelp => v1::Category::SelfHelp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip() {
        for category in Category::ALL {
            assert_eq!(Category::from_slug(category.slug()), Some(category));
        }
        assert_eq!(Category::from_slug("romance"), None);
    }
}
