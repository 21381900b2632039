//! Reading `application/x-www-form-urlencoded` bodies (capped) and query
//! strings into the named fields a route knows, refusing duplicates.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use url::form_urlencoded;

use crate::error::ApiError;

/// Largest form body accepted (64 KiB); larger ones answer 413.
pub const MAX_FORM_BODY: usize = 64 * 1024;

/// The fields of a form or query string a route knows. Per RFC 6749 §3.1,
/// unknown fields are ignored, a field sent without a value counts as
/// absent, and a known field sent twice is an error.
#[derive(Default)]
pub(crate) struct Fields {
    values: Vec<(&'static str, String)>,
}

impl Fields {
    /// Parse `input` keeping the fields named in `known`.
    pub(crate) fn parse(input: &[u8], known: &[&'static str]) -> Result<Self, ApiError> {
        let mut fields = Self::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (name, value) in form_urlencoded::parse(input) {
            let Some(&name) = known.iter().find(|k| **k == name) else {
                continue;
            };
            if seen.contains(&name) {
                return Err(ApiError::invalid_request(format!(
                    "the field {name} is given more than once"
                )));
            }
            seen.push(name);
            // form_urlencoded replaces bytes that are not UTF-8.
            if value.contains('\u{FFFD}') {
                return Err(ApiError::invalid_request(format!(
                    "the field {name} is not UTF-8"
                )));
            }
            if !value.is_empty() {
                fields.values.push((name, value.into_owned()));
            }
        }
        Ok(fields)
    }

    /// The value of `name`, if given (and not empty).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Take the value of `name` out.
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        let i = self.values.iter().position(|(n, _)| *n == name)?;
        Some(self.values.swap_remove(i).1)
    }

    /// The value of `a` or of its alias `b`; both given is a duplicate.
    pub(crate) fn take_either(&mut self, a: &str, b: &str) -> Result<Option<String>, ApiError> {
        match (self.take(a), self.take(b)) {
            (Some(_), Some(_)) => Err(ApiError::invalid_request(format!(
                "the fields {a} and {b} are the same field, given twice"
            ))),
            (x, y) => Ok(x.or(y)),
        }
    }

    /// True if `name` was given.
    #[cfg(test)]
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Check the content type is `application/x-www-form-urlencoded` (a
/// `charset` parameter is allowed, UTF-8 only), then read the body, at
/// most [`MAX_FORM_BODY`] bytes.
pub(crate) async fn read_form(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let wrong_type =
        || ApiError::invalid_request("the body must be application/x-www-form-urlencoded");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(wrong_type)?;
    let mut parts = content_type.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    {
        return Err(wrong_type());
    }
    for param in parts {
        match param.split_once('=') {
            Some((k, v))
                if k.trim().eq_ignore_ascii_case("charset")
                    && !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") =>
            {
                return Err(ApiError::invalid_request("the body must be UTF-8"));
            }
            _ => {}
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BODY as u64) {
        return Err(ApiError::too_large(MAX_FORM_BODY));
    }
    match axum::body::to_bytes(body, MAX_FORM_BODY).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.into_inner().is::<http_body_util::LengthLimitError>();
            Err(if too_large {
                ApiError::too_large(MAX_FORM_BODY)
            } else {
                ApiError::invalid_request("the request body could not be read")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["code", "refresh_token", "refresh-token"];

    #[test]
    fn fields_ignore_unknown_and_empty_and_refuse_duplicates() {
        let f = Fields::parse(b"code=a%2Bb&x=1&x=2&refresh_token=", KNOWN).unwrap();
        assert_eq!(f.get("code"), Some("a+b"));
        assert!(!f.has("refresh_token"));
        let e = Fields::parse(b"code=a&code=b", KNOWN).err().unwrap();
        assert_eq!(e.code(), "invalid_request");
        assert!(Fields::parse(b"code=&code=b", KNOWN).is_err());
        let mut f = Fields::parse(b"refresh_token=a&refresh-token=b", KNOWN).unwrap();
        assert!(f.take_either("refresh_token", "refresh-token").is_err());
        assert!(Fields::parse(b"code=%FF%FE", KNOWN).is_err(), "not UTF-8");
        // Anything at all parses without a panic.
        for junk in [&b"%"[..], b"&&&==&", b"code", b"=x", b"\xff\x00"] {
            let _ = Fields::parse(junk, KNOWN);
        }
    }

    fn headers(content_type: &str, length: Option<usize>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        if let Some(n) = length {
            h.insert(header::CONTENT_LENGTH, n.into());
        }
        h
    }

    #[tokio::test]
    async fn bodies_are_typed_and_capped() {
        let form = "application/x-www-form-urlencoded";
        let ok = read_form(&headers(form, None), Body::from("a=b")).await;
        assert_eq!(ok.unwrap(), b"a=b");
        let with_charset = headers("application/x-www-form-urlencoded; charset=UTF-8", None);
        assert!(read_form(&with_charset, Body::from("a=b")).await.is_ok());
        let latin = headers("application/x-www-form-urlencoded; charset=latin1", None);
        assert!(read_form(&latin, Body::from("a=b")).await.is_err());
        let json = read_form(&headers("application/json", None), Body::from("{}")).await;
        assert_eq!(json.unwrap_err().status(), 400);
        let exact = vec![b'a'; MAX_FORM_BODY];
        assert!(
            read_form(&headers(form, None), Body::from(exact))
                .await
                .is_ok()
        );
        // Too large without a length (chunked), and as declared.
        let over = vec![b'a'; MAX_FORM_BODY + 1];
        let e = read_form(&headers(form, None), Body::from(over))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 413);
        let e = read_form(&headers(form, Some(MAX_FORM_BODY + 1)), Body::empty()).await;
        assert_eq!(e.unwrap_err().status(), 413);
    }
}
