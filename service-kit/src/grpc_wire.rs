//! gRPC on the wire, as both sides read it: the `grpc-status` of a header
//! map, header lookups sized for gRPC's few headers, the status code of an
//! error, and the error type of the services and bodies in between.

use std::error::Error as StdError;

use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::{Code, Status};

/// The error type of services and bodies carrying gRPC calls.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The `grpc-status` header. A `HeaderName` rather than a `&str`, so that a
/// lookup (several per call) does not parse the name each time.
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The `grpc-status` of a header map, when present and valid.
pub fn status_code(headers: &HeaderMap) -> Option<Code> {
    let digits = header(headers, &GRPC_STATUS)?.as_bytes();
    if digits.is_empty() {
        return None;
    }
    let number = digits.iter().try_fold(0i32, |number, &byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit <= 9)?;
        number.checked_mul(10)?.checked_add(i32::from(digit))
    })?;
    Some(Code::from_i32(number))
}

/// Maps up to this many entries are searched by [`header`] in order.
const SCAN_LIMIT: usize = 8;

/// The first value of `name` in `headers`, as `HeaderMap::get` gives it.
///
/// The header maps of a gRPC call hold a handful of entries (a unary
/// response's headers one, its trailers one or two), and comparing a few
/// names costs less than hashing one, which `get` does first; a Recommend
/// call makes five such lookups on the server (docs/benchmarks/history.md,
/// "Header lookups", in "What the server's layers cost per call"). Larger
/// maps are hashed.
pub fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.len() > SCAN_LIMIT {
        return headers.get(name);
    }
    headers
        .iter()
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The status code a failed call ends with: the `Status` in the error's
/// source chain when there is one, otherwise what a gRPC client reports for
/// such a failure.
pub fn code_of_error(err: &(dyn StdError + 'static)) -> Code {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(status) = err.downcast_ref::<Status>() {
            return status.code();
        }
        if err.is::<tonic::TimeoutExpired>() {
            return Code::DeadlineExceeded;
        }
        if err.is::<tonic::ConnectError>() {
            return Code::Unavailable;
        }
        source = err.source();
    }
    Code::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_finds_what_get_finds_in_small_and_large_maps() {
        let name = HeaderName::from_static("x-wanted");
        for others in [0, 3, SCAN_LIMIT, SCAN_LIMIT + 5] {
            let mut headers = HeaderMap::new();
            for i in 0..others {
                let other = HeaderName::try_from(format!("x-other-{i}")).expect("a valid name");
                headers.insert(other, HeaderValue::from(i));
            }
            assert_eq!(header(&headers, &name), None, "{others} others");
            headers.append(name.clone(), HeaderValue::from_static("first"));
            headers.append(name.clone(), HeaderValue::from_static("second"));
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );

            assert_eq!(
                header(&headers, &name),
                headers.get(&name),
                "{others} others"
            );
            assert_eq!(
                header(&headers, &name),
                Some(&HeaderValue::from_static("first"))
            );
        }
    }

    #[test]
    fn status_code_reads_decimal_codes_and_nothing_else() {
        let code = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_STATUS, HeaderValue::from_static(value));
            status_code(&headers)
        };

        assert_eq!(code("0"), Some(Code::Ok));
        assert_eq!(code("8"), Some(Code::ResourceExhausted));
        assert_eq!(code("16"), Some(Code::Unauthenticated));
        assert_eq!(code("17"), Some(Code::Unknown));
        for malformed in ["", "x", "1x", "-1", "+1", " 1", "99999999999"] {
            assert_eq!(code(malformed), None, "{malformed:?}");
        }
        assert_eq!(status_code(&HeaderMap::new()), None);
    }
}
