//! S3-compatible backend, through the `object_store` crate.
//!
//! # Layout (under the configured prefix)
//!
//! ```text
//! blobs/<alg>/<first two hex>/<hex>          committed blobs, content-addressed
//! uploads/<id>/.start                        marks that the upload session exists
//! uploads/<id>/<offset, 20 decimal digits>   one object per acknowledged append
//! ```
//!
//! # Upload sessions
//!
//! Nothing about a session lives in this process: every node sees the same
//! objects, so a chunked upload can start on one node and continue on another
//! (DESIGN.md, data rule 6). Each `upload_append` writes its bytes as one new
//! object named by the offset it starts at, and returns only once S3 has
//! acknowledged that object, so every acknowledged append is durable.
//!
//! The upload's size is derived from a listing of its own prefix (one
//! session's objects, never the bucket): the chunks are walked from offset 0,
//! each one starting where the previous ended; the longest such contiguous run
//! is the upload. Objects not on that run ("stragglers", left by an
//! interrupted truncate or a crash) are ignored by reads and deleted by the
//! next append or truncate before anything is written, so they can never be
//! resurrected into the run.
//!
//! Large appends stream to S3 with bounded memory: the body is buffered up to
//! [`PART_SIZE`]; a body that ends before that is one `PUT`, a longer one
//! becomes a multipart upload of `PART_SIZE` parts with at most
//! [`MAX_PARTS_IN_FLIGHT`] parts in flight. A body that fails midway aborts the
//! multipart upload (or never issues the `PUT`): no chunk object appears, so
//! nothing was appended. Incomplete multipart uploads left by a crashed node
//! are invisible; a bucket lifecycle rule `AbortIncompleteMultipartUpload`
//! reclaims their storage.
//!
//! `upload_commit` makes the blob from the run: no chunk → an empty `PUT`;
//! one chunk of at most 5 GiB → a server-side `COPY`; a run of at most
//! [`PART_SIZE`] bytes in total → read and one `PUT`; otherwise a multipart
//! upload to the blob key whose `PART_SIZE` parts are composed by streaming
//! the chunk objects through this node. Then the session's objects are
//! deleted (the `.start` marker first, so the session is gone at once).
//!
//! # Concurrency
//!
//! Blob keys name their content, so two commits of the same digest write the
//! same bytes. A commit first checks whether the blob exists (then it only
//! removes the upload); a single `PUT` uses `PutMode::Create` and takes
//! "already exists" as success; copies and multipart completions overwrite,
//! which replaces the object with identical bytes and is invisible to readers.
//!
//! Appends to one session must be serialized by the caller (the core holds a
//! per-session lock): the offset check and the write are two requests, so two
//! nodes appending at the same offset at the same time would both succeed and
//! the later object would win.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_oci::{ByteRange, Digest, Hasher};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload,
    WriteMultipart,
};

use crate::{BlobStore, ByteStream, Error, Result, valid_upload_id};

/// Size of the multipart parts written by appends and commits, and the most
/// an append buffers before it switches from one `PUT` to a multipart upload.
/// S3 wants at least 5 MiB for every part but the last.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded concurrently by one append or commit. Memory per
/// transfer stays below `(MAX_PARTS_IN_FLIGHT + 1) * PART_SIZE`.
pub const MAX_PARTS_IN_FLIGHT: usize = 4;
/// The largest object S3 copies in one `CopyObject` request.
const MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Name of the object that marks an upload session's existence.
const START_MARKER: &str = ".start";
/// How long `ready()` waits for the bucket to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`);
    /// `None` means AWS itself, from the region. With `path_style = false`
    /// the bucket is added to the endpoint's host unless it is already there.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Key prefix for everything this store writes (`"berth/"`); may be empty.
    /// Taken as path segments: `"berth"` and `"berth/"` are the same.
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted
    /// servers need; virtual-hosted style (`bucket.endpoint/key`) otherwise.
    pub path_style: bool,
    /// Static credentials. When absent, the standard AWS environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web
    /// identity, container or instance credentials) is used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Blob store on an S3-compatible bucket. Cheap to clone; holds no session
/// state, so any number of instances (nodes) can share one bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    s3: Arc<AmazonS3>,
    root: Path,
    bucket: String,
}

/// One append's object.
#[derive(Debug, Clone)]
struct Chunk {
    offset: u64,
    size: u64,
    path: Path,
}

/// What the listing of an upload's prefix says.
#[derive(Debug, Default)]
struct Session {
    started: bool,
    /// The contiguous run of chunks from offset 0, in order.
    run: Vec<Chunk>,
    /// Objects under the prefix that are not on the run (nor the marker).
    stragglers: Vec<Path>,
}

impl Session {
    fn size(&self) -> u64 {
        self.run.last().map_or(0, |c| c.offset + c.size)
    }
}

/// Why writing one object failed.
enum WriteError {
    /// The incoming stream failed; nothing was written.
    Body(io::Error),
    Store(Error),
}

impl S3Store {
    /// Builds the client; makes no request (see [`BlobStore::ready`]).
    pub fn new(config: &S3Config) -> Result<S3Store> {
        let client = ClientOptions::new()
            .with_allow_http(config.allow_http)
            // Blob GETs stream to clients for as long as they take; a stalled
            // connection is caught by the read timeout instead.
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(60))
            .with_connect_timeout(Duration::from_secs(5));
        let mut builder = AmazonS3Builder::from_env()
            .with_client_options(client)
            .with_region(&config.region)
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(!config.path_style);
        if let Some(endpoint) = &config.endpoint {
            let endpoint = if config.path_style {
                endpoint.clone()
            } else {
                virtual_host_endpoint(endpoint, &config.bucket)
            };
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let s3 = builder
            .build()
            .map_err(|e| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        Ok(S3Store {
            s3: Arc::new(s3),
            root: Path::from(config.prefix.as_str()),
            bucket: config.bucket.clone(),
        })
    }

    fn key(&self, rest: &str) -> Path {
        self.root.parts().chain(Path::from(rest).parts()).collect()
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().as_str(),
            &hex[..2]
        ))
    }

    fn upload_dir(&self, id: &str) -> Result<Path> {
        if !valid_upload_id(id) {
            return Err(Error::NotFound);
        }
        Ok(self.key(&format!("uploads/{id}")))
    }

    fn chunk_path(dir: &Path, offset: u64) -> Path {
        dir.clone().join(format!("{offset:020}"))
    }

    /// Lists one upload's own prefix and finds the contiguous run.
    async fn session(&self, dir: &Path) -> Result<Session> {
        let objects: Vec<_> = self
            .s3
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| s3_error("LIST", dir, e))?;
        let mut session = Session::default();
        let mut chunks = Vec::new();
        for meta in objects {
            match meta.location.filename() {
                Some(START_MARKER) => session.started = true,
                Some(name) if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) => {
                    chunks.push(Chunk {
                        offset: name.parse().expect("20 decimal digits fit in a u64"),
                        size: meta.size,
                        path: meta.location,
                    });
                }
                _ => session.stragglers.push(meta.location),
            }
        }
        chunks.sort_by_key(|c| c.offset);
        let mut end = 0;
        for chunk in chunks {
            // Appends never write empty objects; one found here is debris.
            if chunk.offset == end && chunk.size > 0 {
                end += chunk.size;
                session.run.push(chunk);
            } else {
                session.stragglers.push(chunk.path);
            }
        }
        Ok(session)
    }

    async fn started_session(&self, dir: &Path) -> Result<Session> {
        let session = self.session(dir).await?;
        if !session.started {
            return Err(Error::NotFound);
        }
        Ok(session)
    }

    /// Deletes objects (bulk `DeleteObjects` where the server has it);
    /// absent objects are fine.
    async fn delete_all(&self, paths: Vec<Path>) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let first = paths[0].clone();
        let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let results: Vec<_> = self.s3.delete_stream(stream).collect().await;
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error("DELETE", &first, e)),
            }
        }
        Ok(())
    }

    async fn delete_one(&self, path: &Path) -> Result<()> {
        match self.s3.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error("DELETE", path, e)),
        }
    }

    /// Removes every object of an upload, the marker first so the session
    /// disappears in one step even if the rest fails.
    async fn remove_upload(&self, dir: &Path) -> Result<()> {
        self.delete_one(&dir.clone().join(START_MARKER)).await?;
        let rest: Vec<Path> = self
            .s3
            .list(Some(dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| s3_error("LIST", dir, e))?;
        self.delete_all(rest).await
    }

    /// Writes `data` as the object `path`: one `PUT` when it fits in
    /// [`PART_SIZE`], a multipart upload otherwise. Every byte is passed to
    /// `inspect` first. Nothing is created if the stream fails or is empty.
    async fn write_object(
        &self,
        path: &Path,
        mut data: ByteStream,
        mut inspect: impl FnMut(&[u8]) + Send,
    ) -> std::result::Result<u64, WriteError> {
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        let mut total = 0u64;
        let mut multipart: Option<WriteMultipart> = None;
        while let Some(item) = data.next().await {
            let bytes = match item {
                Ok(bytes) => bytes,
                Err(e) => {
                    if let Some(upload) = multipart {
                        // Best effort: an unfinished multipart upload is
                        // invisible anyway.
                        let _ = upload.abort().await;
                    }
                    return Err(WriteError::Body(e));
                }
            };
            if bytes.is_empty() {
                continue;
            }
            inspect(&bytes);
            total += bytes.len() as u64;
            match &mut multipart {
                Some(upload) => {
                    if let Err(e) = upload.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await {
                        let _ = multipart.take().expect("present").abort().await;
                        return Err(WriteError::Store(s3_error("PUT part", path, e)));
                    }
                    upload.put(bytes);
                }
                None => {
                    pending_len += bytes.len();
                    pending.push(bytes);
                    if pending_len >= PART_SIZE {
                        let upload =
                            self.s3.put_multipart(path).await.map_err(|e| {
                                WriteError::Store(s3_error("CreateMultipart", path, e))
                            })?;
                        let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                        for b in pending.drain(..) {
                            upload.put(b);
                        }
                        pending_len = 0;
                        multipart = Some(upload);
                    }
                }
            }
        }
        match multipart {
            // `finish` aborts the multipart upload itself when it fails.
            Some(upload) => upload
                .finish()
                .await
                .map_err(|e| WriteError::Store(s3_error("CompleteMultipart", path, e)))?,
            None if total == 0 => return Ok(0),
            None => self
                .s3
                .put(path, PutPayload::from_iter(pending))
                .await
                .map_err(|e| WriteError::Store(s3_error("PUT", path, e)))?,
        };
        Ok(total)
    }

    /// Streams one object, or part of it.
    async fn read_object(
        &self,
        path: &Path,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<ByteStream> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        match self.s3.get_opts(path, options).await {
            Ok(result) => {
                let path = path.clone();
                Ok(result
                    .into_stream()
                    .map_err(move |e| io::Error::other(format!("S3 GET {path}: {e}")))
                    .boxed())
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound),
            Err(e) => Err(s3_error("GET", path, e)),
        }
    }

    /// Streams the run's chunks one after the other.
    /// The next chunk's `GET` is sent while the current one streams, so
    /// chunk boundaries cost no round trip.
    fn read_run(&self, run: Vec<Chunk>) -> ByteStream {
        let store = self.clone();
        futures::stream::iter(run)
            .map(move |chunk| {
                let store = store.clone();
                async move { store.read_object(&chunk.path, None).await.map_err(into_io) }
            })
            .buffered(2)
            .try_flatten()
            .boxed()
    }

    /// Writes the blob with "create" semantics: an existing object (same
    /// digest, so same bytes) counts as success.
    async fn put_blob(&self, path: &Path, payload: PutPayload) -> Result<()> {
        match self
            .s3
            .put_opts(path, payload, PutMode::Create.into())
            .await
        {
            Ok(_)
            | Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(()),
            Err(e) => Err(s3_error("PUT", path, e)),
        }
    }

    /// Composes the blob from the run through a multipart upload.
    async fn compose_blob(&self, path: &Path, run: Vec<Chunk>) -> Result<()> {
        let upload = self
            .s3
            .put_multipart(path)
            .await
            .map_err(|e| s3_error("CreateMultipart", path, e))?;
        let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut source = self.read_run(run);
        while let Some(item) = source.next().await {
            let step = match item {
                Ok(bytes) => upload
                    .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
                    .await
                    .map(|()| upload.put(bytes))
                    .map_err(|e| s3_error("PUT part", path, e)),
                Err(e) => Err(Error::Io(e)),
            };
            if let Err(e) = step {
                let _ = upload.abort().await;
                return Err(e);
            }
        }
        upload
            .finish()
            .await
            .map_err(|e| s3_error("CompleteMultipart", path, e))?;
        Ok(())
    }
}

/// `https://host` → `https://bucket.host` unless the host already starts
/// with the bucket.
fn virtual_host_endpoint(endpoint: &str, bucket: &str) -> String {
    let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    if host.starts_with(&format!("{bucket}.")) {
        endpoint.to_string()
    } else {
        format!("{scheme}://{bucket}.{host}")
    }
}

fn into_io(e: Error) -> io::Error {
    match e {
        Error::Io(e) | Error::Body(e) => e,
        Error::NotFound => io::Error::new(io::ErrorKind::NotFound, "object vanished"),
        other => io::Error::other(other.to_string()),
    }
}

/// Turns an `object_store` error into a storage error that names the
/// operation and key; refused credentials get a hint.
fn s3_error(op: &str, path: &Path, e: object_store::Error) -> Error {
    let text = e.to_string();
    // Listing errors arrive as `Generic`, with the status only in the text.
    let refused = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || text.contains(" 403 Forbidden")
        || text.contains(" 401 Unauthorized");
    if refused {
        return Error::Io(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "S3 {op} {path}: request refused; check the access key, secret key, \
                 region and clock: {text}"
            ),
        ));
    }
    let kind = match e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    Error::Io(io::Error::new(kind, format!("S3 {op} {path}: {text}")))
}

#[async_trait::async_trait]
impl BlobStore for S3Store {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        match self.s3.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error("HEAD", &path, e)),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream> {
        let path = self.blob_path(digest);
        self.read_object(&path, range.map(|r| r.start..r.end + 1))
            .await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        self.delete_one(&self.blob_path(digest)).await
    }

    async fn upload_start(&self, id: &str) -> Result<()> {
        let dir = self.upload_dir(id)?;
        let existing = self.session(&dir).await?;
        if existing.started {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("upload {id} already exists"),
            )));
        }
        // Leftovers of an earlier session with this id would not be "empty".
        let leftovers = existing
            .run
            .into_iter()
            .map(|c| c.path)
            .chain(existing.stragglers)
            .collect();
        self.delete_all(leftovers).await?;
        let marker = dir.clone().join(START_MARKER);
        self.s3
            .put(&marker, PutPayload::default())
            .await
            .map_err(|e| s3_error("PUT", &marker, e))?;
        Ok(())
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>> {
        let session = self.session(&self.upload_dir(id)?).await?;
        Ok(session.started.then(|| session.size()))
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
        hasher: Hasher,
    ) -> Result<(u64, Hasher)> {
        let dir = self.upload_dir(id)?;
        let session = self.started_session(&dir).await?;
        let current = session.size();
        if current != offset {
            return Err(Error::OffsetMismatch { current });
        }
        // A straggler at or past `offset` could otherwise join the run once
        // this chunk lands.
        self.delete_all(session.stragglers).await?;
        let mut hasher = hasher;
        let path = Self::chunk_path(&dir, offset);
        match self.write_object(&path, data, |b| hasher.update(b)).await {
            Ok(written) => Ok((offset + written, hasher)),
            Err(WriteError::Body(e)) => Err(Error::Body(e)),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    /// Cutting at a chunk boundary (the only cut the core makes: back to
    /// where a failed append started) deletes whole chunk objects, in
    /// ascending order so the cut takes effect at the first delete. A cut
    /// inside a chunk also rewrites that chunk's kept prefix (a `GET` range
    /// streamed back to the same key), costing its size in transfer.
    async fn upload_truncate(&self, id: &str, size: u64) -> Result<()> {
        let dir = self.upload_dir(id)?;
        let session = self.started_session(&dir).await?;
        let current = session.size();
        if size > current {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot truncate upload {id} of {current} bytes to {size}"),
            )));
        }
        let mut straddling = None;
        let mut beyond = Vec::new();
        for chunk in session.run {
            if chunk.offset >= size {
                beyond.push(chunk.path);
            } else if chunk.offset + chunk.size > size {
                straddling = Some(chunk);
            }
        }
        if let Some(first) = beyond.first() {
            self.delete_one(first).await?;
        }
        self.delete_all(
            beyond
                .into_iter()
                .skip(1)
                .chain(session.stragglers)
                .collect(),
        )
        .await?;
        if let Some(chunk) = straddling {
            let keep = size - chunk.offset;
            let prefix = self.read_object(&chunk.path, Some(0..keep)).await?;
            match self.write_object(&chunk.path, prefix, |_| {}).await {
                Ok(_) => {}
                Err(WriteError::Body(e)) => return Err(Error::Io(e)),
                Err(WriteError::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream> {
        let session = self.started_session(&self.upload_dir(id)?).await?;
        Ok(self.read_run(session.run))
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<()> {
        let dir = self.upload_dir(id)?;
        let blob = self.blob_path(digest);
        if self.stat(digest).await?.is_some() {
            // Content-addressed: the existing blob already has these bytes.
            return self.remove_upload(&dir).await;
        }
        let session = self.started_session(&dir).await?;
        let total = session.size();
        let run = session.run;
        match run.as_slice() {
            [] => self.put_blob(&blob, PutPayload::default()).await?,
            [only] if only.size <= MAX_COPY_SIZE => {
                self.s3
                    .copy(&only.path, &blob)
                    .await
                    .map_err(|e| s3_error("COPY", &only.path, e))?;
            }
            _ if total <= PART_SIZE as u64 => {
                let parts: Vec<Bytes> = self.read_run(run).try_collect().await?;
                self.put_blob(&blob, PutPayload::from_iter(parts)).await?;
            }
            _ => self.compose_blob(&blob, run).await?,
        }
        self.remove_upload(&dir).await
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        self.remove_upload(&self.upload_dir(id)?).await
    }

    /// One small listing of the prefix's top level: proves the endpoint,
    /// credentials and bucket, writes nothing.
    async fn ready(&self) -> Result<()> {
        match tokio::time::timeout(READY_TIMEOUT, self.s3.list_with_delimiter(Some(&self.root)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(s3_error("LIST", &self.root, e)),
            Err(_) => Err(Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "S3 bucket {} did not answer within {READY_TIMEOUT:?}",
                    self.bucket
                ),
            ))),
        }
    }

    async fn presigned_get(&self, digest: &Digest, expires: Duration) -> Result<Option<String>> {
        let path = self.blob_path(digest);
        let url = self
            .s3
            .signed_url(object_store::signer::Method::GET, &path, expires)
            .await
            .map_err(|e| s3_error("sign GET", &path, e))?;
        Ok(Some(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &str) -> S3Config {
        S3Config {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "us-east-1".into(),
            bucket: "b".into(),
            prefix: prefix.into(),
            path_style: true,
            access_key_id: Some("k".into()),
            secret_access_key: Some("very-secret".into()),
            allow_http: true,
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let text = format!("{:?}", config("p/"));
        assert!(!text.contains("very-secret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        let store = format!("{:?}", S3Store::new(&config("p/")).unwrap());
        assert!(!store.contains("very-secret"), "{store}");
    }

    #[test]
    fn key_layout() {
        let d = Digest::sha256_of(b"x");
        for prefix in ["team/berth/", "team/berth", "/team/berth/"] {
            let store = S3Store::new(&config(prefix)).unwrap();
            assert_eq!(
                store.blob_path(&d).as_ref(),
                format!("team/berth/blobs/sha256/{}/{}", &d.hex()[..2], d.hex())
            );
            let dir = store.upload_dir("abc-1").unwrap();
            assert_eq!(dir.as_ref(), "team/berth/uploads/abc-1");
            assert_eq!(
                S3Store::chunk_path(&dir, 42).as_ref(),
                "team/berth/uploads/abc-1/00000000000000000042"
            );
        }
        let store = S3Store::new(&config("")).unwrap();
        assert_eq!(store.upload_dir("u").unwrap().as_ref(), "uploads/u");
        assert!(store.upload_dir("../../etc").is_err());
    }

    #[test]
    fn virtual_host_endpoints_get_the_bucket() {
        assert_eq!(
            virtual_host_endpoint("https://s3.example", "b"),
            "https://b.s3.example"
        );
        assert_eq!(
            virtual_host_endpoint("https://b.s3.example", "b"),
            "https://b.s3.example"
        );
    }
}
