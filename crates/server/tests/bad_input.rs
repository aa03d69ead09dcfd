//! A table of malformed requests against the real `berth` binary.
//!
//! Every row names the status and OCI error code the distribution spec
//! (v1.1) requires; where the spec is silent the row follows CNCF
//! Distribution, and where both leave a choice open the row lists every
//! acceptable answer. Beyond each row's own expectation:
//!
//! - no row may be answered with a 5xx, or leak the database file;
//! - phase A rows must change nothing: the metadata (table counts, catalog,
//!   tag lists, manifest and blob bytes, the in-progress upload) and the store
//!   (every file under blobs/ and uploads/ with its size and SHA-256) are
//!   snapshotted before and compared after;
//! - phase B rows necessarily open upload sessions (each on its own fresh
//!   session, or a mount that must fall back to a new session); they must not
//!   create blobs, manifests or tags, and no rejected digest may become
//!   readable;
//! - phase C rows are malformed-looking pushes the spec (or Distribution)
//!   requires to be accepted;
//! - afterwards the abused in-progress upload still completes, and a normal
//!   push and pull still work.
//!
//! Requests go over a raw HTTP/1.1 connection so that paths like `/a/../b`,
//! `%2e%2e` and `//` reach the server exactly as written (URL libraries
//! normalise them away). Every request carries the admin's Basic
//! credentials (authentication itself is tested elsewhere).

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use berth_meta::MetaStore;
use common::{Berth, digest_of, sha256_hex};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const OCTET: &str = "application/octet-stream";

/// The spec's error codes; a JSON error body may use no others.
const SPEC_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// Repositories of the fixture. Phase A may touch none of them.
const APP: &str = "bad/app";
const OTHER: &str = "bad/other";
const INPROGRESS: &str = "bad/inprogress";
const SIZES: &str = "bad/sizes";
/// A repository nobody pushed to, in the fixture's project: unknown to the
/// registry (404), not refused (a project that does not exist is an access
/// matter, answered 403 even to the admin).
const UNKNOWN: &str = "bad/nosuch";
/// Phase B's repositories, left out of the snapshot.
const SCRATCH: &str = "bad/scratch";
const MOUNT: &str = "bad/mount";

/// Spec limit: "Client and registry implementations SHOULD expect to be able
/// to support manifest pushes of at least 4 megabytes"; Berth takes 4 MiB.
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------
// The table's vocabulary
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Code {
    /// The error body must hold this code.
    Is(&'static str),
    /// The error body must hold one of these codes.
    OneOf(&'static [&'static str]),
    /// The body must be an OCI error body whose codes are all the spec's.
    AnySpec,
    /// Not checked: HEAD (no body) and 416 on a blob read.
    Unchecked,
}

#[derive(Clone, Debug)]
struct Outcome {
    status: u16,
    code: Code,
    /// A response header that must be present with exactly this value.
    header: Option<(&'static str, String)>,
}

type Check = Box<dyn Fn(&Resp) -> Result<(), String> + Send + Sync>;

struct Row {
    name: String,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expect_continue: bool,
    close_after_body: bool,
    outcomes: Vec<Outcome>,
    check: Option<Check>,
}

fn row(name: impl Into<String>, method: &'static str, target: impl Into<String>) -> Row {
    Row {
        name: name.into(),
        method,
        target: target.into(),
        headers: Vec::new(),
        body: Vec::new(),
        expect_continue: false,
        close_after_body: false,
        outcomes: Vec::new(),
        check: None,
    }
}

impl Row {
    fn header(mut self, name: &str, value: impl Into<String>) -> Row {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Row {
        self.body = body.into();
        self
    }

    /// A manifest push body with its Content-Type.
    fn manifest(self, media_type: &str, body: impl Into<Vec<u8>>) -> Row {
        self.header("Content-Type", media_type).body(body)
    }

    /// An upload chunk with its Content-Type and Content-Range.
    fn chunk(self, range: &str, body: impl Into<Vec<u8>>) -> Row {
        self.header("Content-Type", OCTET)
            .header("Content-Range", range)
            .body(body)
    }

    /// Sends `Expect: 100-continue` and the body only after the interim 100,
    /// so a server that refuses on the headers alone is not raced by the body.
    fn expect_continue(mut self) -> Row {
        self.expect_continue = true;
        self
    }

    /// Shuts the write side down after the body: with a Content-Length larger
    /// than the body, the server sees the body end early.
    fn close_after_body(mut self) -> Row {
        self.close_after_body = true;
        self
    }

    /// An acceptable answer: `status` with error code `code`.
    fn expect(self, status: u16, code: &'static str) -> Row {
        self.outcome(status, Code::Is(code), None)
    }

    fn expect_code(self, status: u16, code: Code) -> Row {
        self.outcome(status, code, None)
    }

    fn expect_header(self, status: u16, code: Code, name: &'static str, value: String) -> Row {
        self.outcome(status, code, Some((name, value)))
    }

    fn outcome(mut self, status: u16, code: Code, header: Option<(&'static str, String)>) -> Row {
        // HEAD answers carry no body, so there is no code to read.
        let code = if self.method == "HEAD" {
            Code::Unchecked
        } else {
            code
        };
        self.outcomes.push(Outcome {
            status,
            code,
            header,
        });
        self
    }

    fn check(mut self, f: impl Fn(&Resp) -> Result<(), String> + Send + Sync + 'static) -> Row {
        self.check = Some(Box::new(f));
        self
    }
}

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client: the request goes out byte for byte as written.
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The codes of an OCI error body, or None when the body is not one.
    fn error_codes(&self) -> Option<Vec<String>> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        let errors = v.get("errors")?.as_array()?;
        if errors.is_empty() {
            return None;
        }
        errors
            .iter()
            .map(|e| {
                // `message` is optional in the spec; `code` is not.
                e.get("code")?.as_str().map(str::to_string)
            })
            .collect()
    }

    fn body_text(&self, limit: usize) -> String {
        let text = String::from_utf8_lossy(&self.body);
        if text.len() > limit {
            let mut cut = limit;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… ({} bytes)", &text[..cut], self.body.len())
        } else {
            text.into_owned()
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn status_of(head: &[u8]) -> Result<u16, String> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find(rest, b"\r\n").ok_or("chunk size line is cut short")?;
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("chunked body is cut short".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn parse_response(buf: &[u8], head_request: bool) -> Result<Resp, String> {
    let mut rest = buf;
    loop {
        let end = find(rest, b"\r\n\r\n").ok_or("no complete response head")?;
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = status_of(head.as_bytes())?;
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        rest = &rest[end + 4..];
        if (100..200).contains(&status) {
            continue;
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let body = if head_request || status == 204 || status == 304 {
            Vec::new()
        } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            decode_chunked(rest)?
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad Content-Length {len:?}"))?;
            if rest.len() < len {
                return Err(format!("body cut short: {} of {len} bytes", rest.len()));
            }
            rest[..len].to_vec()
        } else {
            rest.to_vec()
        };
        return Ok(Resp {
            status,
            headers,
            body,
        });
    }
}

/// Sends one request on its own connection (`Connection: close`) and reads
/// the answer to the end. The write half stays open until the answer is in:
/// a half-closed request may be dropped by the server.
async fn send_raw(addr: &str, r: &Row) -> Result<Resp, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: berth-bad-input\r\n",
        r.method, r.target
    );
    let explicit_length = r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    if !explicit_length && (!r.body.is_empty() || matches!(r.method, "POST" | "PUT" | "PATCH")) {
        let _ = write!(head, "Content-Length: {}\r\n", r.body.len());
    }
    let expect_continue = r.expect_continue && !r.body.is_empty();
    if expect_continue {
        head.push_str("Expect: 100-continue\r\n");
    }
    // As the admin, so that what is judged is the handling of the malformed
    // request itself, not a missing login.
    if !r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        let _ = write!(head, "Authorization: {}\r\n", common::admin_basic());
    }
    for (k, v) in &r.headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    wr.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write request head: {e}"))?;

    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut send_body = !r.body.is_empty();
    if expect_continue {
        // Wait for `100 Continue` (then send the body) or the final answer.
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                if status_of(&buf[..end])? == 100 {
                    buf.drain(..end + 4);
                } else {
                    send_body = false;
                }
                break;
            }
            match rd.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read interim response: {e}")),
            }
        }
    }
    let body = if send_body {
        r.body.clone()
    } else {
        Vec::new()
    };
    let close_after_body = r.close_after_body;
    let writer = tokio::spawn(async move {
        if !body.is_empty() {
            // The server may answer and close before reading it all; that
            // is its right, and the answer is what is checked.
            let _ = wr.write_all(&body).await;
            let _ = wr.flush().await;
        }
        if close_after_body {
            let _ = wr.shutdown().await;
        }
        wr
    });
    let read_error = loop {
        match rd.read(&mut chunk).await {
            Ok(0) => break None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break Some(e),
        }
    };
    let write_half = writer.await.map_err(|e| format!("writer task: {e}"))?;
    drop(write_half);
    parse_response(&buf, r.method == "HEAD").map_err(|e| {
        format!(
            "{e} (read error: {read_error:?}; {} bytes received: {:?})",
            buf.len(),
            String::from_utf8_lossy(&buf[..buf.len().min(300)])
        )
    })
}

// ---------------------------------------------------------------------------
// Running rows and collecting the verdicts
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    rows: usize,
    passed: usize,
    failures: Vec<String>,
    server_errors: Vec<String>,
}

fn describe(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .map(|o| {
            let mut s = format!("{} ", o.status);
            match &o.code {
                Code::Is(c) => s.push_str(c),
                Code::OneOf(cs) => s.push_str(&cs.join("|")),
                Code::AnySpec => s.push_str("<any spec code>"),
                Code::Unchecked => s.push_str("<code not checked>"),
            }
            if let Some((k, v)) = &o.header {
                let _ = write!(s, " + {k}: {v}");
            }
            s
        })
        .collect::<Vec<_>>()
        .join("  OR  ")
}

fn matches(o: &Outcome, r: &Resp) -> bool {
    if r.status != o.status {
        return false;
    }
    let code_ok = match &o.code {
        Code::Unchecked => true,
        Code::Is(c) => r.error_codes().is_some_and(|cs| cs.iter().any(|x| x == c)),
        Code::OneOf(list) => r
            .error_codes()
            .is_some_and(|cs| cs.iter().any(|x| list.contains(&x.as_str()))),
        Code::AnySpec => r
            .error_codes()
            .is_some_and(|cs| cs.iter().all(|x| SPEC_CODES.contains(&x.as_str()))),
    };
    let header_ok = o
        .header
        .as_ref()
        .is_none_or(|(k, v)| r.header(k) == Some(v.as_str()));
    code_ok && header_ok
}

fn short_target(t: &str) -> String {
    if t.len() > 120 {
        format!("{}…({} chars)", &t[..120], t.len())
    } else {
        t.to_string()
    }
}

impl Report {
    /// Runs the rows in order; returns which passed.
    async fn run(&mut self, phase: &str, addr: &str, rows: &[Row]) -> Vec<bool> {
        let mut verdicts = Vec::new();
        for r in rows {
            assert!(!r.outcomes.is_empty(), "row {} has no expectation", r.name);
            self.rows += 1;
            let request = format!("{} {}", r.method, short_target(&r.target));
            let answer = tokio::time::timeout(Duration::from_secs(120), send_raw(addr, r))
                .await
                .unwrap_or_else(|_| Err("no answer within 120 s".into()));
            let resp = match answer {
                Ok(resp) => resp,
                Err(e) => {
                    println!("FAIL {phase} {:<60} no response", r.name);
                    verdicts.push(false);
                    self.failures.push(format!(
                        "[{phase}] {}\n    request:  {request}\n    expected: {}\n    actual:   no HTTP response: {e}",
                        r.name,
                        describe(&r.outcomes)
                    ));
                    continue;
                }
            };
            let mut problems = Vec::new();
            if resp.status >= 500 {
                self.server_errors
                    .push(format!("{} ({request}) -> {}", r.name, resp.status));
                problems.push(format!("server error {}", resp.status));
            }
            if find(&resp.body, b"SQLite format 3").is_some() {
                problems.push("the response leaks the database file".into());
            }
            let matched = r.outcomes.iter().find(|o| matches(o, &resp));
            if matched.is_none() {
                problems.push("no expected outcome matched".into());
            } else if let Some(check) = &r.check
                && let Err(e) = check(&resp)
            {
                problems.push(e);
            }
            verdicts.push(problems.is_empty());
            if problems.is_empty() {
                self.passed += 1;
                println!("ok   {phase} {:<60} {}", r.name, resp.status);
            } else {
                println!("FAIL {phase} {:<60} {}", r.name, resp.status);
                let interesting: Vec<String> =
                    ["range", "content-range", "location", "oci-subject"]
                        .iter()
                        .filter_map(|h| resp.header(h).map(|v| format!("{h}: {v}")))
                        .collect();
                self.failures.push(format!(
                    "[{phase}] {}\n    request:  {request}\n    expected: {}\n    actual:   {} codes={:?} {}\n    problems: {}\n    body:     {}",
                    r.name,
                    describe(&r.outcomes),
                    resp.status,
                    resp.error_codes().unwrap_or_default(),
                    interesting.join(", "),
                    problems.join("; "),
                    resp.body_text(400)
                ));
            }
        }
        verdicts
    }

    fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }
}

// ---------------------------------------------------------------------------
// A small typed client for setting up state and reading it back
// ---------------------------------------------------------------------------

struct Api {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            http: common::client_builder()
                .no_proxy()
                .build()
                .expect("http client"),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method_value, &url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("response body").to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], Vec::new()).await
    }

    /// The path and query of a Location header, whether relative or absolute.
    fn location(&self, a: &Answer, what: &str) -> String {
        let loc = a
            .header("location")
            .unwrap_or_else(|| panic!("{what}: no Location header (status {})", a.status));
        match loc
            .strip_prefix("http://")
            .or_else(|| loc.strip_prefix("https://"))
        {
            Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_string(),
            None => loc,
        }
    }

    async fn start_upload(&self, repo: &str) -> String {
        let a = self
            .send(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Vec::new(),
            )
            .await;
        assert_eq!(a.status, 202, "start upload in {repo}: {}", text(&a.body));
        self.location(&a, "start upload")
    }

    /// PATCHes `data` at `start`; returns the next location.
    async fn patch(&self, location: &str, start: usize, data: &[u8]) -> String {
        let range = format!("{start}-{}", start + data.len() - 1);
        let a = self
            .send(
                "PATCH",
                location,
                &[("content-type", OCTET), ("content-range", &range)],
                data.to_vec(),
            )
            .await;
        assert_eq!(a.status, 202, "PATCH {range}: {}", text(&a.body));
        self.location(&a, "PATCH")
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let location = self.start_upload(repo).await;
        let digest = digest_of(data);
        let a = self
            .send(
                "PUT",
                &with_query(&location, "digest", &digest),
                &[("content-type", OCTET)],
                data.to_vec(),
            )
            .await;
        assert_eq!(a.status, 201, "push blob to {repo}: {}", text(&a.body));
        digest
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Answer {
        self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
        .await
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(500)]).into_owned()
}

fn with_query(location: &str, key: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{key}={value}")
}

fn upload_id(location: &str) -> String {
    let path = location.split('?').next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default().to_string()
}

fn desc(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

fn image_manifest(config: Value, layers: Vec<Value>) -> Value {
    json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers })
}

fn index_of(media_type: &str, manifests: Vec<Value>) -> Value {
    json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": manifests })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize")
}

/// A valid image manifest over `config` padded with an annotation to exactly
/// `total` bytes.
fn padded_manifest(config: Value, total: usize) -> Vec<u8> {
    let mut m = image_manifest(config, vec![]);
    m["annotations"] = json!({ "pad": "" });
    let base = bytes(&m).len();
    assert!(total > base, "cannot pad to {total}");
    m["annotations"]["pad"] = json!("p".repeat(total - base));
    let out = bytes(&m);
    assert_eq!(out.len(), total);
    out
}

// ---------------------------------------------------------------------------
// The fixture and its snapshot
// ---------------------------------------------------------------------------

struct Fixture {
    config: Vec<u8>,
    config_d: String,
    layer: Vec<u8>,
    layer_d: String,
    manifest_d: String,
    /// A valid manifest of APP's blobs that is not pushed.
    fresh_manifest: Vec<u8>,
    other_blob: Vec<u8>,
    other_blob_d: String,
    other_manifest: Vec<u8>,
    other_manifest_d: String,
    /// Path and query of the in-progress upload in INPROGRESS.
    upload: String,
    upload_id: String,
    upload_bytes: Vec<u8>,
    sizes_blob: Vec<u8>,
    sizes_blob_d: String,
}

async fn setup(api: &Api) -> Fixture {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer: Vec<u8> = (0..100u32).map(|i| (i * 7 % 251) as u8).collect();
    let config_d = api.push_blob(APP, &config).await;
    let layer_d = api.push_blob(APP, &layer).await;
    let manifest = bytes(&image_manifest(
        desc(OCI_CONFIG, &config_d, config.len()),
        vec![desc(OCI_LAYER, &layer_d, layer.len())],
    ));
    let manifest_d = digest_of(&manifest);
    for tag in ["v1", "latest"] {
        let a = api.put_manifest(APP, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(a.status, 201, "push {APP}:{tag}: {}", text(&a.body));
    }
    let mut fresh = image_manifest(
        desc(OCI_CONFIG, &config_d, config.len()),
        vec![desc(OCI_LAYER, &layer_d, layer.len())],
    );
    fresh["annotations"] = json!({ "variant": "never pushed" });
    let fresh_manifest = bytes(&fresh);

    let other_blob = b"this blob is linked to bad/other only".to_vec();
    let other_blob_d = api.push_blob(OTHER, &other_blob).await;
    let other_manifest = bytes(&image_manifest(
        desc(OCI_CONFIG, &other_blob_d, other_blob.len()),
        vec![],
    ));
    let other_manifest_d = digest_of(&other_manifest);
    let a = api
        .put_manifest(OTHER, "v1", OCI_MANIFEST, &other_manifest)
        .await;
    assert_eq!(a.status, 201, "push {OTHER}:v1: {}", text(&a.body));

    let upload_bytes = b"0123456789".to_vec();
    let start = api.start_upload(INPROGRESS).await;
    let upload = api.patch(&start, 0, &upload_bytes).await;
    let upload_id = upload_id(&upload);

    let sizes_blob = b"sizes config blob".to_vec();
    let sizes_blob_d = api.push_blob(SIZES, &sizes_blob).await;

    Fixture {
        config,
        config_d,
        layer,
        layer_d,
        manifest_d,
        fresh_manifest,
        other_blob,
        other_blob_d,
        other_manifest,
        other_manifest_d,
        upload,
        upload_id,
        upload_bytes,
        sizes_blob,
        sizes_blob_d,
    }
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    counts: Vec<(String, i64)>,
    files: Vec<(String, u64, String)>,
    api: Vec<String>,
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, u64, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, root, out);
        } else {
            let data = std::fs::read(&path).unwrap_or_default();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.push((rel, data.len() as u64, sha256_hex(&data)));
        }
    }
}

fn store_files(data_dir: &Path) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    for sub in ["blobs", "uploads"] {
        walk(&data_dir.join(sub), data_dir, &mut out);
    }
    out.sort();
    out
}

async fn snapshot(api: &Api, meta: &MetaStore, data_dir: &Path, fx: &Fixture) -> Snapshot {
    let counts = meta.table_counts().await.expect("table counts");
    let mut view = Vec::new();
    let mut note = |label: String, a: &Answer, extra: &[&str]| {
        let mut line = format!("{label}: {} sha256={}", a.status, sha256_hex(&a.body));
        for h in extra {
            let _ = write!(line, " {h}={:?}", a.header(h));
        }
        view.push(line);
    };
    let a = api.get("/v2/_catalog").await;
    note("catalog".into(), &a, &[]);
    for repo in [APP, OTHER, INPROGRESS, SIZES] {
        let a = api.get(&format!("/v2/{repo}/tags/list")).await;
        note(format!("tags {repo}"), &a, &["link"]);
    }
    for (repo, reference) in [
        (APP, "v1"),
        (APP, "latest"),
        (APP, fx.manifest_d.as_str()),
        (OTHER, "v1"),
        (OTHER, fx.other_manifest_d.as_str()),
    ] {
        let a = api.get(&format!("/v2/{repo}/manifests/{reference}")).await;
        note(
            format!("manifest {repo}:{reference}"),
            &a,
            &["content-type", "docker-content-digest"],
        );
    }
    for (repo, digest) in [
        (APP, &fx.config_d),
        (APP, &fx.layer_d),
        (APP, &fx.other_blob_d),
        (OTHER, &fx.other_blob_d),
        (OTHER, &fx.layer_d),
        (SIZES, &fx.sizes_blob_d),
    ] {
        let a = api.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        note(format!("blob {repo}@{digest}"), &a, &[]);
    }
    let a = api.get(&fx.upload).await;
    note("upload in progress".into(), &a, &["range"]);
    let a = api
        .get(&format!("/v2/{APP}/referrers/{}", fx.manifest_d))
        .await;
    note("referrers".into(), &a, &[]);
    Snapshot {
        counts,
        files: store_files(data_dir),
        api: view,
    }
}

fn compare(report: &mut Report, phase: &str, before: &Snapshot, after: &Snapshot) {
    if before.counts != after.counts {
        report.fail(format!(
            "[{phase}] database row counts changed:\n    before: {:?}\n    after:  {:?}",
            before.counts, after.counts
        ));
    }
    if before.files != after.files {
        let gone: Vec<_> = before
            .files
            .iter()
            .filter(|f| !after.files.contains(f))
            .collect();
        let new: Vec<_> = after
            .files
            .iter()
            .filter(|f| !before.files.contains(f))
            .collect();
        report.fail(format!(
            "[{phase}] the store changed:\n    gone or modified: {gone:?}\n    new or modified:  {new:?}"
        ));
    }
    for (b, a) in before.api.iter().zip(&after.api) {
        if b != a {
            report.fail(format!(
                "[{phase}] state seen through the API changed:\n    before: {b}\n    after:  {a}"
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Phase A: rejected requests that must change nothing
// ---------------------------------------------------------------------------

fn phase_a(fx: &Fixture) -> Vec<Row> {
    let mut rows = phase_a_spec_rows(fx);
    // Berth is stricter than Distribution here: a descriptor whose size is
    // not the blob's could never be pulled, so it is refused at push time.
    let wrong_size = bytes(&image_manifest(
        desc(OCI_CONFIG, &fx.config_d, fx.config.len() + 1),
        vec![],
    ));
    rows.push(
        row(
            "descriptor size differs from the blob's size",
            "PUT",
            format!("/v2/{APP}/manifests/t-size"),
        )
        .manifest(OCI_MANIFEST, wrong_size)
        .expect(400, "MANIFEST_INVALID"),
    );
    rows
}

fn phase_a_spec_rows(fx: &Fixture) -> Vec<Row> {
    use Code::{AnySpec, OneOf, Unchecked};
    let app = format!("/v2/{APP}");
    let hex = sha256_hex(b"never pushed");
    assert!(
        hex.bytes().any(|b| b.is_ascii_alphabetic()),
        "hex needs letters"
    );
    let unknown = format!("sha256:{hex}");
    let layer_len = fx.layer.len();
    let fresh = fx.fresh_manifest.clone();
    let config = desc(OCI_CONFIG, &fx.config_d, fx.config.len());
    let layer = desc(OCI_LAYER, &fx.layer_d, layer_len);
    let mut rows = Vec::new();

    // --- Digests in URLs. Spec: "if the client provided digest is invalid or
    // uses an unsupported algorithm, the registry SHOULD respond with a
    // response code 400 Bad Request"; sha256 hex is lowercase (image spec).
    let bad_digests: Vec<(&str, String)> = vec![
        (
            "unregistered algorithm sha1",
            format!("sha1:{}", &hex[..40]),
        ),
        ("md5", "md5:d41d8cd98f00b204e9800998ecf8427e".into()),
        ("short hex", "sha256:abc".into()),
        ("uppercase hex", format!("sha256:{}", hex.to_uppercase())),
        ("non-hex character", format!("sha256:{}g", &hex[..63])),
        ("empty hex", "sha256:".into()),
        ("no algorithm", hex.clone()),
        ("hex one too long", format!("sha256:{hex}0")),
        ("sha512 with 256 bits", format!("sha512:{hex}")),
        ("uppercase algorithm", format!("SHA256:{hex}")),
        ("encoded traversal", "sha256:..%2F..%2F..%2Fmeta.db".into()),
    ];
    for (label, d) in &bad_digests {
        rows.push(
            row(
                format!("blob GET, digest {label}"),
                "GET",
                format!("{app}/blobs/{d}"),
            )
            .expect(400, "DIGEST_INVALID"),
        );
    }
    rows.push(
        row(
            "blob HEAD, digest short hex",
            "HEAD",
            format!("{app}/blobs/sha256:abc"),
        )
        .expect(400, "DIGEST_INVALID"),
    );
    // Deletion may be disabled (spec: 400 or 405).
    rows.push(
        row(
            "blob DELETE, digest md5",
            "DELETE",
            format!("{app}/blobs/md5:d41d8cd98f00b204e9800998ecf8427e"),
        )
        .expect(400, "DIGEST_INVALID")
        .expect(405, "UNSUPPORTED"),
    );
    rows.push(
        row(
            "manifest GET, digest short hex",
            "GET",
            format!("{app}/manifests/sha256:abc"),
        )
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row(
            "manifest GET, digest md5",
            "GET",
            format!("{app}/manifests/md5:d41d8cd98f00b204e9800998ecf8427e"),
        )
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row(
            "manifest GET, digest uppercase hex",
            "GET",
            format!("{app}/manifests/sha256:{}", hex.to_uppercase()),
        )
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row(
            "manifest HEAD, digest non-hex",
            "HEAD",
            format!("{app}/manifests/sha256:{}", "z".repeat(64)),
        )
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row(
            "manifest DELETE, digest short hex",
            "DELETE",
            format!("{app}/manifests/sha256:abc"),
        )
        .expect(400, "DIGEST_INVALID")
        .expect(405, "UNSUPPORTED"),
    );
    rows.push(
        row(
            "manifest PUT, reference digest short hex",
            "PUT",
            format!("{app}/manifests/sha256:abc"),
        )
        .manifest(OCI_MANIFEST, fresh.clone())
        .expect(400, "DIGEST_INVALID"),
    );
    // Distribution: the body's digest must equal the digest in the URL.
    rows.push(
        row(
            "manifest PUT, reference digest of other bytes",
            "PUT",
            format!("{app}/manifests/{unknown}"),
        )
        .manifest(OCI_MANIFEST, fresh.clone())
        .expect(400, "DIGEST_INVALID"),
    );
    // Spec: "If the request is invalid, such as a <digest> with an invalid
    // syntax, a 400 Bad Request MUST be returned."
    rows.push(
        row(
            "referrers, digest not a digest",
            "GET",
            format!("{app}/referrers/latest"),
        )
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row(
            "referrers, digest short hex",
            "GET",
            format!("{app}/referrers/sha256:abc"),
        )
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row(
            "single POST, digest short hex",
            "POST",
            format!("{app}/blobs/uploads/?digest=sha256:abc"),
        )
        .header("Content-Type", OCTET)
        .body(b"single post body".to_vec())
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row(
            "single POST, digest md5",
            "POST",
            format!("{app}/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e"),
        )
        .header("Content-Type", OCTET)
        .body(b"single post body".to_vec())
        .expect(400, "DIGEST_INVALID"),
    );

    // --- Unknown blobs, manifests, repositories; content of other repos.
    rows.push(
        row(
            "blob GET, unknown digest",
            "GET",
            format!("{app}/blobs/{unknown}"),
        )
        .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row(
            "blob HEAD, unknown digest",
            "HEAD",
            format!("{app}/blobs/{unknown}"),
        )
        .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row(
            "blob GET with Range, unknown digest",
            "GET",
            format!("{app}/blobs/{unknown}"),
        )
        .header("Range", "bytes=0-3")
        .expect(404, "BLOB_UNKNOWN"),
    );
    // DESIGN rule 3: knowing a digest grants nothing.
    rows.push(
        row(
            "blob GET, blob of another repository",
            "GET",
            format!("{app}/blobs/{}", fx.other_blob_d),
        )
        .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row(
            "blob HEAD, blob of another repository",
            "HEAD",
            format!("{app}/blobs/{}", fx.other_blob_d),
        )
        .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row(
            "blob GET with Range, blob of another repository",
            "GET",
            format!("{app}/blobs/{}", fx.other_blob_d),
        )
        .header("Range", "bytes=0-3")
        .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row(
            "blob GET, digest of an unfinished upload's bytes",
            "GET",
            format!("/v2/{INPROGRESS}/blobs/{}", digest_of(&fx.upload_bytes)),
        )
        .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row(
            "blob DELETE, blob of another repository",
            "DELETE",
            format!("{app}/blobs/{}", fx.other_blob_d),
        )
        .expect(404, "BLOB_UNKNOWN")
        .expect(405, "UNSUPPORTED"),
    );
    rows.push(
        row(
            "manifest GET, unknown tag",
            "GET",
            format!("{app}/manifests/nosuchtag"),
        )
        .expect(404, "MANIFEST_UNKNOWN"),
    );
    rows.push(
        row(
            "manifest GET, unknown digest",
            "GET",
            format!("{app}/manifests/{unknown}"),
        )
        .expect(404, "MANIFEST_UNKNOWN"),
    );
    rows.push(
        row(
            "manifest HEAD, unknown tag",
            "HEAD",
            format!("{app}/manifests/nosuchtag"),
        )
        .expect(404, "MANIFEST_UNKNOWN"),
    );
    rows.push(
        row(
            "manifest GET, manifest of another repository",
            "GET",
            format!("{app}/manifests/{}", fx.other_manifest_d),
        )
        .expect(404, "MANIFEST_UNKNOWN"),
    );
    rows.push(
        row(
            "manifest DELETE, manifest of another repository",
            "DELETE",
            format!("{app}/manifests/{}", fx.other_manifest_d),
        )
        .expect(404, "MANIFEST_UNKNOWN")
        .expect(405, "UNSUPPORTED"),
    );
    // Spec: tag deletion disabled -> 400 or 405.
    rows.push(
        row(
            "manifest DELETE, unknown tag",
            "DELETE",
            format!("{app}/manifests/nosuchtag"),
        )
        .expect(404, "MANIFEST_UNKNOWN")
        .expect(405, "UNSUPPORTED")
        .expect(400, "UNSUPPORTED"),
    );
    rows.push(
        row(
            "tags list, unknown repository",
            "GET",
            format!("/v2/{UNKNOWN}/tags/list"),
        )
        .expect(404, "NAME_UNKNOWN"),
    );
    rows.push(
        row(
            "manifest GET, unknown repository",
            "GET",
            format!("/v2/{UNKNOWN}/manifests/v1"),
        )
        .expect_code(404, OneOf(&["MANIFEST_UNKNOWN", "NAME_UNKNOWN"])),
    );
    rows.push(
        row(
            "blob GET, unknown repository",
            "GET",
            format!("/v2/{UNKNOWN}/blobs/{}", fx.layer_d),
        )
        .expect_code(404, OneOf(&["BLOB_UNKNOWN", "NAME_UNKNOWN"])),
    );
    rows.push(
        row(
            "unknown endpoint under a repository",
            "GET",
            format!("{app}/nonsense"),
        )
        .expect_code(404, AnySpec),
    );

    // --- Upload sessions: unknown, malformed, foreign ids.
    let uuid = "6f1c2b1e-7a3d-4c5e-9f00-123456789abc";
    let inprog = format!("/v2/{INPROGRESS}");
    rows.push(
        row(
            "upload GET, unknown uuid",
            "GET",
            format!("{inprog}/blobs/uploads/{uuid}"),
        )
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload PATCH, unknown uuid",
            "PATCH",
            format!("{inprog}/blobs/uploads/{uuid}"),
        )
        .chunk("0-3", b"abcd".to_vec())
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload PUT, unknown uuid",
            "PUT",
            format!(
                "{inprog}/blobs/uploads/{uuid}?digest={}",
                digest_of(b"abcd")
            ),
        )
        .header("Content-Type", OCTET)
        .body(b"abcd".to_vec())
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload DELETE, unknown uuid",
            "DELETE",
            format!("{inprog}/blobs/uploads/{uuid}"),
        )
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload GET, malformed id",
            "GET",
            format!("{inprog}/blobs/uploads/not-a-uuid"),
        )
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload PATCH, malformed id",
            "PATCH",
            format!("{inprog}/blobs/uploads/not-a-uuid"),
        )
        .chunk("0-3", b"abcd".to_vec())
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload GET, 1000-character id",
            "GET",
            format!("{inprog}/blobs/uploads/{}", "a".repeat(1000)),
        )
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload GET, encoded NUL in id",
            "GET",
            format!("{inprog}/blobs/uploads/abc%00def"),
        )
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload DELETE, encoded traversal id",
            "DELETE",
            format!("{inprog}/blobs/uploads/..%2F..%2Fmeta.db"),
        )
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload PATCH, encoded traversal id",
            "PATCH",
            format!("{inprog}/blobs/uploads/..%2F..%2Fmeta.db"),
        )
        .chunk("0-3", b"abcd".to_vec())
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload PUT, encoded traversal id",
            "PUT",
            format!(
                "{inprog}/blobs/uploads/%2e%2e%2f%2e%2e%2fmeta.db?digest={}",
                digest_of(b"abcd")
            ),
        )
        .header("Content-Type", OCTET)
        .body(b"abcd".to_vec())
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload DELETE, raw traversal id",
            "DELETE",
            format!("{inprog}/blobs/uploads/../../../../meta.db"),
        )
        .expect_code(404, AnySpec)
        .expect(400, "NAME_INVALID"),
    );
    // A session belongs to its repository.
    let id = &fx.upload_id;
    rows.push(
        row(
            "upload GET, session of another repository",
            "GET",
            format!("{app}/blobs/uploads/{id}"),
        )
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload PATCH, session of another repository",
            "PATCH",
            format!("{app}/blobs/uploads/{id}"),
        )
        .chunk("10-13", b"abcd".to_vec())
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload PUT, session of another repository",
            "PUT",
            format!(
                "{app}/blobs/uploads/{id}?digest={}",
                digest_of(&fx.upload_bytes)
            ),
        )
        .header("Content-Type", OCTET)
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row(
            "upload DELETE, session of another repository",
            "DELETE",
            format!("{app}/blobs/uploads/{id}"),
        )
        .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );

    // --- Chunks against the 10-byte session. Spec: "If a chunk is uploaded
    // out of order, the registry MUST respond with a 416"; Berth adds the
    // Range the session really holds.
    let up = fx.upload.clone();
    let held = || "0-9".to_string();
    let ten = b"ABCDEFGHIJ".to_vec();
    rows.push(
        row("PATCH out of order (gap)", "PATCH", up.clone())
            .chunk("20-29", ten.clone())
            .expect_header(416, Code::Is("BLOB_UPLOAD_INVALID"), "range", held()),
    );
    rows.push(
        row("PATCH overlapping the held bytes", "PATCH", up.clone())
            .chunk("5-14", ten.clone())
            .expect_header(416, Code::Is("BLOB_UPLOAD_INVALID"), "range", held()),
    );
    rows.push(
        row("PATCH restarting at 0", "PATCH", up.clone())
            .chunk("0-9", ten.clone())
            .expect_header(416, Code::Is("BLOB_UPLOAD_INVALID"), "range", held()),
    );
    rows.push(
        row("PATCH range end before start", "PATCH", up.clone())
            .chunk("15-10", ten.clone())
            .expect(400, "BLOB_UPLOAD_INVALID")
            .expect(416, "BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("PATCH malformed Content-Range", "PATCH", up.clone())
            .chunk("abc", ten.clone())
            .expect(400, "BLOB_UPLOAD_INVALID")
            .expect(416, "BLOB_UPLOAD_INVALID"),
    );
    // Distribution: Content-Length must equal the Content-Range's length.
    rows.push(
        row(
            "PATCH Content-Range longer than the body",
            "PATCH",
            up.clone(),
        )
        .chunk("10-19", b"ABCDE".to_vec())
        .expect(400, "SIZE_INVALID"),
    );
    rows.push(
        row(
            "PATCH Content-Range shorter than the body",
            "PATCH",
            up.clone(),
        )
        .chunk("10-12", ten.clone())
        .expect(400, "SIZE_INVALID"),
    );
    rows.push(
        row("PATCH Content-Range end u64::MAX", "PATCH", up.clone())
            .chunk("10-18446744073709551615", ten.clone())
            .expect(400, "SIZE_INVALID")
            .expect(400, "BLOB_UPLOAD_INVALID")
            .expect(416, "BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("PATCH Content-Range overflowing u64", "PATCH", up.clone())
            .chunk("10-99999999999999999999999", ten.clone())
            .expect(400, "BLOB_UPLOAD_INVALID")
            .expect(416, "BLOB_UPLOAD_INVALID"),
    );
    rows.push(row("POST on a session URL", "POST", up.clone()).expect(405, "UNSUPPORTED"));

    // --- Repository names. Spec grammar
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
    // and under 256 characters; the brief's contract: 400 NAME_INVALID.
    let long_ok = format!("bad/{}", "a".repeat(251));
    let long_bad = format!("bad/{}", "a".repeat(252));
    assert_eq!((long_ok.len(), long_bad.len()), (255, 256));
    let bad_names: Vec<(&str, String)> = vec![
        ("uppercase", "Bad/App".into()),
        ("raw ..", "bad/../app".into()),
        ("encoded %2e%2e", "bad/%2e%2e/app".into()),
        ("encoded %2E%2E", "bad/%2E%2E/app".into()),
        ("raw . component", "bad/./app".into()),
        ("double slash", "bad//app".into()),
        ("leading slash", "/bad/app".into()),
        ("trailing slash", "bad/app/".into()),
        ("256 characters", long_bad.clone()),
        ("trailing dash", "bad/app-".into()),
        ("leading dot", "bad/.app".into()),
        ("three underscores", "bad/a___b".into()),
        ("encoded space", "bad/a%20b".into()),
        ("encoded NUL", "bad/a%00b".into()),
        ("encoded backslash", "bad/a%5Cb".into()),
        ("non-ASCII", "bad/%C3%BC".into()),
        ("colon", "bad/a:b".into()),
    ];
    for (label, name) in &bad_names {
        rows.push(
            row(
                format!("tags list, name {label}"),
                "GET",
                format!("/v2/{name}/tags/list"),
            )
            .expect(400, "NAME_INVALID"),
        );
    }
    rows.push(
        row(
            "tags list, name of 8000 characters",
            "GET",
            format!("/v2/bad/{}/tags/list", "a".repeat(8000)),
        )
        .expect(400, "NAME_INVALID")
        .expect_code(414, Unchecked),
    );
    rows.push(
        row(
            "tags list, 255-character name is valid but unknown",
            "GET",
            format!("/v2/{long_ok}/tags/list"),
        )
        .expect(404, "NAME_UNKNOWN"),
    );
    rows.push(
        row(
            "tags list, encoded slash in an unknown name",
            "GET",
            "/v2/nosuch%2Frepo/tags/list",
        )
        .expect(404, "NAME_UNKNOWN")
        .expect(400, "NAME_INVALID"),
    );
    // Decoding %2F to / (as Go's Distribution does) names bad/app itself.
    rows.push(
        row(
            "tags list, encoded slash in an existing name",
            "GET",
            "/v2/bad%2Fapp/tags/list",
        )
        .expect_code(200, Unchecked)
        .expect(400, "NAME_INVALID"),
    );
    rows.push(
        row("tags list, empty name", "GET", "/v2//tags/list")
            .expect(400, "NAME_INVALID")
            .expect_code(404, AnySpec),
    );
    rows.push(
        row(
            "start upload, name uppercase",
            "POST",
            "/v2/Bad/app/blobs/uploads/",
        )
        .expect(400, "NAME_INVALID"),
    );
    rows.push(
        row(
            "start upload, name with raw ..",
            "POST",
            "/v2/bad/../app/blobs/uploads/",
        )
        .expect(400, "NAME_INVALID"),
    );
    rows.push(
        row(
            "start upload, name 256 characters",
            "POST",
            format!("/v2/{long_bad}/blobs/uploads/"),
        )
        .expect(400, "NAME_INVALID"),
    );
    rows.push(
        row(
            "manifest PUT, name uppercase",
            "PUT",
            "/v2/BAD/app/manifests/v9",
        )
        .manifest(OCI_MANIFEST, fresh.clone())
        .expect(400, "NAME_INVALID"),
    );
    rows.push(
        row(
            "manifest PUT, name with encoded ..",
            "PUT",
            "/v2/bad/%2e%2e/app/manifests/v9",
        )
        .manifest(OCI_MANIFEST, fresh.clone())
        .expect(400, "NAME_INVALID"),
    );
    rows.push(
        row(
            "blob GET, name with double slash",
            "GET",
            format!("/v2/bad//app/blobs/{}", fx.layer_d),
        )
        .expect(400, "NAME_INVALID"),
    );

    // --- Tags. Spec: at most 128 characters of [a-zA-Z0-9_][a-zA-Z0-9._-]*.
    // The spec gives no code; a push with a malformed reference is a
    // malformed manifest push (MANIFEST_INVALID). Reads may also answer
    // 404 MANIFEST_UNKNOWN (Distribution's router answers 404).
    let bad_tags: Vec<(&str, String)> = vec![
        ("leading dash", "-v1".into()),
        ("leading dot", ".v1".into()),
        ("129 characters", "t".repeat(129)),
        ("plus sign", "v1+build".into()),
        ("encoded space", "v%201".into()),
        ("non-ASCII", "v%C3%BC".into()),
    ];
    for (label, tag) in &bad_tags {
        rows.push(
            row(
                format!("manifest PUT, tag {label}"),
                "PUT",
                format!("{app}/manifests/{tag}"),
            )
            .manifest(OCI_MANIFEST, fresh.clone())
            .expect(400, "MANIFEST_INVALID"),
        );
    }
    rows.push(
        row(
            "manifest PUT, tag with encoded slash",
            "PUT",
            format!("{app}/manifests/v1%2Fx"),
        )
        .manifest(OCI_MANIFEST, fresh.clone())
        .expect(400, "MANIFEST_INVALID")
        .expect_code(404, AnySpec),
    );
    rows.push(
        row(
            "manifest GET, tag 129 characters",
            "GET",
            format!("{app}/manifests/{}", "t".repeat(129)),
        )
        .expect(400, "MANIFEST_INVALID")
        .expect(404, "MANIFEST_UNKNOWN"),
    );
    rows.push(
        row(
            "manifest DELETE, tag leading dash",
            "DELETE",
            format!("{app}/manifests/-v1"),
        )
        .expect(400, "MANIFEST_INVALID")
        .expect(404, "MANIFEST_UNKNOWN")
        .expect(405, "UNSUPPORTED"),
    );

    // --- Manifest bodies (pushed to a new tag unless said otherwise).
    let put = |name: &str, media_type: &str, body: Vec<u8>| {
        row(name, "PUT", format!("{app}/manifests/t-bad")).manifest(media_type, body)
    };
    rows.push(
        put(
            "manifest not JSON",
            OCI_MANIFEST,
            b"this is not json".to_vec(),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    rows.push(put("manifest empty body", OCI_MANIFEST, Vec::new()).expect(400, "MANIFEST_INVALID"));
    rows.push(
        put("manifest a JSON array", OCI_MANIFEST, b"[]".to_vec()).expect(400, "MANIFEST_INVALID"),
    );
    let mut garbage = fresh.clone();
    garbage.extend_from_slice(b" trailing garbage");
    rows.push(
        put("manifest with trailing garbage", OCI_MANIFEST, garbage)
            .expect(400, "MANIFEST_INVALID"),
    );
    let mut not_utf8 = fresh.clone();
    not_utf8.insert(1, 0xff);
    rows.push(put("manifest not UTF-8", OCI_MANIFEST, not_utf8).expect(400, "MANIFEST_INVALID"));
    let deep = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    rows.push(
        put(
            "manifest nested 100000 deep",
            OCI_MANIFEST,
            deep.into_bytes(),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    let schema1 = json!({
        "schemaVersion": 1, "name": APP, "tag": "t-bad", "architecture": "amd64",
        "fsLayers": [{ "blobSum": fx.layer_d }],
        "history": [{ "v1Compatibility": "{}" }],
    });
    rows.push(
        put("schema 1 manifest", DOCKER_SCHEMA1, bytes(&schema1)).expect(400, "MANIFEST_INVALID"),
    );
    let mut signed = schema1.clone();
    signed["signatures"] =
        json!([{ "header": { "alg": "ES256" }, "signature": "AAAA", "protected": "e30" }]);
    rows.push(
        put(
            "schema 1 signed manifest",
            DOCKER_SCHEMA1_SIGNED,
            bytes(&signed),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    let mut v3 = image_manifest(config.clone(), vec![layer.clone()]);
    v3["schemaVersion"] = json!(3);
    rows.push(
        put("manifest schemaVersion 3", OCI_MANIFEST, bytes(&v3)).expect(400, "MANIFEST_INVALID"),
    );
    let no_config =
        json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [layer.clone()] });
    rows.push(
        put("manifest without config", OCI_MANIFEST, bytes(&no_config))
            .expect(400, "MANIFEST_INVALID"),
    );
    let negative = image_manifest(config.clone(), vec![desc(OCI_LAYER, &fx.layer_d, 0)]);
    let negative = bytes(&negative).replace_size("\"size\":0", "\"size\":-1");
    rows.push(
        put("manifest layer size negative", OCI_MANIFEST, negative).expect(400, "MANIFEST_INVALID"),
    );
    let mut string_size = image_manifest(config.clone(), vec![layer.clone()]);
    string_size["layers"][0]["size"] = json!(layer_len.to_string());
    rows.push(
        put(
            "manifest layer size a string",
            OCI_MANIFEST,
            bytes(&string_size),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    let bad_layer_digest = image_manifest(
        config.clone(),
        vec![desc(OCI_LAYER, "sha256:abc", layer_len)],
    );
    rows.push(
        put(
            "manifest layer digest malformed",
            OCI_MANIFEST,
            bytes(&bad_layer_digest),
        )
        .expect_code(400, OneOf(&["MANIFEST_INVALID", "DIGEST_INVALID"])),
    );
    let mut no_media = image_manifest(config.clone(), vec![layer.clone()]);
    no_media["layers"][0]
        .as_object_mut()
        .expect("object")
        .remove("mediaType");
    rows.push(
        put(
            "manifest layer without mediaType",
            OCI_MANIFEST,
            bytes(&no_media),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    rows.push(
        put(
            "manifest body type differs from Content-Type",
            OCI_INDEX,
            fresh.clone(),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    let mut untyped = image_manifest(config.clone(), vec![layer.clone()]);
    untyped.as_object_mut().expect("object").remove("mediaType");
    rows.push(
        put(
            "manifest untyped with Content-Type application/json",
            "application/json",
            bytes(&untyped),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    let mut unknown_type = image_manifest(config.clone(), vec![layer.clone()]);
    unknown_type["mediaType"] = json!("application/vnd.example.thing.v1+json");
    rows.push(
        put(
            "manifest of an unknown media type",
            "application/vnd.example.thing.v1+json",
            bytes(&unknown_type),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    let docker_untyped = json!({ "schemaVersion": 2, "config": desc("application/vnd.docker.container.image.v1+json", &fx.config_d, fx.config.len()), "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", &fx.layer_d, layer_len)] });
    rows.push(
        put(
            "docker manifest without mediaType",
            DOCKER_MANIFEST,
            bytes(&docker_untyped),
        )
        .expect(400, "MANIFEST_INVALID"),
    );
    let mut index_with_layers = index_of(OCI_INDEX, vec![desc(OCI_MANIFEST, &fx.manifest_d, 10)]);
    index_with_layers["layers"] = json!([layer.clone()]);
    rows.push(
        put("index with layers", OCI_INDEX, bytes(&index_with_layers))
            .expect(400, "MANIFEST_INVALID"),
    );
    rows.push(
        row(
            "invalid manifest pushed over an existing tag",
            "PUT",
            format!("{app}/manifests/v1"),
        )
        .manifest(OCI_MANIFEST, b"{\"schemaVersion\":2".to_vec())
        .expect(400, "MANIFEST_INVALID"),
    );
    // Spec: a registry SHOULD answer 413 to a manifest over its limit.
    rows.push(
        put(
            "manifest of 4 MiB + 1 byte",
            OCI_MANIFEST,
            padded_manifest(config.clone(), MANIFEST_LIMIT + 1),
        )
        .expect_continue()
        .expect_code(413, OneOf(&["MANIFEST_INVALID", "SIZE_INVALID"])),
    );

    // --- References that do not resolve in this repository. Spec: "it MUST
    // result in one or more MANIFEST_BLOB_UNKNOWN errors"; the spec gives no
    // status, Distribution answers 400.
    let missing = desc(OCI_LAYER, &unknown, 12);
    let blob_unknown = |name: &str, m: Value| {
        put(
            name,
            m["mediaType"].as_str().unwrap_or(OCI_MANIFEST),
            bytes(&m),
        )
        .expect(400, "MANIFEST_BLOB_UNKNOWN")
    };
    rows.push(blob_unknown(
        "manifest, layer blob missing",
        image_manifest(config.clone(), vec![missing.clone()]),
    ));
    rows.push(blob_unknown(
        "manifest, config blob missing",
        image_manifest(desc(OCI_CONFIG, &unknown, 12), vec![layer.clone()]),
    ));
    rows.push(blob_unknown(
        "manifest, layer only in another repository",
        image_manifest(
            config.clone(),
            vec![desc(OCI_LAYER, &fx.other_blob_d, fx.other_blob.len())],
        ),
    ));
    rows.push(blob_unknown(
        "manifest, config only in another repository",
        image_manifest(
            desc(OCI_CONFIG, &fx.other_blob_d, fx.other_blob.len()),
            vec![layer.clone()],
        ),
    ));
    rows.push(blob_unknown(
        "manifest, layer is an unfinished upload",
        image_manifest(
            config.clone(),
            vec![desc(
                OCI_LAYER,
                &digest_of(&fx.upload_bytes),
                fx.upload_bytes.len(),
            )],
        ),
    ));
    rows.push(blob_unknown(
        "index, child manifest missing",
        index_of(OCI_INDEX, vec![desc(OCI_MANIFEST, &unknown, 300)]),
    ));
    rows.push(blob_unknown(
        "index, child manifest only in another repository",
        index_of(
            OCI_INDEX,
            vec![desc(
                OCI_MANIFEST,
                &fx.other_manifest_d,
                fx.other_manifest.len(),
            )],
        ),
    ));
    rows.push(blob_unknown(
        "index, child is a blob, not a manifest",
        index_of(
            OCI_INDEX,
            vec![desc(OCI_MANIFEST, &fx.config_d, fx.config.len())],
        ),
    ));
    rows.push(blob_unknown(
        "docker manifest list, child missing",
        index_of(DOCKER_LIST, vec![desc(DOCKER_MANIFEST, &unknown, 300)]),
    ));

    // --- Ranges on blob reads (RFC 9110 §14).
    let layer_url = format!("{app}/blobs/{}", fx.layer_d);
    let all = format!("bytes */{layer_len}");
    for (label, range) in [
        ("start past the end", "bytes=200-".to_string()),
        (
            "start at the size",
            format!("bytes={layer_len}-{}", layer_len + 50),
        ),
        ("empty suffix", "bytes=-0".to_string()),
    ] {
        rows.push(
            row(format!("blob GET, Range {label}"), "GET", layer_url.clone())
                .header("Range", range)
                .expect_header(416, Unchecked, "content-range", all.clone()),
        );
    }
    // "An origin server MUST ignore a Range header field that contains a
    // range unit it does not understand."
    let full = fx.layer.clone();
    rows.push(
        row(
            "blob GET, Range of an unknown unit",
            "GET",
            layer_url.clone(),
        )
        .header("Range", "items=0-9")
        .expect_code(200, Unchecked)
        .check(move |r| {
            (r.body == full)
                .then_some(())
                .ok_or_else(|| format!("expected the whole blob, got {} bytes", r.body.len()))
        }),
    );
    // Invalid ranges-specifiers may be ignored (200) or rejected (416).
    for (label, range) in [
        ("reversed", "bytes=50-10"),
        ("garbage", "bytes=abc"),
        ("multiple", "bytes=0-1,5-6"),
    ] {
        let mut r = row(format!("blob GET, Range {label}"), "GET", layer_url.clone())
            .header("Range", range)
            .expect_code(200, Unchecked)
            .expect_code(416, Unchecked);
        if label == "multiple" {
            r = r.expect_code(206, Unchecked);
        }
        rows.push(r);
    }

    // --- Methods no endpoint serves: 405 UNSUPPORTED.
    let blob = format!("{app}/blobs/{}", fx.layer_d);
    let referrers = format!("{app}/referrers/{}", fx.manifest_d);
    let uploads = format!("{app}/blobs/uploads/");
    for (method, target) in [
        ("PUT", "/v2/".to_string()),
        ("POST", "/v2/".to_string()),
        ("DELETE", "/v2/".to_string()),
        ("PATCH", "/v2/".to_string()),
        ("POST", format!("{app}/manifests/v1")),
        ("PATCH", format!("{app}/manifests/v1")),
        ("DELETE", format!("{app}/tags/list")),
        ("PUT", format!("{app}/tags/list")),
        ("POST", format!("{app}/tags/list")),
        ("POST", blob.clone()),
        ("PUT", blob.clone()),
        ("PATCH", blob.clone()),
        ("PUT", uploads.clone()),
        ("PATCH", uploads.clone()),
        ("DELETE", uploads.clone()),
        ("POST", "/v2/_catalog".to_string()),
        ("DELETE", "/v2/_catalog".to_string()),
        ("PUT", referrers.clone()),
        ("DELETE", referrers.clone()),
    ] {
        let body = if matches!(method, "PUT" | "POST" | "PATCH") {
            b"x".to_vec()
        } else {
            Vec::new()
        };
        rows.push(
            row(
                format!(
                    "{method} on {}",
                    target
                        .replace(&fx.layer_d, "<blob>")
                        .replace(&fx.manifest_d, "<manifest>")
                ),
                method,
                target,
            )
            .body(body)
            .expect(405, "UNSUPPORTED"),
        );
    }

    // --- Pagination. The spec's `n` is an integer; Distribution answers 400.
    for (label, target) in [
        ("tags list n=-1", format!("{app}/tags/list?n=-1")),
        ("tags list n=abc", format!("{app}/tags/list?n=abc")),
        ("tags list n=1.5", format!("{app}/tags/list?n=1.5")),
        ("catalog n=-1", "/v2/_catalog?n=-1".to_string()),
        ("catalog n=abc", "/v2/_catalog?n=abc".to_string()),
    ] {
        rows.push(row(label, "GET", target).expect_code(400, AnySpec));
    }
    // Spec: "When n is zero, this endpoint MUST return an empty list, and
    // MUST NOT include a Link header."
    rows.push(
        row("tags list n=0", "GET", format!("{app}/tags/list?n=0"))
            .expect_code(200, Unchecked)
            .check(|r| {
                let v: Value =
                    serde_json::from_slice(&r.body).map_err(|e| format!("body not JSON: {e}"))?;
                if v["tags"].as_array().is_none_or(|t| !t.is_empty()) {
                    return Err(format!("tags must be an empty list, got {}", v["tags"]));
                }
                if r.header("link").is_some() {
                    return Err("n=0 must not send a Link header".into());
                }
                Ok(())
            }),
    );
    rows
}

/// `replace` on bytes, for the one body serde cannot produce.
trait ReplaceSize {
    fn replace_size(self, from: &str, to: &str) -> Vec<u8>;
}

impl ReplaceSize for Vec<u8> {
    fn replace_size(self, from: &str, to: &str) -> Vec<u8> {
        let s = String::from_utf8(self).expect("utf-8");
        assert!(s.contains(from), "{from} not in {s}");
        s.replacen(from, to, 1).into_bytes()
    }
}

// ---------------------------------------------------------------------------
// Phase B: rejected requests that open a session (each on its own)
// ---------------------------------------------------------------------------

/// Phase B's rows, the digests that must not be readable in SCRATCH
/// afterwards, and sessions with the Range they must still hold.
struct PhaseB {
    rows: Vec<Row>,
    never: Vec<String>,
    sessions: Vec<(String, String, String)>,
}

async fn phase_b(api: &Api, fx: &Fixture) -> PhaseB {
    use Code::Unchecked;
    let mut rows = Vec::new();
    let mut never = Vec::new();
    let scratch = format!("/v2/{SCRATCH}");

    let loc = api.start_upload(SCRATCH).await;
    let payload = b"monolithic payload".to_vec();
    never.push(digest_of(&payload));
    never.push(digest_of(b"something else"));
    rows.push(
        row(
            "monolithic PUT, digest of other bytes",
            "PUT",
            with_query(&loc, "digest", &digest_of(b"something else")),
        )
        .header("Content-Type", OCTET)
        .body(payload)
        .expect(400, "DIGEST_INVALID"),
    );

    let loc = api.start_upload(SCRATCH).await;
    let loc = api.patch(&loc, 0, b"chunk-one!").await;
    never.push(digest_of(b"chunk-one!"));
    rows.push(
        row(
            "chunked finish, digest of other bytes",
            "PUT",
            with_query(&loc, "digest", &digest_of(b"not the chunks")),
        )
        .expect(400, "DIGEST_INVALID"),
    );

    let loc = api.start_upload(SCRATCH).await;
    let loc = api.patch(&loc, 0, b"chunk-two!").await;
    never.push(digest_of(b"chunk-two!"));
    never.push(digest_of(b"chunk-two!tail-bytes"));
    rows.push(
        row(
            "chunked finish with final chunk, digest of first chunk only",
            "PUT",
            with_query(&loc, "digest", &digest_of(b"chunk-two!")),
        )
        .chunk("10-19", b"tail-bytes".to_vec())
        .expect(400, "DIGEST_INVALID"),
    );

    // A body that ends before its Content-Length: the client went away.
    // Nothing of it may be kept: not as a blob, not in the session.
    let mut sessions = Vec::new();
    let loc = api.start_upload(SCRATCH).await;
    never.push(digest_of(b"0123456789"));
    never.push(digest_of(b"0123456789ABCDEFGHIJ"));
    rows.push(
        row(
            "monolithic PUT, body ends before its Content-Length",
            "PUT",
            with_query(&loc, "digest", &digest_of(b"0123456789ABCDEFGHIJ")),
        )
        .header("Content-Type", OCTET)
        .header("Content-Length", "20")
        .body(b"0123456789".to_vec())
        .close_after_body()
        .expect_code(400, Code::OneOf(&["BLOB_UPLOAD_INVALID", "SIZE_INVALID"])),
    );
    let loc = api.start_upload(SCRATCH).await;
    let loc = api.patch(&loc, 0, b"held-bytes").await;
    sessions.push((
        "session after a cut-short PATCH".to_string(),
        loc.clone(),
        "0-9".to_string(),
    ));
    rows.push(
        row("PATCH, body ends before its Content-Length", "PATCH", loc)
            .header("Content-Type", OCTET)
            .header("Content-Range", "10-29")
            .header("Content-Length", "20")
            .body(b"0123456789".to_vec())
            .close_after_body()
            .expect_code(400, Code::OneOf(&["BLOB_UPLOAD_INVALID", "SIZE_INVALID"])),
    );

    // Spec: "The closing PUT request MUST include the <digest>".
    let loc = api.start_upload(SCRATCH).await;
    never.push(digest_of(b"no digest given"));
    rows.push(
        row("finish without digest", "PUT", loc)
            .header("Content-Type", OCTET)
            .body(b"no digest given".to_vec())
            .expect(400, "DIGEST_INVALID"),
    );

    for (label, digest, body) in [
        (
            "finish, digest short hex",
            "sha256:abc".to_string(),
            b"short hex digest".to_vec(),
        ),
        (
            "finish, digest md5",
            "md5:d41d8cd98f00b204e9800998ecf8427e".to_string(),
            b"md5 digest".to_vec(),
        ),
        (
            "finish, right digest in uppercase hex",
            format!("sha256:{}", sha256_hex(b"uppercase hex").to_uppercase()),
            b"uppercase hex".to_vec(),
        ),
    ] {
        let loc = api.start_upload(SCRATCH).await;
        never.push(digest_of(&body));
        rows.push(
            row(label, "PUT", with_query(&loc, "digest", &digest))
                .header("Content-Type", OCTET)
                .body(body)
                .expect(400, "DIGEST_INVALID"),
        );
    }

    // A registry without single-POST uploads answers 202 and ignores the body.
    never.push(digest_of(b"single post payload"));
    never.push(digest_of(b"other"));
    rows.push(
        row(
            "single POST, digest of other bytes",
            "POST",
            format!("{scratch}/blobs/uploads/?digest={}", digest_of(b"other")),
        )
        .header("Content-Type", OCTET)
        .body(b"single post payload".to_vec())
        .expect(400, "DIGEST_INVALID")
        .expect_code(202, Unchecked),
    );

    // Spec: "if a registry ... is unable to mount the requested blob, it
    // SHOULD return a 202" -- a new session, not an error.
    let session = |r: &Resp| {
        if r.status != 202 {
            return Ok(());
        }
        match r.header("location") {
            Some(l) if l.contains(&format!("/v2/{MOUNT}/blobs/uploads/")) => Ok(()),
            other => Err(format!(
                "fallback 202 needs a Location of a {MOUNT} session, got {other:?}"
            )),
        }
    };
    let mount = format!("/v2/{MOUNT}/blobs/uploads/");
    rows.push(
        row(
            "mount fallback, blob not in the source repository",
            "POST",
            format!("{mount}?mount={}&from={APP}", fx.other_blob_d),
        )
        .expect_code(202, Unchecked)
        .check(session),
    );
    rows.push(
        row(
            "mount fallback, source repository unknown",
            "POST",
            format!("{mount}?mount={}&from=nosuch/repo", fx.layer_d),
        )
        .expect_code(202, Unchecked)
        .check(session),
    );
    rows.push(
        row(
            "mount fallback, digest unknown everywhere",
            "POST",
            format!("{mount}?mount={}&from={APP}", digest_of(b"never pushed")),
        )
        .expect_code(202, Unchecked)
        .check(session),
    );
    rows.push(
        row(
            "mount, digest malformed",
            "POST",
            format!("{mount}?mount=sha256:abc&from={APP}"),
        )
        .expect(400, "DIGEST_INVALID")
        .expect_code(202, Unchecked)
        .check(session),
    );
    rows.push(
        row(
            "mount, source name invalid",
            "POST",
            format!("{mount}?mount={}&from=Bad/../app", fx.layer_d),
        )
        .expect(400, "NAME_INVALID")
        .expect_code(202, Unchecked)
        .check(session),
    );
    PhaseB {
        rows,
        never,
        sessions,
    }
}

// ---------------------------------------------------------------------------
// Phase C: odd-looking pushes that must be accepted
// ---------------------------------------------------------------------------

fn phase_c(fx: &Fixture) -> Vec<Row> {
    use Code::Unchecked;
    let sizes = format!("/v2/{SIZES}");
    let config = desc(OCI_CONFIG, &fx.sizes_blob_d, fx.sizes_blob.len());
    // Spec: "A registry MUST initially accept an otherwise valid manifest with
    // a subject field that references a manifest that does not exist".
    let subject = digest_of(b"a subject that was never pushed");
    let mut with_subject = image_manifest(config.clone(), vec![]);
    with_subject["artifactType"] = json!("application/vnd.example.sbom.v1");
    with_subject["subject"] = desc(OCI_MANIFEST, &subject, 321);
    vec![
        row(
            "subject that does not exist",
            "PUT",
            format!("{sizes}/manifests/dangling-subject"),
        )
        .manifest(OCI_MANIFEST, bytes(&with_subject))
        .expect_header(201, Unchecked, "oci-subject", subject),
        row(
            "manifest of exactly 4 MiB",
            "PUT",
            format!("{sizes}/manifests/four-mib"),
        )
        .manifest(OCI_MANIFEST, padded_manifest(config, MANIFEST_LIMIT))
        .expect_continue()
        .expect_code(201, Unchecked),
    ]
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_rejected_and_change_nothing() {
    let berth = Berth::start();
    let api = Api::new(&berth.url);
    let fx = setup(&api).await;
    let meta = MetaStore::open_sqlite(&berth.data_dir.join("meta.db"))
        .await
        .expect("open meta.db beside the server");
    let mut report = Report::default();

    // Phase A: nothing may change.
    let before = snapshot(&api, &meta, &berth.data_dir, &fx).await;
    assert!(
        before
            .files
            .iter()
            .any(|(p, _, _)| p.starts_with("uploads")),
        "the in-progress upload should have bytes under uploads/: {:?}",
        before.files
    );
    let rows_a = phase_a(&fx);
    report.run("A", &berth.addr, &rows_a).await;
    let after = snapshot(&api, &meta, &berth.data_dir, &fx).await;
    compare(&mut report, "A", &before, &after);

    // Phase B: sessions may appear; blobs, manifests and tags may not.
    let PhaseB {
        rows: rows_b,
        never,
        sessions,
    } = phase_b(&api, &fx).await;
    let counts_b = meta.table_counts().await.expect("table counts");
    report.run("B", &berth.addr, &rows_b).await;
    let counts_after_b = meta.table_counts().await.expect("table counts");
    let kept = |c: &[(String, i64)]| -> Vec<(String, i64)> {
        c.iter()
            .filter(|(t, _)| !matches!(t.as_str(), "uploads" | "repositories"))
            .cloned()
            .collect()
    };
    if kept(&counts_b) != kept(&counts_after_b) {
        report.fail(format!(
            "[B] rejected uploads changed blobs, links, manifests or tags:\n    before: {counts_b:?}\n    after:  {counts_after_b:?}"
        ));
    }
    let blob_files = |s: &[(String, u64, String)]| -> Vec<(String, u64, String)> {
        s.iter()
            .filter(|(p, _, _)| p.starts_with("blobs"))
            .cloned()
            .collect()
    };
    let files_after_b = store_files(&berth.data_dir);
    if blob_files(&before.files) != blob_files(&files_after_b) {
        report.fail(format!(
            "[B] rejected uploads changed blobs/:\n    before: {:?}\n    after:  {:?}",
            blob_files(&before.files),
            blob_files(&files_after_b)
        ));
    }
    for d in &never {
        let a = api.get(&format!("/v2/{SCRATCH}/blobs/{d}")).await;
        if a.status != 404 {
            report.fail(format!(
                "[B] rejected blob {d} is readable in {SCRATCH}: {}",
                a.status
            ));
        }
    }
    for (label, location, range) in &sessions {
        let a = api.get(location).await;
        if a.status != 204 || a.header("range").as_deref() != Some(range.as_str()) {
            report.fail(format!(
                "[B] {label}: expected 204 with Range {range}, got {} with Range {:?}",
                a.status,
                a.header("range")
            ));
        }
    }
    for repo in [MOUNT, APP] {
        let a = api
            .get(&format!("/v2/{repo}/blobs/{}", fx.other_blob_d))
            .await;
        if a.status != 404 {
            report.fail(format!(
                "[B] failed mount made {OTHER}'s blob readable in {repo}: {}",
                a.status
            ));
        }
    }

    // Phase C: accepted by the spec's rules.
    let rows_c = phase_c(&fx);
    let verdicts = report.run("C", &berth.addr, &rows_c).await;
    let pushed = ["dangling-subject", "four-mib"];
    for tag in pushed
        .iter()
        .zip(&verdicts)
        .filter(|(_, ok)| **ok)
        .map(|(t, _)| t)
    {
        let a = api.get(&format!("/v2/{SIZES}/manifests/{tag}")).await;
        if a.status != 200 {
            report.fail(format!(
                "[C] {SIZES}:{tag} not readable after its push: {}",
                a.status
            ));
        }
    }

    // Afterwards: the abused session still completes, and push/pull work.
    follow_up(&api, &fx, &mut report).await;

    let total = rows_a.len() + rows_b.len() + rows_c.len();
    assert_eq!(total, report.rows);
    println!("bad-input rows: {total}");
    println!(
        "passed {} of {total} rows; {} other failures",
        report.passed,
        report.failures.len() - (total - report.passed)
    );
    meta.close().await;
    assert!(
        report.server_errors.is_empty(),
        "the server answered 5xx to {} rows:\n  {}\n\nall failures:\n\n{}",
        report.server_errors.len(),
        report.server_errors.join("\n  "),
        report.failures.join("\n\n")
    );
    assert!(
        report.failures.is_empty(),
        "{} failures:\n\n{}",
        report.failures.len(),
        report.failures.join("\n\n")
    );
}

async fn follow_up(api: &Api, fx: &Fixture, report: &mut Report) {
    // The 10-byte session survived every phase A row; finish it.
    let tail = b"abcdefghij";
    let a = api
        .send(
            "PATCH",
            &fx.upload,
            &[("content-type", OCTET), ("content-range", "10-19")],
            tail.to_vec(),
        )
        .await;
    if a.status != 202 || a.header("range").as_deref() != Some("0-19") {
        report.fail(format!(
            "[after] PATCH 10-19 on the in-progress upload: {} range={:?} {}",
            a.status,
            a.header("range"),
            text(&a.body)
        ));
        return;
    }
    let next = api.location(&a, "PATCH");
    let mut whole = fx.upload_bytes.clone();
    whole.extend_from_slice(tail);
    let d = digest_of(&whole);
    let a = api
        .send("PUT", &with_query(&next, "digest", &d), &[], Vec::new())
        .await;
    if a.status != 201 {
        report.fail(format!(
            "[after] finishing the in-progress upload: {} {}",
            a.status,
            text(&a.body)
        ));
        return;
    }
    let a = api.get(&format!("/v2/{INPROGRESS}/blobs/{d}")).await;
    if a.status != 200 || a.body != whole {
        report.fail(format!(
            "[after] reading the finished upload back: {}",
            a.status
        ));
    }

    // A normal push and pull in the fixture repository.
    let new_layer = b"a layer pushed after the bad input".to_vec();
    let new_layer_d = api.push_blob(APP, &new_layer).await;
    let manifest = bytes(&image_manifest(
        desc(OCI_CONFIG, &fx.config_d, fx.config.len()),
        vec![
            desc(OCI_LAYER, &fx.layer_d, fx.layer.len()),
            desc(OCI_LAYER, &new_layer_d, new_layer.len()),
        ],
    ));
    let a = api
        .put_manifest(APP, "after", OCI_MANIFEST, &manifest)
        .await;
    if a.status != 201 {
        report.fail(format!(
            "[after] pushing {APP}:after: {} {}",
            a.status,
            text(&a.body)
        ));
        return;
    }
    let a = api.get(&format!("/v2/{APP}/manifests/after")).await;
    if a.status != 200 || a.body != manifest {
        report.fail(format!(
            "[after] pulling {APP}:after: {} {}",
            a.status,
            text(&a.body)
        ));
    }
    for (digest, data) in [
        (&new_layer_d, &new_layer),
        (&fx.layer_d, &fx.layer),
        (&fx.config_d, &fx.config),
    ] {
        let a = api.get(&format!("/v2/{APP}/blobs/{digest}")).await;
        if a.status != 200 || &a.body != data {
            report.fail(format!("[after] pulling blob {digest}: {}", a.status));
        }
    }
    let a = api.get(&format!("/v2/{APP}/tags/list")).await;
    let tags: Value = serde_json::from_slice(&a.body).unwrap_or_default();
    if tags["tags"] != json!(["after", "latest", "v1"]) {
        report.fail(format!(
            "[after] tags of {APP}: {} {}",
            a.status,
            text(&a.body)
        ));
    }
}
