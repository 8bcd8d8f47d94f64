//! End-to-end tests of web pages in Debian's headless Chromium, driven over
//! WebDriver ([`fantoccini`]) through `chromedriver`.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use nuvol_testkit::browser::{axe, browser, require_axe, WAIT};
//! let Some(b) = browser("dashboard_home").await? else {
//!     return Ok(()); // skipped (printed); a failure under NUVOL_REQUIRE_SYSTEM=1
//! };
//! b.set_width(360).await?;
//! b.goto("http://127.0.0.1:8500/ui/").await?;
//! b.wait_for("main h1", WAIT).await?;
//! b.screenshot("home-360").await?;
//! if require_axe("dashboard_home") {
//!     let v = axe(&b).await?;
//!     assert!(v.is_empty(), "{v}");
//! }
//! b.close().await?;
//! # Ok(()) }
//! ```
//!
//! - [`browser`] finds `chromedriver` (`PATH`, or `NUVOL_CHROMEDRIVER`) and
//!   the headless shell (`/usr/lib/chromium/chromium-headless-shell`, `PATH`,
//!   or `NUVOL_HEADLESS_SHELL`). When one is missing it prints a skip and
//!   returns `None`, or panics under `NUVOL_REQUIRE_SYSTEM=1`
//!   ([`crate::netns::skip_or_fail`]). Debian's packages: `chromium-driver`
//!   and `chromium-headless-shell`.
//! - Every [`Browser`] has its own `chromedriver` on a loopback port it
//!   picked itself, in a process group of its own: dropping the `Browser`
//!   SIGKILLs the group (chromedriver and every Chromium process), and
//!   removes the temporary directory that holds Chromium's profile.
//! - Artefacts (screenshots, `chromedriver.log` with Chromium's own output)
//!   go to `<target>/test-artefacts/<test>/` ([`artefact_dir`]).
//! - [`axe`] runs axe-core in the page. Its `axe.min.js` is not in the
//!   repository: it comes from a PyPI wheel that bundles it ([`AXE_WHEEL`]),
//!   fetched with `pip download` once and cached under `<target>/axe-core/`
//!   (`scripts/test.sh` fetches it before the tests and sets
//!   `NUVOL_AXE_JS`). [`require_axe`] applies the skip-or-fail rule to it.
//!
//! WebDriver does not expose a page's HTTP status (nor its headers): a test
//! that cares checks those with a plain HTTP client against the same URL,
//! and uses the browser for what it renders.

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use fantoccini;

use crate::netns::skip_or_fail;

/// Overrides the `chromedriver` found on `PATH`.
pub const CHROMEDRIVER_ENV: &str = "NUVOL_CHROMEDRIVER";
/// Overrides the headless shell's path.
pub const HEADLESS_SHELL_ENV: &str = "NUVOL_HEADLESS_SHELL";
/// Overrides where `axe.min.js` comes from (a path to the file).
pub const AXE_JS_ENV: &str = "NUVOL_AXE_JS";

/// The PyPI wheel whose package bundles `axe.min.js` (axe-core 4.12.1);
/// `scripts/test.sh` pre-fetches the same one.
pub const AXE_WHEEL: &str = "axe-playwright-python==0.1.8";
/// The file inside [`AXE_WHEEL`].
pub const AXE_WHEEL_MEMBER: &str = "axe_playwright_python/axe.min.js";

/// Where Debian's `chromium-headless-shell` puts the browser itself
/// (`/usr/bin/chromium-headless-shell` is a shell script that runs it).
pub const DEBIAN_HEADLESS_SHELL: &str = "/usr/lib/chromium/chromium-headless-shell";

/// A generous default for [`Browser::wait_for`] and
/// [`Browser::wait_until_js`]: an upper bound that fails a stuck test.
pub const WAIT: Duration = Duration::from_secs(10);

/// The viewport height [`Browser::set_width`] uses.
pub const HEIGHT: u32 = 800;

/// The tags [`axe`] runs: WCAG 2.0 and 2.1, A and AA, and axe's best
/// practices.
pub const AXE_TAGS: &[&str] = &["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"];

const STARTUP: Duration = Duration::from_secs(30);

/// Chromium's switches. `--no-sandbox`: tests run as root, where Chromium's
/// sandbox refuses to start; `--disable-dev-shm-usage`: a container's
/// `/dev/shm` may be tiny; `--disable-gpu`: no GPU here. The others make
/// screenshots and layout the same on every machine.
pub const CHROME_ARGS: &[&str] = &[
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
    "--window-size=1280,800",
];

/// The target directory: `CARGO_TARGET_DIR` (relative to the workspace
/// root when relative), else the directory above the running test binary
/// that cargo marked with `CACHEDIR.TAG`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
        return workspace.join(t); // join keeps an absolute `t` as it is
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
        {
            return d.to_owned();
        }
    }
    workspace.join("target")
}

/// `<target>/test-artefacts/<test>/` (not created).
pub fn artefact_dir(test: &str) -> PathBuf {
    let safe: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    target_dir().join("test-artefacts").join(safe)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn on_path(name: &str, path: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// The programs a [`Browser`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Programs {
    pub chromedriver: PathBuf,
    pub headless_shell: PathBuf,
}

/// Find `chromedriver` and the headless shell from the given overrides and
/// `PATH` (as from the environment): the reason when one is missing.
pub fn find_programs(
    driver_override: Option<OsString>,
    shell_override: Option<OsString>,
    path: Option<OsString>,
) -> Result<Programs, String> {
    let found = |over: Option<OsString>, env: &str, name: &str, fixed: Option<&str>| {
        let hint = "install Debian's chromium-driver and chromium-headless-shell, e.g. by \
                    running scripts/test.sh as root";
        match over.filter(|o| !o.is_empty()) {
            Some(o) => {
                let p = PathBuf::from(o);
                if is_executable(&p) {
                    Ok(p)
                } else {
                    Err(format!("{env}={} is not an executable file", p.display()))
                }
            }
            None => fixed
                .map(PathBuf::from)
                .filter(|p| is_executable(p))
                .or_else(|| on_path(name, path.as_ref()))
                .ok_or_else(|| format!("`{name}` not found on PATH ({hint}; or set {env})")),
        }
    };
    Ok(Programs {
        chromedriver: found(driver_override, CHROMEDRIVER_ENV, "chromedriver", None)?,
        headless_shell: found(
            shell_override,
            HEADLESS_SHELL_ENV,
            "chromium-headless-shell",
            Some(DEBIAN_HEADLESS_SHELL),
        )?,
    })
}

/// `chromedriver` in a process group of its own; the group is SIGKILLed on
/// drop (Chromium's processes stay in it).
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with its own `chromedriver`.
///
/// Field order matters: the session goes first, then the processes, then
/// the profile directory they used.
pub struct Browser {
    client: Client,
    _driver: Driver,
    _tmp: tempfile::TempDir,
    test: String,
    artefacts: PathBuf,
    url: String,
}

/// A browser for `test`, or `None` (skip printed) when `chromedriver` or the
/// headless shell is missing and `NUVOL_REQUIRE_SYSTEM` is not `1` (with it,
/// this panics). An error when they are there but do not start.
pub async fn browser(test: &str) -> Result<Option<Browser>> {
    let programs = match find_programs(
        std::env::var_os(CHROMEDRIVER_ENV),
        std::env::var_os(HEADLESS_SHELL_ENV),
        std::env::var_os("PATH"),
    ) {
        Ok(p) => p,
        Err(reason) => {
            skip_or_fail(test, &reason);
            return Ok(None);
        }
    };
    Browser::start(test, &programs).await.map(Some)
}

impl Browser {
    /// Start `chromedriver` and open a session (viewport 1280×800).
    pub async fn start(test: &str, programs: &Programs) -> Result<Browser> {
        // Browsers started so far in this process, by test.
        static STARTED: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());
        let artefacts = artefact_dir(test);
        std::fs::create_dir_all(&artefacts)
            .with_context(|| format!("creating {}", artefacts.display()))?;
        let n = {
            let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
            let n = started.entry(test.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let log_path = match n {
            1 => artefacts.join("chromedriver.log"),
            n => artefacts.join(format!("chromedriver-{n}.log")),
        };
        // Chromium's profile: chromedriver makes a fresh one under TMPDIR
        // (passing --user-data-dir instead leaves the headless shell
        // without a page: "unable to discover open pages").
        let tmp = tempfile::Builder::new()
            .prefix("nuvol-browser-")
            .tempdir()
            .context("creating a temporary directory")?;
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log2 = log.try_clone().context("duplicating a file handle")?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&programs.chromedriver)
                // Port 0: chromedriver picks a free one and prints it.
                .arg("--port=0")
                .env("TMPDIR", tmp.path())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .process_group(0)
                .spawn()
                .with_context(|| format!("spawning {}", programs.chromedriver.display()))?
        };
        let mut driver = Driver { child };
        let port = wait_for_port(&mut driver.child, &log_path).await?;
        let url = format!("http://127.0.0.1:{port}");

        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": programs.headless_shell,
                "args": CHROME_ARGS,
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        caps.insert(
            "timeouts".into(),
            json!({"script": 60_000, "pageLoad": 30_000, "implicit": 0}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            STARTUP,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "no WebDriver session within {STARTUP:?} (see {})",
                log_path.display()
            )
        })?
        .with_context(|| {
            format!(
                "opening a WebDriver session with {} (see {})",
                programs.headless_shell.display(),
                log_path.display()
            )
        })?;
        Ok(Browser {
            client,
            _driver: driver,
            _tmp: tmp,
            test: test.to_owned(),
            artefacts,
            url,
        })
    }

    /// The fantoccini client, for what this wrapper does not offer.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `chromedriver`'s URL (`http://127.0.0.1:PORT`).
    pub fn webdriver_url(&self) -> &str {
        &self.url
    }

    /// `<target>/test-artefacts/<test>/` (exists).
    pub fn artefact_dir(&self) -> &Path {
        &self.artefacts
    }

    /// End the session (Chromium quits, its profile goes); the processes
    /// are killed on drop anyway.
    pub async fn close(self) -> Result<()> {
        self.client
            .clone()
            .close()
            .await
            .context("closing the session")?;
        drop(self);
        Ok(())
    }

    /// Load `url` and wait for its `load` event.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("loading {url}"))
    }

    /// The current page's URL.
    pub async fn current_url(&self) -> Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// Make the viewport `px` wide and [`HEIGHT`] high (360 for a phone,
    /// 1280 for a desktop) and check `window.innerWidth` says so.
    pub async fn set_width(&self, px: u32) -> Result<()> {
        self.set_viewport(px, HEIGHT).await
    }

    /// Make the viewport (`innerWidth` × `innerHeight`) `w` × `h`. In the
    /// headless shell the window is the viewport; should a frame appear,
    /// the window is grown by it once.
    pub async fn set_viewport(&self, w: u32, h: u32) -> Result<()> {
        self.client.set_window_rect(0, 0, w, h).await?;
        let (iw, ih) = self.inner_size().await?;
        if (iw, ih) == (w, h) {
            return Ok(());
        }
        let grow = |want: u32, got: u32| (2 * want).saturating_sub(got);
        self.client
            .set_window_rect(0, 0, grow(w, iw), grow(h, ih))
            .await?;
        let (iw2, ih2) = self.inner_size().await?;
        if (iw2, ih2) != (w, h) {
            bail!("asked for a {w}x{h} viewport, got {iw}x{ih}, then {iw2}x{ih2}");
        }
        Ok(())
    }

    async fn inner_size(&self) -> Result<(u32, u32)> {
        let v = self.js("[window.innerWidth, window.innerHeight]").await?;
        let (w, h) = serde_json::from_value::<(u32, u32)>(v.clone())
            .with_context(|| format!("innerWidth/innerHeight: {v}"))?;
        Ok((w, h))
    }

    /// Save a PNG of the viewport to `<artefacts>/<name>.png` (printed) and
    /// return its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        let path = self.artefacts.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("{}: screenshot {}", self.test, path.display());
        Ok(path)
    }

    /// The first element matching `css`, once there is one; an error after
    /// `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let start = Instant::now();
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => return Ok(e),
                Err(e) if e.is_no_such_element() => {}
                Err(e) => return Err(e).with_context(|| format!("finding `{css}`")),
            }
            if start.elapsed() >= timeout {
                bail!(
                    "timed out after {timeout:?} waiting for an element matching `{css}` on {}",
                    self.current_url().await.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll the JavaScript expression `expr` until it is truthy; after
    /// `timeout`, an error with the last value (or script error) seen.
    pub async fn wait_until_js(&self, expr: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut polls = 0u64;
        loop {
            polls += 1;
            let last = match self.js(&format!("!!({})", strip_semicolon(expr))).await {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(v) => format!("last value: {v}"),
                Err(e) => format!("last error: {e:#}"),
            };
            if start.elapsed() >= timeout {
                bail!(
                    "timed out after {timeout:?} ({polls} polls) waiting for JavaScript \
                     `{expr}` to be true; {last}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of the JavaScript expression `expr` (`return (expr)` in a
    /// function body; for statements, use an arrow function called at once,
    /// or [`Client::execute`] through [`Browser::client`]).
    pub async fn js(&self, expr: &str) -> Result<Value> {
        let script = format!("return (\n{}\n);", strip_semicolon(expr));
        self.client
            .execute(&script, vec![])
            .await
            .with_context(|| format!("evaluating `{expr}`"))
    }

    async fn find(&self, css: &str) -> Result<Element> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element matches `{css}`"))
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self.find(css).await?.text().await?)
    }

    /// Attribute `name` of the first element matching `css` (`None` when it
    /// has none).
    pub async fn attr(&self, css: &str, name: &str) -> Result<Option<String>> {
        Ok(self.find(css).await?.attr(name).await?)
    }

    /// Set the field named `field` in the form matching `form_css` as a
    /// person would: a `<select>` by option value, any other field by
    /// clearing it and typing `value` (so input events fire). Checkboxes
    /// and radio buttons are [`Browser::click`]ed instead.
    pub async fn fill(&self, form_css: &str, field: &str, value: &str) -> Result<()> {
        let css = format!("{form_css} [name=\"{}\"]", css_string(field));
        let el = self.find(&css).await?;
        if el.tag_name().await?.eq_ignore_ascii_case("select") {
            el.select_by_value(value)
                .await
                .with_context(|| format!("selecting {value:?} in `{css}`"))?;
        } else {
            el.clear()
                .await
                .with_context(|| format!("clearing `{css}`"))?;
            el.send_keys(value)
                .await
                .with_context(|| format!("typing into `{css}`"))?;
        }
        Ok(())
    }

    /// Submit the form matching `form_css` by clicking its submit button,
    /// or, when it has none, by `form.requestSubmit()` (validation and
    /// submit handlers run either way).
    pub async fn submit(&self, form_css: &str) -> Result<()> {
        let buttons = format!(
            "{form_css} button[type=submit], {form_css} button:not([type]), \
             {form_css} input[type=submit]"
        );
        match self.client.find(Locator::Css(&buttons)).await {
            Ok(b) => b
                .click()
                .await
                .with_context(|| format!("clicking the submit button of `{form_css}`")),
            Err(e) if e.is_no_such_element() => {
                let form = self.find(form_css).await?;
                let arg = serde_json::to_value(&form)?;
                self.client
                    .execute("arguments[0].requestSubmit();", vec![arg])
                    .await
                    .with_context(|| format!("submitting `{form_css}`"))?;
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("finding `{form_css}`'s submit button")),
        }
    }

    /// Click the first element matching `css`.
    pub async fn click(&self, css: &str) -> Result<()> {
        self.find(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking `{css}`"))
    }

    /// The current DOM, serialised.
    pub async fn page_source(&self) -> Result<String> {
        Ok(self.client.source().await?)
    }

    /// What reached the browser's console since the last call (this drains
    /// it): `console.*` calls, uncaught exceptions, failed loads.
    pub async fn console(&self) -> Result<Vec<ConsoleEntry>> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .context("reading the browser's console log")?;
        serde_json::from_value(v.clone()).with_context(|| format!("console log entries: {v}"))
    }

    /// [`Browser::console`]'s `SEVERE` entries: `console.error`, uncaught
    /// exceptions and failed requests (a 404 for a favicon counts too).
    pub async fn console_errors(&self) -> Result<Vec<ConsoleEntry>> {
        let mut v = self.console().await?;
        v.retain(|e| e.level == "SEVERE");
        Ok(v)
    }
}

/// One line of the browser's console log.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ConsoleEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// `console-api`, `javascript` (uncaught errors), `network`, ...
    pub source: String,
    pub message: String,
}

impl fmt::Display for ConsoleEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} {}] {}", self.level, self.source, self.message)
    }
}

/// chromedriver's (non-W3C) log endpoint, with `goog:loggingPrefs` asking
/// for the browser log.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

fn strip_semicolon(expr: &str) -> &str {
    expr.trim().trim_end_matches(';')
}

/// `s` escaped for a double-quoted CSS string.
fn css_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Read `log` until chromedriver says which port it listens on.
async fn wait_for_port(child: &mut Child, log: &Path) -> Result<u16> {
    const MARK: &str = "was started successfully on port ";
    let start = Instant::now();
    loop {
        let mut text = String::new();
        if let Ok(mut f) = File::open(log) {
            let _ = f.read_to_string(&mut text);
        }
        if let Some(i) = text.find(MARK) {
            let rest = &text[i + MARK.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if rest.len() > digits.len() {
                return digits
                    .parse()
                    .with_context(|| format!("chromedriver's port in {}", log.display()));
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "chromedriver exited ({status}) before listening: {}",
                text.trim()
            );
        }
        if start.elapsed() >= STARTUP {
            bail!(
                "chromedriver did not say its port within {STARTUP:?}: {}",
                text.trim()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- axe-core ----

/// One failed axe rule.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// The rule, e.g. `image-alt`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    /// What the rule asks for, in a line.
    pub help: String,
    pub help_url: String,
    pub nodes: Vec<ViolationNode>,
}

/// An element that fails a rule.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ViolationNode {
    /// The CSS selector axe gives for it (frames and shadow roots joined by
    /// ` >>> `).
    pub target: String,
    /// Its opening HTML, as axe shows it.
    pub html: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}: {} ({})",
            self.impact.as_deref().unwrap_or("?"),
            self.id,
            self.help,
            self.help_url
        )?;
        for n in &self.nodes {
            write!(f, "\n    {}  {}", n.target, n.html)?;
        }
        Ok(())
    }
}

/// What [`axe`] found; `Display` lists every violation and element, for
/// `assert!(v.is_empty(), "{v}")`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    /// The rules that failed.
    pub fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|v| v.id.as_str()).collect()
    }
}

impl std::ops::Deref for Violations {
    type Target = [Violation];
    fn deref(&self) -> &[Violation] {
        &self.0
    }
}

impl IntoIterator for Violations {
    type Item = Violation;
    type IntoIter = std::vec::IntoIter<Violation>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no accessibility violations");
        }
        write!(f, "{} accessibility violation(s):", self.0.len())?;
        for v in &self.0 {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

/// `<target>/axe-core/<wheel>/axe.min.js`.
pub fn axe_cache_path() -> PathBuf {
    target_dir()
        .join("axe-core")
        .join(AXE_WHEEL.replace("==", "-"))
        .join("axe.min.js")
}

/// The path of `axe.min.js`: `NUVOL_AXE_JS`, the cache, or fetched now
/// into the cache (`python3 -m pip download` of [`AXE_WHEEL`]). Resolved
/// once per process; the reason when it cannot be had.
pub fn axe_js() -> Result<PathBuf, String> {
    static AXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    AXE.get_or_init(resolve_axe).clone()
}

fn resolve_axe() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(AXE_JS_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{AXE_JS_ENV}={} is not a file", p.display()))
        };
    }
    let cached = axe_cache_path();
    if cached.is_file() {
        return Ok(cached);
    }
    fetch_axe(&cached).map(|()| cached).map_err(|e| {
        format!(
            "axe-core unavailable: {e:#} (it comes from PyPI's {AXE_WHEEL}: run scripts/test.sh, \
             or set {AXE_JS_ENV} to an axe.min.js)"
        )
    })
}

/// Download the wheel with pip and extract its `axe.min.js` to `dest`
/// (written beside it, then renamed, so a reader never sees half a file).
fn fetch_axe(dest: &Path) -> Result<()> {
    let dir = dest.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let work = tempfile::tempdir_in(dir).context("creating a temporary directory")?;
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--only-binary=:all:", "-d"])
        .arg(work.path())
        .arg(AXE_WHEEL)
        .stdin(Stdio::null())
        .output()
        .context("running python3 -m pip")?;
    if !out.status.success() {
        bail!(
            "pip download {AXE_WHEEL}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let part = work.path().join("axe.min.js");
    // The wheel is a zip file; python's zipfile reads it.
    let extract = "import glob, sys, zipfile\n\
                   whl, = glob.glob(sys.argv[1] + '/*.whl')\n\
                   open(sys.argv[3], 'wb').write(zipfile.ZipFile(whl).read(sys.argv[2]))\n";
    let out = Command::new("python3")
        .args(["-c", extract])
        .arg(work.path())
        .arg(AXE_WHEEL_MEMBER)
        .arg(&part)
        .stdin(Stdio::null())
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!(
            "extracting {AXE_WHEEL_MEMBER} from the wheel: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&part, dest).with_context(|| format!("renaming to {}", dest.display()))?;
    Ok(())
}

/// Whether a test that runs [`axe`] can: true when `axe.min.js` is there or
/// could be fetched; otherwise a printed skip (false), or a panic under
/// `NUVOL_REQUIRE_SYSTEM=1`.
pub fn require_axe(test: &str) -> bool {
    match axe_js() {
        Ok(_) => true,
        Err(reason) => skip_or_fail(test, &reason),
    }
}

const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
const sel = (t) => Array.isArray(t) ? t.map(sel).join(" >>> ") : String(t);
window.axe.run(document, { runOnly: arguments[0], resultTypes: ["violations"] }).then(
  (r) => done({ violations: r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({ target: sel(n.target), html: n.html })),
  })) }),
  (e) => done({ error: String(e && e.stack || e) }),
);
"#;

/// Run axe-core on the current page with [`AXE_TAGS`]: the violations
/// (empty when the page passes). An error when axe cannot be had (check
/// [`require_axe`] first) or does not run.
pub async fn axe(b: &Browser) -> Result<Violations> {
    let path = tokio::task::spawn_blocking(axe_js)
        .await
        .context("resolving axe-core")?
        .map_err(|reason| anyhow!(reason))?;
    let loaded = b.js("typeof window.axe === 'object'").await?;
    if loaded != Value::Bool(true) {
        let src = tokio::fs::read_to_string(&path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        b.client
            .execute(&format!("{src}\n;return typeof window.axe;"), vec![])
            .await
            .with_context(|| format!("injecting {}", path.display()))?;
    }
    let r = b
        .client
        .execute_async(AXE_RUN, vec![json!(AXE_TAGS)])
        .await
        .context("running axe")?;
    if let Some(e) = r.get("error") {
        bail!("axe.run failed: {}", e.as_str().unwrap_or_default());
    }
    let v = r
        .get("violations")
        .cloned()
        .ok_or_else(|| anyhow!("axe.run returned no violations list: {r}"))?;
    Ok(Violations(
        serde_json::from_value(v).context("reading axe's violations")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_programs_are_reasons() {
        let empty = tempfile::tempdir().unwrap();
        let path = Some(empty.path().as_os_str().to_owned());
        let e = find_programs(None, None, path.clone()).unwrap_err();
        assert!(e.contains("`chromedriver` not found"), "{e}");
        let e = find_programs(Some("/nonexistent/cd".into()), None, path).unwrap_err();
        assert!(e.contains("NUVOL_CHROMEDRIVER=/nonexistent/cd"), "{e}");
    }

    #[test]
    fn violations_display() {
        let v = Violations(vec![Violation {
            id: "image-alt".into(),
            impact: Some("critical".into()),
            help: "Images must have alternative text".into(),
            help_url: "https://example.invalid/image-alt".into(),
            nodes: vec![ViolationNode {
                target: "img.logo".into(),
                html: "<img class=\"logo\">".into(),
            }],
        }]);
        let s = v.to_string();
        assert!(s.starts_with("1 accessibility violation(s):"), "{s}");
        assert!(s.contains("[critical] image-alt: Images must"), "{s}");
        assert!(s.contains("img.logo  <img class=\"logo\">"), "{s}");
        assert_eq!(
            Violations::default().to_string(),
            "no accessibility violations"
        );
    }

    #[test]
    fn artefact_names_are_safe() {
        assert!(artefact_dir("a/b c").ends_with("test-artefacts/a_b_c"));
    }
}
