//! [`Remote`]: the connection to one bucket and prefix, with blocking
//! wrappers around the async client, the object layout and error messages
//! that say what to do.

use std::future::Future;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::time::Duration;

use backup_core::{ContentHash, CoreError};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::S3Options;

/// Folder (key prefix) of the content-addressed file contents.
pub const DATA_DIR: &str = "data";
/// Folder of the snapshot manifests.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Folder of the lock objects.
pub const LOCKS_DIR: &str = "locks";

/// A bucket and prefix, connected.
pub struct Remote {
    pub(crate) store: AmazonS3,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    prefix: String,
    access_key_env: String,
    secret_key_env: String,
    endpoint: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url())
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Connects (credentials from the environment) and checks that the
    /// bucket can be listed, so that a wrong key, a missing bucket or an
    /// unreachable endpoint is reported before anything is scanned.
    pub fn connect(opts: &S3Options) -> Result<Arc<Remote>, CoreError> {
        let url = display_url(&opts.bucket, &opts.prefix);
        let env = |name: &str, what: &str| -> Result<String, CoreError> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v),
                _ => Err(CoreError::Remote {
                    action: "connect to",
                    location: url.clone(),
                    message: format!(
                        "the environment variable {name} (the {what}) is not set; export it, or name another variable with `{}` in the profile's [s3] table",
                        if what.contains("secret") { "secret_key_env" } else { "access_key_env" }
                    ),
                    source: None,
                }),
            }
        };
        let key_id = env(&opts.access_key_env, "access key id")?;
        let secret = env(&opts.secret_key_env, "secret access key")?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&opts.bucket)
            .with_region(&opts.region)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    // A whole request, body included: large downloads need time.
                    .with_timeout(Duration::from_secs(30 * 60)),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
            });
        let endpoint = match &opts.endpoint {
            Some(e) => {
                builder = builder
                    .with_endpoint(e.trim_end_matches('/'))
                    .with_allow_http(e.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
                e.clone()
            }
            None => format!("AWS ({})", opts.region),
        };
        let store = builder.build().map_err(|e| CoreError::Remote {
            action: "connect to",
            location: url.clone(),
            message: format!("{e}; check the [s3] table of the profile"),
            source: None,
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("backup-s3")
            .enable_all()
            .build()
            .map_err(|e| CoreError::Remote {
                action: "start the S3 client for",
                location: url.clone(),
                message: String::new(),
                source: Some(Box::new(e)),
            })?;
        let remote = Remote {
            store,
            runtime,
            bucket: opts.bucket.clone(),
            prefix: opts.prefix.clone(),
            access_key_env: opts.access_key_env.clone(),
            secret_key_env: opts.secret_key_env.clone(),
            endpoint,
        };
        let probe = remote.key(SNAPSHOTS_DIR);
        remote
            .block(remote.store.list_with_delimiter(Some(&probe)))
            .map_err(|e| remote.error("list", &probe, e))?;
        Ok(Arc::new(remote))
    }

    /// Runs a future of the client to completion on this thread.
    pub fn block<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// `s3://BUCKET/PREFIX`.
    pub fn url(&self) -> String {
        display_url(&self.bucket, &self.prefix)
    }

    /// The key of `rel` under the prefix.
    pub fn key(&self, rel: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// The key of a file content: `data/<first 2 hex>/<sha256>`.
    pub fn data_key(&self, hash: &ContentHash) -> Key {
        let hex = hash.to_hex();
        self.key(&format!("{DATA_DIR}/{}/{hex}", &hex[..2]))
    }

    /// The key of a snapshot's manifest.
    pub fn manifest_key(&self, name: &str) -> Key {
        self.key(&format!("{SNAPSHOTS_DIR}/{name}.json"))
    }

    /// `s3://BUCKET/KEY`.
    pub fn url_of(&self, key: &Key) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// A client error as a [`CoreError`] that says what to do.
    pub fn error(&self, action: &'static str, key: &Key, e: object_store::Error) -> CoreError {
        CoreError::Remote {
            action,
            location: self.url_of(key),
            message: self.hint(&e),
            source: Some(Box::new(e)),
        }
    }

    /// Advice for the usual causes of a client error (empty when there is
    /// none): a missing bucket, refused credentials, an unreachable server.
    pub fn hint(&self, e: &object_store::Error) -> String {
        let text = backup_core::error_chain(e);
        if text.contains("NoSuchBucket") {
            format!(
                "the bucket {} does not exist at {}: create it first, or fix the destination",
                self.bucket, self.endpoint
            )
        } else if text.contains("SignatureDoesNotMatch")
            || text.contains("InvalidAccessKeyId")
            || text.contains("AccessDenied")
            || text.contains("403 Forbidden")
            || matches!(
                e,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            )
        {
            format!(
                "the server refused the credentials: check {} and {}",
                self.access_key_env, self.secret_key_env
            )
        } else if text.contains("error sending request")
            || text.contains("onnection refused")
            || text.contains("dns error")
            || text.contains("timed out")
        {
            format!(
                "cannot reach {}: check the endpoint (s3.endpoint) and the network",
                self.endpoint
            )
        } else {
            String::new()
        }
    }

    /// The client error's text (its chain, each part once) with the advice
    /// first, for the one place its chain cannot be kept: an `io::Error`
    /// of a download stream.
    fn explain(&self, e: &object_store::Error) -> String {
        let text = backup_core::error_chain(e);
        match self.hint(e) {
            hint if hint.is_empty() => text,
            hint => format!("{hint} ({text})"),
        }
    }

    /// Lists every object under `rel` (recursively).
    pub fn list_all(&self, rel: &str) -> Result<Vec<object_store::ObjectMeta>, CoreError> {
        let prefix = self.key(rel);
        self.block(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&prefix));
            while let Some(item) = stream.next().await {
                out.push(item.map_err(|e| self.error("list", &prefix, e))?);
            }
            Ok(out)
        })
    }

    /// Streams an object's bytes as a blocking [`Read`].
    pub fn open(self: &Arc<Self>, key: &Key) -> Result<ObjectReader, CoreError> {
        let got = self
            .block(self.store.get(key))
            .map_err(|e| self.error("download", key, e))?;
        Ok(ObjectReader {
            remote: Arc::clone(self),
            stream: got.into_stream(),
            chunk: bytes::Bytes::new(),
            url: self.url_of(key),
        })
    }
}

impl Remote {
    /// Opens a snapshot manifest: returns its first line (the snapshot's
    /// summary) and a reader positioned at its entries.
    pub fn open_manifest(
        self: &Arc<Self>,
        key: &Key,
    ) -> Result<(Vec<u8>, BufReader<ObjectReader>), CoreError> {
        let mut reader = BufReader::with_capacity(1 << 16, self.open(key)?);
        let mut first = Vec::new();
        reader
            .read_until(b'\n', &mut first)
            .map_err(|e| CoreError::Remote {
                action: "read",
                location: self.url_of(key),
                message: String::new(),
                source: Some(Box::new(e)),
            })?;
        Ok((first, reader))
    }
}

fn display_url(bucket: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    }
}

/// An object being downloaded, read as a blocking stream of bytes.
pub struct ObjectReader {
    remote: Arc<Remote>,
    stream: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
    url: String,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.remote.block(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(bytes)) => self.chunk = bytes,
                Some(Err(e)) => {
                    return Err(io::Error::other(format!(
                        "cannot download {}: {}",
                        self.url,
                        self.remote.explain(&e)
                    )))
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
