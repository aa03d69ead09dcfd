//! A Rust port of the official OCI distribution-spec conformance suite
//! (github.com/opencontainers/distribution-spec/conformance, the v1.1.x
//! ginkgo suite: setup.go, image.go, 01_pull_test.go, 02_push_test.go,
//! 03_discovery_test.go, 04_management_test.go), run against the real
//! `berth` binary.
//!
//! Configuration mirrored from the suite's environment variables:
//! - `OCI_TEST_PULL`, `OCI_TEST_PUSH`, `OCI_TEST_CONTENT_DISCOVERY` and
//!   `OCI_TEST_CONTENT_MANAGEMENT` all enabled;
//! - `OCI_CROSSMOUNT_NAMESPACE` set (cross-repository mount enabled);
//! - `OCI_DELETE_MANIFEST_BEFORE_BLOBS` unset (the suite's default: true);
//! - `OCI_AUTOMATIC_CROSSMOUNT` see [`AUTOMATIC_CROSSMOUNT`];
//! - `OCI_TAG_NAME`, `OCI_MANIFEST_DIGEST`, `OCI_BLOB_DIGEST`, `OCI_TAG_LIST`
//!   unset: the suite pushes its own content (so the specs that only read
//!   those variables, "Get tag name from environment" and "Populate registry
//!   with test tags (no push)", do nothing and are reported as such).
//!
//! Every `g.Specify` of the Go suite is one `check!` here, in the same order,
//! with the same name, preceded by a `// <file>: "<name>"` comment. As in
//! ginkgo, a failed expectation ends its check (later expectations of that
//! check are not made) but later checks still run, sharing the same state
//! (`lastResponse`, tag lists, ...) the Go specs share. Where the Go suite
//! guards a spec with `RunOnlyIf`, the same condition decides here and the
//! report says which branch the server made the suite take.
//!
//! Each workflow gets its own server (one test per workflow) and a fifth test
//! runs the four in sequence on one server and one namespace, exactly as the
//! official binary does (so state left by one workflow meets the next).
//!
//! Requests are framed on the wire the way the Go suite's client (reggie on
//! resty on net/http) frames them: bodies are streamed (`Transfer-Encoding:
//! chunked`, net/http ignores the `Content-Length` the specs set by hand),
//! body-less `POST`/`PUT`/`PATCH` carry `Content-Length: 0`, `GET` drops any
//! body, query parameters are form-encoded and appended to the `Location`'s
//! own query, and redirects are followed.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;

use common::Berth;
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

// ---------------------------------------------------------------------------
// setup.go constants

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
const OCTET_STREAM: &str = "application/octet-stream";

const TEST_TAG_NAME: &str = "tagtest0";
const EMPTY_LAYER_TEST_TAG: &str = "emptylayer";
const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
const INVALID_MANIFEST_CONTENT: &[u8] = b"blablabla";
const ARTIFACT_TYPE_FILTER: &str = "artifactType";
const TEST_ANNOTATION_KEY: &str = "org.opencontainers.conformance.test";
const TEST_REF_ARTIFACT_TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
const TEST_REF_ARTIFACT_TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
const TEST_REF_ARTIFACT_TYPE_INDEX: &str = "application/vnd.food.stand";
const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// setup.go `layerBase64String`: a gzipped tarball holding one text file.
const LAYER_BASE64: &str = "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0\
     WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD\
     jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA";

/// setup.go `errorCodes`. (In the Go source the slice is indexed by constants
/// that share an `iota` block with the workflow bits, so it also holds five
/// empty strings and an error without a code would pass `ContainElement`;
/// the intended list, without that accident, is checked here.)
const ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];
const UNSUPPORTED: &str = "UNSUPPORTED";

/// `OCI_DELETE_MANIFEST_BEFORE_BLOBS`: unset, so the suite's default (true).
const DELETE_MANIFEST_BEFORE_BLOBS: bool = true;

/// `OCI_AUTOMATIC_CROSSMOUNT`: `None` = unset (both automatic-mount specs are
/// skipped), `Some(true)` = the registry finds a blob named by `mount`
/// without `from` (201), `Some(false)` = it does not (202). Berth declares no
/// automatic cross-repository mount (a mount without `from` never searches
/// other repositories), so `Some(false)`.
const AUTOMATIC_CROSSMOUNT: Option<bool> = Some(false);

/// Guard against a server that never answers (the Go client has none and would
/// hang); not a timing assertion.
const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Check bookkeeping: a ginkgo `Specify` is a `check!`.

/// Why a check did not pass.
#[derive(Debug)]
enum Fail {
    /// An expectation failed (ginkgo: the spec failed).
    Failed(String),
    /// A `RunOnlyIf`/`RunOnlyIfNot` guard was false (ginkgo: the spec skipped).
    NotRun(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Failed(s)
    }
}

/// `Expect(cond)`: fail the check with a message when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(Fail::Failed(format!($($arg)+)));
        }
    };
}

/// `RunOnlyIf(cond)`: end the check as not run when `cond` is false.
macro_rules! run_only_if {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(Fail::NotRun(format!($($arg)+)));
        }
    };
}

/// Runs one check (a ginkgo `Specify`) and records its outcome.
macro_rules! check {
    ($rec:expr, $name:expr, $body:block) => {{
        let result: Result<(), Fail> = async { $body }.await;
        $rec.record($name, result);
    }};
}

struct Outcome {
    file: &'static str,
    context: String,
    name: String,
    result: Result<(), Fail>,
}

/// Collects the outcome of every check; `finish` fails the test listing every
/// failed check.
struct Recorder {
    title: String,
    file: &'static str,
    context: String,
    outcomes: Vec<Outcome>,
    warnings: Vec<String>,
}

impl Recorder {
    fn new(title: &str) -> Recorder {
        Recorder {
            title: title.to_string(),
            file: "",
            context: String::new(),
            outcomes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A workflow (`g.Context(titlePull, ...)`) and its source file.
    fn workflow(&mut self, file: &'static str, title: &str) {
        self.file = file;
        self.context = title.to_string();
        eprintln!("\n=== {file}: {title}");
    }

    /// A nested `g.Context`.
    fn context(&mut self, workflow: &str, context: &str) {
        self.context = format!("{workflow} / {context}");
        eprintln!("--- {}", self.context);
    }

    /// ginkgo's `Warn`: reported, not a failure.
    fn warn(&mut self, message: &str) {
        eprintln!("    WARNING: {message}");
        self.warnings
            .push(format!("{}: {}: {message}", self.file, self.context));
    }

    fn record(&mut self, name: &str, result: Result<(), Fail>) {
        match &result {
            Ok(()) => eprintln!("  PASS     {name}"),
            Err(Fail::NotRun(why)) => eprintln!("  NOT RUN  {name} ({why})"),
            Err(Fail::Failed(why)) => eprintln!("  FAIL     {name}\n{}", indent(why, 13)),
        }
        for n in NOTES.with(|n| std::mem::take(&mut *n.borrow_mut())) {
            eprintln!("           ({n})");
        }
        self.outcomes.push(Outcome {
            file: self.file,
            context: self.context.clone(),
            name: name.to_string(),
            result,
        });
    }

    fn finish(self) {
        let mut files: Vec<&'static str> = Vec::new();
        for o in &self.outcomes {
            if !files.contains(&o.file) {
                files.push(o.file);
            }
        }
        let mut summary = format!("\n=== {} summary\n", self.title);
        for file in &files {
            let of_file = self.outcomes.iter().filter(|o| o.file == *file);
            let (mut pass, mut fail, mut not_run) = (0, 0, 0);
            for o in of_file {
                match o.result {
                    Ok(()) => pass += 1,
                    Err(Fail::Failed(_)) => fail += 1,
                    Err(Fail::NotRun(_)) => not_run += 1,
                }
            }
            let _ = writeln!(
                summary,
                "{file}: {} checks: {pass} passed, {fail} failed, {not_run} not run",
                pass + fail + not_run
            );
        }
        for w in &self.warnings {
            let _ = writeln!(summary, "warning: {w}");
        }
        eprintln!("{summary}");
        let failed: Vec<String> = self
            .outcomes
            .iter()
            .filter_map(|o| match &o.result {
                Err(Fail::Failed(why)) => Some(format!(
                    "{}: {} / \"{}\"\n{}",
                    o.file,
                    o.context,
                    o.name,
                    indent(why, 4)
                )),
                _ => None,
            })
            .collect();
        assert!(
            failed.is_empty(),
            "{} conformance check(s) failed:\n\n{}",
            failed.len(),
            failed.join("\n\n")
        );
    }
}

thread_local! {
    /// Notes taken by the running check, printed after its outcome.
    static NOTES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Which of the answers the suite accepts the server gave (for the log).
fn note(message: &str) {
    NOTES.with(|n| n.borrow_mut().push(message.to_string()));
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// The HTTP client (reggie's role).

/// A request being built, as `client.NewRequest(...).SetHeader(...)...`.
struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn req(method: Method, path: impl Into<String>) -> Req {
    Req {
        method,
        path: path.into(),
        query: Vec::new(),
        headers: Vec::new(),
        body: None,
    }
}

impl Req {
    /// `SetQueryParam`.
    fn query(mut self, key: &str, value: &str) -> Req {
        self.query.retain(|(k, _)| k != key);
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    /// `SetHeader`.
    fn header(mut self, key: &str, value: &str) -> Req {
        self.headers.push((key.to_string(), value.to_string()));
        self
    }

    /// `SetBody`.
    fn body(mut self, body: &[u8]) -> Req {
        self.body = Some(body.to_vec());
        self
    }
}

/// A response read to the end, with the request it answers.
struct Resp {
    request: String,
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// reggie `GetRelativeLocation`: the `Location`'s path plus its query.
    fn relative_location(&self) -> String {
        let loc = self.header("Location");
        if loc.is_empty() {
            return String::new();
        }
        let base = reqwest::Url::parse("http://location.invalid/").expect("static URL");
        match base.join(&loc) {
            Ok(u) => match u.query() {
                Some(q) if !q.is_empty() => format!("{}?{q}", u.path()),
                _ => u.path().to_string(),
            },
            Err(_) => String::new(),
        }
    }

    /// reggie `GetAbsoluteLocation`: the `Location` as sent.
    fn absolute_location(&self) -> String {
        self.header("Location")
    }

    /// The request, status, headers and (start of the) body, for messages.
    fn describe(&self) -> String {
        let mut headers = String::new();
        for (k, v) in &self.headers {
            let _ = write!(headers, "\n      {k}: {}", v.to_str().unwrap_or("<binary>"));
        }
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(600).collect();
        format!(
            "request:  {}\nresponse: {}{headers}\n  body: {body}",
            self.request, self.status
        )
    }

    /// reggie `Errors`: the body as an OCI error list (must be non-empty).
    fn errors(&self) -> Result<Vec<String>, String> {
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("error body is not JSON ({e})\n{}", self.describe()))?;
        let list = match v.get("errors") {
            Some(Value::Array(list)) if !list.is_empty() => list,
            _ => {
                return Err(format!(
                    "body was valid json but could not be parsed as an error list\n{}",
                    self.describe()
                ));
            }
        };
        let mut codes = Vec::new();
        for e in list {
            let code = match (e.get("code"), e.get("message")) {
                (Some(c), _) if !(c.is_string() || c.is_null()) => {
                    return Err(format!("error code is not a string\n{}", self.describe()));
                }
                (_, Some(m)) if !(m.is_string() || m.is_null()) => {
                    return Err(format!(
                        "error message is not a string\n{}",
                        self.describe()
                    ));
                }
                (c, _) => c.and_then(Value::as_str).unwrap_or("").to_string(),
            };
            codes.push(code);
        }
        Ok(codes)
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    /// `OCI_NAMESPACE` (reggie's default name).
    name: String,
    /// `OCI_CROSSMOUNT_NAMESPACE`.
    crossmount: String,
}

impl Client {
    /// `client.Do(req)`: an `Err` is the Go `err` (transport failure).
    async fn send(&self, r: Req) -> Result<Resp, Fail> {
        let path = r.path.trim_start_matches('/');
        let mut url = reqwest::Url::parse(&format!("{}/{path}", self.base))
            .map_err(|e| format!("invalid request URL {}/{path}: {e}", self.base))?;
        if !r.query.is_empty() {
            // url.Values.Encode sorts by key; resty appends to the URL's query.
            let mut query = r.query.clone();
            query.sort();
            url.query_pairs_mut().extend_pairs(query);
        }
        let request_line = format!("{} {}", r.method, url);
        let mut builder = self
            .http
            .request(r.method.clone(), url)
            .header("User-Agent", "distribution-spec-conformance-tests")
            .timeout(HANG_GUARD);
        for (k, v) in &r.headers {
            // net/http never sends a hand-set Content-Length: the framing
            // comes from the body.
            if !k.eq_ignore_ascii_case("content-length") {
                builder = builder.header(k.as_str(), v.as_str());
            }
        }
        // resty drops bodies on GET/HEAD/OPTIONS.
        let payload_allowed = !matches!(r.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let body = if payload_allowed { r.body } else { None };
        let expects_body = matches!(r.method, Method::POST | Method::PUT | Method::PATCH);
        builder = match body {
            // An io.Reader body of unknown length: chunked.
            Some(b) if !b.is_empty() => builder.body(reqwest::Body::wrap_stream(
                futures::stream::once(async move { Ok::<Vec<u8>, std::io::Error>(b) }),
            )),
            _ if expects_body => builder.header("Content-Length", "0").body(Vec::<u8>::new()),
            _ => builder,
        };
        let resp = builder
            .send()
            .await
            .map_err(|e| format!("{request_line}: transport error: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("{request_line}: reading the body: {e}"))?
            .to_vec();
        Ok(Resp {
            request: request_line,
            status,
            headers,
            body,
        })
    }
}

fn blob_path(name: &str, digest: &str) -> String {
    format!("/v2/{name}/blobs/{digest}")
}

fn manifest_path(name: &str, reference: &str) -> String {
    format!("/v2/{name}/manifests/{reference}")
}

fn uploads_path(name: &str) -> String {
    format!("/v2/{name}/blobs/uploads/")
}

// ---------------------------------------------------------------------------
// Expectations (gomega matchers), each with the request and response in its
// failure message.

/// `Expect(resp.StatusCode()).To(Equal(a))` / `SatisfyAny(Equal(a), ...)`.
fn expect_status(resp: &Resp, allowed: &[u16]) -> Result<(), Fail> {
    ensure!(
        allowed.contains(&resp.status),
        "expected status {}, got {}\n{}",
        one_of(allowed),
        resp.status,
        resp.describe()
    );
    Ok(())
}

/// `SatisfyAll(BeNumerically(">=", 200), BeNumerically("<", 300))`.
fn expect_success(resp: &Resp) -> Result<(), Fail> {
    ensure!(
        (200..300).contains(&resp.status),
        "expected a 2xx status, got {}\n{}",
        resp.status,
        resp.describe()
    );
    Ok(())
}

/// `SatisfyAny(SatisfyAll(>= 200, < 300), Equal(a), ...)`.
fn expect_success_or(resp: &Resp, also: &[u16]) -> Result<(), Fail> {
    ensure!(
        (200..300).contains(&resp.status) || also.contains(&resp.status),
        "expected a 2xx status or {}, got {}\n{}",
        one_of(also),
        resp.status,
        resp.describe()
    );
    Ok(())
}

/// `Expect(resp.Header().Get("Location")).ToNot(BeEmpty())`.
fn expect_location(resp: &Resp) -> Result<(), Fail> {
    ensure!(
        !resp.header("Location").is_empty(),
        "expected a non-empty Location header\n{}",
        resp.describe()
    );
    Ok(())
}

/// `Expect(resp.Header().Get(name)).To(Equal(expected))`.
fn expect_header(resp: &Resp, name: &str, expected: &str) -> Result<(), Fail> {
    let got = resp.header(name);
    ensure!(
        got == expected,
        "expected header {name}: {expected:?}, got {got:?}\n{}",
        resp.describe()
    );
    Ok(())
}

/// `if h := resp.Header().Get("Docker-Content-Digest"); h != "" { Expect(h).To(Equal(d)) }`.
fn expect_digest_header_if_present(resp: &Resp, expected: &str) -> Result<(), Fail> {
    let h = resp.header("Docker-Content-Digest");
    if !h.is_empty() {
        ensure!(
            h == expected,
            "Docker-Content-Digest is {h:?}, expected {expected:?}\n{}",
            resp.describe()
        );
    }
    Ok(())
}

fn one_of(codes: &[u16]) -> String {
    codes
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

/// setup.go `getTagList`: the `tags` of a tag list, or none if the body does
/// not decode.
fn get_tag_list(resp: &Resp) -> Vec<String> {
    decode_tag_list(resp).unwrap_or_default()
}

/// `json.Unmarshal(body, &TagList{})`: `{"name": string, "tags": [string]}`.
fn decode_tag_list(resp: &Resp) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("tag list is not JSON ({e})\n{}", resp.describe()))?;
    let bad = || {
        format!(
            "tag list does not decode as {{name, tags}}\n{}",
            resp.describe()
        )
    };
    match &v {
        Value::Null => return Ok(Vec::new()),
        Value::Object(_) => {}
        _ => return Err(bad()),
    }
    if let Some(n) = v.get("name")
        && !(n.is_string() || n.is_null())
    {
        return Err(bad());
    }
    match v.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(tags)) => tags
            .iter()
            .map(|t| match t {
                Value::String(s) => Ok(s.clone()),
                Value::Null => Ok(String::new()),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// A descriptor of a decoded referrers index.
struct Referrer {
    digest: String,
    annotations: HashMap<String, String>,
}

/// `json.Unmarshal(body, &index)` into image.go's `index` (types checked as
/// Go's decoder checks them), keeping what the specs look at.
fn decode_index(resp: &Resp) -> Result<Vec<Referrer>, String> {
    let v: Value = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("referrers response is not JSON ({e})\n{}", resp.describe()))?;
    let bad = |what: &str| {
        format!(
            "referrers response does not decode as an index: {what}\n{}",
            resp.describe()
        )
    };
    let string_or_null = |v: Option<&Value>| v.is_none_or(|v| v.is_string() || v.is_null());
    match &v {
        Value::Null => return Ok(Vec::new()),
        Value::Object(_) => {}
        _ => return Err(bad("not an object")),
    }
    if !v
        .get("schemaVersion")
        .is_none_or(|s| s.is_i64() || s.is_null())
    {
        return Err(bad("schemaVersion is not an integer"));
    }
    if !string_or_null(v.get("mediaType")) || !string_or_null(v.get("artifactType")) {
        return Err(bad("mediaType/artifactType is not a string"));
    }
    let manifests = match v.get("manifests") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(bad("manifests is not an array")),
    };
    let mut out = Vec::new();
    for d in manifests {
        if d.is_null() {
            out.push(Referrer {
                digest: String::new(),
                annotations: HashMap::new(),
            });
            continue;
        }
        if !d.is_object() {
            return Err(bad("a descriptor is not an object"));
        }
        if !string_or_null(d.get("mediaType"))
            || !string_or_null(d.get("digest"))
            || !string_or_null(d.get("artifactType"))
        {
            return Err(bad(
                "a descriptor's mediaType/digest/artifactType is not a string",
            ));
        }
        if !d.get("size").is_none_or(|s| s.is_i64() || s.is_null()) {
            return Err(bad("a descriptor's size is not an integer"));
        }
        let mut annotations = HashMap::new();
        match d.get("annotations") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, val) in map {
                    match val {
                        Value::String(s) => {
                            annotations.insert(k.clone(), s.clone());
                        }
                        Value::Null => {
                            annotations.insert(k.clone(), String::new());
                        }
                        _ => return Err(bad("an annotation value is not a string")),
                    }
                }
            }
            Some(_) => return Err(bad("a descriptor's annotations is not an object")),
        }
        out.push(Referrer {
            digest: d
                .get("digest")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            annotations,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// setup.go test data, serialized as Go's json.MarshalIndent(v, "", "\t")
// serializes image.go's structs (field order, omitempty, []byte as base64).

/// setup.go `TestBlob`.
#[derive(Clone)]
struct TestBlob {
    content: Vec<u8>,
    /// `ContentLength`, as text (what the specs put in `Content-Length`).
    len: String,
    digest: String,
}

impl TestBlob {
    fn new(content: Vec<u8>) -> TestBlob {
        TestBlob {
            len: content.len().to_string(),
            digest: common::digest_of(&content),
            content,
        }
    }
}

/// setup.go's chunked blob (`testBlobB*`), rebuilt by `setupChunkedBlob`.
#[derive(Clone)]
struct Chunked {
    digest: String,
    chunk1: Vec<u8>,
    chunk1_len: String,
    chunk1_range: String,
    chunk2: Vec<u8>,
    chunk2_len: String,
    chunk2_range: String,
}

/// setup.go `setupChunkedBlob(size)`.
fn setup_chunked_blob(size: usize, seed: u64) -> Chunked {
    let blob = random_blob(size, seed.wrapping_add(2));
    let split = size / 2 + 1;
    let chunk1 = blob[..split].to_vec();
    let chunk2 = blob[split..].to_vec();
    Chunked {
        digest: common::digest_of(&blob),
        chunk1_len: chunk1.len().to_string(),
        chunk1_range: format!("0-{}", chunk1.len() - 1),
        chunk2_len: chunk2.len().to_string(),
        chunk2_range: format!("{}-{}", chunk1.len(), blob.len() - 1),
        chunk1,
        chunk2,
    }
}

/// setup.go `randomBlob`: reproducible random bytes for a seed.
fn random_blob(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = vec![0u8; size];
    rng.fill(&mut b[..]);
    b
}

/// setup.go `randomString`.
fn random_string(n: usize) -> String {
    const LETTERS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}

/// A JSON value with ordered keys (Go struct fields keep their order).
enum J {
    S(String),
    N(i64),
    Null,
    A(Vec<J>),
    O(Vec<(&'static str, J)>),
}

fn s(v: &str) -> J {
    J::S(v.to_string())
}

/// `json.MarshalIndent(v, "", "\t")`.
fn marshal_indent(v: &J) -> Vec<u8> {
    fn pad(out: &mut String, depth: usize) {
        for _ in 0..depth {
            out.push('\t');
        }
    }
    fn write(out: &mut String, v: &J, depth: usize) {
        match v {
            J::S(text) => out.push_str(&serde_json::to_string(text).expect("string")),
            J::N(n) => {
                let _ = write!(out, "{n}");
            }
            J::Null => out.push_str("null"),
            J::A(items) if items.is_empty() => out.push_str("[]"),
            J::A(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    pad(out, depth + 1);
                    write(out, item, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(out, depth);
                out.push(']');
            }
            J::O(fields) if fields.is_empty() => out.push_str("{}"),
            J::O(fields) => {
                out.push_str("{\n");
                for (i, (k, item)) in fields.iter().enumerate() {
                    pad(out, depth + 1);
                    out.push_str(&serde_json::to_string(k).expect("key"));
                    out.push_str(": ");
                    write(out, item, depth + 1);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                pad(out, depth);
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    write(&mut out, v, 0);
    out.into_bytes()
}

/// image.go `descriptor` (mediaType, digest, size, annotations, data,
/// newUnspecifiedField; the others are never set by the suite).
struct Desc<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: usize,
    data: Option<&'a [u8]>,
    new_unspecified_field: Option<&'a [u8]>,
}

impl Desc<'_> {
    fn json(&self) -> J {
        let mut f = vec![
            ("mediaType", s(self.media_type)),
            ("digest", s(self.digest)),
            ("size", J::N(self.size as i64)),
        ];
        if let Some(data) = self.data {
            f.push(("data", J::S(base64_encode(data))));
        }
        // Not omitempty: a nil []byte marshals as null.
        f.push((
            "newUnspecifiedField",
            self.new_unspecified_field
                .map_or(J::Null, |b| J::S(base64_encode(b))),
        ));
        J::O(f)
    }
}

/// A plain descriptor of some content (nil data and new field).
fn desc_of(media_type: &str, blob: &TestBlob) -> J {
    Desc {
        media_type,
        digest: &blob.digest,
        size: blob.content.len(),
        data: None,
        new_unspecified_field: None,
    }
    .json()
}

/// image.go `manifest` (and `index`, whose fields are a superset in order:
/// schemaVersion, mediaType, artifactType, config|manifests, layers, subject,
/// annotations).
fn manifest_json(
    media_type: Option<&str>,
    artifact_type: Option<&str>,
    body: Vec<(&'static str, J)>,
    subject: Option<J>,
    annotation: Option<&str>,
) -> Vec<u8> {
    let mut f = vec![("schemaVersion", J::N(2))];
    if let Some(mt) = media_type {
        f.push(("mediaType", s(mt)));
    }
    if let Some(at) = artifact_type {
        f.push(("artifactType", s(at)));
    }
    f.extend(body);
    if let Some(subject) = subject {
        f.push(("subject", subject));
    }
    if let Some(value) = annotation {
        f.push(("annotations", J::O(vec![(TEST_ANNOTATION_KEY, s(value))])));
    }
    marshal_indent(&J::O(f))
}

/// Everything setup.go's `init` computes.
struct Fixtures {
    seed: u64,
    /// `configs[i]`, one per workflow index (0..=4 are used).
    configs: Vec<TestBlob>,
    /// `manifests[i]`.
    manifests: Vec<TestBlob>,
    layer: TestBlob,
    empty_layer_manifest: TestBlob,
    blob_a: TestBlob,
    chunked: Chunked,
    empty_json: TestBlob,
    ref_blob_a: TestBlob,
    ref_blob_b: TestBlob,
    refs_a_config: TestBlob,
    refs_b_config: TestBlob,
    refs_a_layer: TestBlob,
    refs_b_layer: TestBlob,
    refs_c_layer: TestBlob,
    refs_index: TestBlob,
    /// `testAnnotationValues`: referrer digest -> its annotation's value.
    annotation_values: HashMap<String, String>,
    dummy_digest: String,
}

impl Fixtures {
    fn new() -> Fixtures {
        let seed: u64 = rand::rng().random();
        // One config per workflow; a random author makes each digest unique.
        let configs: Vec<TestBlob> = (0..5)
            .map(|_| {
                TestBlob::new(marshal_indent(&J::O(vec![
                    ("author", J::S(random_string(16))),
                    ("architecture", s("amd64")),
                    ("os", s("linux")),
                    (
                        "rootfs",
                        J::O(vec![("type", s("layers")), ("diff_ids", J::A(Vec::new()))]),
                    ),
                ])))
            })
            .collect();
        let layer = TestBlob::new(base64_decode(LAYER_BASE64));
        let config_desc = |c: &TestBlob| {
            Desc {
                media_type: MT_CONFIG,
                digest: &c.digest,
                size: c.content.len(),
                data: Some(&c.content),
                new_unspecified_field: Some(b"hello world"),
            }
            .json()
        };
        let manifests: Vec<TestBlob> = configs
            .iter()
            .map(|c| {
                TestBlob::new(manifest_json(
                    Some(MT_MANIFEST),
                    None,
                    vec![
                        ("config", config_desc(c)),
                        ("layers", J::A(vec![desc_of(MT_LAYER, &layer)])),
                    ],
                    None,
                    None,
                ))
            })
            .collect();
        // Used in the push test: no mediaType, no layers.
        let empty_layer_manifest = TestBlob::new(manifest_json(
            None,
            None,
            vec![
                ("config", config_desc(&configs[1])),
                ("layers", J::A(Vec::new())),
            ],
            None,
            None,
        ));

        let blob_a = TestBlob::new(random_blob(42, seed.wrapping_add(1)));
        let chunked = setup_chunked_blob(42, seed);

        // Referrers: artifacts whose subject is manifests[4].
        let empty_json = TestBlob::new(b"{}".to_vec());
        let ref_blob_a = TestBlob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
        let ref_blob_b = TestBlob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
        let subject = |m: &TestBlob| desc_of(MT_MANIFEST, m);
        let mut annotation_values = HashMap::new();
        let mut referrer = |artifact_type: Option<&str>,
                            config: J,
                            layer: J,
                            subject_of: &TestBlob,
                            annotation: Option<&str>| {
            let blob = TestBlob::new(manifest_json(
                Some(MT_MANIFEST),
                artifact_type,
                vec![("config", config), ("layers", J::A(vec![layer]))],
                Some(subject(subject_of)),
                annotation,
            ));
            if let Some(value) = annotation {
                annotation_values.insert(blob.digest.clone(), value.to_string());
            }
            blob
        };
        // config.mediaType = artifactType
        let refs_a_config = referrer(
            None,
            desc_of(TEST_REF_ARTIFACT_TYPE_A, &ref_blob_a),
            desc_of(MT_EMPTY_JSON, &empty_json),
            &manifests[4],
            Some("test config a"),
        );
        let refs_b_config = referrer(
            None,
            desc_of(TEST_REF_ARTIFACT_TYPE_B, &ref_blob_b),
            desc_of(MT_EMPTY_JSON, &empty_json),
            &manifests[4],
            Some("test config b"),
        );
        // artifactType set, config.mediaType = the empty JSON
        let refs_a_layer = referrer(
            Some(TEST_REF_ARTIFACT_TYPE_A),
            desc_of(MT_EMPTY_JSON, &empty_json),
            desc_of(TEST_REF_ARTIFACT_TYPE_A, &ref_blob_a),
            &manifests[4],
            Some("test layer a"),
        );
        let refs_b_layer = referrer(
            Some(TEST_REF_ARTIFACT_TYPE_B),
            desc_of(MT_EMPTY_JSON, &empty_json),
            desc_of(TEST_REF_ARTIFACT_TYPE_B, &ref_blob_b),
            &manifests[4],
            Some("test layer b"),
        );
        // Like B, but its subject (manifests[3]) is never pushed by discovery.
        let refs_c_layer = referrer(
            Some(TEST_REF_ARTIFACT_TYPE_B),
            desc_of(MT_EMPTY_JSON, &empty_json),
            desc_of(TEST_REF_ARTIFACT_TYPE_B, &ref_blob_b),
            &manifests[3],
            None,
        );
        let refs_index = TestBlob::new(manifest_json(
            Some(MT_INDEX),
            Some(TEST_REF_ARTIFACT_TYPE_INDEX),
            vec![(
                "manifests",
                J::A(vec![
                    desc_of(MT_MANIFEST, &refs_a_config),
                    desc_of(MT_MANIFEST, &refs_a_layer),
                ]),
            )],
            Some(subject(&manifests[4])),
            Some("test index"),
        ));
        annotation_values.insert(refs_index.digest.clone(), "test index".to_string());

        Fixtures {
            seed,
            configs,
            manifests,
            layer,
            empty_layer_manifest,
            blob_a,
            chunked,
            empty_json,
            ref_blob_a,
            ref_blob_b,
            refs_a_config,
            refs_b_config,
            refs_a_layer,
            refs_b_layer,
            refs_c_layer,
            refs_index,
            annotation_values,
            dummy_digest: common::digest_of(b"hello world"),
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// base64.StdEncoding (Go's encoding of []byte in JSON).
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).expect("base64 character") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The suite.

struct Ctx {
    c: Client,
    d: Fixtures,
}

fn start() -> (Berth, Ctx) {
    let berth = Berth::start();
    // The admin's Basic credentials on every request (`OCI_USERNAME`,
    // `OCI_PASSWORD` in the Go suite).
    let http = common::client_builder().build().expect("HTTP client");
    let ctx = Ctx {
        c: Client {
            http,
            base: berth.url.trim_end_matches('/').to_string(),
            name: format!("conformance/{}", common::unique("ns")),
            // setup.go: fmt.Sprintf("conformance-%s", uuid.New())
            crossmount: format!("conformance-{}", common::unique("mount")),
        },
        d: Fixtures::new(),
    };
    eprintln!(
        "registry {}, namespace {}, cross-mount namespace {}, seed {}",
        ctx.c.base, ctx.c.name, ctx.c.crossmount, ctx.d.seed
    );
    (berth, ctx)
}

/// The setup specs' upload: `POST` a session, then `PUT` the blob to its
/// `Location` with `?digest=`; only the `PUT` is judged (2xx).
async fn populate_blob(c: &Client, blob: &TestBlob) -> Result<(), Fail> {
    let resp = c.send(req(Method::POST, uploads_path(&c.name))).await?;
    let resp = c
        .send(
            req(Method::PUT, resp.relative_location())
                .query("digest", &blob.digest)
                .header("Content-Type", OCTET_STREAM)
                .header("Content-Length", &blob.len)
                .body(&blob.content),
        )
        .await?;
    expect_success(&resp)
}

/// `PUT /v2/<name>/manifests/<reference>` with a media type.
async fn put_manifest(
    c: &Client,
    reference: &str,
    media_type: &str,
    content: &[u8],
) -> Result<Resp, Fail> {
    c.send(
        req(Method::PUT, manifest_path(&c.name, reference))
            .header("Content-Type", media_type)
            .body(content),
    )
    .await
}

async fn delete(c: &Client, path: String) -> Result<Resp, Fail> {
    c.send(req(Method::DELETE, path)).await
}

// 01_pull_test.go ------------------------------------------------------------

async fn test01_pull(ctx: &mut Ctx, rec: &mut Recorder) {
    const W: &str = "Pull";
    let (c, d) = (&ctx.c, &ctx.d);
    rec.workflow("01_pull_test.go", W);
    let mut tag = String::new();

    rec.context(W, "Setup");
    // 01_pull_test.go: "Populate registry with test blob"
    check!(rec, "Populate registry with test blob", {
        populate_blob(c, &d.configs[0]).await
    });
    // 01_pull_test.go: "Populate registry with test blob"
    check!(rec, "Populate registry with test blob", {
        populate_blob(c, &d.configs[1]).await
    });
    // 01_pull_test.go: "Populate registry with test layer"
    check!(rec, "Populate registry with test layer", {
        populate_blob(c, &d.layer).await
    });
    // 01_pull_test.go: "Populate registry with test manifest"
    check!(rec, "Populate registry with test manifest", {
        tag = TEST_TAG_NAME.to_string();
        let resp = put_manifest(c, &tag, MT_MANIFEST, &d.manifests[0].content).await?;
        expect_success(&resp)
    });
    // 01_pull_test.go: "Populate registry with test manifest"
    check!(rec, "Populate registry with test manifest", {
        let resp = put_manifest(
            c,
            &d.manifests[1].digest,
            MT_MANIFEST,
            &d.manifests[1].content,
        )
        .await?;
        expect_success(&resp)
    });
    // 01_pull_test.go: "Get tag name from environment"
    check!(rec, "Get tag name from environment", {
        run_only_if!(
            false,
            "RunOnlyIfNot(runPullSetup): only reads OCI_TAG_NAME for a pre-seeded registry"
        );
        Ok(())
    });

    rec.context(W, "Pull blobs");
    // 01_pull_test.go: "HEAD request to nonexistent blob should result in 404 response"
    check!(
        rec,
        "HEAD request to nonexistent blob should result in 404 response",
        {
            let resp = c
                .send(req(Method::HEAD, blob_path(&c.name, &d.dummy_digest)))
                .await?;
            expect_status(&resp, &[404])
        }
    );
    // 01_pull_test.go: "HEAD request to existing blob should yield 200"
    check!(rec, "HEAD request to existing blob should yield 200", {
        let resp = c
            .send(req(Method::HEAD, blob_path(&c.name, &d.configs[0].digest)))
            .await?;
        expect_status(&resp, &[200])?;
        expect_digest_header_if_present(&resp, &d.configs[0].digest)
    });
    // 01_pull_test.go: "GET nonexistent blob should result in 404 response"
    check!(rec, "GET nonexistent blob should result in 404 response", {
        let resp = c
            .send(req(Method::GET, blob_path(&c.name, &d.dummy_digest)))
            .await?;
        expect_status(&resp, &[404])
    });
    // 01_pull_test.go: "GET request to existing blob URL should yield 200"
    check!(rec, "GET request to existing blob URL should yield 200", {
        let resp = c
            .send(req(Method::GET, blob_path(&c.name, &d.configs[0].digest)))
            .await?;
        expect_status(&resp, &[200])
    });

    rec.context(W, "Pull manifests");
    // 01_pull_test.go: "HEAD request to nonexistent manifest should return 404"
    check!(
        rec,
        "HEAD request to nonexistent manifest should return 404",
        {
            let resp = c
                .send(req(
                    Method::HEAD,
                    manifest_path(&c.name, NONEXISTENT_MANIFEST),
                ))
                .await?;
            expect_status(&resp, &[404])
        }
    );
    // 01_pull_test.go: "HEAD request to manifest[0] path (digest) should yield 200 response"
    check!(
        rec,
        "HEAD request to manifest[0] path (digest) should yield 200 response",
        {
            let resp = c
                .send(
                    req(Method::HEAD, manifest_path(&c.name, &d.manifests[0].digest))
                        .header("Accept", MT_MANIFEST),
                )
                .await?;
            expect_status(&resp, &[200])?;
            expect_digest_header_if_present(&resp, &d.manifests[0].digest)
        }
    );
    // 01_pull_test.go: "HEAD request to manifest[1] path (digest) should yield 200 response"
    check!(
        rec,
        "HEAD request to manifest[1] path (digest) should yield 200 response",
        {
            let resp = c
                .send(
                    req(Method::HEAD, manifest_path(&c.name, &d.manifests[1].digest))
                        .header("Accept", MT_MANIFEST),
                )
                .await?;
            expect_status(&resp, &[200])?;
            expect_digest_header_if_present(&resp, &d.manifests[1].digest)
        }
    );
    // 01_pull_test.go: "HEAD request to manifest path (tag) should yield 200 response"
    check!(
        rec,
        "HEAD request to manifest path (tag) should yield 200 response",
        {
            ensure!(!tag.is_empty(), "tag is empty (setup did not set it)");
            let resp = c
                .send(req(Method::HEAD, manifest_path(&c.name, &tag)).header("Accept", MT_MANIFEST))
                .await?;
            expect_status(&resp, &[200])?;
            expect_digest_header_if_present(&resp, &d.manifests[0].digest)
        }
    );
    // 01_pull_test.go: "GET nonexistent manifest should return 404"
    check!(rec, "GET nonexistent manifest should return 404", {
        let resp = c
            .send(req(
                Method::GET,
                manifest_path(&c.name, NONEXISTENT_MANIFEST),
            ))
            .await?;
        expect_status(&resp, &[404])
    });
    // 01_pull_test.go: "GET request to manifest[0] path (digest) should yield 200 response"
    check!(
        rec,
        "GET request to manifest[0] path (digest) should yield 200 response",
        {
            let resp = c
                .send(
                    req(Method::GET, manifest_path(&c.name, &d.manifests[0].digest))
                        .header("Accept", MT_MANIFEST),
                )
                .await?;
            expect_status(&resp, &[200])
        }
    );
    // 01_pull_test.go: "GET request to manifest[1] path (digest) should yield 200 response"
    check!(
        rec,
        "GET request to manifest[1] path (digest) should yield 200 response",
        {
            let resp = c
                .send(
                    req(Method::GET, manifest_path(&c.name, &d.manifests[1].digest))
                        .header("Accept", MT_MANIFEST),
                )
                .await?;
            expect_status(&resp, &[200])
        }
    );
    // 01_pull_test.go: "GET request to manifest path (tag) should yield 200 response"
    check!(
        rec,
        "GET request to manifest path (tag) should yield 200 response",
        {
            ensure!(!tag.is_empty(), "tag is empty (setup did not set it)");
            let resp = c
                .send(req(Method::GET, manifest_path(&c.name, &tag)).header("Accept", MT_MANIFEST))
                .await?;
            expect_status(&resp, &[200])
        }
    );

    rec.context(W, "Error codes");
    // 01_pull_test.go: "400 response body should contain OCI-conforming JSON message"
    check!(
        rec,
        "400 response body should contain OCI-conforming JSON message",
        {
            let resp = c
                .send(
                    req(Method::GET, manifest_path(&c.name, "sha256:totallywrong"))
                        .header("Content-Type", MT_MANIFEST)
                        .body(INVALID_MANIFEST_CONTENT),
                )
                .await?;
            expect_status(&resp, &[400, 404])?;
            if resp.status == 400 {
                let codes = resp.errors()?;
                ensure!(!codes.is_empty(), "empty error list\n{}", resp.describe());
                ensure!(
                    ERROR_CODES.contains(&codes[0].as_str()),
                    "error code {:?} is not one of the spec's codes\n{}",
                    codes[0],
                    resp.describe()
                );
            }
            Ok(())
        }
    );

    rec.context(W, "Teardown");
    if DELETE_MANIFEST_BEFORE_BLOBS {
        pull_delete_manifests(c, d, rec).await;
    }
    // 01_pull_test.go: "Delete config[0] blob created in setup"
    check!(rec, "Delete config[0] blob created in setup", {
        let resp = delete(c, blob_path(&c.name, &d.configs[0].digest)).await?;
        expect_success_or(&resp, &[404, 405])
    });
    // 01_pull_test.go: "Delete config[1] blob created in setup"
    check!(rec, "Delete config[1] blob created in setup", {
        let resp = delete(c, blob_path(&c.name, &d.configs[1].digest)).await?;
        expect_success_or(&resp, &[404, 405])
    });
    // 01_pull_test.go: "Delete layer blob created in setup"
    check!(rec, "Delete layer blob created in setup", {
        let resp = delete(c, blob_path(&c.name, &d.layer.digest)).await?;
        expect_success_or(&resp, &[404, 405])
    });
    if !DELETE_MANIFEST_BEFORE_BLOBS {
        pull_delete_manifests(c, d, rec).await;
    }
}

/// 01_pull_test.go's teardown manifest deletes (before or after the blobs,
/// per `OCI_DELETE_MANIFEST_BEFORE_BLOBS`).
async fn pull_delete_manifests(c: &Client, d: &Fixtures, rec: &mut Recorder) {
    // 01_pull_test.go: "Delete manifest[0] created in setup"
    check!(rec, "Delete manifest[0] created in setup", {
        let resp = delete(c, manifest_path(&c.name, &d.manifests[0].digest)).await?;
        expect_success_or(&resp, &[405])
    });
    // 01_pull_test.go: "Delete manifest[1] created in setup"
    check!(rec, "Delete manifest[1] created in setup", {
        let resp = delete(c, manifest_path(&c.name, &d.manifests[1].digest)).await?;
        expect_success_or(&resp, &[405])
    });
}

// 02_push_test.go ------------------------------------------------------------

async fn test02_push(ctx: &mut Ctx, rec: &mut Recorder) {
    const W: &str = "Push";
    let (c, d) = (&ctx.c, &ctx.d);
    rec.workflow("02_push_test.go", W);
    let mut last_response: Option<Resp> = None;
    let mut prev_response: Option<Resp> = None;
    let mut empty_layer_manifest_ref = String::new();
    let mut chunked = d.chunked.clone();
    let no_last = || Fail::Failed("lastResponse is nil (an earlier check failed)".to_string());

    rec.context(W, "Setup");
    // (No setup required at this time for push tests.)

    rec.context(W, "Blob Upload Streamed");
    // 02_push_test.go: "PATCH request with blob in body should yield 202 response"
    check!(
        rec,
        "PATCH request with blob in body should yield 202 response",
        {
            let resp = c.send(req(Method::POST, uploads_path(&c.name))).await?;
            expect_location(&resp)?;
            let resp = c
                .send(
                    req(Method::PATCH, resp.relative_location())
                        .header("Content-Type", OCTET_STREAM)
                        .body(&d.blob_a.content),
                )
                .await?;
            expect_status(&resp, &[202])?;
            last_response = Some(resp);
            Ok(())
        }
    );
    // 02_push_test.go: "PUT request to session URL with digest should yield 201 response"
    check!(
        rec,
        "PUT request to session URL with digest should yield 201 response",
        {
            let last = last_response.as_ref().ok_or_else(no_last)?;
            let resp = c
                .send(
                    req(Method::PUT, last.relative_location())
                        .query("digest", &d.blob_a.digest)
                        .header("Content-Type", OCTET_STREAM)
                        .header("Content-Length", &d.blob_a.len),
                )
                .await?;
            expect_status(&resp, &[201])?;
            expect_location(&resp)
        }
    );

    rec.context(W, "Blob Upload Monolithic");
    // 02_push_test.go: "GET nonexistent blob should result in 404 response"
    check!(rec, "GET nonexistent blob should result in 404 response", {
        let resp = c
            .send(req(Method::GET, blob_path(&c.name, &d.dummy_digest)))
            .await?;
        expect_status(&resp, &[404])
    });
    // 02_push_test.go: "POST request with digest and blob should yield a 201 or 202"
    check!(
        rec,
        "POST request with digest and blob should yield a 201 or 202",
        {
            let resp = c
                .send(
                    req(Method::POST, uploads_path(&c.name))
                        .header("Content-Length", &d.configs[1].len)
                        .header("Content-Type", OCTET_STREAM)
                        .query("digest", &d.configs[1].digest)
                        .body(&d.configs[1].content),
                )
                .await?;
            expect_location(&resp)?;
            expect_status(&resp, &[201, 202])?;
            note(&format!("answered {}", resp.status));
            last_response = Some(resp);
            Ok(())
        }
    );
    // 02_push_test.go: "GET request to blob URL from prior request should yield 200 or 404 based on response code"
    check!(
        rec,
        "GET request to blob URL from prior request should yield 200 or 404 based on response code",
        {
            let last = last_response.as_ref().ok_or_else(no_last)?;
            let resp = c
                .send(req(Method::GET, blob_path(&c.name, &d.configs[1].digest)))
                .await?;
            if last.status == 202 {
                expect_status(&resp, &[404])
            } else {
                expect_status(&resp, &[200])
            }
        }
    );
    // 02_push_test.go: "POST request should yield a session ID"
    check!(rec, "POST request should yield a session ID", {
        let resp = c.send(req(Method::POST, uploads_path(&c.name))).await?;
        expect_status(&resp, &[202])?;
        last_response = Some(resp);
        Ok(())
    });
    // 02_push_test.go: "PUT upload of a blob should yield a 201 Response"
    check!(rec, "PUT upload of a blob should yield a 201 Response", {
        let last = last_response.as_ref().ok_or_else(no_last)?;
        let resp = c
            .send(
                req(Method::PUT, last.relative_location())
                    .header("Content-Length", &d.configs[1].len)
                    .header("Content-Type", OCTET_STREAM)
                    .query("digest", &d.configs[1].digest)
                    .body(&d.configs[1].content),
            )
            .await?;
        expect_location(&resp)?;
        expect_status(&resp, &[201])
    });
    // 02_push_test.go: "GET request to existing blob should yield 200 response"
    check!(
        rec,
        "GET request to existing blob should yield 200 response",
        {
            let resp = c
                .send(req(Method::GET, blob_path(&c.name, &d.configs[1].digest)))
                .await?;
            expect_status(&resp, &[200])
        }
    );
    // 02_push_test.go: "PUT upload of a layer blob should yield a 201 Response"
    check!(
        rec,
        "PUT upload of a layer blob should yield a 201 Response",
        {
            let resp = c.send(req(Method::POST, uploads_path(&c.name))).await?;
            let resp = c
                .send(
                    req(Method::PUT, resp.relative_location())
                        .header("Content-Length", &d.layer.len)
                        .header("Content-Type", OCTET_STREAM)
                        .query("digest", &d.layer.digest)
                        .body(&d.layer.content),
                )
                .await?;
            expect_location(&resp)?;
            expect_status(&resp, &[201])
        }
    );
    // 02_push_test.go: "GET request to existing layer should yield 200 response"
    check!(
        rec,
        "GET request to existing layer should yield 200 response",
        {
            let resp = c
                .send(req(Method::GET, blob_path(&c.name, &d.layer.digest)))
                .await?;
            expect_status(&resp, &[200])
        }
    );

    rec.context(W, "Blob Upload Chunked");
    // 02_push_test.go: "Out-of-order blob upload should return 416"
    check!(rec, "Out-of-order blob upload should return 416", {
        let resp = c
            .send(req(Method::POST, uploads_path(&c.name)).header("Content-Length", "0"))
            .await?;
        expect_location(&resp)?;
        // Rebuild the chunked blob if the minimum chunk is above our chunk.
        let min_size = resp.header("OCI-Chunk-Min-Length");
        if !min_size.is_empty() {
            let min_size: usize = min_size.parse().map_err(|e| {
                format!(
                    "OCI-Chunk-Min-Length {min_size:?}: {e}\n{}",
                    resp.describe()
                )
            })?;
            if min_size > chunked.chunk1.len() {
                chunked = setup_chunked_blob(min_size * 2 - 2, d.seed);
            }
        }
        let resp = c
            .send(
                req(Method::PATCH, resp.relative_location())
                    .header("Content-Type", OCTET_STREAM)
                    .header("Content-Length", &chunked.chunk2_len)
                    .header("Content-Range", &chunked.chunk2_range)
                    .body(&chunked.chunk2),
            )
            .await?;
        expect_status(&resp, &[416])
    });
    // 02_push_test.go: "PATCH request with first chunk should return 202"
    check!(rec, "PATCH request with first chunk should return 202", {
        let resp = c
            .send(req(Method::POST, uploads_path(&c.name)).header("Content-Length", "0"))
            .await?;
        expect_location(&resp)?;
        let location = resp.relative_location();
        prev_response = Some(resp);
        let resp = c
            .send(
                req(Method::PATCH, location)
                    .header("Content-Type", OCTET_STREAM)
                    .header("Content-Length", &chunked.chunk1_len)
                    .header("Content-Range", &chunked.chunk1_range)
                    .body(&chunked.chunk1),
            )
            .await?;
        expect_status(&resp, &[202])?;
        expect_header(&resp, "Range", &chunked.chunk1_range)?;
        last_response = Some(resp);
        Ok(())
    });
    let no_prev = || Fail::Failed("prevResponse is nil (an earlier check failed)".to_string());
    // 02_push_test.go: "Retry previous blob chunk should return 416"
    check!(rec, "Retry previous blob chunk should return 416", {
        let prev = prev_response.as_ref().ok_or_else(no_prev)?;
        let resp = c
            .send(
                req(Method::PATCH, prev.relative_location())
                    .header("Content-Type", OCTET_STREAM)
                    .header("Content-Length", &chunked.chunk1_len)
                    .header("Content-Range", &chunked.chunk1_range)
                    .body(&chunked.chunk1),
            )
            .await?;
        expect_status(&resp, &[416])
    });
    // 02_push_test.go: "Get on stale blob upload should return 204 with a range and location"
    check!(
        rec,
        "Get on stale blob upload should return 204 with a range and location",
        {
            let prev = prev_response.as_ref().ok_or_else(no_prev)?;
            let resp = c.send(req(Method::GET, prev.relative_location())).await?;
            expect_status(&resp, &[204])?;
            expect_location(&resp)?;
            expect_header(&resp, "Range", &chunked.chunk1_range)?;
            last_response = Some(resp);
            Ok(())
        }
    );
    // 02_push_test.go: "PATCH request with second chunk should return 202"
    check!(rec, "PATCH request with second chunk should return 202", {
        let last = last_response.as_ref().ok_or_else(no_last)?;
        let resp = c
            .send(
                req(Method::PATCH, last.relative_location())
                    .header("Content-Length", &chunked.chunk2_len)
                    .header("Content-Range", &chunked.chunk2_range)
                    .header("Content-Type", OCTET_STREAM)
                    .body(&chunked.chunk2),
            )
            .await?;
        expect_status(&resp, &[202])?;
        expect_location(&resp)?;
        last_response = Some(resp);
        Ok(())
    });
    // 02_push_test.go: "PUT request with digest should return 201"
    check!(rec, "PUT request with digest should return 201", {
        let last = last_response.as_ref().ok_or_else(no_last)?;
        let resp = c
            .send(
                req(Method::PUT, last.relative_location())
                    .header("Content-Length", "0")
                    .header("Content-Type", OCTET_STREAM)
                    .query("digest", &chunked.digest),
            )
            .await?;
        expect_status(&resp, &[201])?;
        expect_location(&resp)
    });

    rec.context(W, "Cross-Repository Blob Mount");
    // 02_push_test.go: "Cross-mounting of a blob without the from argument should yield session id"
    check!(
        rec,
        "Cross-mounting of a blob without the from argument should yield session id",
        {
            let resp = c
                .send(
                    req(Method::POST, uploads_path(&c.crossmount)).query("mount", &d.dummy_digest),
                )
                .await?;
            expect_status(&resp, &[202])?;
            ensure!(
                !resp.absolute_location().is_empty(),
                "expected a non-empty Location\n{}",
                resp.describe()
            );
            Ok(())
        }
    );
    // 02_push_test.go: "POST request to mount another repository's blob should return 201 or 202"
    check!(
        rec,
        "POST request to mount another repository's blob should return 201 or 202",
        {
            let resp = c
                .send(
                    req(Method::POST, uploads_path(&c.crossmount))
                        .query("mount", &d.blob_a.digest)
                        .query("from", &c.name),
                )
                .await?;
            expect_status(&resp, &[201, 202])?;
            note(&format!("answered {}", resp.status));
            last_response = Some(resp);
            Ok(())
        }
    );
    // 02_push_test.go: "GET request to test digest within cross-mount namespace should return 200"
    check!(
        rec,
        "GET request to test digest within cross-mount namespace should return 200",
        {
            let last = last_response.as_ref().ok_or_else(no_last)?;
            run_only_if!(
                last.status == 201,
                "RunOnlyIf(lastResponse is 201): the mount answered {}",
                last.status
            );
            let expected = blob_path(&c.crossmount, &d.blob_a.digest);
            ensure!(
                last.relative_location() == expected,
                "mount Location is {:?}, expected {expected:?}\n{}",
                last.relative_location(),
                last.describe()
            );
            let resp = c.send(req(Method::GET, last.relative_location())).await?;
            expect_status(&resp, &[200])
        }
    );
    // 02_push_test.go: "Cross-mounting of nonexistent blob should yield session id"
    check!(
        rec,
        "Cross-mounting of nonexistent blob should yield session id",
        {
            let last = last_response.as_ref().ok_or_else(no_last)?;
            run_only_if!(
                last.status == 202,
                "RunOnlyIf(lastResponse is 202): the mount answered {}",
                last.status
            );
            let prefix = uploads_path(&c.crossmount);
            ensure!(
                last.relative_location().starts_with(&prefix),
                "Location {:?} does not start with {prefix:?}\n{}",
                last.relative_location(),
                last.describe()
            );
            Ok(())
        }
    );
    // 02_push_test.go: "Cross-mounting without from, and automatic content discovery enabled should return a 201"
    check!(
        rec,
        "Cross-mounting without from, and automatic content discovery enabled should return a 201",
        {
            run_only_if!(
                AUTOMATIC_CROSSMOUNT.is_some(),
                "RunOnlyIf(OCI_AUTOMATIC_CROSSMOUNT is set)"
            );
            let last = last_response.as_ref().ok_or_else(no_last)?;
            run_only_if!(
                last.status == 201,
                "RunOnlyIf(lastResponse is 201): it is {}",
                last.status
            );
            run_only_if!(
                AUTOMATIC_CROSSMOUNT == Some(true),
                "RunOnlyIf(automaticCrossmountEnabled): OCI_AUTOMATIC_CROSSMOUNT=0"
            );
            let resp = c
                .send(
                    req(Method::POST, uploads_path(&c.crossmount)).query("mount", &d.blob_a.digest),
                )
                .await?;
            expect_status(&resp, &[201])
        }
    );
    // 02_push_test.go: "Cross-mounting without from, and automatic content discovery disabled should return a 202"
    check!(
        rec,
        "Cross-mounting without from, and automatic content discovery disabled should return a 202",
        {
            run_only_if!(
                AUTOMATIC_CROSSMOUNT.is_some(),
                "RunOnlyIf(OCI_AUTOMATIC_CROSSMOUNT is set)"
            );
            let last = last_response.as_ref().ok_or_else(no_last)?;
            run_only_if!(
                last.status == 201,
                "RunOnlyIf(lastResponse is 201): it is {}",
                last.status
            );
            run_only_if!(
                AUTOMATIC_CROSSMOUNT == Some(false),
                "RunOnlyIfNot(automaticCrossmountEnabled): OCI_AUTOMATIC_CROSSMOUNT=1"
            );
            let resp = c
                .send(
                    req(Method::POST, uploads_path(&c.crossmount)).query("mount", &d.blob_a.digest),
                )
                .await?;
            expect_status(&resp, &[202])
        }
    );

    rec.context(W, "Manifest Upload");
    // 02_push_test.go: "GET nonexistent manifest should return 404"
    check!(rec, "GET nonexistent manifest should return 404", {
        let resp = c
            .send(req(
                Method::GET,
                manifest_path(&c.name, NONEXISTENT_MANIFEST),
            ))
            .await?;
        expect_status(&resp, &[404])
    });
    // 02_push_test.go: "PUT should accept a manifest upload"
    check!(rec, "PUT should accept a manifest upload", {
        for i in 0..4 {
            let tag = format!("test{i}");
            let resp = put_manifest(c, &tag, MT_MANIFEST, &d.manifests[1].content).await?;
            expect_location(&resp)?;
            expect_status(&resp, &[201])?;
        }
        Ok(())
    });
    // 02_push_test.go: "Registry should accept a manifest upload with no layers"
    let mut warning = None;
    check!(
        rec,
        "Registry should accept a manifest upload with no layers",
        {
            let resp = put_manifest(
                c,
                EMPTY_LAYER_TEST_TAG,
                MT_MANIFEST,
                &d.empty_layer_manifest.content,
            )
            .await?;
            if resp.status == 201 {
                empty_layer_manifest_ref = resp.header("Location");
                expect_location(&resp)?;
                expect_status(&resp, &[201])?;
            } else {
                warning = Some(format!(
                    "image manifest with no layers is not supported (status {})",
                    resp.status
                ));
            }
            Ok(())
        }
    );
    if let Some(w) = warning {
        rec.warn(&w);
    }
    // 02_push_test.go: "GET request to manifest URL (digest) should yield 200 response"
    check!(
        rec,
        "GET request to manifest URL (digest) should yield 200 response",
        {
            let resp = c
                .send(
                    req(Method::GET, manifest_path(&c.name, &d.manifests[1].digest))
                        .header("Accept", MT_MANIFEST),
                )
                .await?;
            expect_status(&resp, &[200])
        }
    );

    rec.context(W, "Teardown");
    let empty_layer_pushed = !empty_layer_manifest_ref.is_empty();
    // 02_push_test.go: "Delete manifest created in tests"
    let delete_manifest_created = async || -> Result<(), Fail> {
        let resp = delete(c, manifest_path(&c.name, &d.manifests[1].digest)).await?;
        expect_success_or(&resp, &[405])?;
        if empty_layer_pushed {
            let resp = delete(c, manifest_path(&c.name, &d.empty_layer_manifest.digest)).await?;
            expect_success_or(&resp, &[405])?;
        }
        Ok(())
    };
    if DELETE_MANIFEST_BEFORE_BLOBS {
        // 02_push_test.go: "Delete manifest created in tests"
        check!(rec, "Delete manifest created in tests", {
            delete_manifest_created().await
        });
    }
    // 02_push_test.go: "Delete config blob created in tests"
    check!(rec, "Delete config blob created in tests", {
        let resp = delete(c, blob_path(&c.name, &d.configs[1].digest)).await?;
        expect_success_or(&resp, &[404, 405])
    });
    // 02_push_test.go: "Delete layer blob created in setup"
    check!(rec, "Delete layer blob created in setup", {
        let resp = delete(c, blob_path(&c.name, &d.layer.digest)).await?;
        expect_success_or(&resp, &[404, 405])
    });
    if !DELETE_MANIFEST_BEFORE_BLOBS {
        // 02_push_test.go: "Delete manifest created in tests"
        check!(rec, "Delete manifest created in tests", {
            delete_manifest_created().await
        });
    }
}

// 03_discovery_test.go -------------------------------------------------------

async fn test03_content_discovery(ctx: &mut Ctx, rec: &mut Recorder) {
    const W: &str = "Content Discovery";
    let (c, d) = (&ctx.c, &ctx.d);
    rec.workflow("03_discovery_test.go", W);
    let mut num_tags: usize = 4;
    let mut tag_list: Vec<String> = Vec::new();

    rec.context(W, "Setup");
    // 03_discovery_test.go: "Populate registry with test blob"
    check!(rec, "Populate registry with test blob", {
        populate_blob(c, &d.configs[2]).await
    });
    // 03_discovery_test.go: "Populate registry with test layer"
    check!(rec, "Populate registry with test layer", {
        populate_blob(c, &d.layer).await
    });
    // 03_discovery_test.go: "Populate registry with test tags"
    check!(rec, "Populate registry with test tags", {
        for i in 0..num_tags {
            let tag = format!("test{i}");
            tag_list.push(tag.clone());
            let resp = put_manifest(c, &tag, MT_MANIFEST, &d.manifests[2].content).await?;
            expect_success(&resp)?;
        }
        // The Go spec ignores this request's error and status.
        if let Ok(resp) = c
            .send(req(Method::GET, format!("/v2/{}/tags/list", c.name)))
            .await
        {
            tag_list = get_tag_list(&resp);
        }
        Ok(())
    });
    // 03_discovery_test.go: "Populate registry with test tags (no push)"
    check!(rec, "Populate registry with test tags (no push)", {
        run_only_if!(
            false,
            "RunOnlyIfNot(runContentDiscoverySetup): only reads OCI_TAG_LIST for a pre-seeded registry"
        );
        Ok(())
    });
    // 03_discovery_test.go: "References setup"
    check!(rec, "References setup", {
        // Populate registry with empty JSON blob; validate the expected digest.
        ensure!(
            d.empty_json.digest == EMPTY_JSON_DIGEST,
            "empty JSON digest {} != {EMPTY_JSON_DIGEST}",
            d.empty_json.digest
        );
        populate_blob(c, &d.empty_json).await?;
        // Populate registry with reference blob before the image manifest is pushed
        populate_blob(c, &d.ref_blob_a).await?;
        // Populate registry with test references manifest (config.MediaType = artifactType)
        let resp = put_manifest(
            c,
            &d.refs_a_config.digest,
            MT_MANIFEST,
            &d.refs_a_config.content,
        )
        .await?;
        expect_success(&resp)?;
        expect_header(&resp, "OCI-Subject", &d.manifests[4].digest)?;
        // Populate registry with test references manifest (ArtifactType, config.MediaType = emptyJSON)
        let resp = put_manifest(
            c,
            &d.refs_a_layer.digest,
            MT_MANIFEST,
            &d.refs_a_layer.content,
        )
        .await?;
        expect_success(&resp)?;
        expect_header(&resp, "OCI-Subject", &d.manifests[4].digest)?;
        // Populate registry with test index manifest
        let resp = put_manifest(c, &d.refs_index.digest, MT_INDEX, &d.refs_index.content).await?;
        expect_success(&resp)?;
        expect_header(&resp, "OCI-Subject", &d.manifests[4].digest)?;
        // Populate registry with test blob
        populate_blob(c, &d.configs[4]).await?;
        // Populate registry with test layer
        populate_blob(c, &d.layer).await?;
        // Populate registry with test manifest
        let resp = put_manifest(c, TEST_TAG_NAME, MT_MANIFEST, &d.manifests[4].content).await?;
        expect_success(&resp)?;
        // Populate registry with reference blob after the image manifest is pushed
        populate_blob(c, &d.ref_blob_b).await?;
        // Populate registry with test references manifest (config.MediaType = artifactType)
        let resp = put_manifest(
            c,
            &d.refs_b_config.digest,
            MT_MANIFEST,
            &d.refs_b_config.content,
        )
        .await?;
        expect_success(&resp)?;
        expect_header(&resp, "OCI-Subject", &d.manifests[4].digest)?;
        // Populate registry with test references manifest (ArtifactType, config.MediaType = emptyJSON)
        let resp = put_manifest(
            c,
            &d.refs_b_layer.digest,
            MT_MANIFEST,
            &d.refs_b_layer.content,
        )
        .await?;
        expect_success(&resp)?;
        expect_header(&resp, "OCI-Subject", &d.manifests[4].digest)?;
        // Populate registry with test references manifest to a non-existent subject
        let resp = put_manifest(
            c,
            &d.refs_c_layer.digest,
            MT_MANIFEST,
            &d.refs_c_layer.content,
        )
        .await?;
        expect_success(&resp)?;
        expect_header(&resp, "OCI-Subject", &d.manifests[3].digest)
    });

    rec.context(W, "Test content discovery endpoints (listing tags)");
    let tags_list = format!("/v2/{}/tags/list", c.name);
    // 03_discovery_test.go: "GET request to list tags should yield 200 response"
    check!(rec, "GET request to list tags should yield 200 response", {
        let resp = c.send(req(Method::GET, tags_list.clone())).await?;
        expect_status(&resp, &[200])?;
        tag_list = get_tag_list(&resp);
        num_tags = tag_list.len();
        Ok(())
    });
    // 03_discovery_test.go: "GET number of tags should be limitable by `n` query parameter"
    check!(
        rec,
        "GET number of tags should be limitable by `n` query parameter",
        {
            let num_results = num_tags / 2;
            let resp = c
                .send(req(Method::GET, tags_list.clone()).query("n", &num_results.to_string()))
                .await?;
            expect_status(&resp, &[200])?;
            tag_list = get_tag_list(&resp);
            ensure!(
                tag_list.len() == num_results,
                "expected {num_results} tags (n={num_results}, of {num_tags}), got {tag_list:?}\n{}",
                resp.describe()
            );
            Ok(())
        }
    );
    // 03_discovery_test.go: "GET start of tag is set by `last` query parameter"
    check!(rec, "GET start of tag is set by `last` query parameter", {
        let num_results = num_tags / 2;
        let resp = c
            .send(req(Method::GET, tags_list.clone()).query("n", &num_results.to_string()))
            .await?;
        tag_list = get_tag_list(&resp);
        // tagList[numResults-1] panics in Go when the page is too short.
        let last = num_results
            .checked_sub(1)
            .and_then(|i| tag_list.get(i))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "index out of range: tagList[{}] of {tag_list:?} (n={num_results})\n{}",
                    num_results as isize - 1,
                    resp.describe()
                )
            })?;
        let resp = c
            .send(
                req(Method::GET, tags_list.clone())
                    .query("n", &num_results.to_string())
                    .query("last", &last),
            )
            .await?;
        expect_status(&resp, &[200])?;
        // As in the Go spec, these two look at the first page, not this one.
        ensure!(
            tag_list.len() <= num_results,
            "expected at most {num_results} tags, got {tag_list:?}"
        );
        ensure!(
            tag_list.contains(&last),
            "{tag_list:?} does not contain {last:?}"
        );
        Ok(())
    });

    rec.context(W, "Test content discovery endpoints (listing references)");
    let referrers = |digest: &str| format!("/v2/{}/referrers/{digest}", c.name);
    let check_annotations = |index: &[Referrer], resp: &Resp| -> Result<(), Fail> {
        for m in index {
            ensure!(
                m.annotations.len() == 1,
                "referrer {} has {} annotations, expected 1: {:?}\n{}",
                m.digest,
                m.annotations.len(),
                m.annotations,
                resp.describe()
            );
            let expected = d
                .annotation_values
                .get(&m.digest)
                .cloned()
                .unwrap_or_default();
            let got = m
                .annotations
                .get(TEST_ANNOTATION_KEY)
                .cloned()
                .unwrap_or_default();
            ensure!(
                got == expected,
                "referrer {} annotation {TEST_ANNOTATION_KEY} is {got:?}, expected {expected:?}\n{}",
                m.digest,
                resp.describe()
            );
        }
        Ok(())
    };
    // 03_discovery_test.go: "GET request to nonexistent blob should result in empty 200 response"
    check!(
        rec,
        "GET request to nonexistent blob should result in empty 200 response",
        {
            let resp = c.send(req(Method::GET, referrers(&d.dummy_digest))).await?;
            expect_status(&resp, &[200])?;
            expect_header(&resp, "Content-Type", MT_INDEX)?;
            let index = decode_index(&resp)?;
            ensure!(
                index.is_empty(),
                "expected no referrers, got {}\n{}",
                index.len(),
                resp.describe()
            );
            Ok(())
        }
    );
    // 03_discovery_test.go: "GET request to existing blob should yield 200"
    check!(rec, "GET request to existing blob should yield 200", {
        let resp = c
            .send(req(Method::GET, referrers(&d.manifests[4].digest)))
            .await?;
        expect_status(&resp, &[200])?;
        expect_header(&resp, "Content-Type", MT_INDEX)?;
        let index = decode_index(&resp)?;
        ensure!(
            index.len() == 5,
            "expected 5 referrers, got {}\n{}",
            index.len(),
            resp.describe()
        );
        ensure!(
            index[0].digest != index[1].digest,
            "the first two referrers are the same manifest\n{}",
            resp.describe()
        );
        check_annotations(&index, &resp)
    });
    // 03_discovery_test.go: "GET request to existing blob with filter should yield 200"
    let mut warning = None;
    check!(
        rec,
        "GET request to existing blob with filter should yield 200",
        {
            let resp = c
                .send(
                    req(Method::GET, referrers(&d.manifests[4].digest))
                        .query("artifactType", TEST_REF_ARTIFACT_TYPE_A),
                )
                .await?;
            expect_status(&resp, &[200])?;
            expect_header(&resp, "Content-Type", MT_INDEX)?;
            let index = decode_index(&resp)?;
            // OCI-Filters-Applied: artifactType says the filter was applied.
            note(&format!(
                "OCI-Filters-Applied: {:?}, {} referrers",
                resp.header("OCI-Filters-Applied"),
                index.len()
            ));
            if !resp.header("OCI-Filters-Applied").is_empty() {
                ensure!(
                    index.len() == 2,
                    "expected 2 filtered referrers, got {}\n{}",
                    index.len(),
                    resp.describe()
                );
                expect_header(&resp, "OCI-Filters-Applied", ARTIFACT_TYPE_FILTER)?;
                check_annotations(&index, &resp)
            } else {
                ensure!(
                    index.len() == 5,
                    "expected 5 (unfiltered) referrers, got {}\n{}",
                    index.len(),
                    resp.describe()
                );
                check_annotations(&index, &resp)?;
                warning = Some("filtering by artifact-type is not implemented".to_string());
                Ok(())
            }
        }
    );
    if let Some(w) = warning {
        rec.warn(&w);
    }
    // 03_discovery_test.go: "GET request to missing manifest should yield 200"
    check!(rec, "GET request to missing manifest should yield 200", {
        let resp = c
            .send(req(Method::GET, referrers(&d.manifests[3].digest)))
            .await?;
        expect_status(&resp, &[200])?;
        expect_header(&resp, "Content-Type", MT_INDEX)?;
        let index = decode_index(&resp)?;
        ensure!(
            index.len() == 1,
            "expected 1 referrer, got {}\n{}",
            index.len(),
            resp.describe()
        );
        ensure!(
            index[0].digest == d.refs_c_layer.digest,
            "referrer is {}, expected {}\n{}",
            index[0].digest,
            d.refs_c_layer.digest,
            resp.describe()
        );
        Ok(())
    });

    rec.context(W, "Teardown");
    let delete_created = async || -> Result<(), Fail> {
        let references = [
            d.refs_index.digest.as_str(),
            d.manifests[2].digest.as_str(),
            d.manifests[4].digest.as_str(),
            d.refs_a_config.digest.as_str(),
            d.refs_a_layer.digest.as_str(),
            TEST_TAG_NAME,
            d.refs_b_config.digest.as_str(),
            d.refs_b_layer.digest.as_str(),
            d.refs_c_layer.digest.as_str(),
        ];
        for reference in references {
            let resp = delete(c, manifest_path(&c.name, reference)).await?;
            expect_success_or(&resp, &[405, 404])?;
        }
        Ok(())
    };
    if DELETE_MANIFEST_BEFORE_BLOBS {
        // 03_discovery_test.go: "Delete created manifest & associated tags"
        check!(rec, "Delete created manifest & associated tags", {
            delete_created().await
        });
    }
    // 03_discovery_test.go: "Delete config blob created in tests"
    check!(rec, "Delete config blob created in tests", {
        let resp = delete(c, blob_path(&c.name, &d.configs[2].digest)).await?;
        expect_success_or(&resp, &[405])
    });
    // 03_discovery_test.go: "Delete layer blob created in setup"
    check!(rec, "Delete layer blob created in setup", {
        let resp = delete(c, blob_path(&c.name, &d.layer.digest)).await?;
        expect_success_or(&resp, &[405])
    });
    if !DELETE_MANIFEST_BEFORE_BLOBS {
        // 03_discovery_test.go: "Delete created manifest & associated tags"
        check!(rec, "Delete created manifest & associated tags", {
            delete_created().await
        });
    }
    // 03_discovery_test.go: "References teardown"
    check!(rec, "References teardown", {
        let delete_req = async |path: String| -> Result<(), Fail> {
            let resp = delete(c, path).await?;
            expect_success_or(&resp, &[405, 404])
        };
        let delete_manifests = async || -> Result<(), Fail> {
            delete_req(manifest_path(&c.name, &d.refs_index.digest)).await?;
            delete_req(manifest_path(&c.name, &d.refs_a_config.digest)).await?;
            delete_req(manifest_path(&c.name, &d.refs_a_layer.digest)).await?;
            delete_req(manifest_path(&c.name, &d.manifests[4].digest)).await?;
            delete_req(manifest_path(&c.name, &d.refs_b_config.digest)).await?;
            delete_req(manifest_path(&c.name, &d.refs_b_layer.digest)).await
        };
        if DELETE_MANIFEST_BEFORE_BLOBS {
            delete_manifests().await?;
        }
        // Delete config blob created in setup
        delete_req(blob_path(&c.name, &d.configs[4].digest)).await?;
        // Delete reference blobs created in setup
        delete_req(blob_path(&c.name, &d.ref_blob_a.digest)).await?;
        delete_req(blob_path(&c.name, &d.ref_blob_b.digest)).await?;
        // Delete empty JSON blob created in setup
        delete_req(blob_path(&c.name, &d.empty_json.digest)).await?;
        if !DELETE_MANIFEST_BEFORE_BLOBS {
            delete_manifests().await?;
        }
        Ok(())
    });
}

// 04_management_test.go ------------------------------------------------------

async fn test04_content_management(ctx: &mut Ctx, rec: &mut Recorder) {
    const W: &str = "Content Management";
    const DEFAULT_TAG_NAME: &str = "tagtest0";
    let (c, d) = (&ctx.c, &ctx.d);
    rec.workflow("04_management_test.go", W);
    let mut tag_to_delete = String::new();
    let mut num_tags: usize = 0;
    let mut blob_delete_allowed = true;
    let tags_list = format!("/v2/{}/tags/list", c.name);

    rec.context(W, "Setup");
    // 04_management_test.go: "Populate registry with test config blob"
    check!(rec, "Populate registry with test config blob", {
        populate_blob(c, &d.configs[3]).await
    });
    // 04_management_test.go: "Populate registry with test layer"
    check!(rec, "Populate registry with test layer", {
        populate_blob(c, &d.layer).await
    });
    // 04_management_test.go: "Populate registry with test tag"
    check!(rec, "Populate registry with test tag", {
        tag_to_delete = DEFAULT_TAG_NAME.to_string();
        let resp = put_manifest(c, &tag_to_delete, MT_MANIFEST, &d.manifests[3].content).await?;
        expect_success(&resp)
    });
    // 04_management_test.go: "Check how many tags there are before anything gets deleted"
    check!(
        rec,
        "Check how many tags there are before anything gets deleted",
        {
            let resp = c.send(req(Method::GET, tags_list.clone())).await?;
            expect_status(&resp, &[200])?;
            num_tags = decode_tag_list(&resp)?.len();
            Ok(())
        }
    );

    rec.context(W, "Manifest delete");
    // 04_management_test.go: "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)"
    check!(
        rec,
        "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)",
        {
            // reggie refuses a request whose <reference> was left empty.
            ensure!(!tag_to_delete.is_empty(), "request is invalid: empty tag");
            let resp = delete(c, manifest_path(&c.name, &tag_to_delete)).await?;
            expect_status(&resp, &[400, 202, 405])?;
            note(&format!("answered {}", resp.status));
            if resp.status == 400 {
                let codes = resp.errors()?;
                ensure!(!codes.is_empty(), "empty error list\n{}", resp.describe());
                ensure!(
                    codes[0] == UNSUPPORTED,
                    "error code is {:?}, expected {UNSUPPORTED:?}\n{}",
                    codes[0],
                    resp.describe()
                );
            }
            Ok(())
        }
    );
    // 04_management_test.go: "DELETE request to manifest (digest) should yield 202 response unless already deleted"
    check!(
        rec,
        "DELETE request to manifest (digest) should yield 202 response unless already deleted",
        {
            let resp = delete(c, manifest_path(&c.name, &d.manifests[3].digest)).await?;
            // If the tag delete was accepted, this may or may not fail (which is ok).
            expect_status(&resp, &[202, 404])
        }
    );
    // 04_management_test.go: "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed"
    check!(
        rec,
        "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed",
        {
            let resp = c
                .send(req(
                    Method::GET,
                    manifest_path(&c.name, &d.manifests[3].digest),
                ))
                .await?;
            expect_status(&resp, &[404, 200])
        }
    );
    // 04_management_test.go: "GET request to tags list should reflect manifest deletion"
    check!(
        rec,
        "GET request to tags list should reflect manifest deletion",
        {
            let resp = c.send(req(Method::GET, tags_list.clone())).await?;
            expect_status(&resp, &[200])?;
            let tags = decode_tag_list(&resp)?;
            ensure!(
                tags.len() < num_tags,
                "expected fewer than {num_tags} tags after the delete, got {tags:?}\n{}",
                resp.describe()
            );
            Ok(())
        }
    );

    rec.context(W, "Blob delete");
    // 04_management_test.go: "DELETE request to blob URL should yield 202 response"
    check!(
        rec,
        "DELETE request to blob URL should yield 202 response",
        {
            // config blob
            let resp = delete(c, blob_path(&c.name, &d.configs[3].digest)).await?;
            expect_status(&resp, &[202, 404, 405])?;
            // layer blob
            let resp = delete(c, blob_path(&c.name, &d.layer.digest)).await?;
            expect_status(&resp, &[202, 404, 405])?;
            note(&format!("layer blob DELETE answered {}", resp.status));
            if resp.status == 405 {
                blob_delete_allowed = false;
            }
            Ok(())
        }
    );
    // 04_management_test.go: "GET request to deleted blob URL should yield 404 response"
    check!(
        rec,
        "GET request to deleted blob URL should yield 404 response",
        {
            run_only_if!(
                blob_delete_allowed,
                "RunOnlyIf(blobDeleteAllowed): blob DELETE answered 405"
            );
            let resp = c
                .send(req(Method::GET, blob_path(&c.name, &d.configs[3].digest)))
                .await?;
            expect_status(&resp, &[404])
        }
    );

    rec.context(W, "Teardown");
    // (No teardown required at this time for content management tests.)
}

// ---------------------------------------------------------------------------
// The tests: one server per workflow, then all four on one server in the
// order the official binary runs them (00_conformance_suite_test.go).

#[tokio::test]
async fn conformance_pull() {
    let (_berth, mut ctx) = start();
    let mut rec = Recorder::new("Pull");
    test01_pull(&mut ctx, &mut rec).await;
    rec.finish();
}

#[tokio::test]
async fn conformance_push() {
    let (_berth, mut ctx) = start();
    let mut rec = Recorder::new("Push");
    test02_push(&mut ctx, &mut rec).await;
    rec.finish();
}

#[tokio::test]
async fn conformance_content_discovery() {
    let (_berth, mut ctx) = start();
    let mut rec = Recorder::new("Content Discovery");
    test03_content_discovery(&mut ctx, &mut rec).await;
    rec.finish();
}

#[tokio::test]
async fn conformance_content_management() {
    let (_berth, mut ctx) = start();
    let mut rec = Recorder::new("Content Management");
    test04_content_management(&mut ctx, &mut rec).await;
    rec.finish();
}

#[tokio::test]
async fn conformance_all_workflows_on_one_registry() {
    let (_berth, mut ctx) = start();
    let mut rec = Recorder::new("OCI Distribution Conformance Tests (all workflows, one registry)");
    test01_pull(&mut ctx, &mut rec).await;
    test02_push(&mut ctx, &mut rec).await;
    test03_content_discovery(&mut ctx, &mut rec).await;
    test04_content_management(&mut ctx, &mut rec).await;
    rec.finish();
}

#[test]
fn base64_matches_the_standard_encoding() {
    assert_eq!(base64_encode(b"hello world"), "aGVsbG8gd29ybGQ=");
    assert_eq!(base64_encode(b"ab"), "YWI=");
    assert_eq!(base64_encode(b"abc"), "YWJj");
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
    let layer = base64_decode(LAYER_BASE64);
    assert_eq!(&layer[..2], &[0x1f, 0x8b], "the layer is gzip");
    assert_eq!(base64_encode(&layer), LAYER_BASE64);
}
