//! `curfew ui` in a real browser: headless Chromium driven through chromedriver (WebDriver)
//! against the console on the emulator with a seeded fleet. Each test saves a 1280x800
//! screenshot of its page to `target/ui-screens/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use curfew_aws::local::{demo_fleet, FleetTarget};
use curfew_core::schedule::Schedule;
use curfew_core::target::{Sizes, TargetKind};
use curfew_tests::{is_dev, key, spawn_hub, TestHub};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::root;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A process this test started, stopped by its pid when the test ends (passing or not),
/// together with the processes it started (chromedriver's Chromium).
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        if let Ok(out) = Command::new("pgrep").args(["-P", &pid]).output() {
            for child in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").arg(child).status();
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// The console on `hub`, as `curfew ui` serves it after `eval "$(curfew local up)"`.
struct Console {
    _process: Started,
    base: String,
    token: String,
}

fn console(th: &TestHub) -> Console {
    console_with(th, &[])
}

/// `curfew` with no AWS or curfew variable of the environment the tests run in.
fn curfew() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("curfew"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("AWS_") || name.starts_with("CURFEW_") {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// The console as `curfew ui ARGS...` serves it.
fn console_with(th: &TestHub, args: &[&str]) -> Console {
    let endpoint = th.sdk.endpoint_url().expect("an emulator endpoint");
    let mut cmd = curfew();
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/curfew-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/curfew-test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("CURFEW_TABLE", &th.config.table)
        .env("CURFEW_ROUTER_QUEUE_URL", &th.config.router_queue_url)
        .env("CURFEW_TASK_QUEUE_URL", &th.config.task_queue_url)
        .arg("ui")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("curfew ui starts");
    let stdout = child.stdout.take().expect("its stdout");
    let process = Started(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("curfew ui prints its URL");
    let url = line.trim();
    let (base, token) = url
        .split_once("/?token=")
        .unwrap_or_else(|| panic!("not a console URL: {url:?}"));
    assert!(base.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(token.len(), 32, "{url}");
    Console {
        _process: process,
        base: base.to_string(),
        token: token.to_string(),
    }
}

/// Headless Chromium through a chromedriver of its own.
struct Browser {
    client: Client,
    _driver: Started,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn browser() -> Browser {
    for binary in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: run scripts/browser.sh (make test does)"
        );
    }
    let port = free_port();
    let driver = Started(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = TempDir(
        std::env::temp_dir().join(format!("curfew-chromium-{}", uuid::Uuid::now_v7().simple())),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,800",
                format!("--user-data-dir={}", profile.0.display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    // The screenshots are of a 1280x800 viewport: the window is that plus whatever the
    // browser keeps for itself.
    let chrome = client
        .execute("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];", vec![])
        .await
        .expect("the window's measurements");
    let extra = |i: usize| chrome[i].as_u64().unwrap_or(0) as u32;
    client
        .set_window_size(1280 + extra(0), 800 + extra(1))
        .await
        .expect("a 1280x800 viewport");
    Browser {
        client,
        _driver: driver,
        _profile: profile,
    }
}

impl Browser {
    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector} on the page: {e}"))
    }

    /// The text of the element at `selector`, read again if the page changed under it (a
    /// live page reloads itself).
    async fn text(&self, selector: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.css(selector).await.text().await {
                Ok(text) => return text,
                Err(e) => assert!(Instant::now() < deadline, "reading {selector}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to 30 s) until the element at `selector` reads `expected`: after a click, the
    /// old page may still be showing.
    async fn wait_for_text(&self, selector: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.text(selector).await;
            if text == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{selector} reads {text:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves the page as `target/ui-screens/NAME.png` (1280x800).
    async fn screenshot(&self, name: &str) {
        let dir = root().join("target/ui-screens");
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot is saved");
    }

    /// Opens the console's page at `path`.
    async fn open(&self, console: &Console, path: &str) {
        self.client
            .goto(&format!("{}{path}", console.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    /// How many elements match `selector` now.
    async fn count(&self, selector: &str) -> usize {
        self.client
            .find_all(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("finding {selector}: {e}"))
            .len()
    }

    /// Asks the stop/start page for the plan of a stop of `selector`.
    async fn ask_for_a_stop(&self, console: &Console, selector: &str) {
        self.client
            .goto(&format!("{}/run", console.base))
            .await
            .expect("the stop/start page opens");
        self.css("#select").await.send_keys(selector).await.unwrap();
        self.css("#show-plan").await.click().await.unwrap();
    }

    async fn close(self) {
        self.client.close().await.expect("the session closes");
    }
}

/// A hub with one account in eu-west-1 holding 4 ASGs and a dev and a prod cluster with one
/// node group each (half of it env=dev), and that fleet.
async fn seeded() -> (TestHub, Vec<FleetTarget>) {
    let th = spawn_hub(Utc::now(), 1).await;
    th.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&th.accounts, &["eu-west-1".to_string()], 4, 1);
    th.seed(&fleet).await;
    (th, fleet)
}

/// Opens the console's URL with the token, as the operator does (which sets the cookie).
async fn signed_in(console: &Console) -> Browser {
    let b = browser().await;
    b.client
        .goto(&format!("{}/?token={}", console.base, console.token))
        .await
        .expect("the console opens");
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_page_lists_the_seeded_targets_with_their_real_sizes() {
    let (th, fleet) = seeded().await;
    nightly(&th).await;
    let console = console(&th);
    let b = signed_in(&console).await;
    b.css("table#fleet").await;
    assert_eq!(b.count("table#fleet tbody tr").await, fleet.len());
    for t in &fleet {
        let row = format!("tr[data-key=\"{}\"]", key(t));
        let real = th.sizes(t).await;
        assert_eq!(
            b.text(&format!("{row} td.sizes")).await,
            real.to_string(),
            "{}",
            t.name
        );
        assert_eq!(b.text(&format!("{row} td.state")).await, "awake");
        // The schedules covering it, by name: only the dev targets have them.
        let (stop, start) = (
            b.text(&format!("{row} td.next-stop")).await,
            b.text(&format!("{row} td.next-start")).await,
        );
        if is_dev(t) {
            assert!(stop.ends_with("nightly-stop"), "{stop}");
            assert!(start.ends_with("nightly-start"), "{start}");
        } else {
            assert_eq!((stop.as_str(), start.as_str()), ("–", "–"));
        }
    }
    assert_eq!(b.text("#total-targets").await, fleet.len().to_string());
    assert_eq!(b.text("#total-asleep").await, "0");
    b.screenshot("fleet").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_from_the_page_shows_the_plan_then_puts_the_targets_asleep() {
    let (th, fleet) = seeded().await;
    nightly(&th).await;
    let before = th.fleet_sizes(&fleet).await;
    let console = console(&th);
    let b = signed_in(&console).await;
    b.ask_for_a_stop(&console, "tag:env=dev").await;
    b.css("table#plan").await;
    let dev: Vec<&FleetTarget> = fleet.iter().filter(|t| is_dev(t)).collect();
    assert_eq!(b.count("table#plan tbody tr").await, dev.len());
    assert!(
        b.text("#plan-summary")
            .await
            .starts_with(&format!("{} of {}", dev.len(), dev.len())),
        "{}",
        b.text("#plan-summary").await
    );
    // Nothing has changed yet: the plan writes nothing.
    assert_eq!(th.fleet_sizes(&fleet).await, before);
    b.screenshot("plan").await;
    b.css("#confirm").await.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // The page follows the operation over Server-Sent Events and reloads once it ends.
        let status = b.text("#op-status").await;
        if status == "SUCCEEDED" {
            break;
        }
        assert!(!status.contains("FAIL"), "the operation ended {status}");
        assert!(Instant::now() < deadline, "still {status} after 90 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let page = b.client.current_url().await.unwrap();
    assert!(page.path().starts_with("/operations/"), "{page}");
    // Read the finished operation's page afresh (the live one reloads itself as it ends).
    b.client.goto(page.as_str()).await.unwrap();
    assert_eq!(b.text("#op-status").await, "SUCCEEDED");
    assert_eq!(b.count("table#tasks tbody tr").await, dev.len());
    b.screenshot("operation").await;
    for t in &fleet {
        let now = th.sizes(t).await;
        let was = before[&key(t)];
        let expected = match (is_dev(t), t.kind) {
            (false, _) => was,
            (true, TargetKind::Asg) => Sizes::new(0, 0, 0),
            (true, TargetKind::Nodegroup) => Sizes::new(0, was.max, 0),
        };
        assert_eq!(now, expected, "{}", t.name);
    }
    // The fleet page now shows them asleep, with the baselines a start restores.
    b.open(&console, "/").await;
    assert_eq!(b.text("#total-asleep").await, dev.len().to_string());
    for t in &dev {
        let row = format!("tr[data-key=\"{}\"]", key(t));
        assert_eq!(b.text(&format!("{row} td.state")).await, "asleep");
        assert_eq!(
            b.text(&format!("{row} td.baseline")).await,
            before[&key(t)].to_string()
        );
    }
    b.screenshot("fleet-after-stop").await;
    // Savings count the manual stop's capacity from the moment it slept.
    b.open(&console, "/savings").await;
    assert_eq!(b.text("table#per-schedule tbody tr td").await, "manual");
    b.css("svg#savings-chart").await;
    assert!(
        b.text("#money-note").await.starts_with("No money shown"),
        "without --prices the page says why there is no money"
    );
    b.screenshot("savings").await;
    b.close().await;
}

fn schedule(name: &str, cron: &str, action: &str) -> Schedule {
    let mut s: Schedule = serde_json::from_value(json!({
        "name": name, "cron": cron, "tz": "Asia/Kolkata", "action": action,
        "selector": "tag:env=dev", "enabled": true,
    }))
    .expect("a valid schedule");
    s.next_fire = s
        .next_fire_after(Utc::now(), &curfew_core::calendar::Calendars::none())
        .map(|f| f.time.utc);
    s
}

/// Every night from 19:00 to 07:00 in Kolkata (UTC+05:30, no DST: every day alike), for the
/// dev targets.
async fn nightly(th: &TestHub) {
    for s in [
        schedule("nightly-stop", "0 19 * * *", "stop"),
        schedule("nightly-start", "0 7 * * *", "start"),
    ] {
        th.hub.store.create_schedule(&s).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedules_week_grid_shows_its_asleep_hours() {
    let (th, _fleet) = seeded().await;
    nightly(&th).await;
    let console = console(&th);
    let b = signed_in(&console).await;
    b.open(&console, "/schedules/nightly-stop").await;
    let days = b
        .client
        .find_all(Locator::Css("table#week tbody tr"))
        .await
        .unwrap();
    assert_eq!(days.len(), 7);
    for day in &days {
        let cells = day.find_all(Locator::Css("td")).await.unwrap();
        assert_eq!(cells.len(), 24);
        for (hour, cell) in cells.iter().enumerate() {
            let class = cell.attr("class").await.unwrap().unwrap_or_default();
            let expected = if !(7..19).contains(&hour) {
                "asleep"
            } else {
                "awake"
            };
            assert_eq!(class, expected, "hour {hour}");
        }
    }
    assert_eq!(b.count("table#fires tbody tr").await, 5);
    b.screenshot("schedule").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_a_calendar_skips_is_named_on_the_week_grid() {
    let (th, _fleet) = seeded().await;
    let zone = chrono_tz::Asia::Kolkata;
    let holiday = (Utc::now().with_timezone(&zone) + chrono::Duration::days(3)).date_naive();
    let calendar =
        curfew_core::calendar::Calendar::new("holidays", &[holiday.to_string()]).unwrap();
    th.hub
        .store
        .create_calendar(&calendar, false)
        .await
        .unwrap();
    let mut nights: Schedule = serde_json::from_value(json!({
        "name": "nights", "asleep": "daily 19:00-07:00", "tz": "Asia/Kolkata",
        "selector": "tag:env=dev", "enabled": true, "skip_calendars": ["holidays"],
    }))
    .expect("a valid schedule");
    let mut calendars = curfew_core::calendar::Calendars::none();
    calendars.insert(calendar);
    nights.next_fire = nights
        .next_fire_after(Utc::now(), &calendars)
        .map(|f| f.time.utc);
    th.hub.store.create_schedule(&nights).await.unwrap();
    let console = console(&th);
    let b = signed_in(&console).await;
    b.open(&console, "/schedules/nights").await;
    let notes = b
        .client
        .find_all(Locator::Css("table#week tbody tr .day-note"))
        .await
        .unwrap();
    assert_eq!(notes.len(), 1, "one day of the week is a holiday");
    let row = format!("table#week tbody tr[data-date='{holiday}'] .day-note");
    assert_eq!(b.text(&row).await, "calendar holidays");
    b.screenshot("schedule-holiday").await;
    b.close().await;
}

/// A raw HTTP/1.1 request; returns the status code.
fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    exchange(base, method, path, headers, body).0
}

/// A raw HTTP/1.1 request; returns the status code and the body.
fn exchange(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("the console answers");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_without_the_token_is_refused_and_changes_nothing() {
    let (th, fleet) = seeded().await;
    let before = th.fleet_sizes(&fleet).await;
    let console = console(&th);
    let stop = r#"{"select": "tag:env=dev"}"#;
    assert_eq!(http(&console.base, "POST", "/api/stop", &[], stop), 403);
    assert_eq!(
        http(
            &console.base,
            "POST",
            "/api/stop",
            &[("X-Curfew-Token", "0123456789abcdef0123456789abcdef")],
            stop
        ),
        403
    );
    // A browser that never opened the token URL has no cookie: its form post is refused too.
    let b = browser().await;
    b.ask_for_a_stop(&console, "tag:env=dev").await;
    b.wait_for_text("h1", "Forbidden").await;
    b.screenshot("forbidden").await;
    b.close().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(th.hub.store.list_operations(10).await.unwrap().is_empty());
    assert_eq!(th.fleet_sizes(&fleet).await, before);
    // The same request with the token is served: the refusal was the token's doing.
    let with_token = [("X-Curfew-Token", console.token.as_str())];
    let dry_run = r#"{"select": "tag:env=dev", "dry_run": true}"#;
    assert_eq!(
        http(&console.base, "POST", "/api/stop", &with_token, dry_run),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_selector_shows_the_error_next_to_the_field_and_writes_nothing() {
    let (th, fleet) = seeded().await;
    let before = th.fleet_sizes(&fleet).await;
    let console = console(&th);
    let b = signed_in(&console).await;
    b.ask_for_a_stop(&console, "env=dev").await;
    // The message sits beside the field it is about, and names the bad term.
    let error = b.text(".field #select ~ #select-error").await;
    assert!(error.contains("unknown term \"env\""), "{error}");
    assert_eq!(
        b.css("#select")
            .await
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        b.css("#select")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("env=dev")
    );
    b.screenshot("bad-selector").await;
    b.close().await;
    assert!(th.hub.store.list_operations(10).await.unwrap().is_empty());
    assert_eq!(th.fleet_sizes(&fleet).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_override_added_on_the_page_keeps_its_targets_awake_through_a_stop() {
    let (th, fleet) = seeded().await;
    let before = th.fleet_sizes(&fleet).await;
    let console = console(&th);
    let b = signed_in(&console).await;
    b.open(&console, "/overrides").await;
    b.css("#select")
        .await
        .send_keys("tag:env=dev")
        .await
        .unwrap();
    b.css("#awake_until").await.send_keys("3h").await.unwrap();
    b.css("#add-override").await.click().await.unwrap();
    b.css("table#overrides tbody tr").await;
    let stored = th.hub.store.active_overrides(Utc::now()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].selector.as_str(), "tag:env=dev");
    let minutes = (stored[0].awake_until - Utc::now()).num_minutes();
    assert!(
        (175..=180).contains(&minutes),
        "awake for {minutes} minutes"
    );
    b.screenshot("overrides").await;
    // The audit trail names the change, made as the operator's principal.
    b.open(&console, "/audit").await;
    let added = format!(
        "//table[@id='audit']//tr[td[@class='subject'][.='{}']]",
        stored[0].id
    );
    let row = b
        .client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath(&added))
        .await
        .expect("the override's audit record");
    let change = row.find(Locator::Css("td.change")).await.unwrap();
    assert_eq!(change.text().await.unwrap(), "override_added");
    // The page verifies the trail as `curfew audit verify` does: intact.
    let verified = b.text("#verify-summary").await;
    assert!(verified.contains(": no problems"), "{verified}");
    assert!(!verified.starts_with("0 records"), "{verified}");
    b.screenshot("audit").await;
    // A stop of everything now skips the dev targets: the override is in force.
    let token = [("X-Curfew-Token", console.token.as_str())];
    let (code, started) = exchange(
        &console.base,
        "POST",
        "/api/stop",
        &token,
        r#"{"select": "name=*"}"#,
    );
    assert_eq!(code, 200, "{started}");
    let op_id = serde_json::from_str::<serde_json::Value>(&started).unwrap()["operation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    let op = loop {
        let (_, shown) = exchange(
            &console.base,
            "GET",
            &format!("/api/operations/{op_id}"),
            &[],
            "",
        );
        let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
        if shown["operation"]["status"] == "SUCCEEDED" {
            break shown;
        }
        assert!(Instant::now() < deadline, "not done: {shown}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        op["operation"]["counts"]["skipped"],
        fleet.iter().filter(|t| is_dev(t)).count()
    );
    for t in &fleet {
        let now = th.sizes(t).await;
        if is_dev(t) {
            assert_eq!(now, before[&key(t)], "{} was kept awake", t.name);
        } else {
            assert_ne!(now, before[&key(t)], "{} was stopped", t.name);
        }
    }
    // Removing it on the page ends it.
    b.open(&console, "/overrides").await;
    b.css("table#overrides button").await.click().await.unwrap();
    b.css("#add-override").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !th
        .hub
        .store
        .active_overrides(Utc::now())
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the override is still in force");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.close().await;
}

async fn stored_schedule(th: &TestHub, name: &str) -> Schedule {
    th.hub
        .store
        .get_schedule(name)
        .await
        .expect("the table answers")
        .expect("the schedule exists")
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_schedule_on_its_page_stops_it_firing() {
    let (th, _fleet) = seeded().await;
    th.hub
        .store
        .create_schedule(&schedule("nightly-stop", "0 19 * * *", "stop"))
        .await
        .unwrap();
    let console = console(&th);
    let b = signed_in(&console).await;
    b.open(&console, "/schedules/nightly-stop").await;
    b.wait_for_text("#toggle", "Disable").await;
    b.css("#toggle").await.click().await.unwrap();
    b.wait_for_text("#toggle", "Enable").await;
    let stored = stored_schedule(&th, "nightly-stop").await;
    assert!(!stored.enabled);
    assert_eq!(stored.next_fire, None);
    b.css("#toggle").await.click().await.unwrap();
    b.wait_for_text("#toggle", "Disable").await;
    let stored = stored_schedule(&th, "nightly-stop").await;
    assert!(stored.enabled);
    assert!(stored.next_fire.is_some_and(|t| t > Utc::now()));
    b.close().await;
}

/// A price table of the ASGs' type only: the emulator launches the demo ASGs' instances as the
/// launch configuration's t3.micro and gives node groups its default t3.medium, so the node
/// groups' hours stay unpriced.
const PRICES: &str = "# example figures\ncurrency = \"EUR\"\n\n[prices]\nt3.micro = 0.0104\n";

fn price_file(text: &str) -> (TempDir, PathBuf) {
    let dir = TempDir(
        std::env::temp_dir().join(format!("curfew-prices-{}", uuid::Uuid::now_v7().simple())),
    );
    std::fs::create_dir_all(&dir.0).expect("a temporary folder");
    let file = dir.0.join("prices.toml");
    std::fs::write(&file, text).expect("the price file is written");
    (dir, file)
}

/// A stop that took a target to zero (not one that skipped it).
fn slept(t: &curfew_core::operation::Task) -> bool {
    matches!((t.before, t.after), (Some(b), Some(a)) if b.desired > 0 && a.desired == 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_savings_page_prices_the_hours_it_can_and_charts_awake_and_asleep_capacity() {
    // The dev targets went to sleep ten hours ago (the hub's clock) and sleep still.
    let th = spawn_hub(Utc::now() - chrono::Duration::hours(10), 1).await;
    th.register_accounts(&["eu-west-1"]).await;
    let fleet = demo_fleet(&th.accounts, &["eu-west-1".to_string()], 4, 1);
    th.seed(&fleet).await;
    nightly(&th).await;
    let before = th.fleet_sizes(&fleet).await;
    let op = th
        .run(json!({"action": "trigger", "schedule": "nightly-stop"}))
        .await;
    let tasks = th.hub.store.list_tasks(&op.id).await.unwrap();
    let stopped: Vec<_> = tasks.iter().filter(|t| slept(t)).collect();
    assert!(
        stopped.iter().any(|t| t.target.kind == TargetKind::Asg)
            && stopped
                .iter()
                .any(|t| t.target.kind == TargetKind::Nodegroup),
        "{tasks:?}"
    );
    // Discovery recorded what each one runs, and the stop's task carries it.
    for t in &stopped {
        let expected = match t.target.kind {
            TargetKind::Asg => ["t3.micro"],
            TargetKind::Nodegroup => ["t3.medium"],
        };
        assert_eq!(t.target.instance_types, expected, "{}", t.target.key());
    }
    let (_dir, file) = price_file(PRICES);
    let console = console_with(&th, &["--prices", file.to_str().unwrap()]);
    let b = signed_in(&console).await;
    b.open(&console, "/savings").await;
    let saved = b.text("#money-saved").await;
    let until = Utc::now();
    let capacity_hours = |kind: TargetKind| -> f64 {
        stopped
            .iter()
            .filter(|t| t.target.kind == kind)
            .map(|t| {
                let hours = (until - t.updated_at).num_seconds() as f64 / 3600.0;
                f64::from(t.before.unwrap().desired) * hours
            })
            .sum()
    };
    // The ASGs' instance-hours at 0.0104 EUR; the node groups' hours have no price.
    let expected = capacity_hours(TargetKind::Asg) * 0.0104;
    assert!(expected > 0.1, "{expected}");
    let shown: f64 = saved
        .strip_suffix(" EUR")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an amount in EUR: {saved:?}"));
    assert!(
        (shown - expected).abs() < 0.011,
        "{saved} shown, {expected:.4} expected"
    );
    let node_hours = b.text("#node-hours").await;
    assert_eq!(b.text("#unpriced-node-hours").await, node_hours);
    let node_hours: f64 = node_hours.parse().unwrap();
    assert!(
        (node_hours - capacity_hours(TargetKind::Nodegroup)).abs() < 0.05,
        "{node_hours}"
    );
    assert_eq!(b.text("#unpriced-instance-hours").await, "0.00");
    assert_eq!(
        b.text("table#per-schedule tbody tr td").await,
        "nightly-stop"
    );
    assert_eq!(b.text("table#per-schedule tbody tr td.saved").await, saved);
    // Each node group is named with the reason its hours have no price.
    let nodegroups = stopped
        .iter()
        .filter(|t| t.target.kind == TargetKind::Nodegroup)
        .count();
    assert_eq!(b.count("table#unpriced tbody tr").await, nodegroups);
    assert_eq!(
        b.text("table#unpriced tbody tr td.why").await,
        "no price for t3.medium"
    );
    // The chart: a bar for each hour asleep, and the awake line over the whole week, peaking
    // before the stop at the whole fleet's desired capacity.
    let bars = b.count("svg#savings-chart g.asleep rect").await;
    assert!((10..=11).contains(&bars), "{bars} bars");
    let line = b
        .css("svg#savings-chart path.awake")
        .await
        .attr("d")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(line.starts_with("M0,") && line.contains('V'), "{line}");
    let fleet_desired: i32 = before.values().map(|s| s.desired).sum();
    let asleep: i32 = stopped.iter().map(|t| t.before.unwrap().desired).sum();
    let legend = b.text("svg#savings-chart g.legend").await;
    assert!(
        legend.contains(&format!("awake (peak {fleet_desired})"))
            && legend.contains(&format!("asleep (peak {asleep})")),
        "{legend}"
    );
    b.screenshot("savings-money").await;
    b.close().await;
    // The JSON carries the same, for scripts.
    let (code, body) = exchange(&console.base, "GET", "/api/savings", &[], "");
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["money"]["currency"], "EUR");
    assert!(json["money"]["saved"].as_f64().unwrap() > 0.1, "{json}");
    assert_eq!(
        json["money"]["unpriced"][0]["reason"],
        "no price for t3.medium"
    );
    assert_eq!(json["awake_hourly"].as_array().unwrap().len(), 7 * 24);
    assert_eq!(json["awake_targets"], fleet.len());
}

#[test]
fn a_bad_price_file_stops_curfew_ui_before_it_serves_anything() {
    let (_dir, file) = price_file("currency = \"EUR\"\n[prices]\nt3.micro = \"cheap\"\n");
    let mut child = Started(
        curfew()
            .arg("ui")
            .env("CURFEW_PRICES", &file)
            .env("AWS_REGION", "eu-west-1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curfew ui starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "curfew ui is serving");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert_eq!(out, "", "no URL is printed");
    assert_eq!(
        err.trim(),
        format!(
            "error: the price file {}, line 3, field prices.t3.micro: a price must be a number of EUR per instance-hour, not string",
            file.display()
        )
    );
}
