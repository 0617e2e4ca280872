//! Sessions: a cookie holding the token the launch minted, scoped to the one page (or app) it
//! is for, `HttpOnly` (no script reads it) and `SameSite=Strict` (no other site's page makes
//! the browser send it). Nothing in the cookie is trusted: every request verifies the token
//! with the integration cloud's [`TokenVerifier`](healthcloud_platform::auth::TokenVerifier)
//! and checks its role (and the page its region), exactly as a bearer token would be.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use healthcloud_platform::auth::{AuthError, Principal, Role};
use healthcloud_platform::http::{cookies, session_cookie};

use super::Launch;
use super::error::PageError;

/// How long a launch (its token and cookie) lasts.
pub const SESSION_SECS: i64 = 600;

/// One kind of page session: its cookie, the path it is scoped to and who may hold it.
pub trait SessionKind {
    /// The cookie's name.
    const COOKIE: &'static str;
    /// The path the cookie is scoped to: the browser sends it nowhere else.
    const PATH: &'static str;
    /// The role the page is for.
    const ROLE: Role;
    /// The page, for messages.
    const PAGE: &'static str;
}

/// The region admin pages, `/regions/{region}/…` (the region is checked per page).
#[derive(Debug)]
pub struct RegionAdmin;

impl SessionKind for RegionAdmin {
    const COOKIE: &'static str = "healthcloud_region_admin";
    const PATH: &'static str = "/regions/";
    const ROLE: Role = Role::RegionAdmin;
    const PAGE: &'static str = "the region admin page";
}

/// The store admin page, `/store-admin/`.
#[derive(Debug)]
pub struct StoreAdmin;

impl SessionKind for StoreAdmin {
    const COOKIE: &'static str = "healthcloud_store_admin";
    const PATH: &'static str = "/store-admin/";
    const ROLE: Role = Role::StoreAdmin;
    const PAGE: &'static str = "the store admin page";
}

/// The citizen page, `/citizen/`.
#[derive(Debug)]
pub struct Citizen;

impl SessionKind for Citizen {
    const COOKIE: &'static str = "healthcloud_citizen";
    const PATH: &'static str = "/citizen/";
    const ROLE: Role = Role::Citizen;
    const PAGE: &'static str = "the citizen page";
}

/// The verified session of a `K` page: extracting it fails with a 401 or 403 page.
#[derive(Debug)]
pub struct Session<K> {
    /// The token, as verified (the store admin page sends it on to the store).
    pub token: String,
    /// Who it is.
    pub principal: Principal,
    kind: PhantomData<K>,
}

impl<K> Session<K> {
    /// The user's id.
    pub fn user(&self) -> &str {
        &self.principal.claims.sub
    }

    /// When the session ends, as people read it.
    pub fn ends(&self) -> String {
        chrono::DateTime::from_timestamp(self.principal.claims.exp, 0)
            .map(|at| at.format("%H:%M UTC").to_string())
            .unwrap_or_default()
    }
}

impl<K: SessionKind + Send + Sync> FromRequestParts<Launch> for Session<K> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, launch: &Launch) -> Result<Self, PageError> {
        // Every cookie of that name is tried: a page elsewhere on this origin may have set a
        // decoy with a narrower path, which the browser sends first.
        let mut refusal = None;
        let mut verified = None;
        let audience = page_audience(&launch.config().public_url, K::PATH);
        for token in cookies(&parts.headers, K::COOKIE) {
            let checked = launch
                .config()
                .verifier
                .verify(token)
                .and_then(|principal| principal.check_audience(&[&audience]).map(|()| principal));
            match checked {
                Ok(principal) => {
                    verified = Some((token, principal));
                    break;
                }
                Err(error) => refusal = refusal.or(Some(error)),
            }
        }
        let (token, principal) = match (verified, refusal) {
            (Some(verified), _) => verified,
            (None, None) => {
                return Err(PageError::NoSession(format!(
                    "you have no session for {}: it is opened from the launch page",
                    K::PAGE
                )));
            }
            (None, Some(AuthError::Expired)) => {
                return Err(PageError::NoSession(format!(
                    "your session for {} has expired",
                    K::PAGE
                )));
            }
            (None, Some(other)) => {
                return Err(PageError::NoSession(format!(
                    "your session for {} is not valid ({other})",
                    K::PAGE
                )));
            }
        };
        if principal.claims.role != K::ROLE {
            return Err(PageError::Forbidden(format!(
                "{} is for the {} role; your session is for role {}",
                K::PAGE,
                K::ROLE.as_str(),
                principal.claims.role.as_str()
            )));
        }
        Ok(Session {
            token: token.to_owned(),
            principal,
            kind: PhantomData,
        })
    }
}

/// `POST …/sign-out`: forgets the `K` session's cookie and goes back to the launch page.
pub async fn sign_out<K: SessionKind>(State(launch): State<Launch>) -> Result<Response, PageError> {
    let clear = clear_cookie(K::COOKIE, K::PATH, launch.inner.secure_cookies)?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, HeaderValue::from_static("/")),
            (header::SET_COOKIE, clear),
        ],
    )
        .into_response())
}

/// The audience of a page's session token: the page's URL under the public URL, so the token
/// opens that page and is refused by the FHIR API, the apps and every other page.
pub fn page_audience(public_url: &str, path: &str) -> String {
    format!("{}{path}", public_url.trim_end_matches('/'))
}

/// A `Set-Cookie` value holding `token` for `path` for the session's lifetime.
pub fn set_cookie(
    name: &str,
    token: &str,
    path: &str,
    secure: bool,
) -> Result<HeaderValue, PageError> {
    cookie_header(name, token, path, SESSION_SECS, secure)
}

/// A `Set-Cookie` value that removes cookie `name` of `path`.
pub fn clear_cookie(name: &str, path: &str, secure: bool) -> Result<HeaderValue, PageError> {
    cookie_header(name, "", path, 0, secure)
}

fn cookie_header(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    secure: bool,
) -> Result<HeaderValue, PageError> {
    session_cookie(name, value, path, max_age, secure)
        .map_err(|e| PageError::Internal(anyhow::anyhow!("a cookie for {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_are_http_only_strict_and_path_scoped() {
        let value = set_cookie("c", "t.o.k", "/citizen/", false).unwrap();
        assert_eq!(
            value.to_str().unwrap(),
            "c=t.o.k; Path=/citizen/; Max-Age=600; HttpOnly; SameSite=Strict"
        );
        let secure = clear_cookie("c", "/citizen/", true).unwrap();
        assert_eq!(
            secure.to_str().unwrap(),
            "c=; Path=/citizen/; Max-Age=0; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
