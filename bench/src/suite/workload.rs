//! What the gRPC phase sends: a catalog whose books all encode to the same
//! size, and each contract's request body, so that the bytes of an OK
//! response are known in advance.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prost::Message as _;
use protobufs::{legacy, v1};

/// Books per category in the gRPC runs' catalog. Every book encodes to the
/// same size (ids 1000 to 3999 are two-byte varints, titles and authors
/// have a fixed width), so each OK response has a size known in advance.
pub(super) const BOOKS_PER_CATEGORY: i32 = 1000;
pub(super) const FIRST_ID: i32 = 1000;

/// One of the two Recommend contracts, as h2load sends it.
pub(super) struct Contract {
    pub(super) name: &'static str,
    pub(super) path: &'static str,
    pub(super) body: PathBuf,
    /// The bytes of one OK response: the 5-byte frame header and the message.
    pub(super) response_bytes: u64,
}

pub(super) fn title(id: i32) -> String {
    format!("Benchmark book {id}")
}

pub(super) fn author(id: i32) -> String {
    format!("Author {id}")
}

/// The gRPC runs' catalog: [`BOOKS_PER_CATEGORY`] books per category, all
/// of one encoded size.
pub(super) fn write_catalog(path: &Path) -> anyhow::Result<()> {
    let mut csv = String::from("id,title,author,category\n");
    for (index, category) in ["mystery", "science_fiction", "self_help"]
        .iter()
        .enumerate()
    {
        let first = FIRST_ID + index as i32 * BOOKS_PER_CATEGORY;
        for id in first..first + BOOKS_PER_CATEGORY {
            csv.push_str(&format!("{id},{},{},{category}\n", title(id), author(id)));
        }
    }
    std::fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))
}

/// `message` as a gRPC length-prefixed message, uncompressed.
pub(super) fn frame(message: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let length = u32::try_from(message.len()).context("a small message")?;
    let mut framed = vec![0];
    framed.extend(length.to_be_bytes());
    framed.extend(message);
    Ok(framed)
}

/// Both contracts' request bodies, written under `work`, and the size of
/// their OK responses (three mystery books).
pub(super) fn contracts(work: &Path) -> anyhow::Result<Vec<Contract>> {
    let v1_request = v1::RecommendRequest {
        user_id: 1,
        category: v1::Category::Mystery as i32,
        max_results: 3,
    };
    let v1_book = v1::Book {
        id: FIRST_ID,
        title: title(FIRST_ID),
        author: author(FIRST_ID),
        category: v1::Category::Mystery as i32,
    };
    let v1_response = v1::RecommendResponse {
        books: vec![v1_book; 3],
    };
    let legacy_request = legacy::RecommendationRequest {
        user_id: 1,
        category: legacy::BookCategory::Mystery as i32,
        max_results: 3,
    };
    let legacy_book = legacy::BookRecommendation {
        id: FIRST_ID,
        title: title(FIRST_ID),
    };
    let legacy_response = legacy::RecommendationResponse {
        recommendations: vec![legacy_book; 3],
    };
    let write = |name: &str, body: Vec<u8>| -> anyhow::Result<PathBuf> {
        let path = work.join(name);
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    Ok(vec![
        Contract {
            name: "v1",
            path: "/bookstore.recommendations.v1.RecommendationsService/Recommend",
            body: write("v1-request.bin", frame(v1_request.encode_to_vec())?)?,
            response_bytes: 5 + v1_response.encoded_len() as u64,
        },
        Contract {
            name: "tutorial's contract",
            path: "/Recommendations/Recommend",
            body: write("legacy-request.bin", frame(legacy_request.encode_to_vec())?)?,
            response_bytes: 5 + legacy_response.encoded_len() as u64,
        },
    ])
}
