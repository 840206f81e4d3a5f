//! The console's static files, compiled into the binary from `web-ui/static/`: it works
//! offline and needs no files on the box.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        (
            $path,
            $mime,
            include_bytes!(concat!("../../../web-ui/static/", $path)).as_slice(),
        )
    };
}

/// Every file served under `/static/`: path, content type, bytes.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("console.js", "text/javascript; charset=utf-8"),
    asset!("dashboard.js", "text/javascript; charset=utf-8"),
    asset!("logo.svg", "image/svg+xml"),
    asset!("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
];

pub async fn serve(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == file) {
        Some((_, mime, bytes)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}
