//! Streamed object bodies: a task reads rows from a database cursor, frames them (`id\tjson`
//! lines or one JSON array), gzips them itself when the client accepts it, and hands the body
//! on in pieces of about `STRATA_OBJECT_DOWNLOAD_CHUNK_BYTES` through a small bounded channel.
//! Memory stays flat however large the model, and a client that hangs up drops the channel,
//! which stops the task and frees its connection.
//!
//! Why not the router's compression layer: it writes a few KiB per HTTP chunk, and Python's
//! requests (specklepy's receive) re-joins and re-splits every pending piece of a line on
//! each chunk, so a 1 MB object arriving in ~8 KiB pieces costs it quadratic time: 4.4 s of a
//! 6.8 s receive of 200 × 1 MB objects went to `str.split`. Large pieces make it linear.

use std::io::Write;

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::write::GzEncoder;
use sqlx::PgPool;
use tokio::sync::mpsc;

use schema::objects;

/// Where the rows come from.
pub enum Rows {
    /// The root (already read) and then its closure, by id.
    Closure {
        /// The root's id.
        root_id: String,
        /// The root's JSON.
        root: String,
    },
    /// The stored objects among these ids, chunk by chunk in request order, by id within a
    /// chunk (as the original orders them).
    Ids(Vec<String>),
}

/// A change applied to each object's JSON before it is written (the viewer's attribute mask);
/// an error ends the stream.
pub type Transform = Box<dyn Fn(&str, String) -> Result<String, String> + Send + Sync>;

/// How the body is framed and encoded.
pub struct Framing {
    /// `id\tjson` lines (for `Accept: text/plain`), else one JSON array.
    pub lines: bool,
    /// Gzip it (the client accepts gzip).
    pub gzip: bool,
    /// Target size of one piece handed to the connection.
    pub chunk_bytes: usize,
}

impl Framing {
    /// The framing a request asks for; gzip only if the client accepts it and `gzip` (the
    /// operator's `STRATA_OBJECT_DOWNLOAD_GZIP`) allows it.
    pub fn for_request(headers: &HeaderMap, lines: bool, gzip: bool, chunk_bytes: usize) -> Self {
        Self {
            lines,
            gzip: gzip && accepts_gzip(headers),
            chunk_bytes: chunk_bytes.max(1024),
        }
    }
}

/// Whether `Accept-Encoding` lists gzip (or `*`) with a non-zero quality.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !zero
        })
}

/// Marks a response whose encoding this module chose (gzip or deliberately none), so the
/// router's compression layer leaves it alone.
#[derive(Clone, Copy, Debug)]
pub struct EncodedHere;

type Piece = Result<Bytes, std::io::Error>;

/// Frames and encodes rows into pieces for the channel.
struct BodyWriter {
    framing: Framing,
    first: bool,
    gzip: Option<GzEncoder<Vec<u8>>>,
    plain: Vec<u8>,
    tx: mpsc::Sender<Piece>,
}

/// The client hung up.
struct Gone;

impl BodyWriter {
    fn new(framing: Framing, tx: mpsc::Sender<Piece>) -> Self {
        let gzip = framing.gzip.then(|| {
            GzEncoder::new(
                Vec::with_capacity(framing.chunk_bytes + 64 * 1024),
                Compression::fast(),
            )
        });
        Self {
            plain: Vec::with_capacity(if gzip.is_some() {
                0
            } else {
                framing.chunk_bytes + 64 * 1024
            }),
            framing,
            first: true,
            gzip,
            tx,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.gzip {
            Some(encoder) => encoder.write_all(bytes),
            None => {
                self.plain.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn pending(&mut self) -> &mut Vec<u8> {
        match &mut self.gzip {
            Some(encoder) => encoder.get_mut(),
            None => &mut self.plain,
        }
    }

    async fn push(&mut self, id: &str, data: &str) -> Result<(), Gone> {
        let framed = if self.framing.lines {
            self.write(id.as_bytes())
                .and_then(|()| self.write(b"\t"))
                .and_then(|()| self.write(data.as_bytes()))
                .and_then(|()| self.write(b"\n"))
        } else {
            let open: &[u8] = if self.first { b"[" } else { b"," };
            self.write(open).and_then(|()| self.write(data.as_bytes()))
        };
        self.first = false;
        if let Err(e) = framed {
            return self.fail(e).await;
        }
        if self.pending().len() >= self.framing.chunk_bytes {
            let capacity = self.framing.chunk_bytes + 64 * 1024;
            let piece = std::mem::replace(self.pending(), Vec::with_capacity(capacity));
            self.tx
                .send(Ok(Bytes::from(piece)))
                .await
                .map_err(|_| Gone)?;
        }
        Ok(())
    }

    async fn fail(&mut self, e: std::io::Error) -> Result<(), Gone> {
        tracing::warn!(error = %e, "object download failed mid-stream");
        let _ = self.tx.send(Err(e)).await;
        Err(Gone)
    }

    async fn finish(mut self) {
        if !self.framing.lines {
            let close: &[u8] = if self.first { b"[]" } else { b"]" };
            if let Err(e) = self.write(close) {
                let _ = self.fail(e).await;
                return;
            }
        }
        let rest = match self.gzip.take() {
            Some(encoder) => encoder.finish(),
            None => Ok(std::mem::take(&mut self.plain)),
        };
        let _ = self.tx.send(rest.map(Bytes::from)).await;
    }
}

/// The streamed response for `rows` of `project_id`.
pub fn respond(
    pool: PgPool,
    project_id: String,
    rows: Rows,
    framing: Framing,
    transform: Option<Transform>,
) -> Response {
    let lines = framing.lines;
    let gzip = framing.gzip;
    let (tx, rx) = mpsc::channel::<Piece>(2);
    tokio::spawn(async move {
        let mut out = BodyWriter::new(framing, tx);
        if write_rows(&pool, &project_id, rows, transform.as_ref(), &mut out)
            .await
            .is_ok()
        {
            out.finish().await;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let content_type = if lines {
        "text/plain; charset=UTF-8"
    } else {
        "application/json"
    };
    let mut response = (
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(body),
    )
        .into_response();
    response.extensions_mut().insert(EncodedHere);
    let headers = response.headers_mut();
    headers.insert(
        header::VARY,
        header::HeaderValue::from_static("accept-encoding"),
    );
    if gzip {
        // Already encoded: the router's compression layer leaves it alone.
        headers.insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    response
}

async fn write_rows(
    pool: &PgPool,
    project_id: &str,
    rows: Rows,
    transform: Option<&Transform>,
    out: &mut BodyWriter,
) -> Result<(), Gone> {
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return out.fail(std::io::Error::other(e)).await,
    };
    let emit = async |out: &mut BodyWriter, id: String, data: String| {
        let data = match transform {
            None => data,
            Some(t) => match t(&id, data) {
                Ok(d) => d,
                Err(e) => return out.fail(std::io::Error::other(e)).await,
            },
        };
        out.push(&id, &data).await
    };
    match rows {
        Rows::Closure { root_id, root } => {
            emit(out, root_id.clone(), root).await?;
            let mut stream = sqlx::query_as::<_, (String, String)>(objects::CLOSURE_ROWS)
                .bind(project_id)
                .bind(&root_id)
                .fetch(&mut *conn);
            while let Some(row) = futures::StreamExt::next(&mut stream).await {
                match row {
                    Ok((id, data)) => emit(out, id, data).await?,
                    Err(e) => return out.fail(std::io::Error::other(e)).await,
                }
            }
        }
        Rows::Ids(ids) => {
            for chunk in ids.chunks(objects::LOOKUP_CHUNK) {
                let mut stream = sqlx::query_as::<_, (String, String)>(objects::MANY_ROWS)
                    .bind(project_id)
                    .bind(chunk)
                    .fetch(&mut *conn);
                while let Some(row) = futures::StreamExt::next(&mut stream).await {
                    match row {
                        Ok((id, data)) => emit(out, id, data).await?,
                        Err(e) => return out.fail(std::io::Error::other(e)).await,
                    }
                }
            }
        }
    }
    // Rows of large objects grew the connection's read buffer; give it back (see
    // `objects::SHRINK_AFTER_BYTES`).
    sqlx::Connection::shrink_buffers(&mut *conn);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            header::HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(&with("gzip, deflate")));
        assert!(accepts_gzip(&with("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("deflate, br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
