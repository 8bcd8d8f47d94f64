//! The browser harness on static pages served from a tiny HTTP server:
//! viewport widths, screenshots, forms, waits, and axe-core both passing and
//! failing.

use nuvol_testkit::browser::{axe, browser, require_axe, WAIT};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const GOOD: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Harness page</title>
<style>body { font-family: sans-serif; margin: 1rem; } main { max-width: 40rem; }</style>
</head>
<body>
<main>
<h1>Harness page</h1>
<p id="status">loading</p>
<form id="greet" action="/result" method="get">
  <label for="name">Name</label>
  <input id="name" name="name" type="text">
  <label for="colour">Colour</label>
  <select id="colour" name="colour"><option value="red">Red</option><option value="blue">Blue</option></select>
  <button type="submit">Greet</button>
</form>
</main>
<script>setTimeout(() => { document.getElementById("status").textContent = "ready"; }, 200);</script>
</body>
</html>"#;

/// An image without alt text and an input without a label.
const BAD: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Bad page</title></head>
<body>
<main>
<h1>Bad page</h1>
<img src="/logo.png">
<input type="text" name="q">
</main>
</body>
</html>"#;

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `application/x-www-form-urlencoded` value decoding (enough for tests).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn respond(path: &str) -> (&'static str, String) {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    match route {
        "/" => ("200 OK", GOOD.to_owned()),
        "/bad" => ("200 OK", BAD.to_owned()),
        "/result" => {
            let mut name = String::new();
            let mut colour = String::new();
            for kv in query.split('&') {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match k {
                    "name" => name = form_decode(v),
                    "colour" => colour = form_decode(v),
                    _ => {}
                }
            }
            let body = format!(
                "<!doctype html><html lang=\"en\"><head><title>Result</title></head><body><main>\
                 <h1>Result</h1><p id=\"greeting\">Hello, {}! You like {}.</p></main></body></html>",
                html_escape(&name),
                html_escape(&colour)
            );
            ("200 OK", body)
        }
        _ => ("404 Not Found", "not found".to_owned()),
    }
}

/// Serve the pages on 127.0.0.1 (a free port): the base URL.
async fn serve() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, body) = respond(&path);
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn assert_png(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(bytes.len() > 100, "{} is too small", path.display());
}

#[tokio::test]
async fn widths_screenshots_and_forms() -> anyhow::Result<()> {
    let test = "browser_widths_screenshots_and_forms";
    let Some(b) = browser(test).await? else {
        return Ok(());
    };
    let base = serve().await;
    b.goto(&format!("{base}/")).await?;
    assert_eq!(b.text("h1").await?, "Harness page");
    assert_eq!(b.attr("#name", "type").await?.as_deref(), Some("text"));
    assert_eq!(b.attr("#name", "placeholder").await?, None);
    assert!(b.page_source().await?.contains("id=\"greet\""));

    // The page's script flips the status after 200 ms.
    b.wait_until_js(
        "document.getElementById('status').textContent === 'ready'",
        WAIT,
    )
    .await?;

    for (w, name) in [(360, "phone"), (1280, "desktop")] {
        b.set_width(w).await?;
        assert_eq!(b.js("window.innerWidth").await?, w);
        assert_eq!(b.js("window.innerHeight").await?, 800);
        let png = b.screenshot(name).await?;
        assert!(
            png.ends_with(format!("{test}/{name}.png")),
            "{}",
            png.display()
        );
        assert_png(&png);
    }

    b.fill("#greet", "name", "Ada & <Bob>").await?;
    b.fill("#greet", "colour", "blue").await?;
    b.submit("#greet").await?;
    let p = b.wait_for("#greeting", WAIT).await?;
    assert_eq!(p.text().await?, "Hello, Ada & <Bob>! You like blue.");
    assert!(b.current_url().await?.contains("/result?name=Ada"));
    b.click("h1").await?;

    b.js("console.error('on purpose')").await?;
    let errors = b.console_errors().await?;
    assert!(
        errors.iter().any(|e| e.message.contains("on purpose")),
        "{errors:?}"
    );
    assert!(b.console_errors().await?.is_empty(), "the log is drained");
    b.close().await?;
    Ok(())
}

#[tokio::test]
async fn waits_time_out_with_a_clear_error() -> anyhow::Result<()> {
    let Some(b) = browser("browser_waits_time_out").await? else {
        return Ok(());
    };
    let base = serve().await;
    b.goto(&format!("{base}/")).await?;
    let e = b
        .wait_until_js("window.neverSet === 1", Duration::from_millis(500))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("timed out after 500ms"), "{e}");
    assert!(e.contains("`window.neverSet === 1`"), "{e}");
    assert!(e.contains("last value: false"), "{e}");

    // A script error is reported as such.
    let e = b
        .wait_until_js("noSuchFunction()", Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("last error:") && e.contains("noSuchFunction"),
        "{e}"
    );

    let e = b
        .wait_for("#absent", Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("`#absent`"), "{e}");
    let e = b.text("#absent").await.unwrap_err();
    assert!(
        format!("{e:#}").contains("no element matches `#absent`"),
        "{e:#}"
    );
    Ok(())
}

#[tokio::test]
async fn axe_passes_and_fails() -> anyhow::Result<()> {
    let test = "browser_axe";
    if !require_axe(test) {
        return Ok(());
    }
    let Some(b) = browser(test).await? else {
        return Ok(());
    };
    let base = serve().await;

    b.goto(&format!("{base}/")).await?;
    let v = axe(&b).await?;
    assert!(v.is_empty(), "{v}");
    // Injected once per page: a second run reuses it.
    assert!(axe(&b).await?.is_empty());

    b.goto(&format!("{base}/bad")).await?;
    let v = axe(&b).await?;
    let ids = v.ids();
    assert!(ids.contains(&"image-alt"), "{v}");
    assert!(ids.contains(&"label"), "{v}");
    let img = v.iter().find(|x| x.id == "image-alt").unwrap();
    assert_eq!(img.impact.as_deref(), Some("critical"));
    assert_eq!(img.nodes[0].target, "img");
    let shown = v.to_string();
    assert!(
        shown.contains("image-alt") && shown.contains("<img src=\"/logo.png\">"),
        "{shown}"
    );
    eprintln!("{shown}");
    Ok(())
}
