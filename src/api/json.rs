//! The JSON body every `/v1` and `/internal` handler takes and returns. A
//! body that cannot be read answers a problem document like every other
//! error (docs/JSON.md, "Problem types"), never axum's plain text: 415
//! `unsupported-media-type` without `Content-Type: application/json`, 413
//! `too-large` over the route's body limit (`limits::MAX_JSON_BODY_BYTES` for
//! `/v1`), 400 `bad-request` for JSON nested deeper than
//! `limits::MAX_JSON_DEPTH` or that is not the expected shape.

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ApiError;
use crate::limits::MAX_JSON_DEPTH;

/// A JSON body in, a JSON body out.
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// How deep `bytes` nest arrays and objects (strings skipped), without parsing them.
fn depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    "Body too large",
                    "the request body is over this route's limit",
                ));
            }
            Err(e) => return Err(ApiError::bad_request(format!("the request body could not be read: {}", e.body_text()))),
        };
        parse(&bytes).map(Json)
    }
}

/// A JSON body already read, checked as every route's: nesting bounded, then
/// the shape. For a route whose body cannot be `application/json` (the
/// console's cross-origin share release, `text/plain`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if depth(bytes) > MAX_JSON_DEPTH {
        return Err(ApiError::bad_request(format!("the JSON body nests deeper than {MAX_JSON_DEPTH} levels")));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("the JSON body is not what this route takes: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(super::depth(br#"{"a":[1,{"b":"[[[{"}]}"#), 3);
        assert_eq!(super::depth(br#""\"[[""#), 0);
        assert_eq!(super::depth(b"[[[]]]"), 3);
        assert_eq!(super::depth(b"42"), 0);
    }
}
