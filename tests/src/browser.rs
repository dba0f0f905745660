//! A real browser for the tests of the HTML report: headless Chromium (Debian's `chromium`,
//! installed by `scripts/setup`) renders a page to a PNG screenshot and dumps its DOM after load,
//! with the network cut off (a page that is not self-contained renders with holes, and never
//! waits on a server); then a few measures of the screenshot (pixels of a colour, distinct
//! colours, blankness) tell whether the charts drew.
//!
//! `REPLMON_CHROMIUM` names another Chromium (or Chrome) binary than `chromium` on the `PATH`.

use anyhow::{bail, ensure, Context, Result};
use percent_encoding::{percent_encode, AsciiSet, CONTROLS};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one Chromium run may take before it is killed ([`render`]).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Virtual time the page gets after loading before the screenshot and the DOM dump, in ms: timers
/// and animation frames run (fast-forwarded: an idle page costs no wall time), so that a chart
/// drawn by script after load is drawn too.
const VIRTUAL_TIME_BUDGET_MS: u32 = 5_000;

/// A page as headless Chromium rendered it.
#[derive(Clone)]
pub struct Rendered {
    /// The screenshot, as Chromium wrote it (a PNG file).
    pub png: Vec<u8>,
    /// The DOM after load (`--dump-dom`), serialized as HTML.
    pub dom: String,
    /// The screenshot's size in pixels (the window's: `--force-device-scale-factor=1`).
    pub width: u32,
    pub height: u32,
    /// The screenshot decoded: 8-bit RGBA, row after row, `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl Rendered {
    /// A screenshot (PNG file bytes) and a DOM, the PNG decoded (any colour type and depth).
    pub fn from_png(png: Vec<u8>, dom: String) -> Result<Self> {
        let (width, height, rgba) = decode_rgba(&png)?;
        Ok(Rendered {
            png,
            dom,
            width,
            height,
            rgba,
        })
    }

    /// The pixel at (x, y) from the top left, as RGBA.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = (usize::try_from(y).ok()? * usize::try_from(self.width).ok()?
            + usize::try_from(x).ok()?)
            * 4;
        let p = self.rgba.get(at..at + 4)?;
        Some([p[0], p[1], p[2], p[3]])
    }

    /// Write `<name>.png` (the screenshot) and `<name>.html` (the DOM) into `dir` (created if
    /// missing), to look at when a test fails; returns the screenshot's path.
    pub fn save(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let png = dir.join(format!("{name}.png"));
        std::fs::write(&png, &self.png).with_context(|| format!("writing {}", png.display()))?;
        let html = dir.join(format!("{name}.html"));
        std::fs::write(&html, &self.dom).with_context(|| format!("writing {}", html.display()))?;
        Ok(png)
    }

    fn pixels(&self) -> impl Iterator<Item = [u8; 4]> + '_ {
        self.rgba.chunks_exact(4).map(|p| [p[0], p[1], p[2], p[3]])
    }
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("png_bytes", &self.png.len())
            .field("dom_chars", &self.dom.len())
            .field("distinct_colours", &distinct_colours(self))
            .finish()
    }
}

/// Render the HTML file `html` in a `width` x `height` window of headless Chromium: a screenshot
/// and, from a second Chromium run beside it, the DOM after load. Each run is killed after
/// [`TIMEOUT`]; the error then, or when Chromium fails, has the end of Chromium's stderr.
pub fn render(html: &Path, width: u32, height: u32) -> Result<Rendered> {
    render_with_timeout(html, width, height, TIMEOUT)
}

/// [`render`] with another timeout for each of the two Chromium runs.
pub fn render_with_timeout(
    html: &Path,
    width: u32,
    height: u32,
    timeout: Duration,
) -> Result<Rendered> {
    ensure!(
        width > 0 && height > 0,
        "window size {width}x{height} is empty"
    );
    let page = std::fs::canonicalize(html)
        .with_context(|| format!("the page to render, {}", html.display()))?;
    ensure!(page.is_file(), "{} is not a file", page.display());
    let url = file_url(&page);
    let scratch = ScratchDir::new("chromium")?;
    let shot = scratch.path().join("shot.png");
    let started = Instant::now();
    let deadline = started + timeout;
    // Both runs at once (each its own profile): the render costs one Chromium start, not two.
    let mut screenshot = Chromium::start(
        "screenshot",
        scratch.path(),
        width,
        height,
        &[format!("--screenshot={}", shot.display())],
        &url,
    )?;
    let mut dump = Chromium::start(
        "dump-dom",
        scratch.path(),
        width,
        height,
        &["--dump-dom".to_owned()],
        &url,
    )?;
    screenshot.wait(deadline, timeout)?;
    let dom = dump.wait(deadline, timeout)?;
    let png = std::fs::read(&shot).with_context(|| {
        format!(
            "chromium wrote no screenshot of {}{}",
            page.display(),
            screenshot.stderr_tail()
        )
    })?;
    ensure!(
        !png.is_empty(),
        "chromium wrote an empty screenshot of {}{}",
        page.display(),
        screenshot.stderr_tail()
    );
    let dom = String::from_utf8(dom).with_context(|| {
        format!(
            "chromium's DOM dump of {} is not UTF-8{}",
            page.display(),
            dump.stderr_tail()
        )
    })?;
    ensure!(
        !dom.trim().is_empty(),
        "chromium dumped an empty DOM of {}{}",
        page.display(),
        dump.stderr_tail()
    );
    Rendered::from_png(png, dom)
        .with_context(|| format!("decoding chromium's screenshot of {}", page.display()))
}

/// Print the HTML file to PDF as a user's "Print to PDF" would (A4 unless the page's CSS
/// says otherwise); the PDF's bytes.
pub fn print_to_pdf(html: &Path) -> Result<Vec<u8>> {
    let page = std::fs::canonicalize(html)
        .with_context(|| format!("the page to print, {}", html.display()))?;
    let url = file_url(&page);
    let scratch = ScratchDir::new("chromium-pdf")?;
    let pdf = scratch.path().join("page.pdf");
    let deadline = Instant::now() + TIMEOUT;
    let mut print = Chromium::start(
        "print-to-pdf",
        scratch.path(),
        1280,
        1024,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".to_owned(),
        ],
        &url,
    )?;
    print.wait(deadline, TIMEOUT)?;
    let bytes = std::fs::read(&pdf).with_context(|| {
        format!(
            "chromium printed no PDF of {}{}",
            page.display(),
            print.stderr_tail()
        )
    })?;
    ensure!(
        bytes.starts_with(b"%PDF-"),
        "chromium's PDF of {} is not a PDF",
        page.display()
    );
    Ok(bytes)
}

/// Pages of a PDF Chromium printed (its page objects; Chromium writes them uncompressed).
pub fn pdf_pages(pdf: &[u8]) -> usize {
    let needle = b"/Type /Page";
    pdf.windows(needle.len() + 1)
        .filter(|w| &w[..needle.len()] == needle && w[needle.len()] != b's')
        .count()
}

/// The Chromium binary: `REPLMON_CHROMIUM`, or `chromium` on the `PATH`.
pub fn chromium_program() -> OsString {
    std::env::var_os("REPLMON_CHROMIUM")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| OsString::from("chromium"))
}

/// Every flag of a run but the output's (`--screenshot=…` or `--dump-dom`) and the URL.
pub fn chromium_flags(profile: &Path, width: u32, height: u32) -> Vec<String> {
    [
        "--headless",
        // Root in a container: no user namespaces for the sandbox.
        "--no-sandbox",
        "--disable-gpu",
        // /dev/shm is small in containers; shared memory in /tmp instead.
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-crash-reporter",
        "--disable-breakpad",
        "--mute-audio",
        // One CSS pixel, one screenshot pixel, whatever the machine's display says.
        "--force-device-scale-factor=1",
        "--lang=en-US",
        // No network: every host name (IP literals and localhost included) fails to resolve, and
        // whatever would connect anyway goes through a proxy that resolves to nothing (loopback
        // included, which Chromium otherwise never proxies); WebRTC only through that proxy.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--force-webrtc-ip-handling-policy",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"),
        format!("--window-size={width},{height}"),
        format!("--user-data-dir={}", profile.display()),
    ])
    .collect()
}

/// `file://` URL of an absolute path, percent-encoded.
fn file_url(path: &Path) -> String {
    const PATH: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'?')
        .add(b'<')
        .add(b'>')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    format!(
        "file://{}",
        percent_encode(path.as_os_str().as_bytes(), PATH)
    )
}

/// One Chromium run, in a process group of its own: killed with every process it started when
/// it times out or is dropped unfinished.
struct Chromium {
    what: &'static str,
    child: Child,
    finished: bool,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Chromium {
    fn start(
        what: &'static str,
        scratch: &Path,
        width: u32,
        height: u32,
        output: &[String],
        url: &str,
    ) -> Result<Self> {
        let stdout = scratch.join(format!("{what}.stdout"));
        let stderr = scratch.join(format!("{what}.stderr"));
        let mut command = Command::new(chromium_program());
        command
            .args(chromium_flags(
                &scratch.join(format!("profile-{what}")),
                width,
                height,
            ))
            .args(output)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .process_group(0);
        crate::die_with_parent(&mut command);
        let child = command.spawn().map_err(|e| {
            let program = chromium_program();
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "{} not found: run `scripts/setup` (it installs Debian's chromium)",
                    program.to_string_lossy()
                )
            } else {
                anyhow::Error::new(e).context(format!("starting {}", program.to_string_lossy()))
            }
        })?;
        Ok(Chromium {
            what,
            child,
            finished: false,
            stdout,
            stderr,
        })
    }

    /// Wait for the run to end by `deadline`, killing it then; its stdout when it succeeded.
    fn wait(&mut self, deadline: Instant, timeout: Duration) -> Result<Vec<u8>> {
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                self.finished = true;
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "chromium ({}) timed out after {timeout:?} and was killed{}",
                    self.what,
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        ensure!(
            status.success(),
            "chromium ({}) failed: {status}{}",
            self.what,
            self.stderr_tail()
        );
        std::fs::read(&self.stdout).with_context(|| format!("reading {}", self.stdout.display()))
    }

    /// SIGKILL to the whole process group (the browser, its zygotes and renderers), while the
    /// group leader is not yet reaped (so that its ID names no other group).
    fn kill(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            if pid > 1 {
                // SAFETY: kill has no memory effects; a negative PID names the process group.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finished = true;
    }

    /// The last lines of the run's stderr, without the noise every run prints (no D-Bus in a
    /// container; the Debian launcher's /dev/shm check), for an error message.
    fn stderr_tail(&self) -> String {
        const LINES: usize = 30;
        let text = std::fs::read(&self.stderr)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !l.contains(":ERROR:dbus/") && !l.contains("unexpected operator"))
            .collect();
        if lines.is_empty() {
            return "; chromium's stderr had nothing but the usual noise".to_owned();
        }
        let tail = &lines[lines.len().saturating_sub(LINES)..];
        format!("; chromium's stderr ends:\n{}", tail.join("\n"))
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh directory under the system's temporary directory, removed (with everything in it)
/// when dropped.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// `<tmp>/replmon-<label>-<pid>-<time>-<n>`, created now.
    pub fn new(label: &str) -> Result<Self> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "replmon-{label}-{}-{nanos}-{n}",
            std::process::id()
        ));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Decode a PNG file of any colour type and bit depth to 8-bit RGBA.
fn decode_rgba(png: &[u8]) -> Result<(u32, u32, Vec<u8>)> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    // Palettes and low bit depths expanded, 16-bit samples stripped to 8.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().context("not a PNG")?;
    let size = reader
        .output_buffer_size()
        .context("the PNG is too large to decode")?;
    let mut buffer = vec![0; size];
    let info = reader.next_frame(&mut buffer).context("decoding the PNG")?;
    buffer.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buffer,
        png::ColorType::Rgb => buffer
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => buffer
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Grayscale => buffer.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::Indexed => bail!("the PNG's palette was not expanded"),
    };
    let expected = u64::from(info.width) * u64::from(info.height) * 4;
    ensure!(
        u64::try_from(rgba.len()).ok() == Some(expected),
        "decoded {} bytes of a {}x{} PNG",
        rgba.len(),
        info.width,
        info.height
    );
    Ok((info.width, info.height, rgba))
}

/// `#rrggbb` (or `rrggbb`) as RGB; `None` when it is not that.
pub fn parse_colour(colour_hex: &str) -> Option<[u8; 3]> {
    let hex = colour_hex.strip_prefix('#').unwrap_or(colour_hex);
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    Some([channel(0)?, channel(2)?, channel(4)?])
}

/// How many pixels are within `tolerance` of the colour `#rrggbb` in each of red, green and blue
/// (alpha ignored). Panics when `colour_hex` is not `#rrggbb`: a mistake in the test itself.
pub fn pixels_near(rendered: &Rendered, colour_hex: &str, tolerance: u8) -> u64 {
    let Some(want) = parse_colour(colour_hex) else {
        panic!("pixels_near: {colour_hex:?} is not a #rrggbb colour");
    };
    let near = |p: [u8; 4]| (0..3).all(|c| p[c].abs_diff(want[c]) <= tolerance);
    rendered.pixels().filter(|&p| near(p)).map(|_| 1u64).sum()
}

/// How many different RGBA values the screenshot has.
pub fn distinct_colours(rendered: &Rendered) -> usize {
    colour_counts(rendered).len()
}

/// The commonest colour (RGBA) and how many pixels have it; `None` for an empty image.
pub fn dominant_colour(rendered: &Rendered) -> Option<([u8; 4], u64)> {
    colour_counts(rendered)
        .into_iter()
        .max_by_key(|&(colour, count)| (count, std::cmp::Reverse(colour)))
}

/// Nothing drew: the screenshot is one colour, or more than 99.5% of it is (an empty image too).
pub fn is_blank(rendered: &Rendered) -> bool {
    let total = rendered.rgba.len() as u64 / 4;
    match dominant_colour(rendered) {
        None => true,
        // count / total > 0.995, in integers.
        Some((_, count)) => count * 1000 > total * 995,
    }
}

fn colour_counts(rendered: &Rendered) -> HashMap<[u8; 4], u64> {
    let mut counts = HashMap::new();
    for p in rendered.pixels() {
        *counts.entry(p).or_insert(0u64) += 1;
    }
    counts
}
