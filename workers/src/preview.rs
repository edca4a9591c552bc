//! Preview images: every version's root object rendered by the real Speckle viewer in headless
//! Chromium, driven through chromedriver (fantoccini).
//!
//! One warm browser session and page per worker process, reused across jobs (the page unloads
//! the previous model before each render) and restarted when it fails, exceeds its render count
//! or its process tree's memory limit (PSS, so shared pages count once). A render has a timeout; the job runner retries failures
//! with backoff and the last attempt records the reason. The page is strata's own viewer page
//! (`deploy/viewer`, served at [`PAGE_PATH`]), loading objects from the same origin with a
//! short-lived read grant for the one project ([`PreviewControl::grant`]).
//!
//! Images as the original: angle `"0"` (the main image) and `"all"`, the sprite of every
//! angle side by side that the web app scrubs for its turntable; PNG, stored in S3 under
//! `schema::previews::key`, so a re-render overwrites the same keys.

use std::io::Cursor;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use schema::jobs::ClaimedJob;
use schema::previews::{self, PreviewStatus};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::blobs::BlobStore;
use crate::runner::{JobError, JobHandler};

/// The job kind (the `speckle` projection enqueues it for every created version).
pub const KIND: &str = "preview.render";
/// Where strata serves the viewer page the browser opens.
pub const PAGE_PATH: &str = "/_strata/viewer/preview.html";
/// How long to wait for a bundle's objects (written after its version) before trying again.
const ROOT_PENDING_RETRY: Duration = Duration::from_secs(5);

/// What the renderer needs from the application.
pub trait PreviewControl: Send + Sync {
    /// A short-lived grant to read `project_id`'s objects, sent by the page as its token.
    fn grant(&self, project_id: &str) -> String;
    /// Announces that the preview of `object_id` is stored (subscriptions, webhooks' readers).
    fn generated<'a>(&'a self, project_id: &'a str, object_id: &'a str) -> BoxFuture<'a, ()>;
}

/// Renderer settings; every value explicit and configurable.
#[derive(Clone, Debug)]
pub struct PreviewOptions {
    /// The origin the browser loads the page and the objects from (this server).
    pub server_url: String,
    /// The chromedriver binary.
    pub chromedriver: PathBuf,
    /// The Chromium binary; none = chromedriver's default.
    pub chromium: Option<PathBuf>,
    /// Image width in pixels (the original: 700).
    pub width: u32,
    /// Image height in pixels (the original: 400).
    pub height: u32,
    /// Angles around the model (the original: 24).
    pub angles: u32,
    /// The longest one render may take (load, draw, every angle).
    pub render_timeout: Duration,
    /// Renders before the browser is restarted.
    pub max_renders_per_browser: u32,
    /// The browser's process tree is restarted past this proportional memory (PSS).
    pub max_browser_rss_bytes: u64,
}

/// The image a preview route answers with when there is no rendered one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// Not rendered yet (served uncached).
    Pending,
    /// The model has nothing to draw.
    Empty,
    /// No such project, version or object.
    NotFound,
    /// The render failed.
    Error,
    /// The caller may not read the project.
    Unauthorized,
}

impl Placeholder {
    /// A `width`×`height` PNG: a flat card in the placeholder's colour with a darker band, so
    /// each reads differently at a glance and none looks like a rendered model.
    pub fn png(self, width: u32, height: u32) -> Vec<u8> {
        let (bg, band): ([u8; 3], [u8; 3]) = match self {
            Self::Pending => ([238, 240, 244], [203, 210, 222]),
            Self::Empty => ([244, 244, 244], [220, 220, 220]),
            Self::NotFound => ([246, 240, 230], [222, 205, 178]),
            Self::Error => ([248, 232, 232], [224, 178, 178]),
            Self::Unauthorized => ([236, 236, 246], [190, 190, 222]),
        };
        let mut rgba = Vec::with_capacity((width * height * 4) as usize);
        let (top, bottom) = (height * 9 / 20, height * 11 / 20);
        let (left, right) = (width / 4, width * 3 / 4);
        for y in 0..height {
            for x in 0..width {
                let c = if (top..bottom).contains(&y) && (left..right).contains(&x) {
                    band
                } else {
                    bg
                };
                rgba.extend_from_slice(&[c[0], c[1], c[2], 255]);
            }
        }
        encode_png(width, height, &rgba).unwrap_or_default()
    }
}

/// Why a render did not produce images.
#[derive(Debug)]
enum RenderError {
    /// The page tried and said why (a bad tree, no access): the browser is fine.
    Page(String),
    /// The browser or its driver failed or timed out: it is restarted.
    Browser(String),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Page(m) => write!(f, "the viewer could not render the model: {m}"),
            Self::Browser(m) => write!(f, "the browser failed: {m}"),
        }
    }
}

/// The page's answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageResult {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    screenshots: Vec<String>,
}

/// chromedriver and the Chromium it started, in their own process group; one session, one
/// page.
struct Browser {
    driver: std::process::Child,
    client: fantoccini::Client,
    profile: PathBuf,
    renders: u32,
}

/// A headless Chromium driven through its own chromedriver (one process group, killed with
/// the value, its profile directory removed): what the renderer renders with, and what the
/// browser tests drive.
pub struct DrivenBrowser {
    /// The WebDriver session.
    pub client: fantoccini::Client,
    guard: BrowserGuard,
}

impl DrivenBrowser {
    /// Starts chromedriver on a free port and a headless Chromium session of `width` ×
    /// `height` with the flags these machines need (SwiftShader WebGL, a fresh profile).
    pub async fn launch(
        chromedriver: &std::path::Path,
        chromium: Option<&std::path::Path>,
        width: u32,
        height: u32,
    ) -> Result<Self, String> {
        use std::os::unix::process::CommandExt as _;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a port: {e}"))?
            .port();
        let driver = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", chromedriver.display()))?;
        let profile =
            std::env::temp_dir().join(format!("strata-browser-{}-{port}", std::process::id()));
        let guard = BrowserGuard(Some((driver, profile.clone())));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if let Ok(res) = http.get(format!("{url}/status")).send().await
                && res.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err("chromedriver did not start".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut chrome = serde_json::json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--use-gl=angle",
            "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic",
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ]});
        if let Some(binary) = chromium {
            chrome["binary"] = serde_json::json!(binary.display().to_string());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), chrome);
        let client = fantoccini::ClientBuilder::rustls()
            .map_err(|e| format!("TLS setup: {e}"))?
            .capabilities(caps)
            .connect(&url)
            .await
            .map_err(|e| format!("opening a browser session: {e}"))?;
        Ok(Self { client, guard })
    }

    /// Ends the session and kills the browser.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        if let Some((mut child, profile)) = self.guard.0.take() {
            kill_group(&mut child, &profile);
        }
    }
}

impl Browser {
    async fn start(options: &PreviewOptions) -> Result<Self, RenderError> {
        let DrivenBrowser { client, guard } = DrivenBrowser::launch(
            &options.chromedriver,
            options.chromium.as_deref(),
            options.width,
            options.height,
        )
        .await
        .map_err(RenderError::Browser)?;
        let mut browser = guard;
        let page = format!("{}{PAGE_PATH}", options.server_url.trim_end_matches('/'));
        let ready = async {
            client.goto(&page).await?;
            client
                .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                    Some(options.render_timeout + Duration::from_secs(5)),
                    Some(Duration::from_secs(30)),
                    None,
                ))
                .await?;
            // The module loads asynchronously after the document.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let ready = client
                    .execute(
                        "return !!(window.strataPreview && window.strataPreview.ready);",
                        vec![],
                    )
                    .await?;
                if ready == serde_json::Value::Bool(true) || Instant::now() > deadline {
                    return Ok::<_, fantoccini::error::CmdError>(ready);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        match ready.await {
            Ok(serde_json::Value::Bool(true)) => {}
            Ok(_) => {
                let _ = client.close().await;
                return Err(RenderError::Browser(format!(
                    "the viewer page {page} did not initialise"
                )));
            }
            Err(e) => {
                let _ = client.close().await;
                return Err(RenderError::Browser(format!("opening {page}: {e}")));
            }
        }
        let (driver, profile) = browser
            .0
            .take()
            .ok_or_else(|| RenderError::Browser("the browser guard was emptied".to_owned()))?;
        Ok(Self {
            driver,
            client,
            profile,
            renders: 0,
        })
    }

    /// Renders every angle of `object_id`; PNG bytes per angle.
    async fn render(
        &mut self,
        options: &PreviewOptions,
        project_id: &str,
        object_id: &str,
        token: &str,
    ) -> Result<Vec<Vec<u8>>, RenderError> {
        self.renders += 1;
        let args = serde_json::json!({
            "serverUrl": options.server_url.trim_end_matches('/'),
            "projectId": project_id,
            "objectId": object_id,
            "token": token,
            "width": options.width,
            "height": options.height,
            "angles": options.angles,
            // Saturates; never reached.
            "timeoutMs": u64::try_from(options.render_timeout.as_millis()).unwrap_or(u64::MAX),
        });
        let answer = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];\n\
                 window.strataPreview.render(arguments[0]).then(\n\
                   (r) => done({ok: true, screenshots: r.screenshots}),\n\
                   (e) => done({ok: false, error: String((e && e.message) || e)}));",
                vec![args],
            )
            .await
            .map_err(|e| RenderError::Browser(format!("running the render: {e}")))?;
        let result: PageResult = serde_json::from_value(answer)
            .map_err(|e| RenderError::Browser(format!("the page's answer: {e}")))?;
        if !result.ok {
            return Err(RenderError::Page(
                result.error.unwrap_or_else(|| "no reason given".to_owned()),
            ));
        }
        if result.screenshots.len() != options.angles as usize {
            return Err(RenderError::Page(format!(
                "{} screenshots for {} angles",
                result.screenshots.len(),
                options.angles
            )));
        }
        result
            .screenshots
            .iter()
            .map(|url| data_url_png(url).map_err(RenderError::Page))
            .collect()
    }

    /// Whether it should be replaced before the next render.
    fn worn_out(&self, options: &PreviewOptions) -> bool {
        self.renders >= options.max_renders_per_browser
            || group_pss_bytes(self.driver.id()) > options.max_browser_rss_bytes
    }

    /// Ends the session politely, then kills what is left.
    async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.clone().close()).await;
    }
}

impl Drop for Browser {
    /// A worker shutting down (or a renderer dropped) leaves no browser behind.
    fn drop(&mut self) {
        kill_group(&mut self.driver, &self.profile);
    }
}

/// Kills a half-started browser's process group unless taken.
struct BrowserGuard(Option<(std::process::Child, PathBuf)>);

impl Drop for BrowserGuard {
    fn drop(&mut self) {
        if let Some((mut child, profile)) = self.0.take() {
            kill_group(&mut child, &profile);
        }
    }
}

/// Kills chromedriver and every Chromium process it started (one process group), and removes
/// the profile directory.
fn kill_group(driver: &mut std::process::Child, profile: &std::path::Path) {
    if let Some(group) = i32::try_from(driver.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = driver.kill();
    let _ = driver.wait();
    let _ = std::fs::remove_dir_all(profile);
}

/// Proportional memory (PSS: shared pages split among their sharers, so Chromium's shared
/// libraries and memory are counted once) of every process in process group `pgid`
/// (chromedriver's, which its Chromium processes inherit), from `/proc`.
pub fn group_pss_bytes(pgid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0u64;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may contain spaces): [2] is the group (field 5).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest
            .split_whitespace()
            .nth(2)
            .and_then(|g| g.parse::<u32>().ok())
            != Some(pgid)
        {
            continue;
        }
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        // An unreadable line counts as 0 (a best-effort gauge).
        total += rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
    }
    total
}

fn data_url_png(url: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let data = url
        .strip_prefix("data:image/png;base64,")
        .ok_or_else(|| "a screenshot that is not a PNG data URL".to_owned())?;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("a screenshot's base64: {e}"))
}

/// Decodes a PNG into 8-bit RGBA.
pub fn decode_rgba(png_bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let mut decoder = png::Decoder::new(Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| format!("a PNG: {e}"))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "a PNG too large to decode".to_owned())?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("a PNG frame: {e}"))?;
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|c| [c[0], c[0], c[0], c[1]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::Indexed => return Err("an indexed PNG after expansion".to_owned()),
    };
    Ok((info.width, info.height, rgba))
}

fn encode_png(width: u32, height: u32, rgba: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("writing a PNG: {e}"))?;
    writer
        .write_image_data(rgba)
        .map_err(|e| format!("writing a PNG: {e}"))?;
    writer.finish().map_err(|e| format!("writing a PNG: {e}"))?;
    Ok(out)
}

/// The frames side by side, left to right, as one PNG (the original's `"all"`).
pub fn sprite(frames: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let decoded = frames
        .iter()
        .map(|f| decode_rgba(f))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(&(w, h, _)) = decoded.first() else {
        return Err("no frames".to_owned());
    };
    if decoded.iter().any(|(fw, fh, _)| (*fw, *fh) != (w, h)) {
        return Err("frames of different sizes".to_owned());
    }
    let n = u32::try_from(decoded.len()).map_err(|_| "too many frames".to_owned())?;
    let row = (w * 4) as usize;
    let mut out = Vec::with_capacity(row * decoded.len() * h as usize);
    for y in 0..h as usize {
        for (_, _, rgba) in &decoded {
            out.extend_from_slice(&rgba[y * row..(y + 1) * row]);
        }
    }
    encode_png(w * n, h, &out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewJob {
    project_id: String,
    object_id: String,
}

/// Handles [`KIND`].
pub struct Renderer {
    pool: PgPool,
    blobs: BlobStore,
    control: Arc<dyn PreviewControl>,
    options: PreviewOptions,
    browser: Mutex<Option<Browser>>,
}

impl Renderer {
    /// A renderer storing into `blobs`; the browser starts with the first job.
    pub fn new(
        pool: PgPool,
        blobs: BlobStore,
        control: Arc<dyn PreviewControl>,
        options: PreviewOptions,
    ) -> Self {
        Self {
            pool,
            blobs,
            control,
            options,
            browser: Mutex::new(None),
        }
    }

    /// Renders on the warm browser (one render at a time per process), starting or replacing
    /// it as needed; a browser-level failure or a timeout drops it, so the next render starts
    /// a fresh one.
    async fn render(&self, project_id: &str, object_id: &str) -> Result<Vec<Vec<u8>>, String> {
        let token = self.control.grant(project_id);
        let mut slot = self.browser.lock().await;
        if let Some(b) = slot.take_if(|b| b.worn_out(&self.options)) {
            b.stop().await;
        }
        if slot.is_none() {
            *slot = Some(
                Browser::start(&self.options)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(browser) = slot.as_mut() else {
            return Err("no browser".to_owned());
        };
        let outcome = tokio::time::timeout(
            self.options.render_timeout,
            browser.render(&self.options, project_id, object_id, &token),
        )
        .await;
        match outcome {
            Ok(Ok(frames)) => Ok(frames),
            Ok(Err(RenderError::Page(m))) => Err(RenderError::Page(m).to_string()),
            Ok(Err(e @ RenderError::Browser(_))) => {
                if let Some(b) = slot.take() {
                    b.stop().await;
                }
                Err(e.to_string())
            }
            Err(_) => {
                if let Some(b) = slot.take() {
                    b.stop().await;
                }
                Err(format!(
                    "the render took longer than {} s",
                    self.options.render_timeout.as_secs()
                ))
            }
        }
    }

    /// One attempt: what was stored, or why nothing was.
    async fn attempt(&self, job: &PreviewJob) -> Result<PreviewStatus, Retry> {
        let (p, o) = (job.project_id.as_str(), job.object_id.as_str());
        let started = Instant::now();
        match previews::has_geometry(&self.pool, p, o)
            .await
            .map_err(|e| Retry(format!("reading the object: {e}"), None))?
        {
            None => Err(Retry(
                "the version's root object is not stored".to_owned(),
                Some(ROOT_PENDING_RETRY),
            )),
            Some(false) => {
                previews::stored(
                    &self.pool,
                    p,
                    o,
                    PreviewStatus::Empty,
                    &[],
                    elapsed_ms(started),
                )
                .await
                .map_err(|e| Retry(format!("recording the preview: {e}"), None))?;
                Ok(PreviewStatus::Empty)
            }
            Some(true) => {
                let frames = self.render(p, o).await.map_err(|m| Retry(m, None))?;
                let main = frames
                    .first()
                    .cloned()
                    .ok_or_else(|| Retry("no screenshot".to_owned(), None))?;
                let all = tokio::task::spawn_blocking(move || sprite(&frames))
                    .await
                    .map_err(|e| Retry(format!("composing the sprite: {e}"), None))?
                    .map_err(|m| Retry(m, None))?;
                for (angle, bytes) in [(previews::MAIN_ANGLE, main), (previews::SPRITE_ANGLE, all)]
                {
                    self.blobs
                        .put(&previews::key(p, o, angle), bytes)
                        .await
                        .map_err(|e| Retry(format!("storing the image: {e}"), None))?;
                }
                previews::stored(
                    &self.pool,
                    p,
                    o,
                    PreviewStatus::Done,
                    &[previews::MAIN_ANGLE, previews::SPRITE_ANGLE],
                    elapsed_ms(started),
                )
                .await
                .map_err(|e| Retry(format!("recording the preview: {e}"), None))?;
                Ok(PreviewStatus::Done)
            }
        }
    }
}

fn elapsed_ms(since: Instant) -> i32 {
    i32::try_from(since.elapsed().as_millis()).unwrap_or(i32::MAX) // saturates; never reached
}

/// An attempt that stored nothing: why, and when to look again (none: the runner's backoff).
struct Retry(String, Option<Duration>);

impl JobHandler for Renderer {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
        async move {
            let input: PreviewJob = serde_json::from_value(job.payload.clone())
                .map_err(|e| JobError::permanent(format!("malformed preview job: {e}")))?;
            previews::start(&self.pool, &input.project_id, &input.object_id, job.attempt)
                .await
                .map_err(|e| JobError::retry(format!("recording the attempt: {e}")))?;
            match self.attempt(&input).await {
                Ok(status) => {
                    tracing::info!(
                        project = %input.project_id,
                        object = %input.object_id,
                        status = status.as_str(),
                        "preview stored"
                    );
                    self.control
                        .generated(&input.project_id, &input.object_id)
                        .await;
                    Ok(())
                }
                Err(Retry(m, delay)) if job.attempt < job.max_attempts => Err(match delay {
                    Some(d) => JobError::retry_after(m, d),
                    None => JobError::retry(m),
                }),
                Err(Retry(m, _)) => {
                    let reason = format!("The preview failed after {} attempts: {m}", job.attempt);
                    previews::failed(&self.pool, &input.project_id, &input.object_id, &reason)
                        .await
                        .map_err(|e| JobError::retry(format!("recording the failure: {e}")))?;
                    Err(JobError::permanent(reason))
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placeholder_is_a_png_of_the_asked_size() {
        let png = Placeholder::Pending.png(70, 40);
        let (w, h, rgba) = decode_rgba(&png).expect("a PNG");
        assert_eq!((w, h), (70, 40));
        assert_eq!(rgba.len(), 70 * 40 * 4);
        assert_ne!(Placeholder::Error.png(70, 40), png);
    }

    #[test]
    fn the_sprite_puts_frames_side_by_side_in_order() {
        let frame = |v: u8| encode_png(3, 2, &[v; 3 * 2 * 4]).expect("png");
        let all = sprite(&[frame(10), frame(20), frame(30)]).expect("sprite");
        let (w, h, rgba) = decode_rgba(&all).expect("decode");
        assert_eq!((w, h), (9, 2));
        // Row 1, pixel 4 (second frame), pixel 8 (third frame).
        let px = |x: usize, y: usize| rgba[(y * 9 + x) * 4];
        assert_eq!((px(0, 1), px(4, 1), px(8, 1)), (10, 20, 30));
        assert!(sprite(&[frame(1), encode_png(1, 1, &[0; 4]).expect("png")]).is_err());
    }
}
