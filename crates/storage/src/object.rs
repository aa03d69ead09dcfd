//! Object storage backend, through the `object_store` crate: S3 and
//! S3-compatible servers, Google Cloud Storage and Azure Blob Storage. One
//! code path serves all three ([`ObjectBlobStore`] holds a
//! `dyn ObjectStore`); only the client construction differs. The conformance
//! suite runs it against a real S3 server and an in-memory store; GCS and
//! Azure are built and signed offline only (no emulator runs in the tests).
//!
//! Below, "S3" stands for the backend; the same holds for a GCS bucket or an
//! Azure container (multipart uploads are GCS XML-API multipart uploads and
//! Azure block lists there).
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
//! one chunk of at most 5 GiB → a server-side `COPY` (S3 and GCS; on Azure,
//! whose `Copy Blob` may finish asynchronously, the chunk is read back and
//! written instead, like a longer run); a run of at most
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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_oci::{ByteRange, Digest, Hasher};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload,
    WriteMultipart,
};

use crate::{BlobStore, ByteStream, Error, ListedBlob, Result, valid_upload_id};

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

/// Where and how to reach a Google Cloud Storage bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsConfig {
    pub bucket: String,
    /// Key prefix, as for [`S3Config::prefix`].
    pub prefix: String,
    /// A service account's JSON key file. When absent, the application
    /// default credentials are used: the `GOOGLE_*` environment of
    /// `object_store` (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_SERVICE_ACCOUNT_KEY`),
    /// then `GOOGLE_APPLICATION_CREDENTIALS` or gcloud's
    /// `application_default_credentials.json`, then the instance metadata
    /// server (GCE, GKE workload identity).
    pub service_account_key_file: Option<PathBuf>,
}

/// Where and how to reach an Azure Blob Storage container.
#[derive(Clone, PartialEq, Eq)]
pub struct AzureConfig {
    /// Storage account name.
    pub account: String,
    pub container: String,
    /// Key prefix, as for [`S3Config::prefix`].
    pub prefix: String,
    /// The storage account's shared key (base64). When absent, the
    /// `AZURE_*` environment of `object_store` is used (client secret,
    /// workload identity, SAS, ...), then managed identity.
    pub access_key: Option<String>,
    /// Blob service URL instead of `https://<account>.blob.core.windows.net`,
    /// e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite.
    pub endpoint: Option<String>,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
}

impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConfig")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field(
                "access_key",
                &self.access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Which service a store talks to: names it in errors and decides the
/// service-specific choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    S3,
    Gcs,
    Azure,
    /// Anything else handed to [`ObjectBlobStore::from_object_store`].
    Other,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::S3 => "S3",
            Service::Gcs => "GCS",
            Service::Azure => "Azure",
            Service::Other => "object store",
        }
    }

    /// What to check when the service refuses a request.
    fn refused_hint(self) -> &'static str {
        match self {
            Service::S3 => "check the access key, secret key, region and clock",
            Service::Gcs => "check the service account key and its roles on the bucket",
            Service::Azure => "check the account, access key and clock",
            Service::Other => "check the credentials",
        }
    }

    /// The largest chunk committed by a server-side copy; `None`: never copy.
    fn copy_limit(self) -> Option<u64> {
        match self {
            // Azure's Copy Blob may complete asynchronously (`x-ms-copy-status:
            // pending`), which object_store does not wait for.
            Service::Azure => None,
            _ => Some(MAX_COPY_SIZE),
        }
    }
}

/// Blob store on an object storage bucket (S3, GCS, Azure container). Cheap
/// to clone; holds no session state, so any number of instances (nodes) can
/// share one bucket.
#[derive(Debug, Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    /// Signs presigned GET URLs; `None`: blob GETs are proxied.
    signer: Option<Arc<dyn Signer>>,
    service: Service,
    root: Path,
    bucket: String,
}

/// The name this store had when it only spoke S3.
pub type S3Store = ObjectBlobStore;

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

/// HTTP client settings shared by every service.
fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(allow_http)
        // Blob GETs stream to clients for as long as they take; a stalled
        // connection is caught by the read timeout instead.
        .with_timeout_disabled()
        .with_read_timeout(Duration::from_secs(60))
        .with_connect_timeout(Duration::from_secs(5))
}

/// A client that could not be built (bad settings or credentials file).
fn build_error(service: Service, what: &str, e: object_store::Error) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} {what}: {e}", service.name()),
    ))
}

impl ObjectBlobStore {
    /// An S3 store: see [`ObjectBlobStore::s3`].
    pub fn new(config: &S3Config) -> Result<ObjectBlobStore> {
        ObjectBlobStore::s3(config)
    }

    /// Builds the S3 client; makes no request (see [`BlobStore::ready`]).
    pub fn s3(config: &S3Config) -> Result<ObjectBlobStore> {
        let mut builder = AmazonS3Builder::from_env()
            .with_client_options(client_options(config.allow_http))
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
            .map_err(|e| build_error(Service::S3, &format!("bucket {}", config.bucket), e))?;
        let s3 = Arc::new(s3);
        Ok(ObjectBlobStore {
            store: s3.clone(),
            signer: Some(s3),
            service: Service::S3,
            root: Path::from(config.prefix.as_str()),
            bucket: config.bucket.clone(),
        })
    }

    /// Builds the Google Cloud Storage client; makes no request. A key file
    /// is read (and its private key parsed) here, so a bad one fails now.
    pub fn gcs(config: &GcsConfig) -> Result<ObjectBlobStore> {
        let mut builder = GoogleCloudStorageBuilder::from_env()
            .with_client_options(client_options(false))
            .with_bucket_name(&config.bucket);
        if let Some(path) = &config.service_account_key_file {
            builder = builder.with_service_account_path(path.to_string_lossy());
        }
        let gcs = builder
            .build()
            .map_err(|e| build_error(Service::Gcs, &format!("bucket {}", config.bucket), e))?;
        let gcs = Arc::new(gcs);
        Ok(ObjectBlobStore {
            store: gcs.clone(),
            signer: Some(gcs),
            service: Service::Gcs,
            root: Path::from(config.prefix.as_str()),
            bucket: config.bucket.clone(),
        })
    }

    /// Builds the Azure Blob Storage client; makes no request.
    pub fn azure(config: &AzureConfig) -> Result<ObjectBlobStore> {
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_client_options(client_options(config.allow_http))
            .with_account(&config.account)
            .with_container_name(&config.container);
        if let Some(key) = &config.access_key {
            builder = builder.with_access_key(key);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let what = format!("account {} container {}", config.account, config.container);
        let azure = builder
            .build()
            .map_err(|e| build_error(Service::Azure, &what, e))?;
        let azure = Arc::new(azure);
        Ok(ObjectBlobStore {
            store: azure.clone(),
            signer: Some(azure),
            service: Service::Azure,
            root: Path::from(config.prefix.as_str()),
            bucket: config.container.clone(),
        })
    }

    /// A store over any `object_store` backend (tests use the in-memory
    /// one), with an optional signer for presigned GETs.
    pub fn from_object_store(
        store: Arc<dyn ObjectStore>,
        signer: Option<Arc<dyn Signer>>,
        prefix: &str,
    ) -> ObjectBlobStore {
        ObjectBlobStore {
            bucket: store.to_string(),
            store,
            signer,
            service: Service::Other,
            root: Path::from(prefix),
        }
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
            .store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| self.error("LIST", dir, e))?;
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
        let results: Vec<_> = self.store.delete_stream(stream).collect().await;
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("DELETE", &first, e)),
            }
        }
        Ok(())
    }

    async fn delete_one(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("DELETE", path, e)),
        }
    }

    /// Removes every object of an upload, the marker first so the session
    /// disappears in one step even if the rest fails.
    async fn remove_upload(&self, dir: &Path) -> Result<()> {
        self.delete_one(&dir.clone().join(START_MARKER)).await?;
        let rest: Vec<Path> = self
            .store
            .list(Some(dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.error("LIST", dir, e))?;
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
                        return Err(WriteError::Store(self.error("PUT part", path, e)));
                    }
                    upload.put(bytes);
                }
                None => {
                    pending_len += bytes.len();
                    pending.push(bytes);
                    if pending_len >= PART_SIZE {
                        let upload = self.store.put_multipart(path).await.map_err(|e| {
                            WriteError::Store(self.error("CreateMultipart", path, e))
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
                .map_err(|e| WriteError::Store(self.error("CompleteMultipart", path, e)))?,
            None if total == 0 => return Ok(0),
            None => self
                .store
                .put(path, PutPayload::from_iter(pending))
                .await
                .map_err(|e| WriteError::Store(self.error("PUT", path, e)))?,
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
        match self.store.get_opts(path, options).await {
            Ok(result) => {
                let path = path.clone();
                let service = self.service.name();
                Ok(result
                    .into_stream()
                    .map_err(move |e| io::Error::other(format!("{service} GET {path}: {e}")))
                    .boxed())
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound),
            Err(e) => Err(self.error("GET", path, e)),
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
            .store
            .put_opts(path, payload, PutMode::Create.into())
            .await
        {
            Ok(_)
            | Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(()),
            Err(e) => Err(self.error("PUT", path, e)),
        }
    }

    /// Composes the blob from the run through a multipart upload.
    async fn compose_blob(&self, path: &Path, run: Vec<Chunk>) -> Result<()> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| self.error("CreateMultipart", path, e))?;
        let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut source = self.read_run(run);
        while let Some(item) = source.next().await {
            let step = match item {
                Ok(bytes) => upload
                    .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
                    .await
                    .map(|()| upload.put(bytes))
                    .map_err(|e| self.error("PUT part", path, e)),
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
            .map_err(|e| self.error("CompleteMultipart", path, e))?;
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

impl ObjectBlobStore {
    /// Turns an `object_store` error into a storage error that names the
    /// service, operation and key; refused credentials get a hint.
    fn error(&self, op: &str, path: &Path, e: object_store::Error) -> Error {
        let service = self.service.name();
        let text = e.to_string();
        // Listing errors arrive as `Generic`, with the status only in the text.
        let refused = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || text.contains(" 403 Forbidden")
            || text.contains(" 401 Unauthorized");
        if refused {
            let hint = self.service.refused_hint();
            return Error::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{service} {op} {path}: request refused; {hint}: {text}"),
            ));
        }
        let kind = match e {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        };
        Error::Io(io::Error::new(
            kind,
            format!("{service} {op} {path}: {text}"),
        ))
    }
}

#[async_trait::async_trait]
impl BlobStore for ObjectBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("HEAD", &path, e)),
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
        self.store
            .put(&marker, PutPayload::default())
            .await
            .map_err(|e| self.error("PUT", &marker, e))?;
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
            [only]
                if self
                    .service
                    .copy_limit()
                    .is_some_and(|limit| only.size <= limit) =>
            {
                self.store
                    .copy(&only.path, &blob)
                    .await
                    .map_err(|e| self.error("COPY", &only.path, e))?;
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

    /// One page of `blobs/` from after `after`'s key: object stores list in
    /// key order, which is digest order.
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<ListedBlob>> {
        let prefix = self.key("blobs");
        let listing = match after {
            Some(d) => self
                .store
                .list_with_offset(Some(&prefix), &self.blob_path(d)),
            None => self.store.list(Some(&prefix)),
        };
        let mut listing = listing.take(limit);
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.error("LIST", &prefix, e))?;
            let parts: Vec<String> = meta
                .location
                .parts()
                .map(|p| p.as_ref().to_string())
                .collect();
            let [.., alg, _, hex] = parts.as_slice() else {
                continue;
            };
            let Ok(digest) = Digest::parse(&format!("{alg}:{hex}")) else {
                continue;
            };
            out.push(ListedBlob {
                digest,
                size: meta.size,
                modified: std::time::SystemTime::from(meta.last_modified),
            });
        }
        Ok(out)
    }

    /// One small listing of the prefix's top level: proves the endpoint,
    /// credentials and bucket, writes nothing.
    async fn ready(&self) -> Result<()> {
        match tokio::time::timeout(
            READY_TIMEOUT,
            self.store.list_with_delimiter(Some(&self.root)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.error("LIST", &self.root, e)),
            Err(_) => Err(Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} bucket {} did not answer within {READY_TIMEOUT:?}",
                    self.service.name(),
                    self.bucket
                ),
            ))),
        }
    }

    /// A URL signed by the service's signer. Signing may need the service
    /// (GCS without a key file signs through the IAM API, Azure without an
    /// access key asks for a user delegation key); when it fails, the error
    /// is logged and the blob is proxied instead of failing the request.
    async fn presigned_get(&self, digest: &Digest, expires: Duration) -> Result<Option<String>> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let path = self.blob_path(digest);
        match signer
            .signed_url(object_store::signer::Method::GET, &path, expires)
            .await
        {
            Ok(url) => Ok(Some(url.to_string())),
            Err(e) => {
                let error = self.error("sign GET", &path, e);
                tracing::warn!(%error, "cannot presign a blob URL; proxying the blob instead");
                Ok(None)
            }
        }
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

    /// A throw-away service account key file, as the Cloud console writes it.
    fn gcs_key_file(dir: &std::path::Path) -> PathBuf {
        use aws_lc_rs::encoding::AsDer;
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "berth-test",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": "berth@berth-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        let path = dir.join("sa.json");
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    const AZURE_KEY: &str = "YmVydGgtdGVzdC1rZXktbm90LWEtcmVhbC1vbmU=";

    fn azure_config(endpoint: Option<&str>) -> AzureConfig {
        AzureConfig {
            account: "berthtest".into(),
            container: "blobs".into(),
            prefix: "p/".into(),
            access_key: Some(AZURE_KEY.into()),
            endpoint: endpoint.map(str::to_string),
            allow_http: endpoint.is_some_and(|e| e.starts_with("http://")),
        }
    }

    #[tokio::test]
    async fn gcs_client_builds_from_a_key_file_and_signs_offline() {
        let dir = tempfile::tempdir().unwrap();
        let config = GcsConfig {
            bucket: "berth-blobs".into(),
            prefix: "team/berth/".into(),
            service_account_key_file: Some(gcs_key_file(dir.path())),
        };
        let store = ObjectBlobStore::gcs(&config).unwrap();
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            store.blob_path(&d).as_ref(),
            format!("team/berth/blobs/sha256/{}/{}", &d.hex()[..2], d.hex())
        );
        // A service account key signs locally (V4, RSA-SHA256): no request.
        let url = store
            .presigned_get(&d, Duration::from_secs(300))
            .await
            .unwrap()
            .expect("GCS signs URLs");
        assert!(
            url.starts_with("https://storage.googleapis.com/berth-blobs/team/berth/blobs/sha256/"),
            "{url}"
        );
        assert!(url.contains(d.hex()), "{url}");
        for param in [
            "X-Goog-Algorithm=GOOG4-RSA-SHA256",
            "X-Goog-Expires=300",
            "X-Goog-Signature=",
        ] {
            assert!(url.contains(param), "{param} in {url}");
        }
        assert!(!format!("{store:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn gcs_bad_key_file_fails_at_build() {
        let dir = tempfile::tempdir().unwrap();
        let missing = GcsConfig {
            bucket: "b".into(),
            prefix: String::new(),
            service_account_key_file: Some(dir.path().join("absent.json")),
        };
        let err = ObjectBlobStore::gcs(&missing).unwrap_err().to_string();
        assert!(err.contains("GCS bucket b"), "{err}");
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, "{\"private_key\": \"nope\"}").unwrap();
        let err = ObjectBlobStore::gcs(&GcsConfig {
            service_account_key_file: Some(garbage),
            ..missing
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("GCS bucket b"), "{err}");
    }

    #[tokio::test]
    async fn azure_client_builds_and_signs_offline() {
        let d = Digest::sha256_of(b"x");
        // The public endpoint, from the account.
        let store = ObjectBlobStore::azure(&azure_config(None)).unwrap();
        assert_eq!(
            store.blob_path(&d).as_ref(),
            format!("p/blobs/sha256/{}/{}", &d.hex()[..2], d.hex())
        );
        let url = store
            .presigned_get(&d, Duration::from_secs(300))
            .await
            .unwrap()
            .expect("an access key signs SAS URLs");
        assert!(
            url.starts_with("https://berthtest.blob.core.windows.net/blobs/p/blobs/sha256/"),
            "{url}"
        );
        assert!(url.contains(d.hex()), "{url}");
        // A service SAS: read permission on one blob, signed.
        for param in ["sp=r", "sr=b", "sig="] {
            assert!(url.contains(param), "{param} in {url}");
        }
        assert!(!format!("{store:?}").contains(AZURE_KEY));
        assert!(!format!("{:?}", azure_config(None)).contains(AZURE_KEY));

        // An emulator-style endpoint (Azurite: account in the path).
        let azurite = "http://127.0.0.1:10000/berthtest";
        let store = ObjectBlobStore::azure(&azure_config(Some(azurite))).unwrap();
        let url = store
            .presigned_get(&d, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(
            url.starts_with(&format!("{azurite}/blobs/p/blobs/")),
            "{url}"
        );
    }

    #[test]
    fn azure_bad_settings_fail_at_build() {
        let bad_key = AzureConfig {
            access_key: Some("not base64!".into()),
            ..azure_config(None)
        };
        let err = ObjectBlobStore::azure(&bad_key).unwrap_err().to_string();
        assert!(
            err.contains("Azure account berthtest container blobs"),
            "{err}"
        );
        assert!(!err.contains("not base64!"), "{err}");
        let bad_endpoint = azure_config(Some("not a url"));
        let err = ObjectBlobStore::azure(&bad_endpoint)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Azure account"), "{err}");
    }

    #[test]
    fn only_azure_avoids_server_side_copy() {
        assert_eq!(Service::S3.copy_limit(), Some(MAX_COPY_SIZE));
        assert_eq!(Service::Gcs.copy_limit(), Some(MAX_COPY_SIZE));
        assert_eq!(Service::Azure.copy_limit(), None);
    }
}
