//! A headless Chromium for tests of web pages: navigate, click, fill and submit forms, read
//! text, wait for an element or a text, take PNG screenshots, and collect every console
//! error, Content-Security-Policy violation and uncaught JavaScript exception the page
//! produced.
//!
//! ```no_run
//! # async fn demo() -> Result<(), curlyq_testkit::browser::BrowserError> {
//! use std::time::Duration;
//! use curlyq_testkit::browser::Browser;
//!
//! // `None` (and a line on stderr) when Chromium is missing and `CI` is not set.
//! let Some(browser) = Browser::launch_or_skip().await else { return Ok(()) };
//! browser.goto("http://127.0.0.1:8080/queues").await?;
//! browser.fill("#name", "emails").await?;
//! browser.click("button[type=submit]").await?;
//! browser.wait_for_text("emails", Duration::from_secs(5)).await?;
//! assert_eq!(browser.console_errors().await?, Vec::<String>::new());
//! browser.screenshot("target/queues.png").await?;
//! # Ok(()) }
//! ```
//!
//! # How it runs
//!
//! [`Browser::launch`] starts a `chromedriver` of its own on a free loopback port, and
//! through it one Chromium window: headless, `--no-sandbox` (tests here run as root),
//! `--disable-gpu`, with a fresh profile (`--user-data-dir`) and crash-report folder in a
//! temporary directory, so that no two runs share cookies, storage or cache. The page's
//! viewport is [`DEFAULT_VIEWPORT`] (1280×900 CSS pixels, scale 1) until
//! [`Browser::set_viewport`] changes it; a screenshot is exactly the viewport's size.
//!
//! The programs are found through `CURLYQ_CHROMIUM` and `CURLYQ_CHROMEDRIVER` when set
//! (a path), else at `/usr/bin/chromium` and `/usr/bin/chromedriver`, else on the `PATH`.
//! Debian's packages are `chromium` and `chromium-driver`; the two must be of the same
//! version.
//!
//! chromedriver runs in a process group of its own, and Chromium's processes join it.
//! Dropping the [`Browser`] kills that whole group (SIGKILL), then, on Linux, any other
//! process still naming the temporary directory (Chromium's crash handler leaves the
//! group), waits (bounded) until they are gone, and removes the directory: no process
//! outlives the test, even one that panicked. [`Browser::close`] ends the session politely
//! first. It needs a tokio runtime (any flavour) and runs on Unix only.
//!
//! # Console errors
//!
//! [`Browser::console_errors`] returns the entries of level `SEVERE` that Chromium logged
//! **since the last [`goto`](Browser::goto)** (or since launch, before the first one):
//! `console.error` calls, uncaught exceptions and unhandled promise rejections, CSP
//! violations ("Executing inline script violates the following Content Security Policy
//! directive …"), and resources that failed to load (a 404 for a script, a stylesheet or
//! the favicon). A navigation that a click or a form submit causes does *not* clear them,
//! so a test that clicks through several pages sees the errors of all of them.
//! Chromium logs from the moment the page starts loading, so errors of inline and
//! deferred scripts and of the CSP check of the first response are all there. An error
//! that a timer raises later is there only once it has happened: wait for its effect
//! first ([`wait_for`](Browser::wait_for), [`wait_for_text`](Browser::wait_for_text)).
//! [`Browser::console_messages`] has every level (warnings, `console.log`) with its source.
//!
//! # When Chromium is not installed
//!
//! [`Browser::launch`] fails with [`BrowserError::NotInstalled`], whose message says what
//! to install. Tests should start with [`Browser::launch_or_skip`], which applies the
//! project's policy: where the environment variable `CI` is set (to anything), a missing
//! browser fails the test with that message, since CI must run every test; elsewhere the
//! test prints `skipped: chromium not installed (…)` to stderr and returns early, so
//! `cargo test` passes on a machine without Chromium. Any other launch failure fails the
//! test in both cases.

use std::error::Error as StdError;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::wd::{Capabilities, TimeoutConfiguration, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The environment variable that names the Chromium binary to run.
pub const CHROMIUM_ENV: &str = "CURLYQ_CHROMIUM";

/// The environment variable that names the chromedriver binary to run.
pub const CHROMEDRIVER_ENV: &str = "CURLYQ_CHROMEDRIVER";

/// The viewport a new [`Browser`] has, in CSS pixels: (width, height).
pub const DEFAULT_VIEWPORT: (u32, u32) = (1280, 900);

/// How long one browser command (a navigation, a click, a screenshot, …) may take before
/// it fails with [`BrowserError::Timeout`].
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Browser::launch`] waits for chromedriver to listen and for Chromium to open.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the `wait_for*` methods look at the page again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long dropping a [`Browser`] waits for its killed processes to disappear.
#[cfg(target_os = "linux")]
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

type BoxError = Box<dyn StdError + Send + Sync>;

/// What went wrong in a [`Browser`]. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// Chromium or chromedriver was not found.
    #[error(
        "{program} is not installed (looked at {looked}): install it with \
         `apt-get install chromium chromium-driver`, or set {env} to its path"
    )]
    NotInstalled {
        /// `chromium` or `chromedriver`.
        program: &'static str,
        /// The environment variable that overrides where it is looked for.
        env: &'static str,
        /// Where it was looked for.
        looked: String,
    },
    /// chromedriver or Chromium did not start.
    #[error(
        "could not start the browser: {reason}; check that `chromium --version` and \
         `chromedriver --version` print the same version. chromedriver's output:\n{log}"
    )]
    Launch {
        /// What failed.
        reason: String,
        /// The last lines chromedriver (and Chromium, through it) printed.
        log: String,
    },
    /// No element matched a CSS selector.
    #[error(
        "no element matches the CSS selector `{selector}` on {url}: check the selector, \
         or `wait_for` it first if the page adds it later"
    )]
    NoSuchElement {
        /// The selector.
        selector: String,
        /// The page's URL at the time.
        url: String,
    },
    /// A wait or a command did not finish in time.
    #[error(
        "timed out after {after:?} waiting for {what} on {url}: look at the page with \
         `html()` or `screenshot()`, or give it longer{detail}"
    )]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
        /// The page's URL at the time (empty if the browser did not answer).
        url: String,
        /// The last error seen while waiting, if any (starts with "; ").
        detail: String,
    },
    /// The browser refused or failed a command.
    #[error("the browser could not {action}: {source}")]
    Command {
        /// The command, in words ("click `#go`").
        action: String,
        /// The WebDriver error.
        #[source]
        source: BoxError,
    },
    /// A file could not be written or the temporary directory created.
    #[error("could not write {path}: {source}; check that its folder exists and is writable")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl BrowserError {
    /// Whether this is [`BrowserError::NotInstalled`].
    pub fn is_not_installed(&self) -> bool {
        matches!(self, BrowserError::NotInstalled { .. })
    }
}

/// One entry of the browser's console log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsoleMessage {
    /// `SEVERE`, `WARNING`, `INFO` or `DEBUG`.
    pub level: String,
    /// Where it came from: `console-api` (a `console.*` call), `javascript` (an uncaught
    /// exception), `security` (a CSP violation), `network` (a failed load), ….
    pub source: String,
    /// The text, usually starting with the URL and line of its origin.
    pub text: String,
}

/// One headless Chromium window, driven through a chromedriver of its own. See the
/// [module docs](self) for how it runs and what it collects.
pub struct Browser {
    /// `None` only while launching and after [`close`](Browser::close).
    client: Option<Client>,
    driver: Child,
    /// Holds the profile, the crash reports and chromedriver's log; removed on drop.
    dir: tempfile::TempDir,
    /// The console entries read from chromedriver since the last `goto`.
    console: Mutex<Vec<ConsoleMessage>>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("chromedriver_pid", &self.driver.id())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, with the page
    /// at `about:blank` and a [`DEFAULT_VIEWPORT`] viewport.
    ///
    /// Fails with [`BrowserError::NotInstalled`] when either program is missing, and with
    /// [`BrowserError::Launch`] (with chromedriver's output) when they do not start within
    /// 60 s.
    pub async fn launch() -> Result<Browser, BrowserError> {
        let chromium = find_program("chromium", CHROMIUM_ENV)?;
        let chromedriver = find_program("chromedriver", CHROMEDRIVER_ENV)?;
        let dir = tempfile::Builder::new()
            .prefix("curlyq-browser-")
            .tempdir()
            .map_err(|source| BrowserError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let mut port = free_port(&dir)?;
        // From here on, dropping `browser` (on any error below) stops the processes.
        let mut browser = Browser {
            client: None,
            driver: spawn_driver(&chromedriver, port, dir.path())?,
            dir,
            console: Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        // Another process may take the free port before chromedriver binds it: try again.
        let mut attempts = 1;
        loop {
            match browser.wait_listening(port, deadline).await {
                Ok(()) => break,
                Err(_) if attempts < 3 && browser.driver.try_wait().is_ok_and(|s| s.is_some()) => {
                    attempts += 1;
                    port = free_port(&browser.dir)?;
                    browser.driver = spawn_driver(&chromedriver, port, browser.dir.path())?;
                }
                Err(e) => return Err(e),
            }
        }

        let profile = browser.dir.path().join("profile");
        let (width, height) = DEFAULT_VIEWPORT;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless=new",
                    // Chromium's sandbox cannot start as root.
                    "--no-sandbox",
                    "--disable-gpu",
                    // Containers often have a tiny /dev/shm.
                    "--disable-dev-shm-usage",
                    // No update checks, sync or field trials: nothing to reach but the test.
                    "--disable-background-networking",
                    "--no-first-run",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ],
            },
            // Every console entry, kept by chromedriver until `se/log` reads it.
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let caps: Capabilities = match caps {
            Value::Object(map) => map,
            _ => unreachable!("the capabilities are a JSON object"),
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}/");
        let connect = builder.connect(&url);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let client = match tokio::time::timeout(remaining, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(browser.launch_failed(format!("Chromium did not open: {e}")));
            }
            Err(_) => {
                return Err(browser
                    .launch_failed(format!("Chromium did not open within {LAUNCH_TIMEOUT:?}")));
            }
        };
        browser.client = Some(client);
        let timeouts = TimeoutConfiguration::new(
            Some(COMMAND_TIMEOUT),
            Some(COMMAND_TIMEOUT),
            Some(Duration::ZERO),
        );
        browser
            .run(
                "set the timeouts",
                browser.client().update_timeouts(timeouts),
            )
            .await?;
        browser.set_viewport(width, height).await?;
        Ok(browser)
    }

    /// [`launch`](Browser::launch) under the project's policy for a missing browser (see
    /// the [module docs](self#when-chromium-is-not-installed)): `None`, after printing
    /// `skipped: chromium not installed (…)` to stderr, when Chromium or chromedriver is
    /// missing and `CI` is not set. Begin a test with
    /// `let Some(browser) = Browser::launch_or_skip().await else { return };`.
    ///
    /// # Panics
    ///
    /// With the error's message when the browser is missing and `CI` is set, and when it
    /// is installed but does not start.
    pub async fn launch_or_skip() -> Option<Browser> {
        match Browser::launch().await {
            Ok(browser) => Some(browser),
            Err(e) if e.is_not_installed() && std::env::var_os("CI").is_none() => {
                eprintln!("skipped: chromium not installed ({e})");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Opens `url` and waits for its `load` event (at most [`COMMAND_TIMEOUT`]). Clears
    /// the console entries collected so far: [`console_errors`](Browser::console_errors)
    /// then reports this page's.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.read_log().await?;
        self.lock_console().clear();
        self.run(format!("open {url}"), self.client().goto(url))
            .await
    }

    /// The URL of the page now shown.
    pub async fn current_url(&self) -> Result<String, BrowserError> {
        let url = self
            .run("read the current URL", self.client().current_url())
            .await?;
        Ok(url.to_string())
    }

    /// Clicks the first element that matches the CSS selector `css` (as a user would: it
    /// must be visible and not covered).
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        let element = self.find(css).await?;
        self.run(format!("click `{css}`"), element.click()).await
    }

    /// Empties the input (or textarea) that matches `css`, then types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<(), BrowserError> {
        let element = self.find(css).await?;
        self.run(format!("clear `{css}`"), element.clear()).await?;
        self.run(format!("type into `{css}`"), element.send_keys(text))
            .await
    }

    /// Submits the form that matches `css` as its submit button would (the browser runs
    /// its validation and `submit` handlers first). Clicking the button with
    /// [`click`](Browser::click) is the closer imitation of a user.
    pub async fn submit(&self, css: &str) -> Result<(), BrowserError> {
        let script = "const form = document.querySelector(arguments[0]); \
                      if (!form) { return false; } form.requestSubmit(); return true;";
        let found = self
            .run(
                format!("submit `{css}`"),
                self.client().execute(script, vec![json!(css)]),
            )
            .await?;
        if found == Value::Bool(true) {
            Ok(())
        } else {
            Err(self.no_such_element(css).await)
        }
    }

    /// The visible text of the first element that matches `css` (as rendered: hidden
    /// parts left out, white space collapsed).
    pub async fn text(&self, css: &str) -> Result<String, BrowserError> {
        let element = self.find(css).await?;
        self.run(format!("read the text of `{css}`"), element.text())
            .await
    }

    /// The page's HTML as it is now (the DOM serialised, scripts' changes included).
    pub async fn html(&self) -> Result<String, BrowserError> {
        self.run("read the page's HTML", self.client().source())
            .await
    }

    /// Runs JavaScript in the page (as the body of a function: `return` a value) and
    /// returns its result as JSON.
    pub async fn execute(&self, script: &str) -> Result<Value, BrowserError> {
        self.run("run a script", self.client().execute(script, Vec::new()))
            .await
    }

    /// Waits until an element matches `css`, at most `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<(), BrowserError> {
        let wait = self
            .client()
            .wait()
            .at_most(timeout)
            .every(POLL_INTERVAL)
            .for_element(Locator::Css(css));
        match tokio::time::timeout(timeout + COMMAND_TIMEOUT, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(CmdError::WaitTimeout)) | Err(_) => {
                Err(self.timeout(format!("`{css}`"), timeout, "").await)
            }
            Ok(Err(e)) => Err(command_error(format!("look for `{css}`"), e)),
        }
    }

    /// Waits until the page's visible text (`document.body.innerText`) contains `text`,
    /// at most `timeout`. A navigation under way (after a click on a link or a submit
    /// button) is waited through.
    pub async fn wait_for_text(&self, text: &str, timeout: Duration) -> Result<(), BrowserError> {
        let script =
            "return document.body !== null && document.body.innerText.includes(arguments[0]);";
        let deadline = Instant::now() + timeout;
        let mut last_error = String::new();
        loop {
            let check = self.client().execute(script, vec![json!(text)]);
            match tokio::time::timeout(COMMAND_TIMEOUT, check).await {
                Ok(Ok(Value::Bool(true))) => return Ok(()),
                Ok(Ok(_)) => {}
                // While a new page loads, the old one's scripts are gone: try again.
                Ok(Err(e)) => last_error = format!("; last error: {e}"),
                Err(_) => last_error = "; the browser stopped answering".to_owned(),
            }
            if Instant::now() >= deadline {
                return Err(self
                    .timeout(format!("the text {text:?}"), timeout, &last_error)
                    .await);
            }
            // Polling the browser, an outside process, until a bounded deadline.
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The console errors (level `SEVERE`) since the last [`goto`](Browser::goto), or
    /// since launch: `console.error`, uncaught exceptions, CSP violations, failed loads.
    /// Each is `"[source] text"`, such as `"[security] http://127.0.0.1:4000/ 0 Executing
    /// inline script violates the following Content Security Policy directive …"`.
    pub async fn console_errors(&self) -> Result<Vec<String>, BrowserError> {
        Ok(self
            .console_messages()
            .await?
            .into_iter()
            .filter(|m| m.level == "SEVERE")
            .map(|m| format!("[{}] {}", m.source, m.text))
            .collect())
    }

    /// Every console entry (all levels) since the last [`goto`](Browser::goto), or since
    /// launch.
    pub async fn console_messages(&self) -> Result<Vec<ConsoleMessage>, BrowserError> {
        self.read_log().await?;
        Ok(self.lock_console().clone())
    }

    /// Sets the page's viewport to `width`×`height` CSS pixels at a device scale of 1, so
    /// that a [`screenshot`](Browser::screenshot) is exactly that many pixels. Stays across
    /// navigations.
    pub async fn set_viewport(&self, width: u32, height: u32) -> Result<(), BrowserError> {
        let params = json!({
            "width": width,
            "height": height,
            "deviceScaleFactor": 1,
            "mobile": false,
        });
        self.devtools("Emulation.setDeviceMetricsOverride", params)
            .await
            .map(drop)
    }

    /// Writes a PNG of the viewport (see [`set_viewport`](Browser::set_viewport)) to
    /// `path`, replacing any file there.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<(), BrowserError> {
        let png = self
            .run("take a screenshot", self.client().screenshot())
            .await?;
        let path = path.as_ref();
        std::fs::write(path, png).map_err(|source| BrowserError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The temporary directory that holds this browser's profile (removed on drop). Every
    /// Chromium process of this browser has it on its command line.
    pub fn profile_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process ID of chromedriver, which is also the ID of the process group that
    /// Chromium's processes are in.
    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }

    /// Ends the WebDriver session, which closes Chromium, then stops whatever is left as
    /// dropping does. Dropping without `close` is fine too; this is only the gentler way.
    pub async fn close(mut self) -> Result<(), BrowserError> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let ended = tokio::time::timeout(COMMAND_TIMEOUT, client.close()).await;
        drop(self);
        match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(command_error("end the session", e)),
            Err(_) => Err(BrowserError::Command {
                action: "end the session".to_owned(),
                source: format!(
                    "no answer within {COMMAND_TIMEOUT:?} (its processes were killed all the same)"
                )
                .into(),
            }),
        }
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the browser is open between launch and close")
    }

    fn lock_console(&self) -> std::sync::MutexGuard<'_, Vec<ConsoleMessage>> {
        // A panic elsewhere while the lock was held leaves a plain Vec behind: keep it.
        self.console.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one WebDriver command, at most [`COMMAND_TIMEOUT`].
    async fn run<T>(
        &self,
        action: impl Into<String>,
        command: impl std::future::Future<Output = Result<T, CmdError>>,
    ) -> Result<T, BrowserError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(command_error(action, e)),
            Err(_) => Err(self.timeout(action.into(), COMMAND_TIMEOUT, "").await),
        }
    }

    async fn find(&self, css: &str) -> Result<fantoccini::elements::Element, BrowserError> {
        let lookup = self.client().find(Locator::Css(css));
        match tokio::time::timeout(COMMAND_TIMEOUT, lookup).await {
            Ok(Ok(element)) => Ok(element),
            Ok(Err(e)) if e.is_no_such_element() => Err(self.no_such_element(css).await),
            Ok(Err(e)) => Err(command_error(format!("look for `{css}`"), e)),
            Err(_) => Err(self.timeout(format!("`{css}`"), COMMAND_TIMEOUT, "").await),
        }
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver.
    async fn devtools(&self, method: &str, params: Value) -> Result<Value, BrowserError> {
        let command = ChromeCommand {
            path: "goog/cdp/execute",
            body: json!({ "cmd": method, "params": params }),
        };
        self.run(format!("run {method}"), self.client().issue_cmd(command))
            .await
    }

    /// Moves the entries chromedriver has gathered since the last read into `console`.
    async fn read_log(&self) -> Result<(), BrowserError> {
        let command = ChromeCommand {
            path: "se/log",
            body: json!({ "type": "browser" }),
        };
        let entries = self
            .run("read the console log", self.client().issue_cmd(command))
            .await?;
        let field = |entry: &Value, name: &str| entry[name].as_str().unwrap_or("").to_owned();
        let messages = entries
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| ConsoleMessage {
                level: field(entry, "level"),
                source: field(entry, "source"),
                text: field(entry, "message"),
            });
        self.lock_console().extend(messages);
        Ok(())
    }

    /// The current URL for an error message, or a placeholder if the browser does not say.
    async fn url_for_error(&self) -> String {
        let url = self.client().current_url();
        match tokio::time::timeout(Duration::from_secs(2), url).await {
            Ok(Ok(url)) => url.to_string(),
            _ => "(the page, whose URL the browser did not give)".to_owned(),
        }
    }

    async fn no_such_element(&self, css: &str) -> BrowserError {
        BrowserError::NoSuchElement {
            selector: css.to_owned(),
            url: self.url_for_error().await,
        }
    }

    async fn timeout(&self, what: String, after: Duration, detail: &str) -> BrowserError {
        BrowserError::Timeout {
            what,
            after,
            url: self.url_for_error().await,
            detail: detail.to_owned(),
        }
    }

    /// Waits until chromedriver accepts connections on `port`.
    async fn wait_listening(&mut self, port: u16, deadline: Instant) -> Result<(), BrowserError> {
        loop {
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(self.launch_failed(format!(
                    "chromedriver exited at start ({status}); port {port} may be taken"
                )));
            }
            if Instant::now() >= deadline {
                return Err(self.launch_failed(format!(
                    "chromedriver did not listen on port {port} within {LAUNCH_TIMEOUT:?}"
                )));
            }
            // Waiting for an outside process to come up, until a bounded deadline.
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn launch_failed(&self, reason: String) -> BrowserError {
        launch_error(reason, &driver_log(self.dir.path()))
    }

    /// Kills chromedriver's process group and any process left that names our directory,
    /// and waits (bounded) until they are dead.
    fn stop_processes(&mut self) {
        use rustix::process::{kill_process_group, Pid, Signal};
        let group = Pid::from_child(&self.driver);
        let _ = kill_process_group(group, Signal::KILL);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        #[cfg(target_os = "linux")]
        {
            let deadline = Instant::now() + EXIT_TIMEOUT;
            loop {
                let left = leftovers(self.dir.path(), group.as_raw_pid());
                if left.is_empty() || Instant::now() >= deadline {
                    break;
                }
                for pid in left {
                    if let Some(pid) = Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, Signal::KILL);
                    }
                }
                // Waiting for killed outside processes to be reaped, until a bounded deadline.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The client's background task would try to end the session: let it go first.
        drop(self.client.take());
        self.stop_processes();
    }
}

/// The live processes (Linux's `/proc`) that are in process group `group` or whose command
/// line contains `dir`. Zombies and processes on their way out (states `Z`, `X`) are dead
/// already and left out; a process being killed can lose its command line before it
/// gets there, hence the group test as well.
#[cfg(target_os = "linux")]
fn leftovers(dir: &Path, group: i32) -> Vec<i32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let alive_and_ours = |pid: i32| {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp …`, where comm may hold spaces and parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        if matches!(fields.first(), None | Some(&"Z") | Some(&"X")) {
            return false;
        }
        fields.get(2).and_then(|pgrp| pgrp.parse::<i32>().ok()) == Some(group)
            || std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| alive_and_ours(pid))
        .collect()
}

/// A chromedriver extension command: POST `body` to `/session/{id}/{path}`.
#[derive(Debug)]
struct ChromeCommand {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for ChromeCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/{}", self.path))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

fn command_error(action: impl Into<String>, error: CmdError) -> BrowserError {
    BrowserError::Command {
        action: action.into(),
        source: Box::new(error),
    }
}

fn launch_error(reason: String, log: &str) -> BrowserError {
    const KEEP: usize = 20;
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(KEEP)..].join("\n");
    BrowserError::Launch {
        reason,
        log: if tail.is_empty() {
            "(nothing)".to_owned()
        } else {
            tail
        },
    }
}

/// Finds `program`: the path in the environment variable `env` if set, else
/// `/usr/bin/{program}`, else the first `program` on the `PATH`.
fn find_program(program: &'static str, env: &'static str) -> Result<PathBuf, BrowserError> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(BrowserError::NotInstalled {
                program,
                env,
                looked: format!("{env}={}, which is not a file", path.display()),
            })
        };
    }
    let default = Path::new("/usr/bin").join(program);
    if default.is_file() {
        return Ok(default);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file());
    on_path.ok_or_else(|| BrowserError::NotInstalled {
        program,
        env,
        looked: format!("{env} (not set), {} and the PATH", default.display()),
    })
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port(dir: &tempfile::TempDir) -> Result<u16, BrowserError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| {
            let reason = format!("found no free port on 127.0.0.1: {e}");
            launch_error(reason, &driver_log(dir.path()))
        })
}

/// Starts chromedriver on `port` in a process group of its own, its output going to
/// `dir/chromedriver.log` (emptied first).
fn spawn_driver(chromedriver: &Path, port: u16, dir: &Path) -> Result<Child, BrowserError> {
    use std::os::unix::process::CommandExt;
    let log_path = dir.join("chromedriver.log");
    let io_error = |source| BrowserError::Io {
        path: log_path.clone(),
        source,
    };
    let log = File::create(&log_path).map_err(io_error)?;
    Command::new(chromedriver)
        .arg(format!("--port={port}"))
        // Its own group, which Chromium's processes join: one kill stops them all.
        .process_group(0)
        // Chromium's crash handler keeps its database under XDG_CONFIG_HOME: keep it in
        // the throwaway directory too, away from the user's own.
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_error)?)
        .stderr(log)
        .spawn()
        .map_err(|e| {
            let reason = format!("could not run {}: {e}", chromedriver.display());
            launch_error(reason, "")
        })
}

/// What chromedriver (and Chromium, through it) printed so far.
fn driver_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program that is nowhere gives `NotInstalled`, whose message says what to install.
    #[test]
    fn a_missing_program_is_not_installed() {
        // An environment variable no one sets, so that the look-up goes on to the PATH.
        let env = "CURLYQ_TESTKIT_UNSET_PROGRAM_PATH";
        let error = find_program("curlyq-no-such-program", env).unwrap_err();
        assert!(error.is_not_installed());
        let message = error.to_string();
        assert!(
            message.contains("apt-get install chromium chromium-driver"),
            "{message}"
        );
        assert!(message.contains(env), "{message}");
        assert!(
            message.contains("/usr/bin/curlyq-no-such-program"),
            "{message}"
        );
    }
}
