//! The UI's static files, compiled into the binary.
//!
//! Cluster web hosts are often offline, so nothing comes from a CDN. Files are served from a
//! fixed table by exact name: no file system access, so no path traversal. The page itself
//! needs no login; every byte of data comes through `/api`, which does.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// (name under `/static/`, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/app.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/charts.js")),
    ("cluster.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/cluster.js")),
    // uPlot, vendored from npm (version, integrity and licence in assets/vendor/uplot/).
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../assets/vendor/uplot/uPlot.min.css")),
    ("uPlot-LICENSE.txt", "text/plain; charset=utf-8", include_bytes!("../../assets/vendor/uplot/LICENSE")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../assets/app.css")),
    ("tips.json", "application/json", include_bytes!("../../assets/tips.json")),
];

const INDEX: &[u8] = include_bytes!("../../assets/index.html");

/// Scripts and styles only from here; reports render in a sandboxed frame (no scripts there).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

pub(super) fn mount(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/", "/index.html"])
            .wrap(actix_web::middleware::Compress::default())
            .route(web::get().to(index)),
    )
    .service(
        web::resource("/static/{file}")
            .wrap(actix_web::middleware::Compress::default())
            .route(web::get().to(static_file)),
    );
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(INDEX)
}

async fn static_file(req: HttpRequest) -> HttpResponse {
    let name = req.match_info().get("file").unwrap_or("");
    let Some((_, kind, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("no such file\n");
    };
    // Revalidated on every load (cheap: 304 by ETag), so an upgraded binary's UI is seen at once.
    let etag = format!("\"{:016x}\"", fnv1a(bytes));
    let fresh = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str());
    let mut resp = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    resp.insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        resp.finish()
    } else {
        resp.content_type(*kind).body(*bytes)
    }
}

/// FNV-1a: a content hash for ETags (not security relevant).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Total size of the embedded UI, bytes (for the size test).
#[cfg(test)]
pub(super) fn total_bytes() -> usize {
    INDEX.len() + FILES.iter().map(|(_, _, b)| b.len()).sum::<usize>()
}
