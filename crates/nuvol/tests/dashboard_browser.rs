//! The dashboard in a real browser (Debian's headless Chromium through
//! chromedriver) against a small real cluster on loopback: three nuvol
//! agents and one real serf agent whose name, tags and Cloudy services
//! carry markup. Every page is loaded at 360 px and 1280 px (screenshots
//! kept under `target/test-artefacts/dashboard_browser/`) and checked by
//! axe-core; a service published through one node's form appears on
//! another node's dashboard without a reload; a killed node turns failed
//! live; queries, user events, scans, the language switcher and the
//! bootstrap settings work through their forms; the apps pages pass the
//! same checks and, with Docker, an app installed through the store's form
//! gets its new log lines live and is removed through the confirmation.
//! n1 monitors two loopback devices (one titled with markup): the
//! monitoring list and a device's page with its charts pass the same
//! checks.

use nuvol_catalog::cloudy::{encode_services, CloudyService};
use nuvol_testkit::browser::{axe, browser, require_axe, Browser};
use nuvol_testkit::{require_serf, wait_all_agree, NuvolAgent, SerfAgent};
use std::time::Duration;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const T: Duration = Duration::from_secs(60);
/// Failure detection with the `local` profile takes seconds; gossip of
/// the catalog a few more.
const LIVE: Duration = Duration::from_secs(45);

/// What the malicious node puts everywhere it can.
const SCRIPT: &str = "<script>window.__xss=1</script>";
const BREAK: &str = "\"'><img src=x onerror=window.__xss=2>";

fn base(a: &NuvolAgent) -> String {
    format!("http://{}:7000", a.ip())
}

/// Nothing the evil node sent became markup or ran.
async fn assert_no_injection(b: &Browser, page: &str) {
    let v = b
        .js("[typeof window.__xss, document.querySelectorAll('img[src=x], script:not([src])').length, document.querySelectorAll('i.evil, b.evil').length]")
        .await
        .unwrap();
    assert_eq!(
        v,
        serde_json::json!(["undefined", 0, 0]),
        "{page}: injected markup"
    );
}

/// Wait for the redirect after a form (`?done=WHAT`): a notice already on
/// the page from an earlier form must not count.
async fn wait_done(b: &Browser, what: &str) {
    b.wait_until_js(
        &format!(
            "location.search.indexOf('done={what}') >= 0 && document.readyState === 'complete' && document.querySelector('.notice') !== null"
        ),
        T,
    )
    .await
    .unwrap();
}

async fn check_page(b: &Browser, url: &str, shot: &str) {
    for width in [360, 1280] {
        b.set_width(width).await.unwrap();
        b.goto(url).await.unwrap();
        b.wait_for("main h1", T).await.unwrap();
        // Nothing wider than the viewport but tables, which scroll in
        // their own region.
        let overflow = b
            .js("document.documentElement.scrollWidth - window.innerWidth")
            .await
            .unwrap();
        if overflow.as_i64().is_none_or(|o| o > 0) {
            let wide = b
                .js("Array.from(document.querySelectorAll('*')).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !(e.parentElement && e.parentElement.closest('.scroll'))).slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))")
                .await
                .unwrap();
            panic!("{url} at {width}px overflows by {overflow}: {wide}");
        }
        b.screenshot(&format!("{shot}-{width}")).await.unwrap();
        if require_axe("dashboard_browser") {
            let v = axe(b).await.unwrap();
            assert!(v.is_empty(), "{url} at {width}px: {v}");
        }
        assert_no_injection(b, url).await;
        let errors = b.console_errors().await.unwrap();
        // The 404 page's own status is logged as a failed load.
        let errors: Vec<_> = errors
            .into_iter()
            .filter(|e| !(shot == "not-found" && format!("{e:?}").contains("404")))
            .collect();
        assert!(errors.is_empty(), "{url}: console errors {errors:?}");
    }
}

/// A busybox httpd writing a log line a second (`busybox_image`).
const WEB_TEMPLATE: &str = r#"
services:
  web:
    image: nuvol-test/busybox:1
    command: ["sh", "-c", "echo browser-log-start; while true; do echo browser-tick; sleep 1; done & exec httpd -f -p 8080 -h /"]
    ports: ["${PORT}:8080"]
    stop_grace_period: 1s
x-nuvol:
  id: bweb
  version: "1.0"
  title: Browser web
  category: web
  parameters:
    - {name: PORT, type: port, required: true}
"#;

/// With Docker here: install `bweb` through the store's form, check its
/// page (axe, 360 and 1280 px), and see a new log line arrive without a
/// reload. Without Docker this part says why it is skipped.
async fn install_and_watch_an_app(b: &Browser, u: &str, app: &str) {
    let ready = nuvol_testkit::docker::docker_available()
        .and_then(|()| nuvol_testkit::docker::busybox_image("nuvol-test/busybox:1"));
    if let Err(why) = ready {
        println!("SKIP: the app part of dashboard_browser because {why}");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    b.set_width(1280).await.unwrap();
    b.goto(&format!("{u}/apps/store/bweb")).await.unwrap();
    b.fill("#install", "name", app).await.unwrap();
    b.fill("#install", "p_PORT", &port.to_string())
        .await
        .unwrap();
    b.submit("#install").await.unwrap();
    b.wait_until_js("location.search.indexOf('done=install') >= 0", T)
        .await
        .unwrap();
    let page = format!("{u}/apps/{app}");
    let start = std::time::Instant::now();
    loop {
        b.goto(&page).await.unwrap();
        let running = b
            .js("document.querySelector('#app-status [data-state=running]') !== null")
            .await
            .unwrap();
        if running == serde_json::json!(true) {
            break;
        }
        assert!(start.elapsed() < T, "{app} not running on its page");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    check_page(b, &page, "app").await;
    // The page stays; a line the container writes now arrives live.
    b.wait_for("#live-status.on", T).await.unwrap();
    b.js("(window.__mark = 9)").await.unwrap();
    b.wait_until_js(
        "Array.from(document.querySelectorAll('#logs li[data-key^=s]')).some(l => l.textContent.includes('browser-tick')) && window.__mark === 9",
        LIVE,
    )
    .await
    .unwrap();
    b.screenshot("app-live-log-1280").await.unwrap();
    // Removing it asks first.
    b.submit(&format!("form[action=\"/apps/{app}/remove\"]"))
        .await
        .unwrap();
    b.wait_for("form#remove", T).await.unwrap();
    let here = b.current_url().await.unwrap();
    b.screenshot("app-remove-confirm-1280").await.unwrap();
    assert!(here.ends_with(&format!("/apps/{app}/remove")), "{here}");
    b.submit("form#remove").await.unwrap();
    wait_done(b, "remove").await;
    assert!(
        !b.text("main").await.unwrap().contains(app),
        "{app} still listed after its removal"
    );
}

#[test]
fn dashboard_in_a_real_browser() {
    if !require_serf() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let Some(b1) = browser("dashboard_browser").await.unwrap() else {
        return;
    };
    let d1 = tempfile::tempdir().unwrap();
    let d3 = tempfile::tempdir().unwrap();
    let app = format!("bweb{}", std::process::id() % 100_000);
    // Declared before the agents: it runs after they are gone.
    let _clean = nuvol_testkit::docker::AppContainers {
        node: "n1".into(),
        app: app.clone(),
    };
    // A store template n1 can install when this machine has Docker.
    let store = tempfile::tempdir().unwrap();
    std::fs::write(store.path().join("bweb.yml"), WEB_TEMPLATE).unwrap();
    // n1 monitors two loopback devices, one titled with markup (CNML
    // titles are untrusted).
    let monitor_cfg = store.path().join("monitor.toml");
    std::fs::write(
        &monitor_cfg,
        format!(
            "[monitor]\nenable = true\ninterval = \"2s\"\nsettle = \"1s\"\ndevices = [\n\
             {{ id = \"r1\", title = {:?}, address = \"{}\", snmp = false }},\n\
             {{ id = \"r2\", address = \"{}\", snmp = false }},\n]\n",
            format!("r1 {SCRIPT}{BREAK}"),
            nuvol_testkit::fresh_ip(),
            nuvol_testkit::fresh_ip()
        ),
    )
    .unwrap();
    let n1 = NuvolAgent::builder(NUVOL, "n1")
        .profile("local")
        .data_dir(d1.path())
        .arg("--mdns=false")
        .arg(format!("--config={}", monitor_cfg.display()))
        .arg(format!("--apps-store-dir={}", store.path().display()))
        .arg("--apps-reconcile-every=1s")
        .spawn()
        .unwrap();
    let n2 = NuvolAgent::builder(NUVOL, "n2")
        .profile("local")
        .join_agent(&n1)
        .event_handler("query:who=echo n2-here")
        .arg("--mdns=false")
        .spawn()
        .unwrap();
    let mut n3 = NuvolAgent::builder(NUVOL, "n3")
        .profile("local")
        .data_dir(d3.path())
        .join_agent(&n1)
        .arg("--mdns=false")
        .spawn()
        .unwrap();
    // The evil node: markup in its name, tags and Cloudy services.
    let evil_name = "evil\"><i class=evil>x</i>";
    let evil = SerfAgent::builder(evil_name)
        .profile("local")
        .tag("note", SCRIPT)
        .tag("q", BREAK)
        .join_agent(&n1)
        .spawn()
        .unwrap();
    wait_all_agree(
        &[&n1, &n2],
        &[
            ("n1", "alive"),
            ("n2", "alive"),
            ("n3", "alive"),
            (evil_name, "alive"),
        ],
        T,
    )
    .unwrap();
    let svc = CloudyService {
        stype: "http".into(),
        description: format!("{SCRIPT}{BREAK}"),
        host: "evil.local".into(),
        ip: "127.0.0.1".into(),
        port: 8088,
        cloud: "<b class=evil>cloud</b>".into(),
        txt: vec![
            ("path".into(), format!("/{BREAK}")),
            ("k".into(), SCRIPT.into()),
        ],
    };
    let tag = encode_services(&[svc]);
    evil.serf(&["tags", "-set", &format!("services={tag}")])
        .unwrap();
    let (u1, u2) = (base(&n1), base(&n2));
    b1.goto(&format!("{u1}/services")).await.unwrap();
    b1.wait_until_js(
        "document.querySelector('tr[data-service$=\"/http/8088\"]') !== null",
        LIVE,
    )
    .await
    .unwrap();

    // The monitored device's page once it has a chart.
    let deadline = std::time::Instant::now() + LIVE;
    loop {
        b1.goto(&format!("{u1}/monitor/r1")).await.unwrap();
        let has = b1
            .js("document.querySelector('svg.chart') !== null")
            .await
            .unwrap();
        if has == serde_json::json!(true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no chart on /monitor/r1: {}",
            b1.page_source().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every page, anonymous (from loopback, viewing needs no login).
    let evil_seg = "evil%22%3E%3Ci%20class%3Devil%3Ex%3C%2Fi%3E";
    for (path, shot) in [
        ("/", "overview"),
        ("/nodes", "nodes"),
        ("/nodes/n2", "node"),
        (&format!("/nodes/{evil_seg}") as &str, "node-evil"),
        ("/services", "services"),
        ("/services?type=http&q=8088", "services-http"),
        ("/events", "events"),
        ("/settings", "settings"),
        ("/login", "login"),
        ("/apps", "apps"),
        ("/apps/store", "store"),
        ("/apps/store?category=web", "store-web"),
        ("/apps/store/static-web", "store-template"),
        ("/monitor", "monitor"),
        ("/monitor/r1", "monitor-device"),
        ("/monitor/r1?step=86400", "monitor-device-day"),
        ("/no-such-page", "not-found"),
    ] {
        check_page(&b1, &format!("{u1}{path}"), shot).await;
    }
    // The evil values are shown as text.
    b1.goto(&format!("{u1}/nodes/{evil_seg}")).await.unwrap();
    let text = b1.text("main").await.unwrap();
    assert!(text.contains(SCRIPT) && text.contains(BREAK), "{text}");

    // Log in on n1 with the API token.
    let token = nuvol_api::token::read_token(d1.path()).unwrap();
    b1.set_width(1280).await.unwrap();
    b1.goto(&format!("{u1}/login?next=/services"))
        .await
        .unwrap();
    b1.fill("#login", "token", "not the token").await.unwrap();
    b1.submit("#login").await.unwrap();
    b1.wait_for("#login-token-error", T).await.unwrap();
    // Its 401 is in the console log: read it out.
    let logged = b1.console().await.unwrap();
    assert!(format!("{logged:?}").contains("401"), "{logged:?}");
    b1.fill("#login", "token", &token).await.unwrap();
    b1.submit("#login").await.unwrap();
    b1.wait_for("form#publish", T).await.unwrap();
    // Forms for logged-in users pass axe too.
    for (path, shot) in [
        ("/services", "services-in"),
        ("/nodes", "nodes-in"),
        ("/events", "events-in"),
        ("/settings", "settings-in"),
        ("/apps", "apps-in"),
        ("/apps/store/static-web", "store-template-in"),
    ] {
        check_page(&b1, &format!("{u1}{path}"), shot).await;
    }
    install_and_watch_an_app(&b1, &u1, &app).await;

    // A second browser watches n2's services and nodes pages.
    let Some(b2) = browser("dashboard_browser_watch").await.unwrap() else {
        return;
    };
    b2.set_width(1280).await.unwrap();
    b2.goto(&format!("{u2}/services")).await.unwrap();
    b2.wait_for("#live-status.on", T).await.unwrap();
    b2.js("(window.__mark = 1)").await.unwrap();

    // A bad publish shows the error next to the field and changes nothing.
    b1.goto(&format!("{u1}/services")).await.unwrap();
    b1.fill("#publish", "type", "bad type!").await.unwrap();
    b1.fill("#publish", "port", "8123").await.unwrap();
    b1.fill("#publish", "description", "Browser web")
        .await
        .unwrap();
    b1.submit("#publish").await.unwrap();
    b1.wait_for("#publish-type-error", T).await.unwrap();
    assert_eq!(
        b1.attr("#publish-type", "aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    b1.screenshot("publish-error-1280").await.unwrap();
    let _ = b1.console().await.unwrap(); // the 400
                                         // Now right.
    b1.fill("#publish", "type", "http").await.unwrap();
    b1.fill("#publish", "txt", "path=/web").await.unwrap();
    b1.submit("#publish").await.unwrap();
    wait_done(&b1, "publish").await;
    // n2's page gets the row without reloading.
    b2.wait_until_js(
        "document.querySelector('tr[data-service=\"n1/http/8123\"]') !== null && window.__mark === 1",
        LIVE,
    )
    .await
    .unwrap();
    let open = b2
        .attr("tr[data-service=\"n1/http/8123\"] a[target]", "href")
        .await
        .unwrap();
    assert_eq!(open, Some(format!("http://{}:8123/web", n1.ip())));
    b2.screenshot("n2-services-live-1280").await.unwrap();

    // Kill n3: n2's nodes page shows it failed, live.
    b2.goto(&format!("{u2}/nodes")).await.unwrap();
    b2.wait_for("#live-status.on", T).await.unwrap();
    b2.js("(window.__mark = 2)").await.unwrap();
    n3.kill();
    let n3_killed = std::time::Instant::now();
    b2.wait_until_js(
        "(() => { var r = document.querySelector('tr[data-node=\"n3\"]'); return r !== null && r.getAttribute('data-status') === 'failed' && window.__mark === 2; })()",
        LIVE,
    )
    .await
    .unwrap();
    b2.screenshot("n2-nodes-failed-1280").await.unwrap();
    // n2's overview lists the failure, and gets n1's user event live.
    b2.goto(&format!("{u2}/")).await.unwrap();
    b2.wait_for("#live-status.on", T).await.unwrap();
    assert_eq!(b2.text("#count-failed").await.unwrap(), "1");
    b2.js("(window.__mark = 3)").await.unwrap();

    // A user event through the form lands in the log.
    b1.goto(&format!("{u1}/events")).await.unwrap();
    b1.fill("#event", "name", "deploy").await.unwrap();
    b1.fill("#event", "payload", "v2").await.unwrap();
    b1.submit("#event").await.unwrap();
    b1.wait_until_js(
        "Array.from(document.querySelectorAll('tr[data-kind=user]')).some(r => r.textContent.includes('deploy'))",
        LIVE,
    )
    .await
    .unwrap();
    b2.wait_until_js(
        "Array.from(document.querySelectorAll('tr[data-kind=user]')).some(r => r.textContent.includes('deploy')) && window.__mark === 3",
        LIVE,
    )
    .await
    .unwrap();
    b2.screenshot("n2-overview-live-1280").await.unwrap();
    b2.close().await.unwrap();
    // A query: its acks arrive on the query's page. Queries are best
    // effort, as serf's: with the local profile a broadcast goes out
    // twice (retransmit_mult 2), and memberlist still gossips to a dead
    // node for 15 s (gossip_to_the_dead_time); while n3 is one of the
    // three targets, one time in three n1's two packets go to n3 and the
    // serf node, and n2 only hears the query if the serf node relays it
    // to n2 (the flake of earlier runs: n2 never acked). Once n3 is past
    // that window, n1's two packets go to n2 and the serf node.
    let quiet = Duration::from_secs(20);
    if let Some(rest) = quiet.checked_sub(n3_killed.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    b1.fill("#query", "name", "who").await.unwrap();
    b1.fill("#query", "timeout", "10s").await.unwrap();
    b1.submit("#query").await.unwrap();
    b1.wait_for("#query-acks", T).await.unwrap();
    b1.wait_until_js(
        "document.querySelectorAll('tbody[data-list=acks] tr').length >= 2",
        LIVE,
    )
    .await
    .unwrap();
    if let Err(e) = b1.wait_until_js(
        "Array.from(document.querySelectorAll('tbody[data-list=responses] tr')).some(r => r.textContent.includes('n2-here'))",
        LIVE,
    )
    .await
    {
        // Seen twice in a row under load, then not again: say what the
        // page and both agents saw.
        let rows = b1
            .js("document.body.innerText")
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        // The lines about queries and members (a tail is mostly the
        // apps' Docker polling).
        let about = |log: String| -> String {
            log.lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("query") || l.contains("member") || l.contains("handler")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{e}\n--- the query's page:\n{rows}\n--- n1:\n{}\n--- n2:\n{}",
            about(n1.log_text()),
            about(n2.log_text())
        );
    }
    b1.wait_until_js(
        "document.getElementById('query-state').textContent === 'Done.'",
        LIVE,
    )
    .await
    .unwrap();
    let here = b1.current_url().await.unwrap();
    check_page(&b1, &here, "query").await;

    // Scan reachability: every alive node gets a quality.
    b1.goto(&format!("{u1}/nodes")).await.unwrap();
    b1.submit("#scan").await.unwrap();
    wait_done(&b1, "scan").await;
    let q = b1.text("tr[data-node=\"n2\"] .q").await.unwrap();
    assert!(q.ends_with('%'), "{q}");
    // The same button on the services page (Cloudy's "scan quality of
    // services"): the serf node's service gets its node's quality.
    b1.goto(&format!("{u1}/services")).await.unwrap();
    b1.submit("#scan").await.unwrap();
    wait_done(&b1, "scan").await;
    let q = b1
        .text("tr[data-service$=\"/http/8088\"] .q")
        .await
        .unwrap();
    assert!(q.ends_with('%'), "{q}");

    // Tags: set one, see it, delete it.
    b1.goto(&format!("{u1}/settings")).await.unwrap();
    b1.fill("#tags", "key", "role").await.unwrap();
    b1.fill("#tags", "value", "edge").await.unwrap();
    b1.submit("#tags").await.unwrap();
    b1.wait_for("#own-tags tr[data-key=\"role\"]", T)
        .await
        .unwrap();
    // The bootstrap addresses are saved in the data dir.
    b1.fill("#bootstrap", "addrs", &n2.bind().to_string())
        .await
        .unwrap();
    b1.submit("#bootstrap").await.unwrap();
    wait_done(&b1, "bootstrap").await;
    let saved = std::fs::read_to_string(d1.path().join("join.json")).unwrap();
    assert!(saved.contains(&n2.bind().to_string()), "{saved}");

    // The language switcher: Catalan, kept across pages.
    b1.fill("footer form.lang", "set", "ca").await.unwrap();
    b1.submit("footer form.lang").await.unwrap();
    b1.wait_until_js("document.documentElement.lang === 'ca'", T)
        .await
        .unwrap();
    b1.goto(&format!("{u1}/")).await.unwrap();
    assert_eq!(b1.text("nav a[aria-current=page]").await.unwrap(), "Resum");
    check_page(&b1, &format!("{u1}/"), "overview-ca").await;
    b1.fill("footer form.lang", "set", "es").await.unwrap();
    b1.submit("footer form.lang").await.unwrap();
    b1.wait_until_js("document.documentElement.lang === 'es'", T)
        .await
        .unwrap();
    check_page(&b1, &format!("{u1}/services"), "services-es").await;

    // Logging out: the forms are gone.
    b1.submit("header form").await.unwrap();
    b1.wait_for("header a[href^=\"/login\"]", T).await.unwrap();
    b1.close().await.unwrap();
    drop(evil);
}
