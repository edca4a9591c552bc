//! The S3 object store for files: uploaded bundles and imports, previews. One client for every
//! part of strata that keeps files (through `aws-sdk-s3`, path-style addressing so any
//! S3-compatible server works).
//!
//! Clients move the bytes themselves through presigned URLs, signed with the endpoint they can
//! reach (`public_endpoint`, which may differ from the address strata itself uses), so large
//! uploads and downloads never pass through strata.

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};

/// Where the store is and how to sign for it.
#[derive(Clone, Debug)]
pub struct BlobOptions {
    /// The S3 endpoint strata talks to, e.g. `http://127.0.0.1:19000`.
    pub endpoint: String,
    /// The endpoint clients reach (presigned URLs are signed for it); `None`: `endpoint`.
    pub public_endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// How long a presigned URL works.
    pub presign_expiry: Duration,
    /// How long one store request may take.
    pub timeout: Duration,
}

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store answered with an error or could not be reached.
    #[error("object store: {0}")]
    Store(String),
    /// A presigned URL could not be made.
    #[error("presigning: {0}")]
    Presign(String),
}

/// The URL of a request once `signing` has presigned it.
async fn signed_uri<E: std::fmt::Display>(
    signing: impl Future<Output = Result<PresignedRequest, E>>,
) -> Result<String, BlobError> {
    let request = signing
        .await
        .map_err(|e| BlobError::Presign(e.to_string()))?;
    Ok(request.uri().to_owned())
}

fn store_error<E: std::error::Error>(e: E) -> BlobError {
    // The SDK's Display is terse ("service error"); its source chain says what happened.
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    BlobError::Store(message)
}

/// What the store says of a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The ETag, quotes included.
    pub etag: String,
    /// Bytes.
    pub size: u64,
}

/// The store.
#[derive(Clone, Debug)]
pub struct BlobStore {
    client: aws_sdk_s3::Client,
    presigner: aws_sdk_s3::Client,
    bucket: String,
    expiry: Duration,
}

fn client(options: &BlobOptions, endpoint: &str) -> aws_sdk_s3::Client {
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .operation_timeout(options.timeout)
        .connect_timeout(options.timeout)
        .build();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(options.region.clone()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            options.access_key_id.clone(),
            options.secret_access_key.clone(),
            None,
            None,
            "strata",
        ))
        .force_path_style(true)
        .timeout_config(timeouts)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

impl BlobStore {
    /// A store client (no request is made yet).
    pub fn new(options: &BlobOptions) -> Self {
        let public = options
            .public_endpoint
            .clone()
            .unwrap_or_else(|| options.endpoint.clone());
        Self {
            client: client(options, &options.endpoint),
            presigner: client(options, &public),
            bucket: options.bucket.clone(),
            expiry: options.presign_expiry,
        }
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self) -> Result<(), BlobError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                // Created meanwhile by another process: fine.
                let exists = e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                });
                if exists { Ok(()) } else { Err(store_error(e)) }
            }
        }
    }

    fn presigning(&self) -> Result<PresigningConfig, BlobError> {
        PresigningConfig::expires_in(self.expiry).map_err(|e| BlobError::Presign(e.to_string()))
    }

    /// A URL that accepts one `PUT` of `key`'s bytes, without other credentials.
    pub async fn presign_put(&self, key: &str) -> Result<String, BlobError> {
        let object = self.presigner.put_object().bucket(&self.bucket).key(key);
        signed_uri(object.presigned(self.presigning()?)).await
    }

    /// A URL that answers one `GET` of `key`, without other credentials.
    pub async fn presign_get(&self, key: &str) -> Result<String, BlobError> {
        let object = self.presigner.get_object().bucket(&self.bucket).key(key);
        signed_uri(object.presigned(self.presigning()?)).await
    }

    /// The stored object's ETag exactly as the store gives it (quotes included), or `None`
    /// when there is no such object.
    pub async fn etag(&self, key: &str) -> Result<Option<String>, BlobError> {
        Ok(self.stat(key).await?.map(|s| s.etag))
    }

    /// The stored object's ETag and size, or `None` when there is no such object.
    pub async fn stat(&self, key: &str) -> Result<Option<Stored>, BlobError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(Stored {
                etag: head.e_tag().unwrap_or_default().to_owned(),
                // A size of 0 would pass the size limit: no size is an error.
                size: head
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| BlobError::Store(format!("HEAD {key} gave no size")))?,
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Stores `bytes` under `key`; returns the ETag.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<String, BlobError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// Deletes `key` (nothing happens when there is no such object).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    /// The bytes under `key`, or `None` when there is no such object.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let bytes = out.body.collect().await.map_err(store_error)?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }
}
