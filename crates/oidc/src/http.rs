//! The HTTP client handed to openidconnect: reqwest 0.13 behind a closure
//! (openidconnect implements its `AsyncHttpClient` for any
//! `Fn(HttpRequest) -> Future`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};

use crate::OidcError;

/// Largest response body read from a provider (discovery, JWKS, tokens).
const MAX_BODY: usize = 1 << 20;

/// A transport failure. Its message never holds a URL's query or a body.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TransportError(String);

pub(crate) type HttpFuture =
    Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send>>;

/// The reqwest client for provider calls. Redirects are off: openidconnect
/// requires it (a redirect on the token endpoint could leak the code to
/// another host).
pub(crate) fn build_client() -> Result<reqwest::Client, OidcError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("berth-oidc/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| OidcError::Http(format!("building the HTTP client: {}", err.without_url())))
}

/// The closure openidconnect calls for each request.
pub(crate) fn http_fn(client: &reqwest::Client) -> impl Fn(HttpRequest) -> HttpFuture + use<> {
    let client = client.clone();
    move |request| Box::pin(send(client.clone(), request))
}

async fn send(
    client: reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, TransportError> {
    let host = request.uri().host().unwrap_or("?").to_string();
    let request = reqwest::Request::try_from(request)
        .map_err(|err| TransportError(format!("bad request to {host}: {}", err.without_url())))?;
    let mut response = client
        .execute(request)
        .await
        .map_err(|err| TransportError(format!("{host}: {}", describe(&err))))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| {
        TransportError(format!("{host}: reading the response: {}", describe(&err)))
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(TransportError(format!(
                "{host}: response larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let mut out = http_response(status, body);
    *out.headers_mut() = headers;
    Ok(out)
}

fn http_response(status: reqwest::StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut response = HttpResponse::new(body);
    *response.status_mut() = status;
    response
}

/// reqwest's message plus its source chain (the useful part, e.g.
/// "connection refused"), without the URL.
fn describe(err: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut out = if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
