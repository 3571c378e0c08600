//! [`CsrfService`]: the per-request checks.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, ORIGIN, VARY};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use tower_http::csrf::{Csrf, ProtectionError, ProtectionErrorKind};
use tower_service::Service;

use super::layer::Config;
use super::reject::CsrfRejection;
use crate::session::Session;

/// The body the inner service receives: the request's own, or the form
/// body the layer had to read to find the token.
pub type CsrfBody<B> = Either<B, Full<Bytes>>;

/// The future of [`CsrfService`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// tower-http's Fetch-Metadata / `Origin` rules run against this stand-in
/// for the application: it answers every request that passes them, so
/// that the rules are used as tower-http wrote them, not copied.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probe;

impl Service<Request<()>> for Probe {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// The service made by [`CsrfLayer`](super::CsrfLayer).
#[derive(Clone)]
#[must_use]
pub struct CsrfService<S> {
    inner: S,
    cfg: Arc<Config>,
    origin_check: Csrf<Probe>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CsrfService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrfService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> CsrfService<S> {
    pub(super) fn new(inner: S, cfg: Arc<Config>, origin_check: Csrf<Probe>) -> Self {
        Self {
            inner,
            cfg,
            origin_check,
        }
    }
}

/// What the headers decided.
enum Verdict {
    Pass,
    Reject(CsrfRejection),
    /// Neither header, and credentials: a token must be presented.
    NeedToken(Credentials),
}

/// The credentials a token must be bound to.
enum Credentials {
    Session(Session),
    #[cfg(feature = "jwt")]
    AccessToken(crate::token::TokenSessions, String),
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CsrfService<S>
where
    S: Service<Request<CsrfBody<ReqBody>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness is the one we call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // GET, HEAD and OPTIONS change nothing (tower-http's set: TRACE is
        // not exempt). Only an exact path is bypassed.
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if safe || self.cfg.bypass.contains(req.uri().path()) {
            return Box::pin(inner.call(req.map(Either::Left)));
        }
        let verdict = self.verdict(&req);
        let cfg = self.cfg.clone();
        Box::pin(async move {
            let checked = match verdict {
                Verdict::Pass => Ok(req.map(Either::Left)),
                Verdict::Reject(reason) => Err(reason),
                Verdict::NeedToken(credentials) => check_token(&cfg, credentials, req).await,
            };
            let mut res = match checked {
                Ok(req) => inner.call(req).await?,
                Err(reason) => reason.response(),
            };
            // The answer to an unsafe request depends on these headers: a
            // cache must not hand one visitor's answer to another (S48).
            res.headers_mut()
                .append(VARY, HeaderValue::from_static("Origin, Sec-Fetch-Site"));
            Ok(res)
        })
    }
}

impl<S> CsrfService<S> {
    fn verdict<B>(&mut self, req: &Request<B>) -> Verdict {
        let headers = req.headers();
        let present = |name: &HeaderName| headers.get(name).is_some_and(|v| !v.is_empty());
        let same_site = headers
            .get(SEC_FETCH_SITE)
            .is_some_and(|v| v.as_bytes() == b"same-site");
        if !(same_site && self.cfg.allow_same_site)
            && let Err(kind) = self.fetch_metadata(req)
        {
            return Verdict::Reject(match kind {
                _ if same_site => CsrfRejection::SameSiteSubdomain,
                ProtectionErrorKind::CrossOriginRequest => CsrfRejection::CrossOrigin,
                _ => CsrfRejection::OriginMismatch,
            });
        }
        if present(&SEC_FETCH_SITE) || present(&ORIGIN) {
            // A browser vouched for the request's origin.
            return Verdict::Pass;
        }
        // Neither header: an old browser, a privacy proxy that strips them,
        // or no browser at all. Only requests that carry credentials can
        // be forged, and those must prove they come from our pages.
        match self.credentials(req) {
            Ok(Some(credentials)) => Verdict::NeedToken(credentials),
            Ok(None) => Verdict::Pass,
            Err(reason) => Verdict::Reject(reason),
        }
    }

    /// tower-http's rules, on a copy of the headers they read.
    fn fetch_metadata<B>(&mut self, req: &Request<B>) -> Result<(), ProtectionErrorKind> {
        let mut probe = Request::new(());
        *probe.method_mut() = req.method().clone();
        *probe.uri_mut() = req.uri().clone();
        for name in [SEC_FETCH_SITE, ORIGIN, HOST] {
            for value in req.headers().get_all(&name) {
                probe.headers_mut().append(name.clone(), value.clone());
            }
        }
        let mut answer = self.origin_check.call(probe);
        let waker = std::task::Waker::noop();
        // `Probe` answers at once, and so does tower-http's rejection.
        match Pin::new(&mut answer).poll(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(res)) => match res.extensions().get::<ProtectionError>() {
                Some(e) => Err(e.kind()),
                None => Ok(()),
            },
            Poll::Ready(Err(never)) => match never {},
            // Unreachable with `Probe`; failing closed costs nothing.
            Poll::Pending => Err(ProtectionErrorKind::CrossOriginRequest),
        }
    }

    /// The credentials the request carries, if any.
    fn credentials<B>(&self, req: &Request<B>) -> Result<Option<Credentials>, CsrfRejection> {
        #[cfg(feature = "jwt")]
        if let Some(tokens) = &self.cfg.tokens
            && let crate::CookieLookup::Found(access) =
                crate::find_cookie(req.headers(), crate::token::ACCESS_COOKIE)
        {
            return Ok(Some(Credentials::AccessToken(
                tokens.clone(),
                access.to_owned(),
            )));
        }
        match req.extensions().get::<Session>() {
            Some(session) if session.presents_cookie() => {
                Ok(Some(Credentials::Session(session.clone())))
            }
            Some(_) => Ok(None),
            // Without the session layer we cannot tell a session cookie
            // from any other: refuse rather than wave through.
            None if req.headers().contains_key(COOKIE) => Err(CsrfRejection::NoSessionLayer),
            None => Ok(None),
        }
    }
}

/// Finds the token (header first, else the form field) and checks it
/// against the credentials. Returns the request, rebuilt around the body if
/// the layer had to read it.
async fn check_token<B>(
    cfg: &Config,
    credentials: Credentials,
    req: Request<B>,
) -> Result<Request<CsrfBody<B>>, CsrfRejection>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut values = req.headers().get_all(&cfg.header_name).iter();
    let (token, req) = match (values.next(), values.next()) {
        // Two tokens: which one would the application have meant?
        (Some(_), Some(_)) => return Err(CsrfRejection::BadToken),
        (Some(value), None) => {
            let token = value.to_str().map_err(|_| CsrfRejection::BadToken)?;
            (token.to_owned(), req.map(Either::Left))
        }
        (None, _) if is_form(&req) => {
            let too_large = req
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|n| n > cfg.max_form_bytes as u64);
            if too_large {
                return Err(CsrfRejection::BodyTooLarge);
            }
            let (parts, body) = req.into_parts();
            let bytes = match Limited::new(body, cfg.max_form_bytes).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => return Err(CsrfRejection::BodyTooLarge),
                Err(_) => return Err(CsrfRejection::BodyUnreadable),
            };
            let token = form_field(&bytes, &cfg.form_field)?;
            (
                token,
                Request::from_parts(parts, Either::Right(Full::new(bytes))),
            )
        }
        (None, _) => return Err(CsrfRejection::MissingToken),
    };
    match credentials {
        Credentials::Session(session) => match session.verify_csrf_token(&token).await {
            Ok(true) => Ok(req),
            Ok(false) => Err(CsrfRejection::BadToken),
            Err(_) => Err(CsrfRejection::SessionUnavailable),
        },
        #[cfg(feature = "jwt")]
        Credentials::AccessToken(tokens, access) => match tokens.verify(&access).await {
            Ok(claims) if tokens.verify_csrf_token(&claims, &token) => Ok(req),
            Ok(_) => Err(CsrfRejection::BadToken),
            Err(crate::token::TokenError::Store(_)) => Err(CsrfRejection::SessionUnavailable),
            // An access token that does not verify authenticates nothing,
            // but its cookie still says "credentials": refuse.
            Err(_) => Err(CsrfRejection::BadToken),
        },
    }
}

fn is_form<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The value of `field` in a urlencoded body, taken as sent: tokens are
/// base64url, which browsers never percent-encode.
///
/// # Errors
///
/// [`CsrfRejection::MissingToken`] if the field is absent,
/// [`CsrfRejection::BadToken`] if it is given twice or is not text.
pub(crate) fn form_field(body: &[u8], field: &str) -> Result<String, CsrfRejection> {
    let mut found = None;
    for pair in body.split(|&b| b == b'&') {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        if name == field.as_bytes() {
            if found.is_some() {
                return Err(CsrfRejection::BadToken);
            }
            found = Some(value);
        }
    }
    let value = found.ok_or(CsrfRejection::MissingToken)?;
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| CsrfRejection::BadToken)
}

#[cfg(test)]
mod tests {
    use super::{CsrfRejection, form_field};

    #[test]
    fn form_field_is_found_exactly_once() {
        assert_eq!(
            form_field(b"a=1&csrf_token=abc&b=2", "csrf_token"),
            Ok("abc".into())
        );
        assert_eq!(
            form_field(b"csrf_tokenx=abc", "csrf_token"),
            Err(CsrfRejection::MissingToken)
        );
        assert_eq!(
            form_field(b"", "csrf_token"),
            Err(CsrfRejection::MissingToken)
        );
        assert_eq!(
            form_field(b"csrf_token=a&csrf_token=b", "csrf_token"),
            Err(CsrfRejection::BadToken)
        );
    }
}
