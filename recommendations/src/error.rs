//! The errors a request can end with, and the ONE place they become gRPC
//! statuses.

use protobufs::Category;
use tonic::Status;

/// The valid v1 category names, for error messages.
fn valid_categories() -> String {
    Category::list(|category| category.to_v1().as_str_name())
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Legacy contract: a category number outside the tutorial's enum. The
    /// message is the tutorial's, word for word.
    #[error("Category not found")]
    CategoryNotFound,
    /// v1: the category was left at CATEGORY_UNSPECIFIED.
    #[error("category is required; valid categories: {valid}", valid = valid_categories())]
    MissingCategory,
    /// v1: a category number this server does not know.
    #[error("unknown category {0}; valid categories: {valid}", valid = valid_categories())]
    UnknownCategory(i32),
    /// A negative `max_results`.
    #[error("max_results must not be negative, got {0}")]
    NegativeMaxResults(i32),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::CategoryNotFound => Status::not_found(message),
            Error::MissingCategory | Error::UnknownCategory(_) | Error::NegativeMaxResults(_) => {
                Status::invalid_argument(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_error_has_its_status_code() {
        let cases = [
            (Error::CategoryNotFound, Code::NotFound),
            (Error::MissingCategory, Code::InvalidArgument),
            (Error::UnknownCategory(9), Code::InvalidArgument),
            (Error::NegativeMaxResults(-1), Code::InvalidArgument),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
    }
}
