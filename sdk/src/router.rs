//! A tiny router: method + path pattern → handler, with `{name}` path parameters.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::http::{Method, Request, Response};

type Handler = Box<dyn Fn(Request) -> Response>;

struct Route {
    method: Method,
    pattern: Vec<Segment>,
    handler: Handler,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Routes requests to handlers by method and path.
///
/// Patterns are paths whose segments are literals or `{name}` parameters (read them with
/// [`Request::param`]). A trailing slash does not matter (`/readings/` matches
/// `/readings`). A path that matches no pattern is answered `404`; a path that matches only
/// for other methods is answered `405` with an `allow` header. `HEAD` is routed like `GET`.
///
/// ```
/// use healthcloud_sdk::{Method, Request, Response, Router};
///
/// let router = Router::new()
///     .get("/", |_| Response::text("home"))
///     .get("/patients/{id}/readings", |req| Response::text(req.param("id").unwrap_or_default()));
/// let response = router.handle(Request::new(Method::Get, "/patients/p%2D1/readings"));
/// assert_eq!(response.body_text(), "p-1");
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|route| {
                let path: Vec<String> = route
                    .pattern
                    .iter()
                    .map(|segment| match segment {
                        Segment::Literal(text) => text.clone(),
                        Segment::Param(name) => format!("{{{name}}}"),
                    })
                    .collect();
                format!("{} /{}", route.method, path.join("/"))
            }))
            .finish()
    }
}

impl Router {
    /// A router without routes (everything is `404`).
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes `method` requests for `pattern` to `handler`.
    pub fn route(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request) -> Response + 'static,
    ) -> Router {
        self.routes.push(Route {
            method,
            pattern: parse_pattern(pattern),
            handler: Box::new(handler),
        });
        self
    }

    /// Routes `GET` (and `HEAD`) requests for `pattern` to `handler`.
    pub fn get(self, pattern: &str, handler: impl Fn(Request) -> Response + 'static) -> Router {
        self.route(Method::Get, pattern, handler)
    }

    /// Routes `POST` requests for `pattern` to `handler`.
    pub fn post(self, pattern: &str, handler: impl Fn(Request) -> Response + 'static) -> Router {
        self.route(Method::Post, pattern, handler)
    }

    /// Routes `PUT` requests for `pattern` to `handler`.
    pub fn put(self, pattern: &str, handler: impl Fn(Request) -> Response + 'static) -> Router {
        self.route(Method::Put, pattern, handler)
    }

    /// Routes `DELETE` requests for `pattern` to `handler`.
    pub fn delete(self, pattern: &str, handler: impl Fn(Request) -> Response + 'static) -> Router {
        self.route(Method::Delete, pattern, handler)
    }

    /// Answers `request` with the first matching route's handler, or `404`/`405`.
    pub fn handle(&self, mut request: Request) -> Response {
        let path = split_path(&request.path);
        let routed_method = match request.method {
            Method::Head => Method::Get,
            ref other => other.clone(),
        };
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            let Some(params) = match_pattern(&route.pattern, &path) else {
                continue;
            };
            if route.method == routed_method {
                request.set_params(params);
                return (route.handler)(request);
            }
            if !allowed.contains(&route.method.as_str()) {
                allowed.push(route.method.as_str());
            }
        }
        if allowed.is_empty() {
            return Response::text("Not found").with_status(404);
        }
        if allowed.contains(&"GET") {
            allowed.push("HEAD");
        }
        Response::text("Method not allowed")
            .with_status(405)
            .with_header("allow", &allowed.join(", "))
    }
}

fn split_path(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    split_path(pattern)
        .into_iter()
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(segment.to_owned()),
            },
        )
        .collect()
}

fn match_pattern(pattern: &[Segment], path: &[&str]) -> Option<Vec<(String, String)>> {
    if pattern.len() != path.len() {
        return None;
    }
    let mut params = Vec::new();
    for (segment, actual) in pattern.iter().zip(path) {
        match segment {
            Segment::Literal(text) if text == actual => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => params.push((
                name.clone(),
                percent_decode_str(actual).decode_utf8_lossy().into_owned(),
            )),
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new()
            .get("/", |_| Response::text("root"))
            .get("/api/readings", |_| Response::text("readings"))
            .post("/measurements", |req| {
                Response::text(format!("posted {}", req.body.len()))
            })
            .get("/patients/{patient}/readings/{id}", |req| {
                Response::text(format!(
                    "{}:{}",
                    req.param("patient").unwrap_or("?"),
                    req.param("id").unwrap_or("?")
                ))
            })
    }

    fn get(path: &str) -> Response {
        router().handle(Request::new(Method::Get, path))
    }

    #[test]
    fn routes_by_path_under_the_mount_point() {
        assert_eq!(get("/apps/r/examples/bp/").body_text(), "root");
        assert_eq!(get("/apps/r/examples/bp").body_text(), "root");
        assert_eq!(
            get("/apps/r/examples/bp/api/readings").body_text(),
            "readings"
        );
        assert_eq!(get("/api/readings/").body_text(), "readings");
        assert_eq!(get("/patients/a%20b/readings/7").body_text(), "a b:7");
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert_eq!(get("/api").status, 404);
        assert_eq!(get("/api/readings/extra").status, 404);
        let response = get("/measurements");
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), Some("POST"));
        let delete = router().handle(Request::new(Method::Delete, "/"));
        assert_eq!(delete.status, 405);
        assert_eq!(delete.header("allow"), Some("GET, HEAD"));
    }

    #[test]
    fn head_is_routed_like_get_and_post_gets_its_body() {
        assert_eq!(router().handle(Request::new(Method::Head, "/")).status, 200);
        let post = Request::new(Method::Post, "/measurements").with_body("abc");
        assert_eq!(router().handle(post).body_text(), "posted 3");
    }

    #[test]
    fn debug_lists_the_routes() {
        let text = format!("{:?}", router());
        assert!(
            text.contains("GET /patients/{patient}/readings/{id}"),
            "{text}"
        );
    }
}
